//! Kept buffers (`keep=<name>`) driven through the scheme's calls: what a
//! restarted driver finds of what its predecessor left, and what it may not.
#![cfg(target_os = "linux")]

#[path = "common/client_mapping.rs"]
mod client_mapping;
#[path = "common/scheme_calls.rs"]
mod scheme_calls;

use std::io;
use std::os::fd::OwnedFd;
use std::thread::sleep;
use std::time::Duration;

use client_mapping::ClientMapping;
use dma_scheme::backend::{DmaBackend, DmaMemory, MappedMemfd, MemfdBackend};
use dma_scheme::{BufferInfo, Direction, DmaScheme, KeepState, QuarantineConfig, UniformQuota};
use redox_scheme::scheme::SchemeSync;
use redox_scheme::CallerCtx;
use scheme_calls::{errno, info_as, open_as as open, status};
use scheme_runtime::{caller_ctx, SchemeDaemon};
use syscall::error::{EDQUOT, EEXIST, EINVAL};

const PAGE: usize = 4096;
/// The e1000's uid and two of its processes: the driver that dies and its successor.
const UID: u32 = 1001;
const DEAD: usize = 100;
const SUCCESSOR: usize = 101;
/// Another driver.
const OTHER_UID: u32 = 1002;
const OTHER: usize = 200;

fn e1000(pid: usize) -> CallerCtx {
    caller_ctx(pid, UID, UID)
}

fn other() -> CallerCtx {
    caller_ctx(OTHER, OTHER_UID, OTHER_UID)
}

/// Memory with a bus address, so that "the same bus address" means something
/// on a machine whose test memory has none.
struct Addressed {
    memory: MappedMemfd,
    bus_addr: u64,
}

impl DmaMemory for Addressed {
    fn as_ptr(&self) -> *mut u8 {
        self.memory.as_ptr()
    }
    fn size(&self) -> usize {
        self.memory.size()
    }
    fn bus_addr(&self) -> Option<u64> {
        Some(self.bus_addr)
    }
    fn share_fd(&self) -> io::Result<OwnedFd> {
        self.memory.share_fd()
    }
}

/// Gives every buffer a bus address no other buffer has had.
#[derive(Default)]
struct AddressedBackend {
    next: u64,
}

impl DmaBackend for AddressedBackend {
    type Memory = Addressed;
    fn name(&self) -> &'static str {
        "addressed"
    }
    fn buffer_size(&self, requested: u64) -> Option<usize> {
        MemfdBackend.buffer_size(requested)
    }
    fn max_buffer_size(&self) -> usize {
        MemfdBackend.max_buffer_size()
    }
    fn allocate(&mut self, size: usize, direction: Direction) -> io::Result<Addressed> {
        self.next += 1;
        Ok(Addressed {
            memory: MemfdBackend.allocate(size, direction)?,
            bus_addr: self.next << 32,
        })
    }
}

type Scheme = DmaScheme<AddressedBackend, UniformQuota>;

/// A quarantine hold long enough that nothing leaves it during a test.
const HOLD: Duration = Duration::from_secs(60);

fn scheme_keeping(quota: u64, keep: Duration) -> Scheme {
    DmaScheme::with_quarantine(
        AddressedBackend::default(),
        UniformQuota(Some(quota)),
        QuarantineConfig {
            hold: HOLD,
            poison: false,
            keep,
        },
    )
}

fn scheme(quota: u64) -> Scheme {
    scheme_keeping(quota, QuarantineConfig::DEFAULT_KEEP)
}

fn info(scheme: &mut Scheme, id: usize, ctx: &CallerCtx) -> BufferInfo {
    info_as(scheme, id, ctx).unwrap()
}

/// The buffer's bytes as its client maps them (over the host transport).
fn read_back(scheme: &mut Scheme, id: usize, ctx: &CallerCtx) -> Vec<u8> {
    with_mapping(scheme, id, ctx, |bytes| bytes.to_vec())
}

fn fill(scheme: &mut Scheme, id: usize, ctx: &CallerCtx, pattern: impl Fn(usize) -> u8) {
    with_mapping(scheme, id, ctx, |bytes| {
        for (i, byte) in bytes.iter_mut().enumerate() {
            *byte = pattern(i);
        }
    })
}

fn with_mapping<T>(
    scheme: &mut Scheme,
    id: usize,
    ctx: &CallerCtx,
    use_bytes: impl FnOnce(&mut [u8]) -> T,
) -> T {
    let mut stat = syscall::Stat::default();
    scheme.fstat(id, &mut stat, ctx).unwrap();
    let mut mapping = ClientMapping::new(scheme, id, stat.st_size as usize, ctx);
    use_bytes(mapping.bytes())
}

fn pattern(i: usize) -> u8 {
    (i % 251) as u8 ^ 0x5a
}

/// The main behaviour: what a dead e1000 leaves, its successor finds.
#[test]
fn a_kept_buffer_survives_its_handles_close_and_is_adopted_with_the_same_bus_address_and_contents()
{
    let mut scheme = scheme(1 << 20);
    let path = "alloc?size=8192&flags=shared&keep=rx-ring";
    let first = open(&mut scheme, path, &e1000(DEAD)).unwrap();
    let before = info(&mut scheme, first, &e1000(DEAD));
    fill(&mut scheme, first, &e1000(DEAD), pattern);
    // What the runtime does when the driver dies: its handles close.
    scheme.on_close(first);

    let second = open(&mut scheme, path, &e1000(SUCCESSOR)).unwrap();
    let after = info(&mut scheme, second, &e1000(SUCCESSOR));
    assert_eq!(
        after.bus_addr, before.bus_addr,
        "the same memory for the device"
    );
    assert_eq!(after.size, before.size);
    assert!(
        read_back(&mut scheme, second, &e1000(SUCCESSOR))
            .iter()
            .enumerate()
            .all(|(i, &b)| b == pattern(i)),
        "the contents are what the dead driver left, not zeroes"
    );
}

#[test]
fn the_info_says_whether_a_buffer_is_kept_and_whether_it_was_adopted() {
    let mut scheme = scheme(1 << 20);
    let plain = open(&mut scheme, "alloc?size=4096", &e1000(DEAD)).unwrap();
    assert_eq!(
        info(&mut scheme, plain, &e1000(DEAD)).keep,
        KeepState::NotKept
    );
    let kept = open(&mut scheme, "alloc?size=4096&keep=tx", &e1000(DEAD)).unwrap();
    let fresh = info(&mut scheme, kept, &e1000(DEAD));
    assert_eq!(fresh.keep, KeepState::Fresh);
    assert!(read_back(&mut scheme, kept, &e1000(DEAD))
        .iter()
        .all(|&b| b == 0));
    let mut path = [0; 64];
    let n = scheme.fpath(kept, &mut path, &e1000(DEAD)).unwrap();
    assert_eq!(
        std::str::from_utf8(&path[..n]).unwrap(),
        "/scheme/dma/alloc?size=4096&keep=tx"
    );
    scheme.on_close(kept);

    let adopted = open(&mut scheme, "alloc?size=100&keep=tx", &e1000(SUCCESSOR)).unwrap();
    assert_eq!(
        info(&mut scheme, adopted, &e1000(SUCCESSOR)),
        BufferInfo {
            keep: KeepState::Adopted,
            ..fresh
        },
        "the size is compared rounded: 100 bytes asks for the 4096 kept"
    );

    // Adopted and closed again, it is kept again, for the next successor.
    scheme.on_close(adopted);
    let third = open(&mut scheme, "alloc?size=4096&keep=tx", &e1000(300)).unwrap();
    let info = info(&mut scheme, third, &e1000(300));
    assert_eq!(
        (info.keep, info.bus_addr),
        (KeepState::Adopted, fresh.bus_addr)
    );
}

#[test]
fn adoption_is_refused_to_another_uid_which_gets_a_fresh_buffer() {
    let mut scheme = scheme(1 << 20);
    let path = "alloc?size=8192&flags=shared&keep=rx-ring";
    let first = open(&mut scheme, path, &e1000(DEAD)).unwrap();
    let kept = info(&mut scheme, first, &e1000(DEAD));
    fill(&mut scheme, first, &e1000(DEAD), pattern);
    scheme.on_close(first);

    let theirs = open(&mut scheme, path, &other()).unwrap();
    let fresh = info(&mut scheme, theirs, &other());
    assert_eq!(fresh.keep, KeepState::Fresh);
    assert_ne!(fresh.bus_addr, kept.bus_addr);
    assert!(read_back(&mut scheme, theirs, &other())
        .iter()
        .all(|&b| b == 0));
    assert!(status(&mut scheme).contains("kept_orphans=1\n"));

    // The orphan is still there for its own driver.
    let second = open(&mut scheme, path, &e1000(SUCCESSOR)).unwrap();
    let adopted = info(&mut scheme, second, &e1000(SUCCESSOR));
    assert_eq!(
        (adopted.keep, adopted.bus_addr),
        (KeepState::Adopted, kept.bus_addr)
    );
}

#[test]
fn a_size_or_flag_mismatch_frees_the_orphan_and_allocates_afresh() {
    for asked in [
        "alloc?size=4096&keep=rx",
        "alloc?size=8192&flags=shared&keep=rx",
    ] {
        let mut scheme = scheme(1 << 20);
        let first = open(&mut scheme, "alloc?size=8192&keep=rx", &e1000(DEAD)).unwrap();
        let kept = info(&mut scheme, first, &e1000(DEAD));
        fill(&mut scheme, first, &e1000(DEAD), pattern);
        scheme.on_close(first);
        assert_eq!(quarantined(&mut scheme), 0);

        let second = open(&mut scheme, asked, &e1000(SUCCESSOR)).unwrap();
        let fresh = info(&mut scheme, second, &e1000(SUCCESSOR));
        assert_eq!(fresh.keep, KeepState::Fresh, "{asked}");
        assert_ne!(fresh.bus_addr, kept.bus_addr, "{asked}");
        assert!(read_back(&mut scheme, second, &e1000(SUCCESSOR))
            .iter()
            .all(|&b| b == 0));
        let text = status(&mut scheme);
        assert!(
            text.contains("buffers=1\n")
                && text.contains("quarantined=1\nquarantined_bytes=8192\n")
                && text.contains(
                    "kept_orphans=0\nkept_orphan_bytes=0\nkept_adopted=0\nkept_released=1\n"
                ),
            "{asked}: the old buffer went the way of a freed one:\n{text}"
        );
    }
}

/// The `quarantined=` count in the status.
fn quarantined(scheme: &mut Scheme) -> u64 {
    status_value(scheme, "quarantined")
}

fn status_value(scheme: &mut Scheme, key: &str) -> u64 {
    let text = status(scheme);
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
        .parse()
        .unwrap()
}

#[test]
fn an_orphan_expires_into_the_quarantine_after_the_keep_period() {
    const KEEP: Duration = Duration::from_millis(50);
    let mut scheme = scheme_keeping(1 << 20, KEEP);
    let first = open(&mut scheme, "alloc?size=8192&keep=rx", &e1000(DEAD)).unwrap();
    let kept = info(&mut scheme, first, &e1000(DEAD));
    scheme.on_close(first);
    scheme.after_round();
    let text = status(&mut scheme);
    assert!(
        text.contains("buffers=1\nbytes=8192\n")
            && text.contains("quarantined=0\n")
            && text.contains("kept_orphans=1\nkept_orphan_bytes=8192\n"),
        "within the keep period:\n{text}"
    );

    sleep(KEEP + Duration::from_millis(10));
    // The daemon's tick.
    scheme.after_round();
    let text = status(&mut scheme);
    assert!(
        text.contains("buffers=0\nbytes=0\n")
            && text.contains("quarantined=1\nquarantined_bytes=8192\n")
            && text
                .contains("kept_orphans=0\nkept_orphan_bytes=0\nkept_adopted=0\nkept_released=1\n")
            && !text.contains("client uid="),
        "past it, freed as a closed buffer is:\n{text}"
    );

    let again = open(&mut scheme, "alloc?size=8192&keep=rx", &e1000(SUCCESSOR)).unwrap();
    let fresh = info(&mut scheme, again, &e1000(SUCCESSOR));
    assert_eq!(fresh.keep, KeepState::Fresh);
    assert_ne!(fresh.bus_addr, kept.bus_addr);
}

#[test]
fn a_zero_keep_period_frees_a_kept_buffer_at_once() {
    let mut scheme = scheme_keeping(1 << 20, Duration::ZERO);
    let id = open(&mut scheme, "alloc?size=4096&keep=rx", &e1000(DEAD)).unwrap();
    scheme.on_close(id);
    let text = status(&mut scheme);
    assert!(
        text.contains("buffers=0\n") && text.contains("quarantined=1\n"),
        "{text}"
    );
}

#[test]
fn orphans_stay_charged_to_the_quota_and_adoption_charges_nothing_new() {
    let mut scheme = scheme(2 * PAGE as u64);
    let first = open(&mut scheme, "alloc?size=8192&keep=rx", &e1000(DEAD)).unwrap();
    let charged = "client uid=1001 buffers=1 bytes=8192 quota=8192 ";
    assert!(status(&mut scheme).contains(charged));
    scheme.on_close(first);

    // Dying does not make room: the orphan is still the uid's.
    assert!(status(&mut scheme).contains(charged));
    assert_eq!(
        errno(open(&mut scheme, "alloc?size=4096", &e1000(SUCCESSOR))),
        EDQUOT
    );
    assert_eq!(
        errno(open(
            &mut scheme,
            "alloc?size=4096&keep=other",
            &e1000(SUCCESSOR)
        )),
        EDQUOT
    );

    // A uid at its quota can still adopt, and is charged as before.
    let second = open(&mut scheme, "alloc?size=8192&keep=rx", &e1000(SUCCESSOR)).unwrap();
    assert_eq!(
        info(&mut scheme, second, &e1000(SUCCESSOR)).keep,
        KeepState::Adopted
    );
    let text = status(&mut scheme);
    assert!(
        text.contains("buffers=1\nbytes=8192\n") && text.contains(charged),
        "{text}"
    );

    // A mismatch frees the orphan's charge before the new buffer is charged,
    // so a driver that changes its layout at its quota is not refused.
    scheme.on_close(second);
    let third = open(&mut scheme, "alloc?size=4096&keep=rx", &e1000(300)).unwrap();
    assert_eq!(info(&mut scheme, third, &e1000(300)).keep, KeepState::Fresh);
    assert!(status(&mut scheme).contains("client uid=1001 buffers=1 bytes=4096 "));
}

#[test]
fn a_second_live_buffer_of_the_same_kept_name_is_eexist() {
    let mut scheme = scheme(1 << 20);
    let first = open(&mut scheme, "alloc?size=4096&keep=rx", &e1000(DEAD)).unwrap();
    for ctx in [e1000(DEAD), e1000(SUCCESSOR)] {
        for path in ["alloc?size=4096&keep=rx", "alloc?size=8192&keep=rx"] {
            assert_eq!(errno(open(&mut scheme, path, &ctx)), EEXIST, "{path}");
        }
    }
    // Other names, unkept buffers and other uids are not in the way.
    open(&mut scheme, "alloc?size=4096&keep=tx", &e1000(DEAD)).unwrap();
    open(&mut scheme, "alloc?size=4096", &e1000(DEAD)).unwrap();
    open(&mut scheme, "alloc?size=4096&keep=rx", &other()).unwrap();
    assert!(
        status(&mut scheme).contains("buffers=4\nbytes=16384\n"),
        "a refusal charges nothing"
    );

    scheme.on_close(first);
    let second = open(&mut scheme, "alloc?size=4096&keep=rx", &e1000(SUCCESSOR)).unwrap();
    assert_eq!(
        info(&mut scheme, second, &e1000(SUCCESSOR)).keep,
        KeepState::Adopted
    );
    assert_eq!(
        errno(open(&mut scheme, "alloc?size=4096&keep=rx", &e1000(DEAD))),
        EEXIST
    );
}

#[test]
fn bad_keep_names_are_einval_and_charge_nothing() {
    let mut scheme = scheme(1 << 20);
    let too_long = format!("alloc?size=4096&keep={}", "k".repeat(33));
    for path in [
        "alloc?size=4096&keep=",
        "alloc?size=4096&keep=RX",
        "alloc?size=4096&keep=rx/ring",
        "alloc?size=4096&keep=rx+ring",
        "alloc?size=4096&keep=r%78",
        "alloc?size=4096&keep=rx&keep=rx",
        &too_long,
    ] {
        assert_eq!(
            errno(open(&mut scheme, path, &e1000(DEAD))),
            EINVAL,
            "{path}"
        );
    }
    open(
        &mut scheme,
        &format!("alloc?size=4096&keep={}", "k".repeat(32)),
        &e1000(DEAD),
    )
    .unwrap();
    assert!(status(&mut scheme).contains("buffers=1\nbytes=4096\n"));
}

#[test]
fn the_status_shows_kept_orphans_their_bytes_adoptions_and_releases() {
    let mut scheme = scheme(1 << 20);
    let rx = open(&mut scheme, "alloc?size=8192&keep=rx", &e1000(DEAD)).unwrap();
    let tx = open(&mut scheme, "alloc?size=4096&keep=tx", &e1000(DEAD)).unwrap();
    let plain = open(&mut scheme, "alloc?size=4096", &e1000(DEAD)).unwrap();
    assert!(status(&mut scheme)
        .contains("kept_orphans=0\nkept_orphan_bytes=0\nkept_adopted=0\nkept_released=0\n"));
    for id in [rx, tx, plain] {
        scheme.on_close(id);
    }
    let text = status(&mut scheme);
    assert!(
        text.contains("buffers=2\nbytes=12288\n")
            && text.contains("quarantined=1\nquarantined_bytes=4096\n")
            && text.contains(
                "kept_orphans=2\nkept_orphan_bytes=12288\nkept_adopted=0\nkept_released=0\n\
                 client uid=1001 buffers=2 bytes=12288 "
            ),
        "{text}"
    );

    open(&mut scheme, "alloc?size=8192&keep=rx", &e1000(SUCCESSOR)).unwrap();
    open(&mut scheme, "alloc?size=8192&keep=tx", &e1000(SUCCESSOR)).unwrap();
    let text = status(&mut scheme);
    assert!(
        text.contains("kept_orphans=0\nkept_orphan_bytes=0\nkept_adopted=1\nkept_released=1\n"),
        "{text}"
    );
}
