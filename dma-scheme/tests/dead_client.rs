//! A client killed while holding buffers gets them freed.
#![cfg(target_os = "linux")]

mod common;

use std::fs::File;
use std::io::{Read, Write};

use dma_scheme::{BufferFlags, DmaBuffer};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, getuid, pipe, ForkResult, Pid};

/// The forked client, killed if the test fails before it kills it itself (the
/// child holds the test's output pipe, so a leftover one stalls `cargo test`).
struct Child(Option<Pid>);

impl Drop for Child {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}

#[test]
fn a_killed_clients_buffers_are_freed() {
    let _daemon = common::DmaDaemon::start("1M");
    let (ready_read, ready_write) = pipe().unwrap();

    // SAFETY: the child only allocates, reports and sleeps until it is killed.
    let child = match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            drop(ready_read);
            let buffers = [4096, 8192].map(|size| DmaBuffer::alloc(size, BufferFlags::SHARED));
            let ok = buffers.iter().all(Result::is_ok);
            let _ = File::from(ready_write).write_all(&[u8::from(ok)]);
            loop {
                std::thread::park();
            }
        }
        ForkResult::Parent { child } => child,
    };
    let mut guard = Child(Some(child));
    drop(ready_write);
    let mut ready = [0];
    File::from(ready_read).read_exact(&mut ready).unwrap();
    assert_eq!(ready, [1], "the child allocated its buffers");

    // Charged to the child's uid, which is the test's own.
    let line = format!("client uid={} buffers=2 bytes=12288 ", getuid());
    assert!(common::status().contains(&line), "{}", common::status());

    guard.0 = None;
    kill(child, Signal::SIGKILL).unwrap();
    assert_eq!(
        waitpid(child, None).unwrap(),
        WaitStatus::Signaled(child, Signal::SIGKILL, false)
    );
    common::wait_for_status(|text| {
        text.contains("buffers=0\nbytes=0\n") && !text.contains("client")
    })
    .unwrap_or_else(|text| panic!("the dead client's buffers were not freed:\n{text}"));
}
