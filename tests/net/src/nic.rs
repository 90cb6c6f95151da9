//! A NIC served as a `network.<name>` scheme, as a network stack uses it: its
//! frames many to a request through the `batch` path (the e1000 crate's `batch`
//! module has the format), its link's state and changes from `link`, and its
//! address from `mac`.
//!
//! Two handles: frames are read through a non-blocking one that announces arrivals
//! with readiness events, and written through a blocking one, so a full transmit
//! ring holds the writer back instead of losing the frame. A read takes every
//! frame waiting, up to [`BATCH_FRAMES`], and hands them out one by one; frames to
//! send are gathered and go as one write when the relay has no more for now
//! ([`FrameSink::flush`]) or the batch is full.
//!
//! Events come once per rising edge, as with an edge-triggered epoll: a reader
//! reads until the frames run out, and only then waits for the next event. The
//! runtime re-asks `fevent` after every read and every round, so the round that
//! answered "none waiting" saw no frame, and a frame that arrives later is a
//! rising edge whose event reaches the descriptor after that answer. The frames
//! ran out when a read would block, or when a read came back with room for
//! another whole frame: the scheme fills a batch until its ring is empty, so
//! that read found it so, and reading again would only hear "would block"
//! (under replication, one more meeting of the replicas per burst). An event
//! taken after that read tells of frames that came since: it always leads to a
//! read.
//!
//! When the driver serving the scheme dies, both handles fail with `ESTALE`
//! (the request at hand when a replicated driver's group restarts fails once
//! with `EIO`); [`Nic::reopen`] opens them again once the driver's successor
//! serves (frames in flight then are lost, and TCP sends them again).

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::Duration;

use e1000::batch::{self, CutShort};
use scheme_runtime::Handle;
use syscall::flag::{EventFlags, O_NONBLOCK, O_RDONLY, O_RDWR};

use crate::relay::{FrameSink, FrameSource};

/// Bytes of an Ethernet address.
pub const MAC_LEN: usize = 6;
/// The longest frame the scheme takes or gives (header and MTU 1500).
const FRAME_MAX: usize = 1514;
/// The shortest: an Ethernet header.
const FRAME_MIN: usize = 14;
/// Whole frames a batch holds at most, each way.
pub const BATCH_FRAMES: usize = 32;
const BATCH_BYTES: usize = BATCH_FRAMES * batch::record_len(FRAME_MAX);

#[derive(Debug)]
pub struct Nic {
    receive: Handle,
    send: Handle,
    /// The link's state, with an event when it changed.
    link: Handle,
    /// The last batch read, and where in it the next frame starts.
    received: Vec<u8>,
    received_at: usize,
    /// The last batch read emptied the scheme's ring: once it is handed out,
    /// the frames ran out until the next event.
    received_all: bool,
    /// Frames gathered to go as one write.
    to_send: Vec<u8>,
}

impl Nic {
    /// Opens scheme `scheme` (e.g. `network.e1000`) among the schemes served in `dir`.
    pub fn open(dir: &Path, scheme: &str) -> io::Result<Nic> {
        let path = batch_path(scheme);
        let open = |flags| {
            Handle::open_in(dir, &path, flags)
                .map_err(|e| io::Error::new(e.kind(), format!("opening {path}: {e}")))
        };
        let receive = open(O_RDWR | O_NONBLOCK)?;
        let send = open(O_RDWR)?;
        receive.fevent(EventFlags::EVENT_READ)?;
        let link_path = link_path(scheme);
        let link = Handle::open_in(dir, &link_path, O_RDONLY | O_NONBLOCK)
            .map_err(|e| io::Error::new(e.kind(), format!("opening {link_path}: {e}")))?;
        link.fevent(EventFlags::EVENT_READ)?;
        Ok(Nic {
            receive,
            send,
            link,
            received: Vec::with_capacity(BATCH_BYTES),
            received_at: 0,
            received_all: false,
            to_send: Vec::with_capacity(BATCH_BYTES),
        })
    }

    /// Opens both handles again on the scheme's new server, waiting up to `wait`
    /// for it to serve (then `ENODEV`), and registers for arrivals again.
    pub fn reopen(&mut self, wait: Duration) -> io::Result<()> {
        // Frames gathered for the dead driver are lost with those in flight;
        // the new one's are read afresh.
        self.to_send.clear();
        self.received_all = false;
        self.receive.reopen(wait)?;
        self.send.reopen(wait)?;
        self.link.reopen(wait)?;
        self.receive.fevent(EventFlags::EVENT_READ)?;
        self.link.fevent(EventFlags::EVENT_READ)?;
        Ok(())
    }

    /// The descriptor that becomes readable when the link may have changed.
    pub fn link_events(&self) -> BorrowedFd<'_> {
        self.link.as_fd()
    }

    /// Whether the link is up, as the NIC says now.
    pub fn link_up(&self) -> io::Result<bool> {
        let mut state = [0; 8];
        let n = self.link.read(&mut state)?;
        match &state[..n] {
            b"up\n" => Ok(true),
            b"down\n" => Ok(false),
            other => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the link's state reads {other:?}"),
            )),
        }
    }

    /// The link's state if an event said it changed since the last call.
    pub fn take_link_change(&self) -> io::Result<Option<bool>> {
        if !self.link.take_events()?.contains(EventFlags::EVENT_READ) {
            return Ok(None);
        }
        self.link_up().map(Some)
    }

    /// The descriptor that becomes readable when a frame-arrival event is posted.
    pub fn events(&self) -> BorrowedFd<'_> {
        self.receive.as_fd()
    }

    /// Consumes the posted events; true if one said a frame arrived. Such an
    /// event was posted after the last read, so the next frame is read even
    /// if that read had emptied the ring.
    pub fn take_arrivals(&mut self) -> io::Result<bool> {
        let arrived = self.receive.take_events()?.contains(EventFlags::EVENT_READ);
        if arrived {
            self.received_all = false;
        }
        Ok(arrived)
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

fn batch_path(scheme: &str) -> String {
    format!("{}/batch", frames_path(scheme))
}

fn link_path(scheme: &str) -> String {
    format!("{}/link", frames_path(scheme))
}

impl FrameSource for Nic {
    /// The next frame of the last batch read, or of a new one.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        if self.received_at == self.received.len() {
            if std::mem::take(&mut self.received_all) {
                return Ok(None);
            }
            self.received.resize(BATCH_BYTES, 0);
            let read = self.receive.read(&mut self.received);
            self.received_at = 0;
            match read {
                Ok(n) => {
                    self.received.truncate(n);
                    self.received_all = n + batch::record_len(FRAME_MAX) <= BATCH_BYTES;
                }
                Err(e) => {
                    self.received.clear();
                    return match e.kind() {
                        io::ErrorKind::WouldBlock => Ok(None),
                        _ => Err(e),
                    };
                }
            }
        }
        match batch::split_first(&self.received[self.received_at..]) {
            Some(Ok((frame, rest))) => {
                let len = frame.len().min(buf.len());
                buf[..len].copy_from_slice(&frame[..len]);
                self.received_at = self.received.len() - rest.len();
                Ok(Some(len))
            }
            Some(Err(CutShort)) => {
                self.received_at = self.received.len();
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the NIC's batch ends in a record cut short",
                ))
            }
            None => Ok(None),
        }
    }
}

impl FrameSink for Nic {
    /// Gathers `frame` for the next write; a frame the scheme would refuse for
    /// its size is `InvalidInput` at once, and the relay drops it.
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        if !(FRAME_MIN..=FRAME_MAX).contains(&frame.len()) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("a {}-byte frame", frame.len()),
            ));
        }
        if self.to_send.len() + batch::record_len(frame.len()) > BATCH_BYTES {
            self.flush()?;
        }
        batch::push(&mut self.to_send, frame);
        Ok(())
    }

    /// Writes the gathered frames; the scheme takes whole records, as many as
    /// its transmit ring has room for, and the blocking handle waits for room.
    fn flush(&mut self) -> io::Result<()> {
        while !self.to_send.is_empty() {
            match self.send.write(&self.to_send) {
                Ok(taken) => {
                    self.to_send.drain(..taken);
                }
                Err(e) => {
                    // Nothing was sent; the frames are lost with the driver.
                    self.to_send.clear();
                    return Err(e);
                }
            }
        }
        Ok(())
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
