//! A client killed while holding buffers gets them freed.
#![cfg(target_os = "linux")]

mod common;
#[path = "common/forked_client.rs"]
mod forked_client;

use dma_scheme::{BufferFlags, DmaBuffer};
use forked_client::ForkedClient;
use nix::unistd::getuid;

#[test]
fn a_killed_clients_buffers_are_freed() {
    let _daemon = common::DmaDaemon::start("1M");
    let client = ForkedClient::start("the child allocated its buffers", || {
        let buffers = [4096, 8192].map(|size| DmaBuffer::alloc(size, BufferFlags::SHARED));
        let ok = buffers.iter().all(Result::is_ok);
        (buffers, ok)
    });

    // Charged to the child's uid, which is the test's own.
    let line = format!("client uid={} buffers=2 bytes=12288 ", getuid());
    assert!(common::status().contains(&line), "{}", common::status());

    client.kill();
    common::wait_for_status(|text| {
        text.contains("buffers=0\nbytes=0\n") && !text.contains("client")
    })
    .unwrap_or_else(|text| panic!("the dead client's buffers were not freed:\n{text}"));
}
