//! A client maps a buffer from a `dma` daemon over the host transport.
#![cfg(target_os = "linux")]

mod common;

use dma_scheme::{BufferFlags, DmaBuffer};
use syscall::error::{EDQUOT, EINVAL};

#[test]
fn client_maps_writes_and_reads_back() {
    let _daemon = common::DmaDaemon::start("64K");

    let buffer = DmaBuffer::alloc(5000, BufferFlags::SHARED).unwrap();
    assert_eq!(buffer.len(), 8192);
    assert_eq!(buffer.info().flags, BufferFlags::SHARED);
    assert_eq!(
        buffer.bus_addr(),
        None,
        "the memfd backend has no bus address"
    );
    assert_eq!(
        buffer.handle().fpath().unwrap(),
        "/scheme/dma/alloc?size=8192&flags=shared"
    );
    assert_eq!(buffer.handle().fstat().unwrap().st_size, 8192);

    // SAFETY: the buffer's own mapping, `len` bytes, used by nothing else.
    let bytes = unsafe { std::slice::from_raw_parts_mut(buffer.as_ptr(), buffer.len()) };
    assert!(bytes.iter().all(|&b| b == 0));
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = (i % 251) as u8;
    }
    // A second mapping of the same handle sees the pattern: one shared memory object.
    let again = buffer.handle().mmap(4096, 4096, false).unwrap();
    // SAFETY: 4096 bytes mapped read-only just above.
    let second = unsafe { std::slice::from_raw_parts(again.as_ptr(), again.len()) };
    assert!(second
        .iter()
        .enumerate()
        .all(|(i, &b)| b == ((i + 4096) % 251) as u8));
    drop(again);

    assert!(common::status().contains("buffers=1\nbytes=8192\n"));
    let errno = |e: std::io::Error| e.raw_os_error();
    assert_eq!(
        errno(
            DmaBuffer::alloc(1 << 20, BufferFlags::empty())
                .err()
                .unwrap()
        ),
        Some(EDQUOT)
    );
    assert_eq!(
        errno(
            DmaBuffer::alloc(8 << 20, BufferFlags::empty())
                .err()
                .unwrap()
        ),
        Some(EINVAL)
    );
    assert_eq!(
        errno(buffer.handle().mmap(0, 3 * 4096, true).err().unwrap()),
        Some(EINVAL)
    );

    drop(buffer);
    common::wait_for_status(|text| text.contains("buffers=0\nbytes=0\nquota_hits=1\n"))
        .unwrap_or_else(|text| panic!("closing did not free the buffer:\n{text}"));
}
