//! Kept buffers through the daemon: a driver killed with a kept buffer leaves
//! it, contents and all, to its successor, which takes it over with
//! `DmaBuffer::alloc_kept`; one nobody takes is freed after `--keep-ms`.
#![cfg(target_os = "linux")]

mod common;
#[path = "common/forked_client.rs"]
mod forked_client;

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use dma_scheme::{BufferFlags, Direction, DmaBuffer, KeepState};
use forked_client::ForkedClient;
use syscall::error::EEXIST;

/// Long enough for the test to adopt what the killed child left, short enough
/// to wait out at the end.
const KEEP_MS: &str = "1500";
const KEEP: Duration = Duration::from_millis(1500);
const SIZE: usize = 8192;
const NAME: &str = "rx-ring";

fn pattern(i: usize) -> u8 {
    (i % 253) as u8 ^ 0xa5
}

fn bytes(buffer: &DmaBuffer) -> &[u8] {
    // SAFETY: the buffer's own mapping, `len` bytes, written only by `fill`.
    unsafe { std::slice::from_raw_parts(buffer.as_ptr(), buffer.len()) }
}

fn fill(buffer: &DmaBuffer) {
    for i in 0..buffer.len() {
        // SAFETY: within the buffer's own mapping; nothing else reads it now.
        unsafe { buffer.as_ptr().add(i).write(pattern(i)) };
    }
}

#[test]
fn a_killed_drivers_kept_buffer_is_adopted_by_its_successor_and_freed_if_nobody_does() {
    let _daemon = common::DmaDaemon::start_with("1M", &["--keep-ms", KEEP_MS]);
    // The forked driver holds its buffer until the kill, as a running driver
    // holds its rings.
    let driver = ForkedClient::start("the child allocated a fresh kept buffer", || {
        let buffer = DmaBuffer::alloc_kept(SIZE, BufferFlags::SHARED, Direction::Both, NAME);
        let ok = match &buffer {
            Ok(buffer) => {
                fill(buffer);
                buffer.info().keep == KeepState::Fresh && !buffer.adopted()
            }
            Err(_) => false,
        };
        (buffer, ok)
    });

    driver.kill();
    let text = common::wait_for_status(|text| text.contains("kept_orphans=1\n"))
        .unwrap_or_else(|text| panic!("the dead driver's buffer was not kept:\n{text}"));
    assert!(
        text.contains("buffers=1\nbytes=8192\n") && text.contains("quarantined=0\n"),
        "kept, still charged, not quarantined:\n{text}"
    );

    let successor =
        DmaBuffer::alloc_kept(SIZE, BufferFlags::SHARED, Direction::Both, NAME).unwrap();
    assert!(successor.adopted());
    assert!(
        bytes(&successor)
            .iter()
            .enumerate()
            .all(|(i, &b)| b == pattern(i)),
        "the successor sees what the dead driver wrote"
    );
    assert!(common::status().contains("kept_orphans=0\nkept_orphan_bytes=0\nkept_adopted=1\n"));

    let errno = |result: std::io::Result<DmaBuffer>| result.err().map(|e| e.raw_os_error());
    assert_eq!(
        errno(DmaBuffer::alloc_kept(
            SIZE,
            BufferFlags::SHARED,
            Direction::Both,
            NAME
        )),
        Some(Some(EEXIST)),
        "one live buffer per name"
    );
    assert_eq!(
        DmaBuffer::alloc_kept(SIZE, BufferFlags::SHARED, Direction::Both, "Rx Ring")
            .err()
            .map(|e| e.kind()),
        Some(ErrorKind::InvalidInput)
    );
    let plain = DmaBuffer::alloc(SIZE, BufferFlags::SHARED).unwrap();
    assert!(!plain.adopted());
    assert_eq!(plain.info().keep, KeepState::NotKept);
    drop(plain);

    // Closed without dying: kept as well, and freed once the keep period is
    // over with nobody taking it.
    drop(successor);
    let closed = Instant::now();
    assert!(common::status().contains("kept_orphans=1\n"));
    let text = common::wait_for_status(|text| text.contains("kept_released=1\n"))
        .unwrap_or_else(|text| panic!("the orphan was never freed:\n{text}"));
    assert!(
        closed.elapsed() >= KEEP,
        "freed after {:?}, before its keep period",
        closed.elapsed()
    );
    assert!(
        text.contains("buffers=0\nbytes=0\n") && text.contains("kept_orphans=0\n"),
        "{text}"
    );
    let fresh = DmaBuffer::alloc_kept(SIZE, BufferFlags::SHARED, Direction::Both, NAME).unwrap();
    assert!(!fresh.adopted());
    assert!(bytes(&fresh).iter().all(|&b| b == 0));
}
