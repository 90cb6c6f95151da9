//! The stub backend: replicas catch their own events in a signal handler (the
//! stub, [`romain_stub`]) and post them to a page each shares with the engine
//! (its slot), instead of stopping for a tracer. It is the mechanism Redox
//! can run, which has no ptrace; on Linux it runs beside the ptrace backend,
//! selected per group.
//!
//! A replica starts traced, exactly as under the ptrace backend, so its
//! start-up is intercepted and made deterministic. Its scheme runtime installs
//! the stub before it serves: the stub adds a trapping filter and makes a call
//! the filter traps, whose `SIGSYS` stops the traced replica once more; the
//! engine detaches, delivering the signal, and from there on the replica's
//! events arrive in its slot. The engine waits for them on the group's bell
//! (a futex every replica wakes when it posts), in slices, so that a replica
//! that dies is seen through `waitpid`.
//!
//! Memory is read, compared and repaired from outside as with ptrace. A
//! replica is replaced by having a healthy one fork from inside its stub (the
//! copy opens a fresh slot of the engine's), and one that does not wait at an
//! event (hung, stopped) is replaced instead of repaired: its registers are
//! not in reach.

use std::collections::BTreeSet;
use std::io;
use std::ops::Range;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::libc::{self, user_regs_struct};
use nix::sys::ptrace;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use romain_stub::slot::{Bell, Command, Slot, SlotState, StopKind, PAGE_LEN, REGISTER_WORDS};
use romain_stub::{BELL_FD, SITE_RETURN, SLOT_FD, STUB_ENV};

use super::{compare_replicas, continue_member, copy_memory_and_code, Backend};
use crate::fault_injection::Fault;
use crate::member::{Arrival, Member, Stop};
use crate::replica_group::{GroupFailure, CHANNEL_FD};
use crate::trap::repair::{
    find_spin_instruction, flip_memory_bit, flip_register_bit, vote_pages, PageVote,
};
use crate::trap::{ReplicaCommand, Tracee, TrapError};
use crate::vote::ReplicaIndex;

/// How long the engine sleeps on the bell before it looks for replicas that
/// died (traced ones report their stops only there too).
const DEATH_CHECK: Duration = Duration::from_millis(5);
const TRACED_CHECK: Duration = Duration::from_millis(1);

const _: () = assert!(std::mem::size_of::<user_regs_struct>() == REGISTER_WORDS * 8);

pub struct StubBackend {
    command: ReplicaCommand,
    device_window: Option<Range<u64>>,
    watchdog: Duration,
    bell: SharedPage,
    places: Vec<Option<Place>>,
    pgid: Pid,
    /// The stubs' signal stack, the same in every replica, which holds no
    /// state of the driver's: left out of every comparison.
    signal_stack: Option<Range<u64>>,
}

/// A replica in its place.
struct Place {
    member: Member,
    slot: SharedPage,
    /// Its stub took over: its events arrive in its slot, not as ptrace stops.
    handed_over: bool,
}

impl StubBackend {
    pub fn new(
        command: ReplicaCommand,
        watchdog: Duration,
        device_window: Option<Range<u64>>,
    ) -> io::Result<Self> {
        Ok(Self {
            command,
            device_window,
            watchdog,
            bell: SharedPage::create("romain-bell")?,
            places: Vec::new(),
            pgid: Pid::from_raw(0),
            signal_stack: None,
        })
    }

    fn bell(&self) -> &Bell {
        // SAFETY: the bell's page holds a Bell (all atomics).
        unsafe { self.bell.get::<Bell>() }
    }

    /// Waits until the bell rings past `rung` or `timeout` passes.
    fn wait_for_bell(&self, rung: u32, timeout: Duration) {
        futex(&self.bell().rung, libc::FUTEX_WAIT, rung, Some(timeout));
    }

    fn place(&self, index: ReplicaIndex) -> Result<&Place, TrapError> {
        self.places
            .get(index)
            .and_then(Option::as_ref)
            .ok_or_else(|| TrapError::UnexpectedStart(format!("replica {index} is gone")))
    }

    /// A replica whose stub took over and waits at an event.
    fn waiting(&self, index: ReplicaIndex) -> Result<&Place, String> {
        let place = self.place(index).map_err(|error| error.to_string())?;
        if !place.handed_over {
            return Err("its stub has not taken over yet".to_owned());
        }
        if place.slot().state.load(Ordering::Acquire) != SlotState::Posted as u32 {
            return Err("it does not wait at an event".to_owned());
        }
        Ok(place)
    }

    fn index_of(&self, pid: Pid) -> Option<ReplicaIndex> {
        self.places
            .iter()
            .position(|place| place.as_ref().is_some_and(|p| p.member.pid() == pid))
    }

    fn live_pids(&self, among: &[ReplicaIndex]) -> Result<Vec<Pid>, String> {
        among
            .iter()
            .map(|&index| {
                self.pid(index)
                    .ok_or_else(|| format!("replica {index} is gone"))
            })
            .collect()
    }

    /// Takes over a replica whose stub made its first trapped call: its
    /// signal stack must be where every other stub's is.
    fn hand_over(&mut self, index: ReplicaIndex) -> Result<(), GroupFailure> {
        let place = self.places[index].as_mut().expect("indexed");
        let slot = place.slot();
        let start = slot.stack_start.load(Ordering::Relaxed);
        let stack = start..start + slot.stack_len.load(Ordering::Relaxed);
        let pid = place.member.pid();
        ptrace::detach(pid, Some(Signal::SIGSYS))?;
        place.handed_over = true;
        match &self.signal_stack {
            None => self.signal_stack = Some(stack),
            Some(known) if *known == stack => {}
            Some(known) => log::warn!(
                "replica {index} announced a signal stack at {stack:#x?}, not at {known:#x?}"
            ),
        }
        log::debug!("replica {index} (pid {pid}) handed over to its stub");
        Ok(())
    }

    fn answer(&self, place: &Place) {
        let slot = place.slot();
        slot.command
            .store(Command::Resume as u32, Ordering::Relaxed);
        slot.state
            .store(SlotState::Running as u32, Ordering::Release);
        futex(&slot.state, libc::FUTEX_WAKE, i32::MAX as u32, None);
    }

    /// What the replica at `index` posted.
    fn posted(&self, place: &Place) -> Arrival {
        let slot = place.slot();
        let regs = slot.registers();
        let stop = match StopKind::from_word(slot.stop.load(Ordering::Relaxed)) {
            Some(StopKind::Syscall) => Stop::Syscall,
            Some(StopKind::Fault) => Stop::Fault {
                code: slot.code.load(Ordering::Relaxed) as i32,
                address: slot.address.load(Ordering::Relaxed),
            },
            None => return Arrival::Died("its stub posted an event of no known kind".into()),
        };
        place
            .member
            .interpret(stop, regs, CHANNEL_FD as u64, self.device_window.clone())
    }

    /// Takes in what `waitpid` reported of a replica.
    fn on_status(
        &mut self,
        status: WaitStatus,
        awaited: &mut BTreeSet<ReplicaIndex>,
        arrivals: &mut [Option<Arrival>],
    ) -> Result<(), GroupFailure> {
        let Some(index) = status.pid().and_then(|pid| self.index_of(pid)) else {
            return Ok(());
        };
        let place = self.places[index].as_ref().expect("indexed");
        let arrival = match status {
            WaitStatus::Stopped(_, Signal::SIGSYS) if !place.handed_over => {
                // The stub's first trapped call: from here on the replica
                // posts its events itself.
                return self.hand_over(index);
            }
            status if !place.handed_over => {
                place
                    .member
                    .arrival(status, CHANNEL_FD as u64, self.device_window.clone())
            }
            WaitStatus::Exited(_, code) => Arrival::Died(format!("exited with status {code}")),
            WaitStatus::Signaled(_, signal, _) => Arrival::Died(format!("killed by {signal}")),
            _ => return Ok(()),
        };
        if matches!(status, WaitStatus::Exited(..) | WaitStatus::Signaled(..)) {
            self.places[index]
                .as_mut()
                .expect("indexed")
                .member
                .tracee
                .ended();
        }
        if awaited.remove(&index) {
            arrivals[index] = Some(arrival);
        }
        Ok(())
    }
}

impl Backend for StubBackend {
    fn spawn(&mut self, count: usize) -> Result<(), GroupFailure> {
        self.clear();
        let mut command = self.command.clone();
        command
            .placeholder_fd(CHANNEL_FD)
            .env(scheme_runtime::REPLICA_CHANNEL_ENV, CHANNEL_FD.to_string())
            .env(STUB_ENV, "1")
            .inherit_fd(self.bell.file.clone(), BELL_FD)
            .filter_site(SITE_RETURN);
        for index in 0..count {
            let pgid = if index == 0 { 0 } else { self.pgid.as_raw() };
            let slot = SharedPage::create("romain-slot").map_err(spawn_failure)?;
            command
                .process_group(pgid)
                .inherit_fd(slot.file.clone(), SLOT_FD);
            let replica = command.spawn().map_err(GroupFailure::Spawn)?;
            if index == 0 {
                self.pgid = replica.tracee.pid();
            }
            drop(replica.stdout);
            self.places.push(Some(Place {
                member: Member {
                    tracee: replica.tracee,
                },
                slot,
                handed_over: false,
            }));
        }
        Ok(())
    }

    fn clear(&mut self) {
        // A replica is killed when its tracee is dropped.
        self.places.clear();
        self.signal_stack = None;
    }

    fn places(&self) -> usize {
        self.places.len()
    }

    fn is_live(&self, index: ReplicaIndex) -> bool {
        self.places.get(index).is_some_and(Option::is_some)
    }

    fn pid(&self, index: ReplicaIndex) -> Option<Pid> {
        Some(self.places.get(index)?.as_ref()?.member.pid())
    }

    fn advance(&mut self) -> Result<Vec<Option<Arrival>>, GroupFailure> {
        let mut arrivals: Vec<Option<Arrival>> = (0..self.places.len()).map(|_| None).collect();
        let mut awaited = BTreeSet::new();
        for (index, place) in self.places.iter().enumerate() {
            let Some(place) = place else { continue };
            if place.handed_over {
                self.answer(place);
            } else {
                continue_member(ptrace::cont(place.member.pid(), None))?;
            }
            awaited.insert(index);
        }
        let deadline = Instant::now() + self.watchdog;
        loop {
            let rung = self.bell().rung.load(Ordering::Acquire);
            loop {
                match waitpid(
                    Pid::from_raw(-self.pgid.as_raw()),
                    Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL),
                ) {
                    Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
                    Ok(status) => self.on_status(status, &mut awaited, &mut arrivals)?,
                    Err(Errno::EINTR) => {}
                    Err(errno) => return Err(errno.into()),
                }
            }
            for index in awaited.clone() {
                let place = self.places[index]
                    .as_ref()
                    .expect("awaited replicas are live");
                if place.handed_over
                    && place.slot().state.load(Ordering::Acquire) == SlotState::Posted as u32
                {
                    arrivals[index] = Some(self.posted(place));
                    awaited.remove(&index);
                }
            }
            if awaited.is_empty() {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                for index in std::mem::take(&mut awaited) {
                    arrivals[index] = Some(Arrival::Hung);
                }
                break;
            }
            let traced = awaited
                .iter()
                .any(|&index| self.places[index].as_ref().is_some_and(|p| !p.handed_over));
            let slice = if traced { TRACED_CHECK } else { DEATH_CHECK };
            self.wait_for_bell(rung, slice.min(deadline - now));
        }
        Ok(arrivals)
    }

    fn agreed_on(&mut self, _regs: &user_regs_struct, _is_syscall: bool) {}

    fn complete(
        &mut self,
        index: ReplicaIndex,
        stores: &[(u64, Vec<u8>)],
        regs: &user_regs_struct,
    ) -> Result<(), GroupFailure> {
        let place = self.place(index)?;
        for (address, bytes) in stores {
            if let Err(error) = place.member.tracee.write_memory(*address, bytes) {
                log::warn!("replica {index}: result not stored: {error}");
            }
        }
        if place.handed_over {
            place.slot().set_registers(regs);
            Ok(())
        } else {
            continue_member(ptrace::setregs(place.member.pid(), *regs))
        }
    }

    fn read_memory(
        &self,
        index: ReplicaIndex,
        address: u64,
        len: usize,
    ) -> Result<Vec<u8>, TrapError> {
        self.place(index)?.member.tracee.read_memory(address, len)
    }

    fn discard(&mut self, index: ReplicaIndex) {
        if let Some(place) = self.places.get_mut(index) {
            *place = None;
        }
    }

    fn repair(&mut self, faulty: ReplicaIndex, source: ReplicaIndex) -> Result<String, String> {
        let broken = self
            .waiting(faulty)
            .map_err(|why| format!("not repairable in place: {why}"))?
            .member
            .pid();
        let healthy = self.waiting(source)?.member.pid();
        // The FP state is in the stub's frame, on the signal stack, which
        // comes along with the memory.
        copy_memory_and_code(healthy, broken)
    }

    fn replace(
        &mut self,
        index: ReplicaIndex,
        source: ReplicaIndex,
        regs: &user_regs_struct,
    ) -> Result<(), GroupFailure> {
        let refused = |why: String| GroupFailure::Trace(TrapError::UnexpectedStart(why));
        let from = self
            .waiting(source)
            .map_err(|why| refused(format!("replica {source} cannot fork: {why}")))?
            .slot();
        let page = SharedPage::create("romain-slot").map_err(spawn_failure)?;
        let copy = page.slot();
        copy.stop
            .store(from.stop.load(Ordering::Relaxed), Ordering::Relaxed);
        copy.code
            .store(from.code.load(Ordering::Relaxed), Ordering::Relaxed);
        copy.address
            .store(from.address.load(Ordering::Relaxed), Ordering::Relaxed);
        copy.set_registers(regs);
        copy.command
            .store(Command::Resume as u32, Ordering::Relaxed);
        copy.state
            .store(SlotState::Posted as u32, Ordering::Release);
        from.fork_pid.store(std::process::id(), Ordering::Relaxed);
        from.fork_fd
            .store(page.file.as_raw_fd() as u32, Ordering::Relaxed);
        from.forked.store(0, Ordering::Relaxed);
        from.command.store(Command::Fork as u32, Ordering::Relaxed);
        from.state
            .store(SlotState::Running as u32, Ordering::Release);
        futex(&from.state, libc::FUTEX_WAKE, i32::MAX as u32, None);
        let deadline = Instant::now() + self.watchdog;
        loop {
            let rung = self.bell().rung.load(Ordering::Acquire);
            if from.state.load(Ordering::Acquire) == SlotState::Posted as u32 {
                break;
            }
            let now = Instant::now();
            if now >= deadline {
                self.places[source] = None;
                return Err(refused(format!(
                    "replica {source} did not come back from forking"
                )));
            }
            self.wait_for_bell(rung, DEATH_CHECK.min(deadline - now));
        }
        from.command
            .store(Command::Resume as u32, Ordering::Relaxed);
        let forked = from.forked.load(Ordering::Relaxed);
        if forked <= 0 {
            let errno = Errno::from_raw(-forked as i32);
            return Err(refused(format!("replica {source} could not fork: {errno}")));
        }
        self.places[index] = Some(Place {
            member: Member {
                tracee: Tracee::owned(Pid::from_raw(forked as i32)),
            },
            slot: page,
            handed_over: true,
        });
        Ok(())
    }

    fn differing_pages(
        &mut self,
        among: &[ReplicaIndex],
        known_alike: &[Range<u64>],
    ) -> Result<Vec<u64>, String> {
        let pids = self.live_pids(among)?;
        let mut alike = known_alike.to_vec();
        alike.extend(self.signal_stack.clone());
        compare_replicas(&pids, &alike)
    }

    fn vote_pages(&mut self, among: &[ReplicaIndex], pages: &[u64]) -> Result<PageVote, String> {
        let pids = self.live_pids(among)?;
        vote_pages(&pids, pages).map_err(|e| e.to_string())
    }

    fn inject(&mut self, index: ReplicaIndex, fault: &Fault) -> Result<(), String> {
        let place = self
            .places
            .get(index)
            .and_then(Option::as_ref)
            .ok_or_else(|| format!("replica {index} is not running"))?;
        let pid = place.member.pid();
        let slot = place.slot();
        match *fault {
            Fault::RegisterBit { register, bit } => {
                self.waiting(index)?;
                let mut regs = slot.registers();
                flip_register_bit(&mut regs, register, bit).map_err(|e| e.to_string())?;
                slot.set_registers(&regs);
                Ok(())
            }
            Fault::MemoryBit { address, bit } => flip_memory_bit(pid, address, bit)
                .map(|_| ())
                .map_err(|error| error.to_string()),
            Fault::Kill => kill(pid, Signal::SIGKILL).map_err(|errno| errno.to_string()),
            Fault::Stop => {
                self.waiting(index)?;
                kill(pid, Signal::SIGSTOP).map_err(|errno| errno.to_string())
            }
            Fault::Spin => {
                self.waiting(index)?;
                match find_spin_instruction(pid) {
                    Ok(Some(address)) => {
                        let mut regs = slot.registers();
                        regs.rip = address;
                        slot.set_registers(&regs);
                        Ok(())
                    }
                    Ok(None) => Err("no `jmp $` in the replica's code".to_owned()),
                    Err(error) => Err(error.to_string()),
                }
            }
        }
    }
}

/// Waits on or wakes a futex in a shared page (not process-private).
fn futex(word: &AtomicU32, operation: i32, value: u32, timeout: Option<Duration>) {
    let timeout = timeout.map(|timeout| libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: libc::c_long::from(timeout.subsec_nanos() as i32),
    });
    let timeout_pointer = timeout
        .as_ref()
        .map_or(std::ptr::null(), |timeout| timeout as *const libc::timespec);
    // SAFETY: the word lies in a mapped page; the timeout, if any, outlives
    // the call. A wait that times out, is interrupted or finds the word
    // changed returns, which is all the callers need.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            operation,
            value,
            timeout_pointer,
        )
    };
}

/// One page of a memory file the engine maps and replicas inherit (a slot
/// or the bell).
struct SharedPage {
    file: Arc<OwnedFd>,
    base: *mut u8,
}

// SAFETY: the mapping is shared memory reached only through atomics; the
// pointer is the page's, valid until drop, whichever thread holds it.
unsafe impl Send for SharedPage {}

impl SharedPage {
    fn create(name: &str) -> io::Result<Self> {
        let name = std::ffi::CString::new(name).map_err(io::Error::other)?;
        // SAFETY: memfd_create takes a NUL-terminated name and flags.
        let fd = unsafe {
            libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the descriptor was just created and is owned by no one else.
        let file = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: ftruncate on our own descriptor.
        if unsafe { libc::ftruncate(file.as_raw_fd(), PAGE_LEN as libc::off_t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // A replica holds the page's descriptor too: sealed at its size, it
        // cannot shrink it under the engine's mapping (which would fault the
        // engine) or grow it.
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: fcntl on our own descriptor with integer arguments.
        if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a shared mapping of the whole file, unmapped on drop.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE_LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            file: Arc::new(file),
            base: base.cast(),
        })
    }

    /// The page as a `T`.
    ///
    /// # Safety
    ///
    /// `T` must fit in a page and be made of atomics.
    unsafe fn get<T>(&self) -> &T {
        // SAFETY: the caller's promise; the mapping lives as long as self.
        unsafe { &*self.base.cast::<T>() }
    }

    fn slot(&self) -> &Slot {
        // SAFETY: a slot is 272 bytes of atomics.
        unsafe { self.get::<Slot>() }
    }
}

impl Drop for SharedPage {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `create`, no longer used.
        unsafe { libc::munmap(self.base.cast(), PAGE_LEN) };
    }
}

impl Place {
    fn slot(&self) -> &Slot {
        self.slot.slot()
    }
}

fn spawn_failure(error: io::Error) -> GroupFailure {
    GroupFailure::Trace(TrapError::UnexpectedStart(format!(
        "no page to share with a replica: {error}"
    )))
}

/// A slot's registers as the engine reads and writes them.
trait SlotRegisters {
    fn registers(&self) -> user_regs_struct;
    fn set_registers(&self, regs: &user_regs_struct);
}

impl SlotRegisters for Slot {
    fn registers(&self) -> user_regs_struct {
        let words: [u64; REGISTER_WORDS] =
            std::array::from_fn(|word| self.regs[word].load(Ordering::Relaxed));
        // SAFETY: user_regs_struct is 27 u64 fields in this order (asserted
        // size; the order is the slot's documented one).
        unsafe { std::mem::transmute(words) }
    }

    fn set_registers(&self, regs: &user_regs_struct) {
        // SAFETY: as above, in the other direction.
        let words: [u64; REGISTER_WORDS] = unsafe { std::mem::transmute(*regs) };
        for (field, word) in self.regs.iter().zip(words) {
            field.store(word, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_shared_with_replicas_cannot_be_resized_through_its_descriptor() {
        let page = SharedPage::create("romain-test").unwrap();
        let fd = page.file.as_raw_fd();
        for len in [0, PAGE_LEN as libc::off_t * 2] {
            // SAFETY: ftruncate on a descriptor the page owns.
            let resized = unsafe { libc::ftruncate(fd, len) };
            assert_eq!(resized, -1, "resized to {len}");
            assert_eq!(Errno::last(), Errno::EPERM);
        }
        // The mapping is still whole.
        page.slot().regs[26].store(7, Ordering::Relaxed);
        assert_eq!(page.slot().regs[26].load(Ordering::Relaxed), 7);
    }
}
