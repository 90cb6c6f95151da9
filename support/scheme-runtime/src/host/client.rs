//! Opening and using a scheme handle on the Linux host.

use std::cell::{Cell, RefCell};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::mman::{mmap, MapFlags, ProtFlags};
use nix::sys::uio::pread;
use syscall::error::{Error, EINVAL, EMSGSIZE, ENODEV, EPROTO, ESTALE};
use syscall::flag::{EventFlags, O_NONBLOCK};
use syscall::schemev2::NewFdFlags;
use syscall::Stat;

use super::socket::{connect_to, recv, send, Received};
use crate::replicated::held;
use crate::wire::{
    encode_request_head, Opcode, RequestHeader, ResponseHeader, ResponseKind, MAX_METADATA,
    MAX_PAYLOAD, REQUEST_HEADER_LEN, RESPONSE_HEADER_LEN,
};
use crate::{io_error, scheme_dir, Mapping, SchemePath};

fn redox_error(errno: i32) -> io::Error {
    io_error(Error::new(errno))
}

/// The error of a handle whose server closed the connection: the process that
/// opened it is gone (crashed, killed, restarted), and no successor knows the
/// handle. `ESTALE`, as the replication engine answers a handle from before a
/// restart: the client did hold it and should open the path again
/// ([`Handle::reopen`]).
fn server_gone() -> io::Error {
    redox_error(ESTALE)
}

/// Set once a connection answered the one-syscall exchange with `ESPIPE`: it is a
/// real socket, as every connection of this process then is.
///
/// A replication engine traces each system call a replicated driver makes on a
/// connection, so a request and its reply cost it two stops with `sendmsg` and
/// `recvmsg`. Its connections take `pread(connection, buffer, len, request_len)`
/// instead: the first `request_len` bytes of `buffer` go out as the request and
/// the next message comes back in `buffer`, one stop. A real socket has no
/// position to read at and fails that `pread` at once.
static EXCHANGE_REFUSED: AtomicBool = AtomicBool::new(false);

/// Where a request's payload is: its own bytes, or the buffer the reply goes to
/// (a call's payload comes back as the scheme left it).
#[derive(Clone, Copy)]
enum Payload<'a> {
    Bytes(&'a [u8]),
    InReplyBuffer,
}

impl<'a> Payload<'a> {
    fn bytes<'b>(self, reply_buffer: &'b [u8]) -> &'b [u8]
    where
        'a: 'b,
    {
        match self {
            Payload::Bytes(bytes) => bytes,
            Payload::InReplyBuffer => reply_buffer,
        }
    }
}

/// An open handle of a scheme: one connection to the scheme's socket.
///
/// Requests are sequential, like system calls on one file descriptor. Readiness
/// events the scheme posts arrive on the same connection; they are collected
/// while waiting for a reply and returned by [`Handle::take_events`].
#[derive(Debug)]
pub struct Handle {
    socket: OwnedFd,
    fcntl_flags: Cell<u32>,
    /// Kept by the client, as the kernel keeps it on Redox, when the scheme asked
    /// for positioned I/O.
    position: Option<Cell<u64>>,
    pending_events: Cell<usize>,
    /// Where [exchanges](Self::exchange) lay out the request and take the reply;
    /// kept from one request to the next.
    exchange_space: RefCell<Vec<u8>>,
    /// What [`Handle::reopen`] opens again.
    opened_as: OpenedAs,
}

/// The scheme directory, path and flags a handle was opened with.
#[derive(Debug, Clone)]
struct OpenedAs {
    dir: PathBuf,
    path: String,
    flags: usize,
}

impl Handle {
    /// Opens `name:path` or `/scheme/name/path` with Redox open flags
    /// (`syscall::flag::O_RDWR`, `O_NONBLOCK`, ...), in [`scheme_dir`].
    pub fn open(path: &str, flags: usize) -> io::Result<Self> {
        Self::open_in(&scheme_dir(), path, flags)
    }

    /// Opens a path among the schemes served in `dir` (a private scheme namespace,
    /// as tests and the demo use).
    pub fn open_in(dir: &Path, path: &str, flags: usize) -> io::Result<Self> {
        let scheme_path = SchemePath::parse(path)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("{path:?}: {e}")))?;
        if scheme_path.path.len() > MAX_PAYLOAD {
            return Err(redox_error(syscall::error::ENAMETOOLONG));
        }
        let socket_path = dir.join(scheme_path.scheme);
        let socket = connect_to(&socket_path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                log::debug!(
                    "no scheme {} at {}: {e}",
                    scheme_path.scheme,
                    socket_path.display()
                );
                redox_error(ENODEV)
            }
            _ => e,
        })?;
        let mut handle = Self {
            socket,
            fcntl_flags: Cell::new((flags & syscall::flag::O_FCNTL_MASK) as u32),
            position: None,
            pending_events: Cell::new(0),
            exchange_space: RefCell::new(Vec::new()),
            opened_as: OpenedAs {
                dir: dir.to_owned(),
                path: path.to_owned(),
                flags,
            },
        };
        let header = RequestHeader {
            opcode: Opcode::Open,
            flags: flags as u64,
            offset: 0,
            len: 0,
        };
        let path = Payload::Bytes(scheme_path.path.as_bytes());
        let (reply, _) =
            handle
                .round_trip(header, &[], path, &mut [])
                .map_err(|e| match e.raw_os_error() {
                    // There was no handle yet to be stale: the scheme went away
                    // before it answered, as if it had not been there.
                    Some(ESTALE) => redox_error(ENODEV),
                    _ => e,
                })?;
        if NewFdFlags::from_bits_truncate(reply.extra).contains(NewFdFlags::POSITIONED) {
            handle.position = Some(Cell::new(0));
        }
        Ok(handle)
    }

    /// Opens this handle's path again, with the same flags, in place of this
    /// handle: what a client does when an operation failed with `ESTALE`, its
    /// scheme's server having been restarted. Until `wait` has passed, a scheme
    /// that is not served yet (`ENODEV`: the successor has not bound its
    /// socket) is tried again, a few milliseconds apart; any other refusal is
    /// returned at once. Registrations
    /// made with [`Handle::fevent`] and the position are not carried over: they
    /// belonged to the old server.
    pub fn reopen(&mut self, wait: Duration) -> io::Result<()> {
        let OpenedAs { dir, path, flags } = self.opened_as.clone();
        *self = crate::reopen::open_when_served(wait, || Self::open_in(&dir, &path, flags))?;
        Ok(())
    }

    /// Reads at the handle's position (or offset 0 for a stream handle).
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.read_at(buf, self.position())?;
        self.advance(n);
        Ok(n)
    }

    pub fn write(&self, buf: &[u8]) -> io::Result<usize> {
        let n = self.write_at(buf, self.position())?;
        self.advance(n);
        Ok(n)
    }

    /// Reads at `offset` (pread); at most [`MAX_PAYLOAD`] bytes per request.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let len = buf.len().min(MAX_PAYLOAD);
        let header = self.io_header(Opcode::Read, offset, len);
        let (reply, _) = self.round_trip(header, &[], Payload::Bytes(&[]), &mut buf[..len])?;
        Ok(reply.status as usize)
    }

    /// Writes at `offset` (pwrite). A buffer over [`MAX_PAYLOAD`] is refused whole
    /// (EMSGSIZE): a write may be one frame that must not be split.
    pub fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        let header = self.io_header(Opcode::Write, offset, buf.len());
        let (reply, _) = self.round_trip(header, &[], Payload::Bytes(buf), &mut [])?;
        Ok(reply.status as usize)
    }

    /// A scheme-specific call: `payload` goes in and comes back as the scheme left it.
    pub fn call(&self, payload: &mut [u8], metadata: &[u64]) -> io::Result<usize> {
        if metadata.len() > MAX_METADATA {
            return Err(redox_error(EINVAL));
        }
        let (reply, _) =
            self.round_trip(call_header(), metadata, Payload::InReplyBuffer, payload)?;
        Ok(reply.status as usize)
    }

    /// A call whose answer the caller does not wait for: in a replica under a
    /// supervisor that intercepts, it is held and goes out with the replica's
    /// next reply, voted with it ([`crate::replicated::held`]), and this returns
    /// `None`; anywhere else it is made at once, as [`Handle::call`], and this
    /// returns its result.
    pub fn call_held(&self, payload: &mut [u8], metadata: &[u64]) -> io::Result<Option<usize>> {
        if held::holding() {
            let mut space = self.exchange_space.borrow_mut();
            let (fd, request_len) = self.lay_out_call(&mut space, payload, metadata)?;
            if held::hold(fd, &space[..request_len]) {
                return Ok(None);
            }
        }
        self.call(payload, metadata).map(Some)
    }

    /// A call of `payload` laid out as this handle's connection carries it,
    /// for a supervisor to make for this process (a replica's cause read,
    /// `RelayedLine::set_cause_read`): the connection's descriptor and the
    /// request.
    pub fn call_request(&self, payload: &[u8], metadata: &[u64]) -> io::Result<(u32, Vec<u8>)> {
        let mut space = Vec::new();
        let (fd, len) = self.lay_out_call(&mut space, payload, metadata)?;
        space.truncate(len);
        Ok((fd, space))
    }

    /// Lays a call out in `space` as the connection carries it: the
    /// connection's descriptor and the request's length.
    fn lay_out_call(
        &self,
        space: &mut Vec<u8>,
        payload: &[u8],
        metadata: &[u64],
    ) -> io::Result<(u32, usize)> {
        if metadata.len() > MAX_METADATA {
            return Err(redox_error(EINVAL));
        }
        let len = lay_out_request(space, call_header(), metadata, payload, 0)?;
        let fd = u32::try_from(self.socket.as_raw_fd()).map_err(|_| redox_error(EINVAL))?;
        Ok((fd, len))
    }

    pub fn fstat(&self) -> io::Result<Stat> {
        let mut stat = Stat::default();
        let header = RequestHeader {
            opcode: Opcode::Fstat,
            flags: 0,
            offset: 0,
            len: 0,
        };
        self.round_trip(header, &[], Payload::Bytes(&[]), &mut stat)?;
        Ok(stat)
    }

    pub fn fpath(&self) -> io::Result<String> {
        let mut buf = vec![0u8; 4096];
        let header = RequestHeader {
            opcode: Opcode::Fpath,
            flags: 0,
            offset: 0,
            len: buf.len() as u64,
        };
        let (reply, received) = self.round_trip(header, &[], Payload::Bytes(&[]), &mut buf)?;
        buf.truncate((reply.status as usize).min(received));
        String::from_utf8(buf).map_err(|_| redox_error(EPROTO))
    }

    /// Registers interest in `flags`; returns those ready now. Later edges arrive
    /// as events: wait for this handle's descriptor to be readable, then call
    /// [`Handle::take_events`].
    pub fn fevent(&self, flags: EventFlags) -> io::Result<EventFlags> {
        let header = RequestHeader {
            opcode: Opcode::Fevent,
            flags: flags.bits() as u64,
            offset: 0,
            len: 0,
        };
        let (reply, _) = self.round_trip(header, &[], Payload::Bytes(&[]), &mut [])?;
        Ok(EventFlags::from_bits_truncate(reply.status as usize))
    }

    /// The descriptor that polls readable when an event arrives, once
    /// [`Handle::fevent`] registered interest: the handle's connection.
    pub fn events_fd(&self) -> Option<RawFd> {
        Some(self.socket.as_raw_fd())
    }

    /// The events that arrived since the last call, without blocking.
    pub fn take_events(&self) -> io::Result<EventFlags> {
        loop {
            let mut head = [0u8; RESPONSE_HEADER_LEN];
            match recv(
                self.socket.as_raw_fd(),
                &mut [IoSliceMut::new(&mut head)],
                true,
            ) {
                Ok(Received { len, .. }) if len == RESPONSE_HEADER_LEN => {
                    match ResponseHeader::decode(&head) {
                        Some(header) if header.kind == ResponseKind::Event => {
                            self.note_event(header.status);
                        }
                        _ => return Err(redox_error(EPROTO)),
                    }
                }
                Ok(Received { len: 0, .. }) => return Err(server_gone()),
                Ok(_) => return Err(redox_error(EPROTO)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(EventFlags::from_bits_truncate(
            self.pending_events.replace(0),
        ))
    }

    /// Maps `len` bytes at `offset` of the handle's memory.
    pub fn mmap(&self, offset: u64, len: usize, writable: bool) -> io::Result<Mapping> {
        let length = std::num::NonZeroUsize::new(len).ok_or_else(|| redox_error(EINVAL))?;
        let header = RequestHeader {
            opcode: Opcode::Mmap,
            flags: 0,
            offset,
            len: len as u64,
        };
        self.send_request(header, &[], &[])?;
        let (reply, mut received) = self.receive(&mut [])?;
        // A map reply carries exactly one descriptor; any other count is a scheme
        // that does not play by the protocol (what came is closed on drop).
        let fd = match (received.take_fd(), received.fds.is_empty()) {
            (Some(fd), true) => fd,
            _ => return Err(redox_error(EPROTO)),
        };
        let mut prot = ProtFlags::PROT_READ;
        if writable {
            prot |= ProtFlags::PROT_WRITE;
        }
        let file_offset = reply.status;
        // SAFETY: a fresh shared mapping at an address the kernel chooses aliases no
        // Rust object; `Mapping` unmaps it exactly once.
        let ptr = unsafe { mmap(None, length, prot, MapFlags::MAP_SHARED, &fd, file_offset) }?;
        // SAFETY: exactly what mmap returned.
        Ok(unsafe { Mapping::new(ptr.cast(), len) })
    }

    /// Closes the handle and waits until the scheme has released it.
    pub fn close(self) -> io::Result<()> {
        let header = RequestHeader {
            opcode: Opcode::Close,
            flags: 0,
            offset: 0,
            len: 0,
        };
        self.round_trip(header, &[], Payload::Bytes(&[]), &mut [])
            .map(drop)
    }

    pub fn set_nonblocking(&self, nonblocking: bool) {
        let mut flags = self.fcntl_flags.get();
        if nonblocking {
            flags |= O_NONBLOCK as u32;
        } else {
            flags &= !(O_NONBLOCK as u32);
        }
        self.fcntl_flags.set(flags);
    }

    fn position(&self) -> u64 {
        self.position.as_ref().map_or(0, Cell::get)
    }

    fn advance(&self, n: usize) {
        if let Some(position) = &self.position {
            position.set(position.get() + n as u64);
        }
    }

    fn io_header(&self, opcode: Opcode, offset: u64, len: usize) -> RequestHeader {
        RequestHeader {
            opcode,
            flags: u64::from(self.fcntl_flags.get()),
            offset,
            len: len as u64,
        }
    }

    fn note_event(&self, flags: i64) {
        self.pending_events
            .set(self.pending_events.get() | flags as usize);
    }

    /// Sends a request and waits for its reply; the reply's data lands in `into`.
    fn round_trip(
        &self,
        header: RequestHeader,
        metadata: &[u64],
        payload: Payload<'_>,
        into: &mut [u8],
    ) -> io::Result<(ResponseHeader, usize)> {
        make_held_calls();
        if !EXCHANGE_REFUSED.load(Ordering::Relaxed) {
            let mut space = self.exchange_space.borrow_mut();
            let request_len = lay_out_request(
                &mut space,
                header,
                metadata,
                payload.bytes(into),
                into.len(),
            )?;
            if let Some(replied) = self.exchange(&mut space, request_len, into) {
                return replied;
            }
        }
        self.send_request(header, metadata, payload.bytes(into))?;
        self.receive_reply(into)
    }

    /// The request in `buffer[..request_len]` and its reply in one system call
    /// ([`EXCHANGE_REFUSED`]); `None` when the connection is a real socket, and
    /// nothing was sent.
    fn exchange(
        &self,
        buffer: &mut [u8],
        request_len: usize,
        into: &mut [u8],
    ) -> Option<io::Result<(ResponseHeader, usize)>> {
        let received = loop {
            match pread(&self.socket, buffer, request_len as i64) {
                Ok(received) => break received,
                Err(Errno::EINTR) => continue,
                Err(Errno::ESPIPE) => {
                    EXCHANGE_REFUSED.store(true, Ordering::Relaxed);
                    return None;
                }
                Err(Errno::EPIPE | Errno::ECONNRESET) => return Some(Err(server_gone())),
                // The reply did not fit, as a truncated `recvmsg`.
                Err(Errno::EMSGSIZE) => return Some(Err(redox_error(EPROTO))),
                Err(errno) => return Some(Err(errno.into())),
            }
        };
        Some(self.exchanged(buffer, received, into))
    }

    /// What an exchange took in: the first `received` bytes of `buffer` are the
    /// message that came back, the reply or an event posted before it.
    fn exchanged(
        &self,
        buffer: &[u8],
        received: usize,
        into: &mut [u8],
    ) -> io::Result<(ResponseHeader, usize)> {
        let head = buffer[..RESPONSE_HEADER_LEN]
            .try_into()
            .expect("room for a header");
        let header = response_header(head, received, false)?;
        match header.kind {
            // The reply is the next message.
            ResponseKind::Event => {
                self.note_event(header.status);
                self.receive_reply(into)
            }
            ResponseKind::Reply => {
                header.result().map_err(io_error)?;
                // The buffer may be larger than the reply's room (it held the
                // request): more data than that is a reply `recvmsg` would truncate.
                let data = &buffer[RESPONSE_HEADER_LEN..received];
                let into = into.get_mut(..data.len()).ok_or(redox_error(EPROTO))?;
                into.copy_from_slice(data);
                Ok((header, data.len()))
            }
        }
    }

    fn send_request(
        &self,
        header: RequestHeader,
        metadata: &[u64],
        payload: &[u8],
    ) -> io::Result<()> {
        let (head, head_len) = request_head(header, metadata, payload)?;
        let parts = [IoSlice::new(&head[..head_len]), IoSlice::new(payload)];
        send(self.socket.as_raw_fd(), &parts, None, false).map_err(|e| match e.raw_os_error() {
            Some(nix::libc::EPIPE | nix::libc::ECONNRESET) => {
                self.refusal().unwrap_or_else(server_gone)
            }
            _ => e,
        })
    }

    /// The error a server that closed the connection at once left behind (it
    /// refuses a connection over its limits with one reply), if it left one.
    fn refusal(&self) -> Option<io::Error> {
        let mut head = [0u8; RESPONSE_HEADER_LEN];
        let received = recv(
            self.socket.as_raw_fd(),
            &mut [IoSliceMut::new(&mut head)],
            true,
        )
        .ok()?;
        let header = ResponseHeader::decode(&head).filter(|_| received.len == head.len())?;
        match (header.kind, header.result()) {
            (ResponseKind::Reply, Err(error)) => Some(io_error(error)),
            _ => None,
        }
    }

    fn receive_reply(&self, into: &mut [u8]) -> io::Result<(ResponseHeader, usize)> {
        let (reply, received) = self.receive(into)?;
        Ok((reply, received.len - RESPONSE_HEADER_LEN))
    }

    /// Receives the reply to the request just sent, collecting events that come
    /// first; a scheme error becomes the `Err`.
    fn receive(&self, into: &mut [u8]) -> io::Result<(ResponseHeader, Received)> {
        loop {
            let mut head = [0u8; RESPONSE_HEADER_LEN];
            let received = recv(
                self.socket.as_raw_fd(),
                &mut [IoSliceMut::new(&mut head), IoSliceMut::new(into)],
                false,
            )
            .map_err(|e| match e.raw_os_error() {
                Some(nix::libc::ECONNRESET) => server_gone(),
                _ => e,
            })?;
            let header = response_header(&head, received.len, received.truncated)?;
            match header.kind {
                ResponseKind::Event => self.note_event(header.status),
                ResponseKind::Reply => {
                    header.result().map_err(io_error)?;
                    return Ok((header, received));
                }
            }
        }
    }
}

impl Drop for Handle {
    /// Calls held on this handle go out before its connection closes.
    fn drop(&mut self) {
        make_held_calls();
    }
}

fn call_header() -> RequestHeader {
    RequestHeader {
        opcode: Opcode::Call,
        flags: 0,
        offset: 0,
        len: 0,
    }
}

/// Makes the calls held so far, in order, before anything else goes out: a
/// request made now must reach its scheme after them. Their answers are lost,
/// as holding them promised; a failure is logged.
fn make_held_calls() {
    if !held::pending() {
        return;
    }
    let section = held::take_all();
    let mut space = Vec::new();
    for call in held::records(&section) {
        let call = match call {
            Ok(call) => call,
            Err(malformed) => {
                log::error!("held calls: {malformed}; the rest are dropped");
                return;
            }
        };
        space.clear();
        space.extend_from_slice(call.request);
        space.resize(call.request.len().max(RESPONSE_HEADER_LEN), 0);
        // SAFETY: the descriptor is a handle's connection, open while the
        // call was held; a handle closes only after making the held calls.
        let socket = unsafe { BorrowedFd::borrow_raw(call.fd as RawFd) };
        let answered = loop {
            match pread(socket, &mut space, call.request.len() as i64) {
                Err(Errno::EINTR) => continue,
                other => break other,
            }
        };
        let mut status = answered.ok().and_then(|received| {
            let head = space.get(..RESPONSE_HEADER_LEN.min(received))?;
            ResponseHeader::decode(head.try_into().ok()?)
        });
        // Events the scheme posted first are the handle's; the reply follows.
        while let Some(ResponseHeader {
            kind: ResponseKind::Event,
            ..
        }) = status
        {
            let mut head = [0u8; RESPONSE_HEADER_LEN];
            status = recv(
                call.fd as RawFd,
                &mut [IoSliceMut::new(&mut head), IoSliceMut::new(&mut space)],
                false,
            )
            .ok()
            .and_then(|_| ResponseHeader::decode(&head));
        }
        match status {
            Some(header) if header.status >= 0 => {}
            other => log::warn!("a held call on descriptor {} failed: {other:?}", call.fd),
        }
    }
}

/// Room for the longest request head: the header and all the metadata.
const REQUEST_HEAD_ROOM: usize = REQUEST_HEADER_LEN + MAX_METADATA * 8;

/// The head of a request carrying `payload`, and its length; a payload over
/// [`MAX_PAYLOAD`] is refused whole.
fn request_head(
    header: RequestHeader,
    metadata: &[u64],
    payload: &[u8],
) -> io::Result<([u8; REQUEST_HEAD_ROOM], usize)> {
    if payload.len() > MAX_PAYLOAD {
        return Err(redox_error(EMSGSIZE));
    }
    let mut head = [0u8; REQUEST_HEAD_ROOM];
    let head_len = encode_request_head(&header, metadata, payload.len(), &mut head);
    Ok((head, head_len))
}

/// Lays a request out in `space` for [`Handle::exchange`], with room after it for
/// a reply of `reply_capacity` bytes; returns the request's length.
fn lay_out_request(
    space: &mut Vec<u8>,
    header: RequestHeader,
    metadata: &[u64],
    payload: &[u8],
    reply_capacity: usize,
) -> io::Result<usize> {
    let (head, head_len) = request_head(header, metadata, payload)?;
    let request_len = head_len + payload.len();
    space.clear();
    space.resize(request_len.max(RESPONSE_HEADER_LEN + reply_capacity), 0);
    space[..head_len].copy_from_slice(&head[..head_len]);
    space[head_len..request_len].copy_from_slice(payload);
    Ok(request_len)
}

/// The header of a message of `len` bytes whose first bytes are `head`.
fn response_header(
    head: &[u8; RESPONSE_HEADER_LEN],
    len: usize,
    truncated: bool,
) -> io::Result<ResponseHeader> {
    if len == 0 {
        // The daemon went away mid-request.
        return Err(server_gone());
    }
    if len < RESPONSE_HEADER_LEN || truncated {
        return Err(redox_error(EPROTO));
    }
    ResponseHeader::decode(head).ok_or_else(|| redox_error(EPROTO))
}

impl AsFd for Handle {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl AsRawFd for Handle {
    fn as_raw_fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

    /// A handle on one end of a connection; the other end plays the scheme.
    fn handle_and_scheme() -> (Handle, OwnedFd) {
        let (client, scheme) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap();
        let handle = Handle {
            socket: client,
            fcntl_flags: Cell::new(0),
            position: None,
            pending_events: Cell::new(0),
            exchange_space: RefCell::new(Vec::new()),
            opened_as: OpenedAs {
                dir: PathBuf::new(),
                path: String::new(),
                flags: 0,
            },
        };
        (handle, scheme)
    }

    /// `header` and `data` laid out as an exchange leaves them, in room for `room`
    /// bytes of reply.
    fn exchange_buffer_holding(header: ResponseHeader, data: &[u8], room: usize) -> Vec<u8> {
        let mut buffer = header.encode().to_vec();
        buffer.extend(data);
        buffer.resize(RESPONSE_HEADER_LEN + room, 0);
        buffer
    }

    #[test]
    fn a_reply_exchanged_lands_in_the_callers_buffer() {
        let (handle, _scheme) = handle_and_scheme();
        let buffer = exchange_buffer_holding(ResponseHeader::reply(Ok(3)), b"abc", 8);
        let mut into = [0; 8];
        let (header, len) = handle
            .exchanged(&buffer, RESPONSE_HEADER_LEN + 3, &mut into)
            .unwrap();
        assert_eq!((header.status, len, &into[..3]), (3, 3, &b"abc"[..]));
        let too_much = handle
            .exchanged(&buffer, RESPONSE_HEADER_LEN + 3, &mut into[..2])
            .unwrap_err();
        assert_eq!(too_much.raw_os_error(), Some(EPROTO), "more than the room");
        let failed = exchange_buffer_holding(
            ResponseHeader::reply(Err(Error::new(syscall::error::EACCES))),
            b"",
            8,
        );
        let error = handle
            .exchanged(&failed, RESPONSE_HEADER_LEN, &mut into)
            .unwrap_err();
        assert_eq!(error.raw_os_error(), Some(syscall::error::EACCES));
    }

    #[test]
    fn an_event_before_the_reply_is_kept_and_the_reply_read_next() {
        let (handle, scheme) = handle_and_scheme();
        let reply = [&ResponseHeader::reply(Ok(2)).encode()[..], b"ok"].concat();
        send(scheme.as_raw_fd(), &[IoSlice::new(&reply)], None, false).unwrap();
        let event = ResponseHeader {
            kind: ResponseKind::Event,
            extra: 0,
            status: EventFlags::EVENT_READ.bits() as i64,
        };
        let buffer = exchange_buffer_holding(event, b"", 8);
        let mut into = [0; 8];
        let (header, len) = handle
            .exchanged(&buffer, RESPONSE_HEADER_LEN, &mut into)
            .unwrap();
        assert_eq!((header.status, &into[..len]), (2, &b"ok"[..]));
        assert_eq!(handle.take_events().unwrap(), EventFlags::EVENT_READ);
    }

    #[test]
    fn an_exchange_that_took_in_nothing_or_too_little_fails() {
        let (handle, _scheme) = handle_and_scheme();
        let buffer = vec![0; RESPONSE_HEADER_LEN];
        let errno = |received| {
            handle
                .exchanged(&buffer, received, &mut [])
                .unwrap_err()
                .raw_os_error()
        };
        assert_eq!(errno(0), Some(ESTALE), "the scheme went away");
        assert_eq!(errno(RESPONSE_HEADER_LEN - 1), Some(EPROTO));
    }

    #[test]
    fn a_real_socket_refuses_the_exchange_and_the_request_goes_out_as_usual() {
        let (handle, scheme) = handle_and_scheme();
        let server = std::thread::spawn(move || {
            let mut request = [0; 256];
            let received = recv(
                scheme.as_raw_fd(),
                &mut [IoSliceMut::new(&mut request)],
                false,
            )
            .unwrap();
            assert!(received.len > REQUEST_HEADER_LEN, "one request, sent whole");
            let reply = ResponseHeader::reply(Ok(5)).encode();
            send(scheme.as_raw_fd(), &[IoSlice::new(&reply)], None, false).unwrap();
        });
        assert_eq!(handle.write(b"hello").unwrap(), 5);
        server.join().unwrap();
        assert!(EXCHANGE_REFUSED.load(Ordering::Relaxed));
    }
}
