//! Scheme memory the replicas map (a `dma:` buffer the device reads and writes),
//! kept by the engine.
//!
//! A scheme hands out memory as a descriptor in its reply; the engine keeps the
//! descriptor and gives the replicas a virtual one. When they map it, the engine
//! maps the real object (the copy the device sees) and makes each replica's
//! mapping a private anonymous one at the same address. The copies are kept in
//! step at the group's synchronisation points, byte by byte against a snapshot of
//! their last agreed content:
//!
//! - before an effect reaches a device ([`SharedMemory::push`]), the bytes the
//!   replicas changed are voted page by page and the majority's go out; a replica
//!   whose page differs from the majority's is repaired;
//! - before the replicas take a round, and before they go on from an event whose
//!   answer tells of the device (a register read, a scheme's reply)
//!   ([`SharedMemory::pull`]), the bytes the device changed are copied into every
//!   replica: a driver that reads a cause then finds what the device wrote
//!   before raising it.
//!
//! Bytes both sides changed between two points keep the device's: drivers and
//! devices hand buffers over by ownership (descriptor status bits), so they do not
//! write the same bytes at once.
//!
//! A `dma:` buffer says which way its bytes go ([`Direction`], read from the
//! memory object's name): memory only the driver writes (packets to send) is
//! brought to the replicas once, when they map it, and never compared with the
//! device's again; memory only the device writes (received packets) is compared
//! only at a pull that found the device wrote to some two-way memory (a
//! descriptor), because a device writes the data before the descriptor that
//! hands it over. Comparing is most of a pull's cost, and most of the memory is
//! packet buffers.
//!
//! Under emulation every system call and every instruction of the engine's
//! counts, so a synchronisation point asks each replica once: one read of its
//! page map for all regions (the copies lie one after the other), one read of
//! all the pages it wrote, one write of all the changes the device made
//! ([`crate::trap::scattered`]); and differences are found by `memcmp` on
//! blocks ([`crate::changed_bytes`]). Memory only the device writes is left
//! out of a push: the device does not read it.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::ops::Range;
use std::os::fd::OwnedFd;
use std::ptr::NonNull;

use nix::errno::Errno;
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use nix::sys::stat::fstat;
use nix::unistd::Pid;

use dma_scheme::Direction;

use super::changed_bytes::{changed_runs, changed_span};
use super::dirty_pages::{soft_dirty_works, DirtyPages};
use crate::trap::repair::{page_runs, write_memory_exactly, PAGE_SIZE};
use crate::trap::scattered::{read_pieces, write_pieces, Piece};

/// The first virtual descriptor for a scheme's memory object.
pub const FIRST_OBJECT_FD: u64 = 1536;
const MAX_OBJECTS: u64 = 1024;
/// Where replicas' copies of shared memory go: far from anything the C library
/// or the kernel places, and the same in every replica.
pub const SHARED_MEMORY_BASE: u64 = 0x6100_0000_0000;
/// Copies are placed one after the other, each on a page of its own: their
/// page map entries are then read in one call per replica, and the kernel
/// walks no holes between them (with the copies 2 MiB apart, one read across
/// the holes cost more under emulation than a read per copy).
const PLACEMENT: u64 = PAGE_SIZE as u64;
/// The most a single mapping may be.
const MAX_MAPPING: u64 = 256 << 20;

pub fn is_object(fd: u64) -> bool {
    (FIRST_OBJECT_FD..FIRST_OBJECT_FD + MAX_OBJECTS).contains(&fd)
}

/// One mapping: the engine's view of the real object and the replicas' address.
struct Region {
    replica_address: u64,
    real: NonNull<u8>,
    len: usize,
    /// The mapping's length rounded up to the object's page size: a huge page
    /// mapping (what `dma:` hands out) is only unmapped whole, and one left
    /// mapped would keep its page from the pool until the engine ends.
    mapped_len: usize,
    /// The content replicas and device last agreed on.
    snapshot: Vec<u8>,
    direction: Direction,
    /// Whether a pull has brought the replicas the object's content yet.
    pulled: bool,
}

impl Region {
    /// Copies the real memory from `start` into `into`. The device may change it
    /// at any time, so it is only ever copied, never borrowed.
    fn read_real_into(&self, start: usize, into: &mut [u8]) {
        assert!(start + into.len() <= self.len, "inside the region");
        // SAFETY: in bounds (checked above) of a live mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(
                self.real.as_ptr().add(start),
                into.as_mut_ptr(),
                into.len(),
            )
        };
    }

    /// Whether the real memory from `start` holds `bytes` right now: compared in
    /// place, because most pages have not changed and a copy would double the
    /// work. A byte the device writes during the comparison is found by the next.
    fn real_equals(&self, start: usize, bytes: &[u8]) -> bool {
        assert!(start + bytes.len() <= self.len, "inside the region");
        // SAFETY: in bounds (checked above) of a live mapping; only compared, and
        // the answer is a hint that the caller confirms on a copy.
        let real =
            unsafe { std::slice::from_raw_parts(self.real.as_ptr().add(start), bytes.len()) };
        real == bytes
    }

    /// Takes in the bytes the device changed since the last pull, a page at a
    /// time through `page`: the snapshot holds them after, and `runs` gets
    /// where they are (offsets in the region). Says whether there were any.
    fn pull(&mut self, page: &mut [u8], runs: &mut Vec<Range<usize>>) -> bool {
        self.pulled = true;
        let mut changed = false;
        for start in (0..self.len).step_by(PAGE_SIZE) {
            let end = (start + PAGE_SIZE).min(self.len);
            if self.real_equals(start, &self.snapshot[start..end]) {
                continue;
            }
            changed = true;
            let page = &mut page[..end - start];
            self.read_real_into(start, page);
            let snapshot = &self.snapshot[start..end];
            if self.direction == Direction::FromDevice {
                runs.extend(
                    changed_span(snapshot, page).map(|(from, to)| start + from..start + to),
                );
            } else {
                // The replicas may have written two-way memory since: only
                // the bytes the device changed go to them.
                runs.extend(
                    changed_runs(snapshot, page)
                        .into_iter()
                        .map(|(from, to)| start + from..start + to),
                );
            }
            self.snapshot[start..end].copy_from_slice(page);
        }
        changed
    }

    /// Sends the device the bytes of `majority`, the replicas' voted page at
    /// `page`, that changed since the last agreement. Bytes the device changed
    /// meanwhile keep the device's value.
    fn send_out(&mut self, page: usize, majority: &[u8]) {
        let end = page + majority.len();
        if self.direction == Direction::ToDevice {
            // The device does not write here: the replicas' span goes out whole.
            if let Some((start, stop)) = changed_span(&self.snapshot[page..end], majority) {
                self.write_real(page + start, &majority[start..stop]);
                self.snapshot[page + start..page + stop].copy_from_slice(&majority[start..stop]);
            }
            return;
        }
        let mut real = vec![0; majority.len()];
        self.read_real_into(page, &mut real);
        for (start, stop) in changed_runs(&self.snapshot[page..end], majority) {
            let mut at = start;
            while at < stop {
                let device_changed = |at: usize| real[at] != self.snapshot[page + at];
                if device_changed(at) {
                    at += 1;
                    continue;
                }
                let from = at;
                while at < stop && !device_changed(at) {
                    at += 1;
                }
                self.write_real(page + from, &majority[from..at]);
            }
            self.snapshot[page + start..page + stop].copy_from_slice(&majority[start..stop]);
        }
    }

    /// Writes `bytes` at `start` of the real memory.
    fn write_real(&mut self, start: usize, bytes: &[u8]) {
        assert!(start + bytes.len() <= self.len, "inside the region");
        // SAFETY: in bounds (checked above) of a live writable mapping.
        unsafe {
            std::ptr::copy_nonoverlapping(
                bytes.as_ptr(),
                self.real.as_ptr().add(start),
                bytes.len(),
            )
        };
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: mapped in `map` (whose length this covers) and never handed out.
        if let Err(errno) = unsafe { munmap(self.real.cast(), self.mapped_len) } {
            log::error!(
                "shared memory at {:#x} ({} bytes) not unmapped: {errno}",
                self.replica_address,
                self.mapped_len
            );
        }
    }
}

#[derive(Default)]
pub struct SharedMemory {
    objects: BTreeMap<u64, OwnedFd>,
    regions: Vec<Region>,
    /// Whether the replicas' soft-dirty bits tell which pages they wrote.
    soft_dirty: bool,
    dirty_pages: DirtyPages,
}

impl SharedMemory {
    /// Keeps a descriptor a scheme passed; the virtual number the replicas get.
    pub fn adopt(&mut self, object: OwnedFd) -> Option<u64> {
        let fd = (FIRST_OBJECT_FD..FIRST_OBJECT_FD + MAX_OBJECTS)
            .find(|fd| !self.objects.contains_key(fd))?;
        self.objects.insert(fd, object);
        Some(fd)
    }

    pub fn close(&mut self, fd: u64) -> i64 {
        match self.objects.remove(&fd) {
            Some(_) => 0,
            None => -(Errno::EBADF as i64),
        }
    }

    /// Maps `len` bytes at `offset` of object `fd` for the engine, and says where
    /// the replicas' copy goes, or a negated errno.
    pub fn map(&mut self, fd: u64, len: u64, offset: u64) -> Result<u64, i64> {
        let object = self.objects.get(&fd).ok_or(-(Errno::EBADF as i64))?;
        let length = NonZeroUsize::new(len as usize)
            .filter(|_| len <= MAX_MAPPING)
            .ok_or(-(Errno::EINVAL as i64))?;
        // SAFETY: a fresh shared mapping at an address the kernel chooses; the
        // region unmaps it.
        let real = unsafe {
            mmap(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                object,
                offset as i64,
            )
        }
        .map_err(|errno| -(errno as i64))?;
        // A hugetlb object says its huge page size here.
        let page =
            fstat(object).map_or(PAGE_SIZE, |stat| (stat.st_blksize as usize).max(PAGE_SIZE));
        let replica_address = self.regions.last().map_or(SHARED_MEMORY_BASE, |last| {
            (last.replica_address + last.len as u64).next_multiple_of(PLACEMENT)
        });
        self.regions.push(Region {
            replica_address,
            real: real.cast(),
            len: len as usize,
            mapped_len: (len as usize).next_multiple_of(page),
            // The replicas' copies start zeroed: the first pull brings them the
            // object's content.
            snapshot: vec![0; len as usize],
            direction: direction_of(object),
            pulled: false,
        });
        Ok(replica_address)
    }

    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// The pages of the replicas' copies that none of `replicas` wrote since the
    /// last agreement: each holds what the last [`push`](Self::push) voted (or
    /// [`pull`](Self::pull) brought) in all of them, so comparing them finds
    /// nothing. Empty where soft-dirty bits do not tell. Memory only the device
    /// writes is never among them: a push does not vote it, so a page a replica
    /// wrote there may have lost its soft-dirty bit to a later clear unrepaired.
    pub fn agreed_pages(&mut self, replicas: &[Pid]) -> Vec<Range<u64>> {
        let mut agreed = Vec::new();
        if !self.soft_dirty {
            return agreed;
        }
        for region in &self.regions {
            if region.direction == Direction::FromDevice {
                continue;
            }
            let Some(written) =
                self.dirty_pages
                    .written(replicas, region.replica_address, region.len)
            else {
                return Vec::new();
            };
            let unwritten: Vec<bool> = written.iter().map(|&w| !w).collect();
            agreed.extend(page_runs(region.replica_address, &unwritten));
        }
        agreed
    }

    /// Copies what the device changed since the last agreement into every replica.
    pub fn pull(&mut self, replicas: &[Pid]) {
        // A page at a time: this runs before every round and after every answer
        // that tells of a device, over a driver's DMA memory, and most pages have
        // not changed.
        let mut page = vec![0; PAGE_SIZE];
        let mut runs: Vec<Vec<Range<usize>>> = vec![Vec::new(); self.regions.len()];
        let mut handed_over = false;
        for (region, runs) in self.regions.iter_mut().zip(&mut runs) {
            if region.direction == Direction::Both || !region.pulled {
                handed_over |= region.pull(&mut page, runs) && region.direction == Direction::Both;
            }
        }
        if handed_over {
            for (region, runs) in self.regions.iter_mut().zip(&mut runs) {
                if region.direction == Direction::FromDevice {
                    region.pull(&mut page, runs);
                }
            }
        }
        // Every change goes to a replica in one call.
        let writes: Vec<(u64, &[u8])> = self
            .regions
            .iter()
            .zip(&runs)
            .flat_map(|(region, runs)| {
                runs.iter().map(|run| {
                    (
                        region.replica_address + run.start as u64,
                        &region.snapshot[run.clone()],
                    )
                })
            })
            .collect();
        if !writes.is_empty() {
            for &pid in replicas {
                for address in write_pieces(pid, &writes) {
                    log::warn!("shared memory at {address:#x} not brought to pid {pid}");
                }
            }
        }
    }

    /// The pages of each region that any of `replicas` wrote since the last
    /// agreement (all of them where soft-dirty bits do not tell), asked of
    /// each replica's page map once for all regions, which lie one after the
    /// other.
    fn written_pages(&mut self, replicas: &[Pid]) -> Vec<Vec<bool>> {
        let (Some(first), Some(last)) = (self.regions.first(), self.regions.last()) else {
            return Vec::new();
        };
        let span = first.replica_address..last.replica_address + last.len as u64;
        let written = match self.soft_dirty {
            true => {
                self.dirty_pages
                    .written(replicas, span.start, (span.end - span.start) as usize)
            }
            false => None,
        };
        let regions = self
            .regions
            .iter()
            .map(|region| region.replica_address..region.replica_address + region.len as u64);
        pages_by_region(span.start, written.as_deref(), regions)
    }

    /// Sends out what a majority of the replicas changed since the last agreement,
    /// and repairs replicas whose copy differs from the majority's. Returns the
    /// replicas (positions in `replicas`) that were repaired.
    ///
    /// Memory only the device writes is left out: the device never reads what
    /// the replicas write there, and the pages a pull wrote into (received
    /// frames) would otherwise be read back from every replica at the next
    /// push. A replica's stray write there is found by the scrub, or by the
    /// vote on what the replicas make of those bytes.
    pub fn push(&mut self, replicas: &[Pid]) -> Vec<usize> {
        let needed = replicas.len() / 2 + 1;
        let written = self.written_pages(replicas);
        // (region, offset in it) of every written page.
        let pages: Vec<(usize, usize)> = written
            .iter()
            .enumerate()
            .filter(|&(region, _)| self.regions[region].direction != Direction::FromDevice)
            .flat_map(|(region, written)| {
                written
                    .iter()
                    .enumerate()
                    .filter(|(_, &written)| written)
                    .map(move |(page, _)| (region, page * PAGE_SIZE))
            })
            .collect();
        let mut repaired = Vec::new();
        if !pages.is_empty() {
            let pieces: Vec<Piece> = pages
                .iter()
                .map(|&(region, page)| {
                    let region = &self.regions[region];
                    Piece {
                        address: region.replica_address + page as u64,
                        len: PAGE_SIZE.min(region.len - page),
                    }
                })
                .collect();
            // Each replica's copies of the written pages, in one call each.
            let copies: Vec<Vec<Option<Vec<u8>>>> = replicas
                .iter()
                .map(|&pid| read_pieces(pid, &pieces))
                .collect();
            for (nth, (&(region, page), piece)) in pages.iter().zip(&pieces).enumerate() {
                let held: Vec<Option<&[u8]>> =
                    copies.iter().map(|copies| copies[nth].as_deref()).collect();
                let Some(majority) = majority_of(&held, needed) else {
                    continue;
                };
                self.regions[region].send_out(page, majority);
                for (position, copy) in held.iter().enumerate() {
                    if *copy != Some(majority)
                        && write_memory_exactly(replicas[position], piece.address, majority).is_ok()
                    {
                        repaired.push(position);
                    }
                }
            }
        }
        // Clearing walks a replica's whole address space, so only after writes.
        // Without soft-dirty bits in the kernel every page is read each time.
        if !self.soft_dirty || !pages.is_empty() {
            self.soft_dirty =
                soft_dirty_works() && replicas.iter().all(|&pid| self.dirty_pages.forget(pid));
        }
        repaired.sort_unstable();
        repaired.dedup();
        repaired
    }
}

/// Each of `regions`' pages marked in `written`, the pages from `start` on
/// (every page where that is not known).
fn pages_by_region(
    start: u64,
    written: Option<&[bool]>,
    regions: impl Iterator<Item = Range<u64>>,
) -> Vec<Vec<bool>> {
    regions
        .map(|region| {
            let pages = ((region.end - region.start) as usize).div_ceil(PAGE_SIZE);
            let first = ((region.start - start) as usize) / PAGE_SIZE;
            written.map_or_else(
                || vec![true; pages],
                |written| written[first..first + pages].to_vec(),
            )
        })
        .collect()
}

/// The copy at least `needed` of `held` hold alike, if any.
fn majority_of<'a>(held: &[Option<&'a [u8]>], needed: usize) -> Option<&'a [u8]> {
    held.iter().flatten().copied().find(|candidate| {
        held.iter()
            .filter(|copy| **copy == Some(*candidate))
            .count()
            >= needed
    })
}

/// The direction `object`'s name tells (`dma:` names its buffers by it);
/// `both` for any other object, or one whose name cannot be read.
fn direction_of(object: &OwnedFd) -> Direction {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", object.as_raw_fd()))
        .map_or(Direction::Both, |link| {
            Direction::of_object(&link.to_string_lossy())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_get_virtual_descriptors_in_their_range() {
        let mut memory = SharedMemory::default();
        let (a, _) = std::os::unix::net::UnixStream::pair().unwrap();
        let fd = memory.adopt(a.into()).unwrap();
        assert!(is_object(fd) && fd == FIRST_OBJECT_FD);
        assert_eq!(memory.close(fd), 0);
        assert_eq!(memory.close(fd), -(Errno::EBADF as i64));
        assert_eq!(memory.map(fd, 4096, 0), Err(-(Errno::EBADF as i64)));
    }

    /// A page-sized memory object named as `dma:` names a buffer that goes
    /// `direction`, adopted and mapped; and a descriptor to play the device by.
    fn map_buffer(memory: &mut SharedMemory, direction: Direction) -> OwnedFd {
        map_buffer_of(memory, direction, PAGE_SIZE)
    }

    /// As [`map_buffer`], `len` bytes long.
    fn map_buffer_of(memory: &mut SharedMemory, direction: Direction, len: usize) -> OwnedFd {
        let name = direction.object_name("dma-test");
        let object =
            nix::sys::memfd::memfd_create(name.as_str(), nix::sys::memfd::MFdFlags::empty())
                .unwrap();
        nix::unistd::ftruncate(&object, len as i64).unwrap();
        let device = object.try_clone().unwrap();
        let fd = memory.adopt(object).unwrap();
        memory.map(fd, len as u64, 0).unwrap();
        device
    }

    /// The device writes `byte` at the start of its memory.
    fn device_writes(device: &OwnedFd, byte: u8) {
        nix::sys::uio::pwrite(device, &[byte], 0).unwrap();
    }

    /// The first byte of each region as the replicas were last brought it.
    fn replicas_see(memory: &SharedMemory) -> Vec<u8> {
        memory
            .regions
            .iter()
            .map(|region| region.snapshot[0])
            .collect()
    }

    #[test]
    fn device_memory_is_brought_to_the_replicas_as_its_direction_allows() {
        let mut memory = SharedMemory::default();
        let rings = map_buffer(&mut memory, Direction::Both);
        let received = map_buffer(&mut memory, Direction::FromDevice);
        let to_send = map_buffer(&mut memory, Direction::ToDevice);
        for device in [&rings, &received, &to_send] {
            device_writes(device, 1);
        }
        // The first pull brings every object's content, whichever way it goes.
        memory.pull(&[]);
        assert_eq!(replicas_see(&memory), [1, 1, 1]);
        // Data the device wrote without a descriptor yet waits for one.
        device_writes(&received, 2);
        device_writes(&to_send, 2);
        memory.pull(&[]);
        assert_eq!(replicas_see(&memory), [1, 1, 1]);
        // The descriptor hands it over; memory only the driver writes is never
        // read back.
        device_writes(&rings, 2);
        memory.pull(&[]);
        assert_eq!(replicas_see(&memory), [2, 2, 1]);
    }

    /// Reads `len` bytes of the device's memory at `at`.
    fn device_reads(device: &OwnedFd, at: usize, len: usize) -> Vec<u8> {
        let mut bytes = vec![0; len];
        nix::sys::uio::pread(device, &mut bytes, at as i64).unwrap();
        bytes
    }

    /// The pages where the engine places the replicas' copies, mapped in this
    /// process, which plays a replica; one test at a time has them.
    struct ReplicaPages {
        copies: std::ptr::NonNull<std::ffi::c_void>,
        len: usize,
        _alone: std::sync::MutexGuard<'static, ()>,
    }

    static REPLICA_PAGES: std::sync::Mutex<()> = std::sync::Mutex::new(());

    impl ReplicaPages {
        fn map(pages: usize) -> Self {
            let alone = REPLICA_PAGES.lock().unwrap_or_else(|e| e.into_inner());
            let len = pages * PAGE_SIZE;
            let base = NonZeroUsize::new(SHARED_MEMORY_BASE as usize).unwrap();
            // SAFETY: a fresh private mapping at an address nothing else in the
            // test process uses (the lock keeps other tests off it), unmapped
            // on drop.
            let copies = unsafe {
                nix::sys::mman::mmap_anonymous(
                    Some(base),
                    NonZeroUsize::new(len).unwrap(),
                    ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                    MapFlags::MAP_PRIVATE | MapFlags::MAP_FIXED_NOREPLACE,
                )
            }
            .unwrap();
            Self {
                copies,
                len,
                _alone: alone,
            }
        }

        fn bytes(&mut self) -> &mut [u8] {
            // SAFETY: the pages mapped in `map`, which only this test touches.
            unsafe { std::slice::from_raw_parts_mut(self.copies.as_ptr().cast::<u8>(), self.len) }
        }
    }

    impl Drop for ReplicaPages {
        fn drop(&mut self) {
            // SAFETY: the mapping made in `map`, no longer used.
            let _ = unsafe { munmap(self.copies, self.len) };
        }
    }

    /// A copy of this process (forked, so its copies of shared memory are its
    /// own) that waits until it is dropped.
    struct ForkedReplica(Pid);

    impl ForkedReplica {
        fn start() -> Self {
            // SAFETY: the child only pauses (async-signal-safe) until killed.
            match unsafe { nix::unistd::fork() }.unwrap() {
                nix::unistd::ForkResult::Child => loop {
                    nix::unistd::pause();
                },
                nix::unistd::ForkResult::Parent { child } => Self(child),
            }
        }

        fn write(&self, address: u64, byte: u8) {
            assert!(write_pieces(self.0, &[(address, &[byte])]).is_empty());
        }
    }

    impl Drop for ForkedReplica {
        fn drop(&mut self) {
            let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(self.0, None);
        }
    }

    #[test]
    fn replicas_get_only_what_the_device_changed_and_the_device_only_what_they_changed() {
        const PAGE: usize = PAGE_SIZE;
        let mut memory = SharedMemory::default();
        // Descriptors over two pages and a bit; received packets over two.
        let rings = map_buffer_of(&mut memory, Direction::Both, 2 * PAGE + 100);
        let received = map_buffer_of(&mut memory, Direction::FromDevice, 2 * PAGE);
        // The copies go one after the other from the first page on.
        let mut pages = ReplicaPages::map(5);
        let replica = pages.bytes();
        let me = [Pid::this()];
        let descriptor = PAGE + 8;
        let tail = 2 * PAGE + 50;
        let packet = PAGE + 16;
        let packet_copy = 3 * PAGE + packet;

        nix::sys::uio::pwrite(&rings, &[1], descriptor as i64).unwrap();
        nix::sys::uio::pwrite(&received, &[3; 10], packet as i64).unwrap();
        memory.pull(&me);
        assert_eq!(replica[descriptor], 1);
        assert_eq!(replica[packet_copy..packet_copy + 10], [3; 10]);

        // The replica's own write to two-way memory, not voted yet, stays
        // when the device changes the bytes on either side of it.
        replica[descriptor + 1] = 9;
        nix::sys::uio::pwrite(&rings, &[4], descriptor as i64).unwrap();
        nix::sys::uio::pwrite(&rings, &[8], (descriptor + 2) as i64).unwrap();
        nix::sys::uio::pwrite(&received, &[5], (packet + 20) as i64).unwrap();
        memory.pull(&me);
        assert_eq!(replica[descriptor..descriptor + 3], [4, 9, 8]);
        assert_eq!(
            replica[packet_copy + 20],
            5,
            "handed over by the descriptor"
        );

        // Pushed: what the replica changed goes out, also in the last,
        // short page, except where the device changed the byte meanwhile.
        replica[descriptor] = 7;
        replica[descriptor + 2] = 5;
        replica[tail] = 2;
        nix::sys::uio::pwrite(&rings, &[6], descriptor as i64).unwrap();
        assert!(memory.push(&me).is_empty(), "one copy is its own majority");
        assert_eq!(device_reads(&rings, descriptor, 3), [6, 9, 5]);
        assert_eq!(device_reads(&rings, tail, 1), [2]);
        assert_eq!(device_reads(&received, packet, 1), [3], "untouched");
    }

    #[test]
    fn a_push_sends_out_what_a_majority_wrote_and_repairs_the_other_replica() {
        let mut memory = SharedMemory::default();
        let rings = map_buffer(&mut memory, Direction::Both);
        let mut pages = ReplicaPages::map(1);
        let [first, second] = [ForkedReplica::start(), ForkedReplica::start()];
        let replicas = [Pid::this(), first.0, second.0];
        let at = SHARED_MEMORY_BASE + 40;

        // Three different bytes: none goes out, none is repaired.
        pages.bytes()[40] = 1;
        first.write(at, 2);
        second.write(at, 3);
        assert!(memory.push(&replicas).is_empty());
        assert_eq!(device_reads(&rings, 40, 1), [0]);

        // Two alike: theirs goes out, and the third is given it.
        second.write(at, 1);
        assert_eq!(memory.push(&replicas), [1]);
        assert_eq!(device_reads(&rings, 40, 1), [1]);
        let repaired = read_pieces(
            first.0,
            &[Piece {
                address: at,
                len: 1,
            }],
        );
        assert_eq!(repaired, [Some(vec![1])]);
    }

    #[test]
    fn a_push_sends_out_what_the_replicas_wrote_where_only_they_write() {
        let mut memory = SharedMemory::default();
        let to_send = map_buffer_of(&mut memory, Direction::ToDevice, 2 * PAGE_SIZE);
        let mut pages = ReplicaPages::map(2);
        let replica = pages.bytes();
        let me = [Pid::this()];
        replica[PAGE_SIZE + 10] = 1;
        replica[PAGE_SIZE + 3000] = 2;
        assert!(memory.push(&me).is_empty());
        assert_eq!(device_reads(&to_send, PAGE_SIZE + 10, 1), [1]);
        assert_eq!(device_reads(&to_send, PAGE_SIZE + 3000, 1), [2]);
        assert_eq!(device_reads(&to_send, 0, PAGE_SIZE), vec![0; PAGE_SIZE]);
        replica[PAGE_SIZE + 3000] = 3;
        memory.push(&me);
        assert_eq!(device_reads(&to_send, PAGE_SIZE + 3000, 1), [3]);
    }

    #[test]
    fn a_push_leaves_memory_only_the_device_writes_to_the_device() {
        let mut memory = SharedMemory::default();
        let received = map_buffer(&mut memory, Direction::FromDevice);
        let mut pages = ReplicaPages::map(1);
        let [first, second] = [ForkedReplica::start(), ForkedReplica::start()];
        let replicas = [Pid::this(), first.0, second.0];
        let at = SHARED_MEMORY_BASE + 40;

        // Two replicas write the same stray byte where only the device writes:
        // it is neither sent to the device nor given to the third replica.
        first.write(at, 7);
        second.write(at, 7);
        assert!(memory.push(&replicas).is_empty(), "nothing repaired");
        assert_eq!(device_reads(&received, 40, 1), [0]);
        assert_eq!(pages.bytes()[40], 0);
    }

    #[test]
    fn each_region_gets_its_own_pages_of_the_page_map() {
        let base = SHARED_MEMORY_BASE;
        let page = PAGE_SIZE as u64;
        let regions = || [base..base + page + 1, base + 2 * page..base + 3 * page].into_iter();
        let written = [false, true, true];
        assert_eq!(
            pages_by_region(base, Some(&written), regions()),
            [vec![false, true], vec![true]]
        );
        assert_eq!(
            pages_by_region(base, None, regions()),
            [vec![true, true], vec![true]],
            "every page where the map does not tell"
        );
    }

    const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

    fn meminfo(key: &str) -> u64 {
        let text = std::fs::read_to_string("/proc/meminfo").unwrap();
        let line = text.lines().find(|line| line.starts_with(key)).unwrap();
        line[key.len()..].trim().parse().unwrap()
    }

    /// Grows the machine's huge page pool by one while it lives, holding the
    /// sysctl file locked as `dma-scheme`'s hugetlb tests do, so that tests in
    /// other processes wait instead of restoring each other's values.
    struct OneMoreHugePage {
        pool: u64,
        _alone: nix::fcntl::Flock<std::fs::File>,
    }

    impl OneMoreHugePage {
        fn new() -> Result<Self, String> {
            if !nix::unistd::geteuid().is_root() {
                return Err("not root".into());
            }
            let sysctl = std::fs::File::open(NR_HUGEPAGES).map_err(|e| e.to_string())?;
            let alone = nix::fcntl::Flock::lock(sysctl, nix::fcntl::FlockArg::LockExclusive)
                .map_err(|(_, e)| e.to_string())?;
            let pool = meminfo("HugePages_Total:");
            std::fs::write(NR_HUGEPAGES, (pool + 1).to_string()).map_err(|e| e.to_string())?;
            match meminfo("HugePages_Total:") > pool {
                true => Ok(Self {
                    pool,
                    _alone: alone,
                }),
                false => Err("the kernel found no memory for another huge page".into()),
            }
        }
    }

    impl Drop for OneMoreHugePage {
        fn drop(&mut self) {
            let _ = std::fs::write(NR_HUGEPAGES, self.pool.to_string());
        }
    }

    #[test]
    fn a_huge_page_the_replicas_mapped_goes_back_to_the_pool_when_the_group_forgets_it() {
        let _page = match OneMoreHugePage::new() {
            Ok(page) => page,
            Err(why) => return eprintln!("huge page test NOT RUN: {why}"),
        };
        let free = meminfo("HugePages_Free:");
        let flags =
            nix::sys::memfd::MFdFlags::MFD_HUGETLB | nix::sys::memfd::MFdFlags::MFD_HUGE_2MB;
        let object = nix::sys::memfd::memfd_create("romain-shared-memory-test", flags).unwrap();
        nix::unistd::ftruncate(&object, 2 << 20).unwrap();
        let mut memory = SharedMemory::default();
        let fd = memory.adopt(object).unwrap();
        // What the e1000 driver asks of dma: (its rings and buffers), less than
        // the huge page the buffer is.
        memory.map(fd, 264_192, 0).unwrap();
        // Reading the device's copy takes the page from the pool.
        memory.pull(&[]);
        assert_eq!(meminfo("HugePages_Free:"), free - 1);
        // A group restart forgets the group's shared memory. The kernel may
        // return a freed huge page to the pool from a work queue, a moment later;
        // one still mapped never comes back.
        drop(memory);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while meminfo("HugePages_Free:") < free && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(
            meminfo("HugePages_Free:"),
            free,
            "the huge page is still mapped"
        );
    }
}
