//! The daemon's quarantine over the host transport: a freed buffer is held,
//! poisoned once its hold is over and checked before release, and a write into
//! it after that (what a device still mastering the bus would do) is counted.
#![cfg(target_os = "linux")]

mod common;

use std::thread::sleep;
use std::time::{Duration, Instant};

use dma_scheme::{BufferFlags, DmaBuffer};
use scheme_runtime::Handle;
use syscall::flag::O_RDWR;

/// The daemon's hold in these tests: short, so that they run quickly.
const HOLD_MS: &str = "100";
const HOLD: Duration = Duration::from_millis(100);

#[test]
fn a_freed_buffer_is_quarantined_poisoned_and_checked_before_release() {
    let _daemon =
        common::DmaDaemon::start_with("1M", &["--quarantine-ms", HOLD_MS, "--quarantine-poison"]);

    // A buffer nothing touches after its free: found clean.
    let buffer = DmaBuffer::alloc(4096, BufferFlags::SHARED).unwrap();
    drop(buffer);
    let status = common::status();
    assert!(
        status.contains("buffers=0\nbytes=0\n") && status.contains("quarantined=1\n"),
        "freed: the quota is back, the memory is held:\n{status}"
    );
    common::wait_for_status(|text| text.contains("quarantine_released=1\n"))
        .unwrap_or_else(|text| panic!("never released:\n{text}"));
    let status = common::status();
    assert!(
        status.contains("quarantined=0\n")
            && status.contains("poison_clean=1\n")
            && status.contains("poison_dirty=0\n"),
        "{status}"
    );

    // A buffer something keeps writing after its free: its handle closes, but
    // a mapping of it stays, standing in for a device that still masters the
    // bus and has the buffer's address.
    let handle = Handle::open("/scheme/dma/alloc?size=4096", O_RDWR).unwrap();
    let mapping = handle.mmap(0, 4096, true).unwrap();
    drop(handle);
    let until = Instant::now() + 4 * HOLD;
    let mut value = 0u8;
    while Instant::now() < until {
        value = value.wrapping_add(1);
        // SAFETY: a mapping of 4096 bytes this test owns; the daemon reads the
        // same memory, which is what the test is about.
        unsafe { mapping.as_ptr().add(2048).write_volatile(value) };
        sleep(Duration::from_millis(1));
    }
    drop(mapping);
    let status = common::wait_for_status(|text| text.contains("quarantine_released=2\n"))
        .unwrap_or_else(|text| panic!("never released:\n{text}"));
    assert!(
        status.contains("poison_clean=1\n") && status.contains("poison_dirty=1\n"),
        "the write after the poison is found:\n{status}"
    );
}
