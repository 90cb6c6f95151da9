//! The dma scheme driven through its `SchemeSync` calls, over the memfd backend.
#![cfg(target_os = "linux")]

#[path = "common/client_mapping.rs"]
mod client_mapping;
#[path = "common/scheme_calls.rs"]
mod scheme_calls;

use std::io;

use client_mapping::ClientMapping;
use dma_scheme::backend::{DmaBackend, DmaMemory, MappedMemfd, MemfdBackend};
use dma_scheme::info::INFO_CALL;
use dma_scheme::{BufferFlags, BufferInfo, Direction, DmaScheme, KeepState, UniformQuota};
use redox_scheme::scheme::SchemeSync;
use redox_scheme::CallerCtx;
use scheme_calls::{errno, info_as, open_as, status, status_as};
use scheme_runtime::{caller_ctx, SchemeDaemon};
use syscall::error::{Error, EACCES, EBADF, EDQUOT, EINVAL, ENOENT, ENOMEM, ENOTDIR, EOPNOTSUPP};

const PAGE: usize = 4096;
const ALICE: usize = 100;
/// Another process of Alice's uid: it shares her quota but not her handles.
const MALLORY: usize = 200;
const UID: u32 = 1000;
/// A driver of its own, with a quota of its own.
const OTHER_UID: u32 = 2000;

fn ctx(pid: usize) -> CallerCtx {
    caller_ctx(pid, UID, UID)
}

fn scheme(quota: u64) -> DmaScheme<MemfdBackend, UniformQuota> {
    DmaScheme::new(MemfdBackend, UniformQuota(Some(quota)))
}

fn open<S: SchemeSync>(scheme: &mut S, path: &str, pid: usize) -> Result<usize, Error> {
    open_as(scheme, path, &ctx(pid))
}

fn info<S: SchemeSync>(scheme: &mut S, id: usize, pid: usize) -> Result<BufferInfo, Error> {
    info_as(scheme, id, &ctx(pid))
}

#[test]
fn alloc_rounds_up_and_reports_the_buffer() {
    let mut scheme = scheme(1 << 20);
    let id = open(&mut scheme, "alloc?size=100&flags=shared", ALICE).unwrap();
    assert_eq!(
        info(&mut scheme, id, ALICE).unwrap(),
        BufferInfo {
            bus_addr: None,
            size: PAGE as u64,
            flags: BufferFlags::SHARED,
            keep: KeepState::NotKept,
        }
    );
    let mut stat = syscall::Stat::default();
    scheme.fstat(id, &mut stat, &ctx(ALICE)).unwrap();
    assert_eq!(stat.st_size, PAGE as u64);
    let mut path = [0; 64];
    let n = scheme.fpath(id, &mut path, &ctx(ALICE)).unwrap();
    assert_eq!(
        std::str::from_utf8(&path[..n]).unwrap(),
        "/scheme/dma/alloc?size=4096&flags=shared"
    );

    let plain = open(&mut scheme, "/alloc?size=0x2000", ALICE).unwrap();
    assert_eq!(
        info(&mut scheme, plain, ALICE).unwrap().flags,
        BufferFlags::empty()
    );
    assert_ne!(plain, id);
}

#[test]
fn bad_paths_are_refused_and_charge_nothing() {
    let mut scheme = scheme(1 << 20);
    for path in [
        "alloc?size=0",
        "alloc",
        "alloc?size=4096&flags=cached",
        "alloc?size=4096&colour=red",
        "alloc?size=4096&size=4096",
        "alloc?size=lots",
    ] {
        assert_eq!(errno(open(&mut scheme, path, ALICE)), EINVAL, "{path}");
    }
    assert_eq!(errno(open(&mut scheme, "free", ALICE)), ENOENT);
    // Beyond what the backend can make contiguous: refused, not truncated.
    assert_eq!(
        errno(open(&mut scheme, "alloc?size=4194305", ALICE)),
        EINVAL
    );
    assert!(status(&mut scheme)
        .starts_with("backend=memfd-not-for-devices\nbuffers=0\nbytes=0\nquota_hits=0\n"));
}

#[test]
fn opens_only_relative_to_the_root() {
    let mut scheme = scheme(1 << 20);
    let id = open(&mut scheme, "alloc?size=1", ALICE).unwrap();
    assert_eq!(
        errno(scheme.openat(id, "alloc?size=1", 0, 0, &ctx(ALICE))),
        ENOTDIR
    );
}

#[test]
fn no_quota_means_no_dma() {
    let mut scheme = DmaScheme::new(MemfdBackend, UniformQuota(None));
    assert_eq!(errno(open(&mut scheme, "alloc?size=1", ALICE)), EACCES);
    // The status handle needs no quota.
    assert!(status(&mut scheme).contains("buffers=0"));
}

#[test]
fn quota_is_per_caller() {
    let quota = |ctx: &CallerCtx| (ctx.pid == ALICE).then_some(2 * PAGE as u64);
    let mut scheme = DmaScheme::new(MemfdBackend, quota);
    open(&mut scheme, "alloc?size=8192", ALICE).unwrap();
    assert_eq!(errno(open(&mut scheme, "alloc?size=1", MALLORY)), EACCES);
}

#[test]
fn quota_exact_fit_then_over_then_room_after_free() {
    let mut scheme = scheme(3 * PAGE as u64);
    let a = open(&mut scheme, "alloc?size=4096", ALICE).unwrap();
    open(&mut scheme, "alloc?size=8192", ALICE).unwrap();
    assert_eq!(errno(open(&mut scheme, "alloc?size=1", ALICE)), EDQUOT);
    // Another uid has its own quota.
    let other = caller_ctx(300, OTHER_UID, OTHER_UID);
    open_as(&mut scheme, "alloc?size=12288", &other).unwrap();

    let text = status(&mut scheme);
    assert!(
        text.contains("buffers=3\nbytes=24576\nquota_hits=1\n"),
        "{text}"
    );
    assert!(
        text.contains("client uid=1000 buffers=2 bytes=12288 quota=12288 quota_hits=1\n"),
        "{text}"
    );
    assert!(
        text.contains("client uid=2000 buffers=1 bytes=12288 quota=12288 quota_hits=0\n"),
        "{text}"
    );

    scheme.on_close(a);
    let b = open(&mut scheme, "alloc?size=4096", ALICE).unwrap();
    assert_eq!(errno(open(&mut scheme, "alloc?size=1", ALICE)), EDQUOT);
    assert_ne!(a, b, "ids are not reused");
}

#[test]
fn buffers_are_zeroed_after_reuse() {
    let mut scheme = scheme(1 << 20);
    let first = open(&mut scheme, "alloc?size=8192", ALICE).unwrap();
    {
        let mut mapping = ClientMapping::new(&mut scheme, first, 2 * PAGE, &ctx(ALICE));
        mapping.bytes().fill(0xa5);
    }
    scheme.on_close(first);
    let second = open(&mut scheme, "alloc?size=8192", ALICE).unwrap();
    let mut mapping = ClientMapping::new(&mut scheme, second, 2 * PAGE, &ctx(ALICE));
    assert!(mapping.bytes().iter().all(|&b| b == 0));
}

/// Hands out memory full of old data, as a recycled page would be.
struct DirtyBackend(MemfdBackend);

impl DmaBackend for DirtyBackend {
    type Memory = MappedMemfd;
    fn name(&self) -> &'static str {
        "dirty"
    }
    fn buffer_size(&self, requested: u64) -> Option<usize> {
        self.0.buffer_size(requested)
    }
    fn max_buffer_size(&self) -> usize {
        self.0.max_buffer_size()
    }
    fn allocate(&mut self, size: usize, direction: Direction) -> io::Result<MappedMemfd> {
        let memory = self.0.allocate(size, direction)?;
        // SAFETY: `size` bytes mapped read-write, owned by `memory`.
        unsafe { memory.as_ptr().write_bytes(0xee, size) };
        Ok(memory)
    }
}

#[test]
fn the_scheme_zeroes_what_the_backend_gives() {
    let mut scheme = DmaScheme::new(DirtyBackend(MemfdBackend), UniformQuota(Some(1 << 20)));
    let id = open(&mut scheme, "alloc?size=12288", ALICE).unwrap();
    let mut mapping = ClientMapping::new(&mut scheme, id, 3 * PAGE, &ctx(ALICE));
    assert!(mapping.bytes().iter().all(|&b| b == 0));
}

/// Fails every allocation, as a machine without free huge pages does.
struct ExhaustedBackend;

impl DmaBackend for ExhaustedBackend {
    type Memory = MappedMemfd;
    fn name(&self) -> &'static str {
        "exhausted"
    }
    fn buffer_size(&self, requested: u64) -> Option<usize> {
        MemfdBackend.buffer_size(requested)
    }
    fn max_buffer_size(&self) -> usize {
        MemfdBackend.max_buffer_size()
    }
    fn allocate(&mut self, _size: usize, _direction: Direction) -> io::Result<MappedMemfd> {
        Err(io::ErrorKind::OutOfMemory.into())
    }
}

#[test]
fn backend_failure_is_enomem_and_leaks_no_quota() {
    let mut scheme = DmaScheme::new(ExhaustedBackend, UniformQuota(Some(PAGE as u64)));
    assert_eq!(errno(open(&mut scheme, "alloc?size=4096", ALICE)), ENOMEM);
    assert_eq!(
        errno(open(&mut scheme, "alloc?size=4096", ALICE)),
        ENOMEM,
        "not EDQUOT: nothing was charged"
    );
    assert!(status(&mut scheme).contains("buffers=0\nbytes=0\nquota_hits=0\n"));
}

#[test]
fn another_callers_handle_is_a_bad_handle() {
    let mut scheme = scheme(1 << 20);
    let id = open(&mut scheme, "alloc?size=4096", ALICE).unwrap();
    let mallory = ctx(MALLORY);
    assert_eq!(errno(info(&mut scheme, id, MALLORY)), EBADF);
    assert_eq!(
        errno(scheme.fstat(id, &mut syscall::Stat::default(), &mallory)),
        EBADF
    );
    assert_eq!(errno(scheme.fpath(id, &mut [0; 64], &mallory)), EBADF);
    assert_eq!(
        errno(scheme.map_fd(id, 0, PAGE, &mallory).map(|_| ())),
        EBADF
    );
    assert_eq!(errno(scheme.read(id, &mut [0; 8], 0, 0, &mallory)), EBADF);

    let status_id = open(&mut scheme, "status", ALICE).unwrap();
    assert_eq!(
        errno(scheme.read(status_id, &mut [0; 8], 0, 0, &mallory)),
        EBADF
    );

    // Same answer as for an id that does not exist: no oracle.
    assert_eq!(errno(info(&mut scheme, 9999, MALLORY)), EBADF);
    // The owner is unaffected.
    assert_eq!(info(&mut scheme, id, ALICE).unwrap().size, PAGE as u64);
}

#[test]
fn close_frees_and_closed_ids_are_dead() {
    let mut scheme = scheme(1 << 20);
    let id = open(&mut scheme, "alloc?size=4096", ALICE).unwrap();
    assert!(status(&mut scheme).contains("client uid=1000 buffers=1 bytes=4096"));
    scheme.on_close(id);
    assert!(status(&mut scheme).contains("buffers=0\nbytes=0\n"));
    assert!(!status(&mut scheme).contains("client"));
    assert_eq!(errno(info(&mut scheme, id, ALICE)), EBADF);
    scheme.on_close(id);
}

#[test]
fn call_and_map_arguments_are_checked() {
    let mut scheme = scheme(1 << 20);
    let id = open(&mut scheme, "alloc?size=8192", ALICE).unwrap();
    let alice = ctx(ALICE);
    assert_eq!(
        errno(scheme.call(id, &mut [0; BufferInfo::LEN], &[], &alice)),
        EINVAL
    );
    assert_eq!(
        errno(scheme.call(id, &mut [0; BufferInfo::LEN], &[2], &alice)),
        EINVAL
    );
    assert_eq!(
        errno(scheme.call(id, &mut [0; BufferInfo::LEN - 1], &[INFO_CALL], &alice)),
        EINVAL
    );
    assert_eq!(
        errno(scheme.read(id, &mut [0; 8], 0, 0, &alice)),
        EOPNOTSUPP
    );

    assert!(scheme.map_fd(id, PAGE as u64, PAGE, &alice).is_ok());
    for (offset, size) in [
        (0, 0),
        (0, 3 * PAGE),
        (PAGE as u64, 2 * PAGE),
        (1, PAGE),
        (u64::MAX - 4095, PAGE),
    ] {
        assert_eq!(
            errno(scheme.map_fd(id, offset, size, &alice).map(|_| ())),
            EINVAL,
            "{offset} {size}"
        );
    }

    let status_id = open(&mut scheme, "status", ALICE).unwrap();
    assert_eq!(
        errno(scheme.map_fd(status_id, 0, PAGE, &alice).map(|_| ())),
        EOPNOTSUPP
    );
    assert_eq!(
        errno(scheme.call(status_id, &mut [0; BufferInfo::LEN], &[INFO_CALL], &alice)),
        EOPNOTSUPP
    );
}

#[test]
fn status_reads_at_offsets() {
    let mut scheme = scheme(1 << 20);
    let id = open(&mut scheme, "status", ALICE).unwrap();
    let mut stat = syscall::Stat::default();
    scheme.fstat(id, &mut stat, &ctx(ALICE)).unwrap();
    let whole = "backend=memfd-not-for-devices\nbuffers=0\nbytes=0\nquota_hits=0\n\
                 quarantined=0\nquarantined_bytes=0\nquarantine_released=0\npoison_clean=0\npoison_dirty=0\n\
                 kept_orphans=0\nkept_orphan_bytes=0\nkept_adopted=0\nkept_released=0\n";
    assert_eq!(stat.st_size, whole.len() as u64);
    let mut head = [0; 8];
    assert_eq!(scheme.read(id, &mut head, 0, 0, &ctx(ALICE)).unwrap(), 8);
    assert_eq!(&head, b"backend=");
    let mut tail = [0; 256];
    let n = scheme.read(id, &mut tail, 8, 0, &ctx(ALICE)).unwrap();
    assert_eq!(&tail[..n], &whole.as_bytes()[8..]);
    assert_eq!(
        scheme.read(id, &mut tail, 10_000, 0, &ctx(ALICE)).unwrap(),
        0
    );
    assert_eq!(
        scheme
            .read(id, &mut tail, u64::MAX, 0, &ctx(ALICE))
            .unwrap(),
        0
    );
}

/// Two drivers, as a policy file names them: the e1000 may open `dma:`, the
/// UART's rule grants DMA memory but does not list the scheme.
const POLICY: &str = "\
[driver.e1000]
uid = 1001
dma_quota = \"1M\"
schemes = [\"mmio\", \"dma\"]

[driver.uart]
uid = 1002
dma_quota = \"1M\"
schemes = [\"mmio\"]
";

#[test]
fn processes_of_one_uid_share_its_quota() {
    // The e1000's rule grants 1 MiB: eight of its processes may not hold 8.
    let mut scheme = scheme(1 << 20);
    let e1000 = |pid| caller_ctx(pid, 1001, 1001);
    let first = open_as(&mut scheme, "alloc?size=1M", &e1000(10)).unwrap();
    for pid in 11..18 {
        assert_eq!(
            errno(open_as(&mut scheme, "alloc?size=4096", &e1000(pid))),
            EDQUOT,
            "pid {pid} of the same uid"
        );
    }
    // Another uid has a quota of its own.
    open_as(&mut scheme, "alloc?size=1M", &caller_ctx(20, 1002, 1002)).unwrap();
    // Closing gives the room back to the uid, whichever of its processes asks.
    scheme.on_close(first);
    let again = open_as(&mut scheme, "alloc?size=1M", &e1000(11)).unwrap();
    // A handle still belongs to the process that opened it, not to its uid.
    assert_eq!(errno(info(&mut scheme, again, 12)), EBADF);
    let mut payload = [0; BufferInfo::LEN];
    assert_eq!(
        errno(scheme.call(again, &mut payload, &[INFO_CALL], &e1000(12))),
        EBADF
    );
}

#[test]
fn a_non_root_caller_sees_only_its_own_uids_line_in_status() {
    let mut scheme = scheme(1 << 20);
    open_as(&mut scheme, "alloc?size=4096", &caller_ctx(10, 1001, 1001)).unwrap();
    open_as(&mut scheme, "alloc?size=8192", &caller_ctx(20, 1002, 1002)).unwrap();
    let totals = "backend=memfd-not-for-devices\nbuffers=2\nbytes=12288\nquota_hits=0\n\
                  quarantined=0\nquarantined_bytes=0\nquarantine_released=0\npoison_clean=0\npoison_dirty=0\n\
                 kept_orphans=0\nkept_orphan_bytes=0\nkept_adopted=0\nkept_released=0\n";

    assert_eq!(
        status_as(&mut scheme, &caller_ctx(30, 1001, 1001)),
        format!("{totals}client uid=1001 buffers=1 bytes=4096 quota=1048576 quota_hits=0\n"),
        "another process of uid 1001 sees its uid's line and nobody else's"
    );
    assert_eq!(
        status_as(&mut scheme, &caller_ctx(40, 1003, 1003)),
        totals,
        "a uid holding nothing sees the totals only"
    );
    assert_eq!(
        status_as(&mut scheme, &caller_ctx(1, 0, 0)),
        format!(
            "{totals}client uid=1001 buffers=1 bytes=4096 quota=1048576 quota_hits=0\n\
             client uid=1002 buffers=1 bytes=8192 quota=1048576 quota_hits=0\n"
        ),
        "root sees every uid"
    );
}

#[test]
fn a_driver_whose_rule_does_not_list_dma_may_not_open_it() {
    let policy: driver_policy::Policy = POLICY.parse().unwrap();
    let mut scheme = DmaScheme::new(MemfdBackend, policy);
    let uart = caller_ctx(10, 1002, 1002);
    assert_eq!(
        errno(open_as(&mut scheme, "alloc?size=4096", &uart)),
        EACCES
    );
    assert_eq!(errno(open_as(&mut scheme, "status", &uart)), EACCES);
    assert_eq!(
        errno(open_as(&mut scheme, "no/such/path", &uart)),
        EACCES,
        "refused before its path is even read"
    );

    let e1000 = caller_ctx(11, 1001, 1001);
    open_as(&mut scheme, "alloc?size=4096", &e1000).unwrap();
    assert!(status_as(&mut scheme, &e1000).contains("buffers=1\n"));
}

#[test]
fn a_caller_without_a_rule_reads_status_but_gets_no_dma() {
    let policy: driver_policy::Policy = POLICY.parse().unwrap();
    let mut scheme = DmaScheme::new(MemfdBackend, policy);
    for stranger in [caller_ctx(1, 0, 0), caller_ctx(12, 4242, 4242)] {
        assert_eq!(
            errno(open_as(&mut scheme, "alloc?size=4096", &stranger)),
            EACCES
        );
        assert!(status_as(&mut scheme, &stranger).contains("buffers=0\n"));
    }
}
