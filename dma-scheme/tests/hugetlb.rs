//! The hugetlb backend on real huge pages. Needs root: each test raises
//! `/proc/sys/vm/nr_hugepages` and restores it afterwards, one test at a time
//! (in this process and in any other running these tests). Where it cannot, it
//! says why on stderr instead of testing.
#![cfg(target_os = "linux")]

use std::fs::{self, File};
use std::num::NonZeroUsize;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use dma_scheme::backend::{DmaBackend, DmaMemory, HugetlbBackend};
use dma_scheme::info::INFO_CALL;
use dma_scheme::{BufferFlags, BufferInfo, Direction, DmaScheme, QuarantineConfig, UniformQuota};
use nix::errno::Errno;
use nix::fcntl::{fallocate, FallocateFlags, Flock, FlockArg};
use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use nix::unistd::ftruncate;
use redox_scheme::scheme::SchemeSync;
use redox_scheme::{CallerCtx, OpenResult};
use scheme_runtime::{caller_ctx, SchemeDaemon};
use syscall::error::EINVAL;

/// A short quarantine, so that tests of page reuse need not wait a second.
const QUARANTINE: QuarantineConfig = QuarantineConfig {
    hold: std::time::Duration::from_millis(50),
    poison: false,
    keep: QuarantineConfig::DEFAULT_KEEP,
};

const HUGE: usize = 2 << 20;
const PAGE: usize = 4096;
const NR_HUGEPAGES: &str = "/proc/sys/vm/nr_hugepages";

/// Extra huge pages in the kernel's pool for the test's lifetime.
struct HugePages {
    old: u64,
    /// The pool is one for the whole machine: a test holds this lock on the
    /// sysctl file while it changes the pool and counts on it, so that tests in
    /// other threads and processes wait rather than restore each other's values.
    _alone: Flock<File>,
}

impl HugePages {
    fn reserve(extra: u64) -> Result<Self, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("not root: cannot raise nr_hugepages or read physical addresses".into());
        }
        let sysctl = File::open(NR_HUGEPAGES).map_err(|e| format!("{NR_HUGEPAGES}: {e}"))?;
        let alone = Flock::lock(sysctl, FlockArg::LockExclusive)
            .map_err(|(_, e)| format!("locking {NR_HUGEPAGES}: {e}"))?;
        let read = || -> Result<u64, String> {
            let text =
                fs::read_to_string(NR_HUGEPAGES).map_err(|e| format!("{NR_HUGEPAGES}: {e}"))?;
            text.trim()
                .parse()
                .map_err(|e| format!("{NR_HUGEPAGES}: {e}"))
        };
        let old = read()?;
        fs::write(NR_HUGEPAGES, (old + extra).to_string())
            .map_err(|e| format!("raising {NR_HUGEPAGES}: {e}"))?;
        let pages = Self { old, _alone: alone };
        let now = read()?;
        if now < old + extra {
            return Err(format!(
                "the kernel found only {} of {extra} huge pages",
                now - old
            ));
        }
        Ok(pages)
    }
}

impl Drop for HugePages {
    fn drop(&mut self) {
        if let Err(e) = fs::write(NR_HUGEPAGES, self.old.to_string()) {
            eprintln!("restoring {NR_HUGEPAGES} to {}: {e}", self.old);
        }
    }
}

/// Physical addresses of the pages at `addr`, read independently of the backend.
fn physical_pages(addr: usize, len: usize) -> Vec<u64> {
    let pagemap = File::open("/proc/self/pagemap").unwrap();
    (0..len / PAGE)
        .map(|i| {
            let mut entry = [0; 8];
            pagemap
                .read_exact_at(&mut entry, ((addr / PAGE + i) * 8) as u64)
                .unwrap();
            let entry = u64::from_ne_bytes(entry);
            assert_ne!(entry & 1 << 63, 0, "page {i} present");
            (entry & ((1 << 55) - 1)) * PAGE as u64
        })
        .collect()
}

fn assert_contiguous_at(addr: usize, len: usize, bus_addr: u64) {
    for (i, phys) in physical_pages(addr, len).into_iter().enumerate() {
        assert_eq!(phys, bus_addr + (i * PAGE) as u64, "page {i}");
    }
}

#[test]
fn hugetlb_buffers_are_contiguous_zeroed_and_shared_with_the_client() {
    let _pages = match HugePages::reserve(2) {
        Ok(pages) => pages,
        Err(why) => {
            eprintln!("hugetlb test NOT RUN: {why}");
            return;
        }
    };

    let mut backend = HugetlbBackend;
    let memory = backend
        .allocate(HUGE, Direction::Both)
        .expect("a huge page");
    let bus_addr = memory.bus_addr().expect("hugetlb memory has a bus address");
    assert_ne!(bus_addr, 0);
    assert_eq!(bus_addr % HUGE as u64, 0, "{bus_addr:#x} is 2 MiB aligned");
    assert_contiguous_at(memory.as_ptr() as usize, HUGE, bus_addr);
    eprintln!("hugetlb buffer at bus address {bus_addr:#x}");
    drop(memory);

    let mut scheme = DmaScheme::new(HugetlbBackend, UniformQuota(Some(2 * HUGE as u64)));
    let ctx = caller_ctx(4242, 0, 0);
    let root = scheme.scheme_root().unwrap();
    let open =
        |scheme: &mut DmaScheme<_, _>, path: &str| match scheme.openat(root, path, 0, 0, &ctx) {
            Ok(OpenResult::ThisScheme { number, .. }) => Ok(number),
            Ok(_) => panic!("the dma scheme opens only its own handles"),
            Err(e) => Err(e.errno),
        };
    assert_eq!(
        open(&mut scheme, "alloc?size=2097153"),
        Err(EINVAL),
        "more than one huge page"
    );

    for (round, direction) in [Direction::FromDevice, Direction::Both]
        .into_iter()
        .enumerate()
    {
        let path = format!("alloc?size=4096&flags=shared&dir={direction}");
        let id = open(&mut scheme, &path).unwrap();
        let mut reply = [0; BufferInfo::LEN];
        scheme.call(id, &mut reply, &[INFO_CALL], &ctx).unwrap();
        let info = BufferInfo::from_bytes(&reply).unwrap();
        assert_eq!((info.size, info.flags), (HUGE as u64, BufferFlags::SHARED));
        let bus_addr = info.bus_addr.expect("a bus address");
        assert_eq!(bus_addr % HUGE as u64, 0);

        let grant = scheme.map_fd(id, 0, HUGE, &ctx).unwrap();
        // A process that holds only the descriptor (a replication engine)
        // reads the direction from the object's name.
        let link = fs::read_link(format!("/proc/self/fd/{}", grant.fd.as_raw_fd())).unwrap();
        assert_eq!(
            Direction::of_object(&link.to_string_lossy()),
            direction,
            "{link:?}"
        );
        // SAFETY: a fresh shared mapping of the granted fd, unmapped below.
        let base = unsafe {
            mmap(
                None,
                NonZeroUsize::new(HUGE).unwrap(),
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &grant.fd,
                grant.offset as i64,
            )
        }
        .unwrap();
        // SAFETY: HUGE bytes mapped read-write just above, touched only here.
        let bytes = unsafe { std::slice::from_raw_parts_mut(base.as_ptr().cast::<u8>(), HUGE) };
        assert!(bytes.iter().all(|&b| b == 0), "round {round}: zeroed");
        bytes.fill(0x5a);
        // The client's pages are the device-visible ones.
        assert_contiguous_at(base.as_ptr() as usize, HUGE, bus_addr);
        // SAFETY: the mapping made above.
        unsafe { munmap(base, HUGE) }.unwrap();
        scheme.on_close(id);
    }
    assert!(scheme.status().contains("buffers=0\nbytes=0\n"));
}

fn open_as(
    scheme: &mut DmaScheme<HugetlbBackend, UniformQuota>,
    path: &str,
    ctx: &CallerCtx,
) -> Result<usize, i32> {
    let root = scheme.scheme_root().unwrap();
    match scheme.openat(root, path, 0, 0, ctx) {
        Ok(OpenResult::ThisScheme { number, .. }) => Ok(number),
        Ok(_) => panic!("the dma scheme opens only its own handles"),
        Err(e) => Err(e.errno),
    }
}

fn bus_addr_of(
    scheme: &mut DmaScheme<HugetlbBackend, UniformQuota>,
    id: usize,
    ctx: &CallerCtx,
) -> u64 {
    let mut reply = [0; BufferInfo::LEN];
    scheme.call(id, &mut reply, &[INFO_CALL], ctx).unwrap();
    let info = BufferInfo::from_bytes(&reply).unwrap();
    info.bus_addr.expect("hugetlb buffers have a bus address")
}

#[test]
fn a_client_cannot_shrink_or_grow_its_huge_page() {
    let _pages = match HugePages::reserve(1) {
        Ok(pages) => pages,
        Err(why) => {
            eprintln!("hugetlb test NOT RUN: {why}");
            return;
        }
    };
    let mut scheme = DmaScheme::new(HugetlbBackend, UniformQuota(Some(HUGE as u64)));
    let ctx = caller_ctx(4242, 1001, 1001);
    let id = open_as(&mut scheme, "alloc?size=4096", &ctx).unwrap();
    let grant = scheme.map_fd(id, 0, HUGE, &ctx).unwrap();
    assert_eq!(ftruncate(&grant.fd, 0), Err(Errno::EPERM), "shrink to 0");
    assert_eq!(
        ftruncate(&grant.fd, 2 * HUGE as i64),
        Err(Errno::EPERM),
        "grow"
    );
    assert_eq!(
        fallocate(
            &grant.fd,
            FallocateFlags::FALLOC_FL_KEEP_SIZE,
            HUGE as i64,
            HUGE as i64
        ),
        Err(Errno::EPERM),
        "a second huge page past the end"
    );
    scheme.on_close(id);
}

#[test]
fn a_hole_punched_by_a_client_does_not_give_its_huge_page_to_another_buffer() {
    let _pages = match HugePages::reserve(3) {
        Ok(pages) => pages,
        Err(why) => {
            eprintln!("hugetlb test NOT RUN: {why}");
            return;
        }
    };
    let mut scheme = DmaScheme::with_quarantine(
        HugetlbBackend,
        UniformQuota(Some(16 * HUGE as u64)),
        QUARANTINE,
    );
    let mallory = caller_ctx(4242, 1001, 1001);
    let id = open_as(&mut scheme, "alloc?size=4096", &mallory).unwrap();
    let bus_addr = bus_addr_of(&mut scheme, id, &mallory);
    let grant = scheme.map_fd(id, 0, HUGE, &mallory).unwrap();
    // The kernel lets a writable descriptor punch holes in a memfd (only a
    // write seal forbids it, and that cannot be set while the daemon and the
    // client have it mapped writable): the page leaves the memfd either way.
    let punched = fallocate(
        &grant.fd,
        FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
        0,
        HUGE as i64,
    );
    eprintln!("punching the buffer's huge page out of its memfd: {punched:?}");
    drop(grant);

    // Another driver takes every huge page there is; none may be the one a
    // device may still be writing for mallory.
    let victim = caller_ctx(4343, 1002, 1002);
    let mut taken = Vec::new();
    let refusal = loop {
        match open_as(&mut scheme, "alloc?size=4096", &victim) {
            Ok(other) => taken.push((other, bus_addr_of(&mut scheme, other, &victim))),
            Err(errno) => break errno,
        }
        assert!(taken.len() < 16, "the pool has 3 extra pages, not 16");
    };
    eprintln!(
        "the other driver got {} huge pages, then errno {refusal}",
        taken.len()
    );
    assert!(
        !taken.iter().any(|&(_, addr)| addr == bus_addr),
        "{bus_addr:#x} handed out again while mallory's buffer is open: {taken:x?}"
    );

    // Once mallory's buffer closes, its page is free for others, after the
    // quarantine that lets mmio: stop a dead driver's device first.
    scheme.on_close(id);
    assert_eq!(
        open_as(&mut scheme, "alloc?size=4096", &victim),
        Err(refusal),
        "the closed buffer's page is quarantined, not back in the pool yet"
    );
    std::thread::sleep(QUARANTINE.hold);
    scheme.after_round();
    let next = open_as(&mut scheme, "alloc?size=4096", &victim)
        .expect("the closed buffer's huge page is back in the pool");
    assert_eq!(bus_addr_of(&mut scheme, next, &victim), bus_addr);
    for (other, _) in taken {
        scheme.on_close(other);
    }
    scheme.on_close(next);
}
