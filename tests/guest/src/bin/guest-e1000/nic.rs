//! The test's end of `network.e1000`, as a network stack uses it: frames through the
//! handle, waiting either in a blocking read or for a readiness event.

use std::io;
use std::os::fd::AsFd;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use guest_harness::guest::report::StepResult;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use scheme_runtime::Handle;
use syscall::flag::{EventFlags, O_NONBLOCK, O_RDWR};

/// The frame handle and the address of the driver's scheme.
pub const FRAMES_PATH: &str = "/scheme/network.e1000";
pub const MAC_PATH: &str = "/scheme/network.e1000/mac";
pub const STATUS_PATH: &str = "/scheme/network.e1000/status";

/// The largest frame a read returns.
pub const MAX_FRAME_LEN: usize = e1000::scheme::MAX_FRAME_LEN;

/// How a reader waits for a frame.
#[derive(Clone, Copy, Debug)]
pub enum Wait {
    /// A blocking read, which the driver parks until a frame arrives.
    Blocking,
    /// Nonblocking reads, and between them poll(2) on the handle for the driver's
    /// readiness event.
    Event,
}

impl Wait {
    pub fn name(self) -> &'static str {
        match self {
            Wait::Blocking => "blocking read",
            Wait::Event => "event wait",
        }
    }
}

/// A frame handle.
pub fn open(wait: Wait) -> io::Result<Handle> {
    let flags = match wait {
        Wait::Blocking => O_RDWR,
        Wait::Event => O_RDWR | O_NONBLOCK,
    };
    Handle::open(FRAMES_PATH, flags)
}

/// Reads frames until one is `wanted` and returns it; `None` at `deadline`. A
/// blocking handle waits in the read itself (run it through [`spawn`] for a
/// deadline); a nonblocking one waits for `EVENT_READ`.
pub fn receive(
    nic: &Handle,
    wait: Wait,
    deadline: Instant,
    mut wanted: impl FnMut(&[u8]) -> bool,
) -> io::Result<Option<Vec<u8>>> {
    let mut buf = [0; MAX_FRAME_LEN];
    loop {
        match nic.read(&mut buf) {
            Ok(len) if wanted(&buf[..len]) => return Ok(Some(buf[..len].to_vec())),
            Ok(_) => continue,
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
            Err(err) => return Err(err),
        }
        match wait {
            Wait::Blocking => return Err(io::Error::other("a blocking read answered EWOULDBLOCK")),
            Wait::Event => {
                let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                    return Ok(None);
                };
                wait_readable(nic, left)?;
            }
        }
    }
}

/// Registers interest in `EVENT_READ` and waits up to `limit` for it.
fn wait_readable(nic: &Handle, limit: Duration) -> io::Result<()> {
    if nic
        .fevent(EventFlags::EVENT_READ)?
        .contains(EventFlags::EVENT_READ)
    {
        return Ok(());
    }
    let timeout = PollTimeout::try_from(limit).unwrap_or(PollTimeout::MAX);
    poll(&mut [PollFd::new(nic.as_fd(), PollFlags::POLLIN)], timeout)?;
    nic.take_events().map(drop)
}

/// Work running on its own thread, so that a blocking read that never returns fails
/// a step instead of hanging the run (the thread ends when the driver stops and its
/// read fails).
pub struct Pending<T>(mpsc::Receiver<Result<T, String>>);

/// Starts `work` on its own thread.
pub fn spawn<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Pending<T> {
    let (done, outcome) = mpsc::channel();
    thread::spawn(move || {
        let _ = done.send(work());
    });
    Pending(outcome)
}

impl<T> Pending<T> {
    /// What the work returned, or a failure after `limit`.
    pub fn wait(self, limit: Duration) -> StepResult<T> {
        match self.0.recv_timeout(limit) {
            Ok(result) => Ok(result?),
            Err(_) => Err(format!("no answer within {limit:?}").into()),
        }
    }
}
