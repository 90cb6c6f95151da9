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

use super::dirty_pages::{soft_dirty_works, DirtyPages};
use crate::trap::repair::{page_runs, read_memory_exactly, write_memory_exactly, PAGE_SIZE};

/// The first virtual descriptor for a scheme's memory object.
pub const FIRST_OBJECT_FD: u64 = 1536;
const MAX_OBJECTS: u64 = 1024;
/// Where replicas' copies of shared memory go: far from anything the C library
/// or the kernel places, and the same in every replica.
pub const SHARED_MEMORY_BASE: u64 = 0x6100_0000_0000;
/// Copies are placed on 2 MiB boundaries (a hugetlbfs page, what `dma:` hands out).
const PLACEMENT: u64 = 2 << 20;
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

    /// Brings `replicas` the bytes the device changed since the last pull, a
    /// page at a time through `page`; says whether there were any.
    fn pull(&mut self, replicas: &[Pid], page: &mut [u8]) -> bool {
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
            for (from, to) in changed_runs(&self.snapshot[start..end], page) {
                let address = self.replica_address + (start + from) as u64;
                for &pid in replicas {
                    if let Err(error) = write_memory_exactly(pid, address, &page[from..to]) {
                        log::warn!("shared memory not brought to pid {pid}: {error}");
                    }
                }
                self.snapshot[start + from..start + to].copy_from_slice(&page[from..to]);
            }
        }
        changed
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
    /// nothing. Empty where soft-dirty bits do not tell.
    pub fn agreed_pages(&mut self, replicas: &[Pid]) -> Vec<Range<u64>> {
        let mut agreed = Vec::new();
        if !self.soft_dirty {
            return agreed;
        }
        for region in &self.regions {
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
        let mut handed_over = false;
        for region in self.regions.iter_mut() {
            if region.direction == Direction::Both || !region.pulled {
                handed_over |=
                    region.pull(replicas, &mut page) && region.direction == Direction::Both;
            }
        }
        if handed_over {
            for region in self.regions.iter_mut() {
                if region.direction == Direction::FromDevice {
                    region.pull(replicas, &mut page);
                }
            }
        }
    }

    /// Sends out what a majority of the replicas changed since the last agreement,
    /// and repairs replicas whose copy differs from the majority's. Returns the
    /// replicas (positions in `replicas`) that were repaired.
    pub fn push(&mut self, replicas: &[Pid]) -> Vec<usize> {
        let needed = replicas.len() / 2 + 1;
        let mut repaired = Vec::new();
        let soft_dirty = self.soft_dirty;
        let dirty_pages = &mut self.dirty_pages;
        let mut any_written = false;
        for region in &mut self.regions {
            let every_page = || vec![true; region.len.div_ceil(PAGE_SIZE)];
            let written = match soft_dirty {
                true => dirty_pages
                    .written(replicas, region.replica_address, region.len)
                    .unwrap_or_else(every_page),
                false => every_page(),
            };
            if !written.contains(&true) {
                continue;
            }
            any_written = true;
            for page in (0..region.len)
                .step_by(PAGE_SIZE)
                .filter(|page| written[page / PAGE_SIZE])
            {
                let end = (page + PAGE_SIZE).min(region.len);
                let copies: Vec<Option<Vec<u8>>> = replicas
                    .iter()
                    .map(|&pid| {
                        read_memory_exactly(pid, region.replica_address + page as u64, end - page)
                            .ok()
                    })
                    .collect();
                let pages: Vec<Option<&[u8]>> = copies.iter().map(|copy| copy.as_deref()).collect();
                let Some(majority) = pages.iter().flatten().find(|candidate| {
                    pages
                        .iter()
                        .filter(|page| **page == Some(**candidate))
                        .count()
                        >= needed
                }) else {
                    continue;
                };
                let mut real = vec![0; end - page];
                region.read_real_into(page, &mut real);
                let device_view = real.clone();
                let snapshot = &mut region.snapshot[page..end];
                for (start, stop) in changed_runs(snapshot, majority) {
                    // Bytes the device changed meanwhile keep the device's value.
                    for at in start..stop {
                        if real[at] == snapshot[at] {
                            real[at] = majority[at];
                        }
                    }
                    snapshot[start..stop].copy_from_slice(&majority[start..stop]);
                }
                for (start, stop) in changed_runs(&device_view, &real) {
                    region.write_real(page + start, &real[start..stop]);
                }
                for (position, copy) in pages.iter().enumerate() {
                    if copy != &Some(*majority) {
                        let address = region.replica_address + page as u64;
                        if write_memory_exactly(replicas[position], address, majority).is_ok() {
                            repaired.push(position);
                        }
                    }
                }
            }
        }
        // Clearing walks a replica's whole address space, so only after writes.
        // Without soft-dirty bits in the kernel every page is read each time.
        if !self.soft_dirty || any_written {
            self.soft_dirty =
                soft_dirty_works() && replicas.iter().all(|&pid| self.dirty_pages.forget(pid));
        }
        repaired.sort_unstable();
        repaired.dedup();
        repaired
    }
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

/// The runs `[start, end)` where `old` and `new` differ.
fn changed_runs(old: &[u8], new: &[u8]) -> Vec<(usize, usize)> {
    let mut runs = Vec::new();
    let mut at = 0;
    while at < old.len() {
        if old[at] == new[at] {
            at += 1;
            continue;
        }
        let start = at;
        while at < old.len() && old[at] != new[at] {
            at += 1;
        }
        runs.push((start, at));
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_runs_are_maximal() {
        assert_eq!(changed_runs(b"abcdef", b"abcdef"), vec![]);
        assert_eq!(changed_runs(b"abcdef", b"xbcdyz"), vec![(0, 1), (4, 6)]);
    }

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
        let name = direction.object_name("dma-test");
        let object =
            nix::sys::memfd::memfd_create(name.as_str(), nix::sys::memfd::MFdFlags::empty())
                .unwrap();
        nix::unistd::ftruncate(&object, PAGE_SIZE as i64).unwrap();
        let device = object.try_clone().unwrap();
        let fd = memory.adopt(object).unwrap();
        memory.map(fd, PAGE_SIZE as u64, 0).unwrap();
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
