//! A client process forked from the test: it sets itself up (allocates its
//! buffers from the daemon), reports whether that worked, and holds what it
//! made until the test kills it, as a driver dies holding its buffers.

use std::fs::File;
use std::io::{Read, Write};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult, Pid};

/// The forked client, killed if the test fails before it kills it itself (the
/// child holds the test's output pipe, so a leftover one stalls `cargo test`).
pub struct ForkedClient(Option<Pid>);

impl ForkedClient {
    /// Forks a client that runs `setup`, which returns what the client holds
    /// and whether it went well, and returns once the client has reported;
    /// asserts, with `what` as the message, that it went well.
    pub fn start<T>(what: &str, setup: impl FnOnce() -> (T, bool)) -> Self {
        let (ready_read, ready_write) = pipe().unwrap();

        // SAFETY: the child only runs `setup`, reports and waits to be killed.
        let child = match unsafe { fork() }.unwrap() {
            ForkResult::Child => {
                drop(ready_read);
                // Held until the kill.
                let (_held, ok) = setup();
                let _ = File::from(ready_write).write_all(&[u8::from(ok)]);
                loop {
                    std::thread::park();
                }
            }
            ForkResult::Parent { child } => child,
        };
        let guard = Self(Some(child));
        drop(ready_write);
        let mut ready = [0];
        File::from(ready_read).read_exact(&mut ready).unwrap();
        assert_eq!(ready, [1], "{what}");
        guard
    }

    /// Kills the client with SIGKILL and reaps it, asserting that it died of that.
    pub fn kill(mut self) {
        let child = self.0.take().expect("a running client");
        kill(child, Signal::SIGKILL).unwrap();
        assert_eq!(
            waitpid(child, None).unwrap(),
            WaitStatus::Signaled(child, Signal::SIGKILL, false)
        );
    }
}

impl Drop for ForkedClient {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
    }
}
