//! The ptrace backend: replicas are traced child processes in one process
//! group. Their intercepted syscalls (seccomp), port instructions and `rdtsc`
//! (#GP, SIGSEGV) and device-memory accesses (faults on the unmapped window)
//! stop them; the engine waits for them with `waitpid`, reads and writes their
//! registers and memory, and replaces one by having a healthy replica fork.

use std::collections::BTreeSet;
use std::ops::Range;
use std::time::Duration;

use nix::errno::Errno;
use nix::libc::{self, user_regs_struct};
use nix::sys::ptrace::{self, Options};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use super::{compare_replicas, continue_member, copy_memory_and_code, Backend};
use crate::fault_injection::Fault;
use crate::member::{Arrival, Member};
use crate::replica_group::{GroupFailure, CHANNEL_FD};
use crate::trap::repair::{
    find_spin_instruction, flip_memory_bit, flip_register_bit, vote_pages, FpState, PageVote,
};
use crate::trap::{ReplicaCommand, Tracee, TrapError};
use crate::vote::ReplicaIndex;
use crate::watchdog::Watchdog;

/// The length of the `syscall` instruction.
const SYSCALL_LEN: u64 = 2;

pub struct PtraceBackend {
    command: ReplicaCommand,
    /// Where the replicas keep device memory unmapped: a fault there is an event.
    device_window: Option<Range<u64>>,
    members: Vec<Option<Member>>,
    pgid: Pid,
    watchdog: Watchdog,
    /// Where a `syscall` instruction sits in the replicas' code, for replacement by fork.
    syscall_site: Option<u64>,
    /// Replicas stopped on command: they stay stopped until the watchdog gives up.
    frozen: BTreeSet<i32>,
}

impl PtraceBackend {
    pub fn new(
        command: ReplicaCommand,
        watchdog: Duration,
        device_window: Option<Range<u64>>,
    ) -> Self {
        Self {
            command,
            device_window,
            members: Vec::new(),
            pgid: Pid::from_raw(0),
            watchdog: Watchdog::new(watchdog),
            syscall_site: None,
            frozen: BTreeSet::new(),
        }
    }

    fn member(&self, index: ReplicaIndex) -> Result<&Member, TrapError> {
        self.members
            .get(index)
            .and_then(Option::as_ref)
            .ok_or_else(|| TrapError::UnexpectedStart(format!("replica {index} is gone")))
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

    fn index_of(&self, pid: i32) -> Option<ReplicaIndex> {
        self.members
            .iter()
            .position(|member| member.as_ref().is_some_and(|m| m.pid().as_raw() == pid))
    }

    fn fork_member(
        &mut self,
        source: ReplicaIndex,
        regs: &user_regs_struct,
    ) -> Result<Member, GroupFailure> {
        let parent = self.member(source)?.pid();
        let site = self.syscall_site.ok_or_else(|| {
            GroupFailure::Trace(TrapError::UnexpectedStart("no syscall seen yet".into()))
        })?;
        let traced = Options::PTRACE_O_EXITKILL | Options::PTRACE_O_TRACESECCOMP;
        ptrace::setoptions(
            parent,
            traced | Options::PTRACE_O_TRACECLONE | Options::PTRACE_O_TRACESYSGOOD,
        )?;
        // A `clone` with no flags and no exit signal is a fork whose end does not
        // signal the replica it came from, so no replica sees a SIGCHLD its
        // siblings do not.
        let mut fork_regs = *regs;
        fork_regs.rip = site;
        fork_regs.rax = libc::SYS_clone as u64;
        fork_regs.orig_rax = u64::MAX;
        fork_regs.rdi = 0;
        fork_regs.rsi = 0;
        fork_regs.rdx = 0;
        fork_regs.r10 = 0;
        fork_regs.r8 = 0;
        ptrace::setregs(parent, fork_regs)?;
        ptrace::cont(parent, None)?;
        // The filter sends the clone to us first; letting it run forks.
        let child = loop {
            match waitpid(parent, Some(WaitPidFlag::__WALL))? {
                WaitStatus::PtraceEvent(_, _, libc::PTRACE_EVENT_SECCOMP) => {
                    ptrace::cont(parent, None)?
                }
                WaitStatus::PtraceEvent(_, _, libc::PTRACE_EVENT_CLONE) => {
                    break Pid::from_raw(ptrace::getevent(parent)? as i32);
                }
                other => {
                    return Err(GroupFailure::Trace(TrapError::UnexpectedStart(format!(
                        "replica {source} while forking: {other:?}"
                    ))))
                }
            }
        };
        // Stop the parent as the fork returns, and put both back where all replicas are.
        ptrace::syscall(parent, None)?;
        match waitpid(parent, Some(WaitPidFlag::__WALL))? {
            WaitStatus::PtraceSyscall(_) => {}
            other => {
                return Err(GroupFailure::Trace(TrapError::UnexpectedStart(format!(
                    "replica {source} after forking: {other:?}"
                ))))
            }
        }
        ptrace::setregs(parent, *regs)?;
        ptrace::setoptions(parent, traced)?;
        let tracee = Tracee::adopt(child, Signal::SIGSTOP)?;
        ptrace::setoptions(child, traced)?;
        ptrace::setregs(child, *regs)?;
        Ok(Member { tracee })
    }
}

impl Backend for PtraceBackend {
    fn spawn(&mut self, count: usize) -> Result<(), GroupFailure> {
        self.members.clear();
        let mut command = self.command.clone();
        command
            .placeholder_fd(CHANNEL_FD)
            .env(scheme_runtime::REPLICA_CHANNEL_ENV, CHANNEL_FD.to_string());
        for index in 0..count {
            let pgid = if index == 0 { 0 } else { self.pgid.as_raw() };
            command.process_group(pgid);
            let replica = command.spawn().map_err(GroupFailure::Spawn)?;
            if index == 0 {
                self.pgid = replica.tracee.pid();
            }
            // Replicas' own writes are performed by the engine, so the pipe stays empty.
            drop(replica.stdout);
            self.members.push(Some(Member {
                tracee: replica.tracee,
            }));
        }
        Ok(())
    }

    fn clear(&mut self) {
        // A tracee is killed when it is dropped.
        self.members.clear();
        self.frozen.clear();
    }

    fn places(&self) -> usize {
        self.members.len()
    }

    fn is_live(&self, index: ReplicaIndex) -> bool {
        self.members.get(index).is_some_and(Option::is_some)
    }

    fn pid(&self, index: ReplicaIndex) -> Option<Pid> {
        Some(self.members.get(index)?.as_ref()?.pid())
    }

    fn advance(&mut self) -> Result<Vec<Option<Arrival>>, GroupFailure> {
        let mut arrivals: Vec<Option<Arrival>> = (0..self.members.len()).map(|_| None).collect();
        let mut awaited = BTreeSet::new();
        for member in self.members.iter().flatten() {
            let pid = member.pid();
            if !self.frozen.contains(&pid.as_raw()) {
                continue_member(ptrace::cont(pid, None))?;
            }
            awaited.insert(pid.as_raw());
        }
        // The watchdog signals only replicas that run: one stopped on command would
        // keep the signal pending and stop again as soon as it is repaired.
        let frozen = &self.frozen;
        self.watchdog.arm(
            awaited
                .iter()
                .filter(|pid| !frozen.contains(pid))
                .map(|&pid| Pid::from_raw(pid)),
        );
        while !awaited.is_empty() {
            if awaited.iter().all(|pid| self.frozen.contains(pid)) {
                // Nothing left that could report: let the period run out.
                std::thread::sleep(self.watchdog.period());
                for pid in std::mem::take(&mut awaited) {
                    let index = self.index_of(pid).expect("awaited replicas are members");
                    arrivals[index] = Some(Arrival::Hung);
                }
                break;
            }
            let status = match waitpid(
                Pid::from_raw(-self.pgid.as_raw()),
                Some(WaitPidFlag::__WALL),
            ) {
                Ok(status) => status,
                Err(Errno::EINTR) => continue,
                Err(errno) => return Err(errno.into()),
            };
            let Some(pid) = status.pid() else { continue };
            let Some(index) = self.index_of(pid.as_raw()) else {
                continue;
            };
            if !awaited.contains(&pid.as_raw()) {
                continue;
            }
            let arrival = match status {
                WaitStatus::Stopped(_, Signal::SIGSTOP) if self.watchdog.stopped(pid) => {
                    Arrival::Hung
                }
                WaitStatus::Stopped(_, Signal::SIGSTOP) => {
                    // Stopped from outside: it will not move again by itself.
                    self.watchdog.arrived(pid);
                    self.frozen.insert(pid.as_raw());
                    continue;
                }
                status => {
                    self.watchdog.arrived(pid);
                    let member = self.members[index].as_ref().expect("indexed");
                    member.arrival(status, CHANNEL_FD as u64, self.device_window.clone())
                }
            };
            awaited.remove(&pid.as_raw());
            arrivals[index] = Some(arrival);
        }
        self.watchdog.disarm();
        Ok(arrivals)
    }

    fn agreed_on(&mut self, regs: &user_regs_struct, is_syscall: bool) {
        if is_syscall {
            self.syscall_site = Some(regs.rip - SYSCALL_LEN);
        }
    }

    fn complete(
        &mut self,
        index: ReplicaIndex,
        stores: &[(u64, Vec<u8>)],
        regs: &user_regs_struct,
    ) -> Result<(), GroupFailure> {
        let member = self.member(index)?;
        for (address, bytes) in stores {
            if let Err(error) = member.tracee.write_memory(*address, bytes) {
                log::warn!("replica {index}: result not stored: {error}");
            }
        }
        continue_member(ptrace::setregs(member.pid(), *regs))
    }

    fn read_memory(
        &self,
        index: ReplicaIndex,
        address: u64,
        len: usize,
    ) -> Result<Vec<u8>, TrapError> {
        self.member(index)?.tracee.read_memory(address, len)
    }

    fn discard(&mut self, index: ReplicaIndex) {
        if let Some(place) = self.members.get_mut(index) {
            *place = None;
        }
    }

    fn repair(&mut self, faulty: ReplicaIndex, source: ReplicaIndex) -> Result<String, String> {
        let (Some(healthy), Some(broken)) = (self.pid(source), self.pid(faulty)) else {
            return Err("it or its source is gone".to_owned());
        };
        self.frozen.remove(&broken.as_raw());
        let copied = copy_memory_and_code(healthy, broken)?;
        FpState::read(healthy)
            .and_then(|fp| fp.write(broken))
            .map_err(|errno| format!("FP state not repairable ({errno})"))?;
        Ok(copied)
    }

    fn replace(
        &mut self,
        index: ReplicaIndex,
        source: ReplicaIndex,
        regs: &user_regs_struct,
    ) -> Result<(), GroupFailure> {
        match self.fork_member(source, regs) {
            Ok(member) => {
                self.members[index] = Some(member);
                Ok(())
            }
            Err(error) => {
                // The source stopped half-way through forking: it cannot go on either.
                self.members[source] = None;
                Err(error)
            }
        }
    }

    fn differing_pages(
        &mut self,
        among: &[ReplicaIndex],
        known_alike: &[Range<u64>],
    ) -> Result<Vec<u64>, String> {
        let pids = self.live_pids(among)?;
        compare_replicas(&pids, known_alike)
    }

    fn vote_pages(&mut self, among: &[ReplicaIndex], pages: &[u64]) -> Result<PageVote, String> {
        let pids = self.live_pids(among)?;
        vote_pages(&pids, pages).map_err(|e| e.to_string())
    }

    fn inject(&mut self, index: ReplicaIndex, fault: &Fault) -> Result<(), String> {
        let pid = self
            .pid(index)
            .ok_or_else(|| format!("replica {index} is not running"))?;
        match *fault {
            Fault::RegisterBit { register, bit } => ptrace::getregs(pid)
                .and_then(|mut regs| {
                    // The parser keeps bits in range, so the flip cannot fail.
                    let _ = flip_register_bit(&mut regs, register, bit);
                    ptrace::setregs(pid, regs)
                })
                .map_err(|errno| errno.to_string()),
            Fault::MemoryBit { address, bit } => flip_memory_bit(pid, address, bit)
                .map(|_| ())
                .map_err(|error| error.to_string()),
            Fault::Kill => kill(pid, Signal::SIGKILL).map_err(|errno| errno.to_string()),
            Fault::Stop => {
                self.frozen.insert(pid.as_raw());
                Ok(())
            }
            Fault::Spin => match find_spin_instruction(pid) {
                Ok(Some(address)) => ptrace::getregs(pid)
                    .and_then(|mut regs| {
                        regs.rip = address;
                        ptrace::setregs(pid, regs)
                    })
                    .map_err(|errno| errno.to_string()),
                Ok(None) => Err("no `jmp $` in the replica's code".to_owned()),
                Err(error) => Err(error.to_string()),
            },
        }
    }
}
