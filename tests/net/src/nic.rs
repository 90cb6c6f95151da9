//! A NIC served as a `network.<name>` scheme (read: one received frame, write: one
//! frame to send, `mac`: the address), as a network stack uses it.
//!
//! Two handles: frames are read through a non-blocking one that announces arrivals
//! with readiness events, and written through a blocking one, so a full transmit
//! ring holds the writer back instead of losing the frame.
//!
//! Events come once per rising edge, as with an edge-triggered epoll: a reader
//! reads until a read would block, and only then waits for the next event. The
//! runtime re-asks `fevent` after every round, so the round that answered "would
//! block" saw no frame, and a frame that arrives later is a rising edge whose event
//! reaches the descriptor after that answer.
//!
//! When the driver serving the scheme dies, both handles fail with `ESTALE`
//! (the request at hand when a replicated driver's group restarts fails once
//! with `EIO`); [`Nic::reopen`] opens them again once the driver's successor
//! serves (frames in flight then are lost, and TCP sends them again).

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::Duration;

use scheme_runtime::Handle;
use syscall::flag::{EventFlags, O_NONBLOCK, O_RDONLY, O_RDWR};

use crate::relay::{FrameSink, FrameSource};

/// Bytes of an Ethernet address.
pub const MAC_LEN: usize = 6;

#[derive(Debug)]
pub struct Nic {
    receive: Handle,
    send: Handle,
}

impl Nic {
    /// Opens scheme `scheme` (e.g. `network.e1000`) among the schemes served in `dir`.
    pub fn open(dir: &Path, scheme: &str) -> io::Result<Nic> {
        let path = frames_path(scheme);
        let open = |flags| {
            Handle::open_in(dir, &path, flags)
                .map_err(|e| io::Error::new(e.kind(), format!("opening {path}: {e}")))
        };
        let receive = open(O_RDWR | O_NONBLOCK)?;
        let send = open(O_RDWR)?;
        receive.fevent(EventFlags::EVENT_READ)?;
        Ok(Nic { receive, send })
    }

    /// Opens both handles again on the scheme's new server, waiting up to `wait`
    /// for it to serve (then `ENODEV`), and registers for arrivals again.
    pub fn reopen(&mut self, wait: Duration) -> io::Result<()> {
        self.receive.reopen(wait)?;
        self.send.reopen(wait)?;
        self.receive.fevent(EventFlags::EVENT_READ)?;
        Ok(())
    }

    /// The descriptor that becomes readable when a frame-arrival event is posted.
    pub fn events(&self) -> BorrowedFd<'_> {
        self.receive.as_fd()
    }

    /// Consumes the posted events; true if one said a frame arrived.
    pub fn take_arrivals(&self) -> io::Result<bool> {
        Ok(self.receive.take_events()?.contains(EventFlags::EVENT_READ))
    }
}

/// Whether `error` says the scheme's server is gone: its handles must be opened
/// again ([`Nic::reopen`]).
pub fn server_gone(error: &io::Error) -> bool {
    error.raw_os_error() == Some(syscall::error::ESTALE)
}

/// Whether `error` is the one failure of a request that was at hand when a
/// replicated driver's group was started afresh (`EIO`): the handles from
/// before are stale from then on, so they are opened again as after
/// [`server_gone`]. A driver that fails every request with `EIO` fails them
/// after the reopen too, which the bridge notices.
pub fn request_failed(error: &io::Error) -> bool {
    error.raw_os_error() == Some(syscall::error::EIO)
}

/// The NIC's address, read from `<scheme>/mac`.
pub fn read_mac(dir: &Path, scheme: &str) -> io::Result<[u8; MAC_LEN]> {
    let path = format!("{}/mac", frames_path(scheme));
    let handle = Handle::open_in(dir, &path, O_RDONLY)
        .map_err(|e| io::Error::new(e.kind(), format!("opening {path}: {e}")))?;
    let mut mac = [0; MAC_LEN];
    match handle.read(&mut mac)? {
        MAC_LEN => Ok(mac),
        n => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path} gave {n} bytes, not an address"),
        )),
    }
}

/// The address written as six colon-separated hex bytes, as `ip` takes it.
pub fn format_mac(mac: [u8; MAC_LEN]) -> String {
    mac.map(|byte| format!("{byte:02x}")).join(":")
}

fn frames_path(scheme: &str) -> String {
    format!("/scheme/{scheme}")
}

impl FrameSource for Nic {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.receive.read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl FrameSink for Nic {
    /// The scheme refuses a frame of the wrong size with EINVAL, which is
    /// `InvalidInput`: the relay drops it.
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        self.send.write(frame).map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_ip_takes_them() {
        assert_eq!(
            format_mac([0x52, 0x54, 0x00, 0x12, 0x34, 0xab]),
            "52:54:00:12:34:ab"
        );
    }
}
