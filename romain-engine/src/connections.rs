//! The replicas' own scheme connections, held by the engine.
//!
//! A driver that is a client of other schemes (`mmio:`, `dma:`) opens them with
//! `scheme_runtime::Handle`, which on Linux is a `SOCK_SEQPACKET` connection per
//! handle. A replica's `socket` gives it a virtual descriptor that exists only here;
//! its `connect`, `sendmsg`, `recvmsg` and `close` on that descriptor are performed
//! once on the engine's real socket, with the message bytes voted like any event,
//! and every replica receives the same reply. So the connections outlive any one
//! replica, and a faulty replica's request never leaves. A descriptor a scheme
//! passes (its memory, to map) stays with the engine ([`super::shared_memory`]);
//! the replicas receive a virtual number for it.
//!
//! The engine connects with its own identity, so it also decides where the
//! replicas may connect: given the schemes the driver's policy rule lists
//! ([`SchemeAllowList`], `romain replicate --schemes`), a `connect` to any other
//! socket (a scheme not listed, or a socket outside the scheme directory) fails
//! with `EACCES` without reaching it. The replicas voted on the address, so
//! every replica gets that same result. Without a list, every connect is made.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::fmt;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use driver_policy::Clipped;

use nix::errno::Errno;
use nix::sys::socket::{
    connect, sendmsg, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr,
};

use scheme_runtime::wire::{ResponseHeader, ResponseKind, RESPONSE_HEADER_LEN};

use super::direct_registers::DirectRegisters;
use super::shared_memory::SharedMemory;
use crate::backend::ReplicaMemory;

/// The first virtual descriptor number: far above what a driver opens itself, so
/// a replica's own files never take one.
pub const FIRST_CONNECTION_FD: u64 = 512;
/// How many connections the replicas may hold at once.
pub const MAX_CONNECTIONS: u64 = 1024;

/// `struct msghdr` on x86-64: name, namelen (+pad), iov, iovlen, control,
/// controllen, flags (+pad).
const MSGHDR_LEN: usize = 56;
const MSGHDR_IOV: usize = 16;
const MSGHDR_CONTROL: usize = 32;
const MSGHDR_IOVLEN: usize = 24;
const MSGHDR_CONTROLLEN: usize = 40;
const MSGHDR_FLAGS: usize = 48;
const IOVEC_LEN: usize = 16;
/// Most iovecs and bytes one message may have: a scheme message is at most one
/// header, metadata and a 64 KiB payload.
const MAX_IOVECS: u64 = 16;
const MAX_MESSAGE: u64 = 1 << 20;
/// Refused addresses remembered so that each is logged once; past this many,
/// refusals are logged at debug level only (a driver retrying in a loop).
const MAX_REFUSALS_LOGGED: usize = 32;

/// Whether `fd` is one of the virtual descriptors.
pub fn is_connection(fd: u64) -> bool {
    (FIRST_CONNECTION_FD..FIRST_CONNECTION_FD + MAX_CONNECTIONS).contains(&fd)
}

/// A replica's `msghdr`, as far as the engine uses it.
pub struct MessageHeader {
    /// Where each iovec's bytes are, in order.
    pub iovecs: Vec<(u64, u64)>,
    pub control: u64,
    pub controllen: u64,
}

impl MessageHeader {
    /// Reads the `msghdr` at `address` and its iovecs from a stopped replica; `None`
    /// when the memory is unreadable or the message is larger than any scheme's.
    pub fn read(memory: &dyn ReplicaMemory, address: u64) -> Option<Self> {
        let header = memory.read_memory(address, MSGHDR_LEN).ok()?;
        let word = |at: usize| u64::from_ne_bytes(header[at..at + 8].try_into().expect("8"));
        let (iov, iovlen) = (word(MSGHDR_IOV), word(MSGHDR_IOVLEN));
        if iovlen > MAX_IOVECS {
            return None;
        }
        let table = memory.read_memory(iov, iovlen as usize * IOVEC_LEN).ok()?;
        let iovecs: Vec<(u64, u64)> = table
            .chunks_exact(IOVEC_LEN)
            .map(|entry| {
                let base = u64::from_ne_bytes(entry[..8].try_into().expect("8"));
                let len = u64::from_ne_bytes(entry[8..].try_into().expect("8"));
                (base, len)
            })
            .collect();
        let total: u64 = iovecs.iter().map(|&(_, len)| len).sum();
        (total <= MAX_MESSAGE).then_some(MessageHeader {
            iovecs,
            control: word(MSGHDR_CONTROL),
            controllen: word(MSGHDR_CONTROLLEN),
        })
    }

    /// The bytes a `sendmsg` hands out, gathered from the iovecs.
    pub fn gather(&self, memory: &dyn ReplicaMemory) -> Option<Vec<u8>> {
        let mut data = Vec::new();
        for &(base, len) in &self.iovecs {
            data.extend(memory.read_memory(base, len as usize).ok()?);
        }
        Some(data)
    }
}

/// The schemes the replicas may connect to: the socket files of these names in
/// the scheme directory (on Linux a scheme is the socket `<dir>/<name>`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemeAllowList {
    dir: PathBuf,
    schemes: Vec<String>,
}

/// Why a replica's `connect` was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectRefusal {
    /// The socket is not a file directly in the scheme directory (or the
    /// address is no path at all: an abstract socket).
    NotASchemeSocket { path: PathBuf },
    /// A scheme the driver's rule does not list.
    NotListed { scheme: String },
}

impl SchemeAllowList {
    /// The schemes `schemes`, whose sockets are in `dir`.
    pub fn new(dir: PathBuf, schemes: Vec<String>) -> Self {
        Self { dir, schemes }
    }

    /// May the replicas connect to the socket at `path`, as their `sockaddr_un`
    /// names it? The comparison is of path components, as written: `.` and
    /// repeated slashes are no difference, `..` is (it may lead anywhere), and
    /// so is a link elsewhere (the replicas cannot make one: the engine refuses
    /// them every call that writes a file system).
    pub fn check(&self, path: &Path) -> Result<(), ConnectRefusal> {
        let scheme = match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) if parent.components().eq(self.dir.components()) => name,
            _ => {
                return Err(ConnectRefusal::NotASchemeSocket {
                    path: path.to_owned(),
                })
            }
        };
        if self
            .schemes
            .iter()
            .any(|allowed| OsStr::new(allowed) == scheme)
        {
            Ok(())
        } else {
            Err(ConnectRefusal::NotListed {
                scheme: scheme.to_string_lossy().into_owned(),
            })
        }
    }
}

/// The scheme names of a comma-separated list (`mmio,dma`; empty: none), as
/// `romain replicate --schemes` takes them; what is wrong with the first name
/// that is not a scheme name.
pub fn scheme_names(list: &str) -> Result<Vec<String>, String> {
    if list.is_empty() {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(|name| {
            let plain = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if plain {
                Ok(name.to_owned())
            } else {
                Err(format!(
                    "{:?} is not a scheme name",
                    Clipped::new(name).to_string()
                ))
            }
        })
        .collect()
}

impl fmt::Display for SchemeAllowList {
    /// `[mmio, dma] in /run/schemes`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] in {}", self.schemes.join(", "), self.dir.display())
    }
}

impl fmt::Display for ConnectRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotASchemeSocket { path } => write!(
                f,
                "{} is not a scheme socket",
                Clipped::new(&path.to_string_lossy())
            ),
            Self::NotListed { scheme } => write!(
                f,
                "scheme {} is not in the driver's policy rule",
                Clipped::new(scheme)
            ),
        }
    }
}

/// The engine's real sockets, by the virtual descriptor the replicas know them by.
#[derive(Default)]
pub struct Connections {
    sockets: BTreeMap<u64, OwnedFd>,
    /// The scheme socket each connected one reached.
    peers: BTreeMap<u64, PathBuf>,
    /// BARs the replicas opened that the engine reaches itself.
    registers: DirectRegisters,
    /// Whether a refused register mapping was logged (once; a driver may
    /// retry in a loop).
    register_map_refused: bool,
    /// Where the replicas may connect; `None`: anywhere the engine may.
    allowed: Option<SchemeAllowList>,
    /// Addresses whose refusal was logged.
    refusals_logged: BTreeSet<PathBuf>,
}

impl Connections {
    /// From now on, connect only to the schemes of `allowed`.
    pub fn restrict_to(&mut self, allowed: SchemeAllowList) {
        self.allowed = Some(allowed);
    }

    /// A new `SOCK_SEQPACKET` socket; the virtual descriptor, or a negated errno.
    pub fn open(&mut self) -> i64 {
        let Some(fd) = (FIRST_CONNECTION_FD..FIRST_CONNECTION_FD + MAX_CONNECTIONS)
            .find(|fd| !self.sockets.contains_key(fd))
        else {
            return -i64::from(Errno::EMFILE as i32);
        };
        match socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        ) {
            Ok(socket) => {
                self.sockets.insert(fd, socket);
                fd as i64
            }
            Err(errno) => -(errno as i64),
        }
    }

    /// Connects to the `sockaddr_un` in `address` (as the replica wrote it), if
    /// the allow list, when there is one, has its scheme.
    pub fn connect(&mut self, fd: u64, address: &[u8]) -> i64 {
        let Some(socket) = self.sockets.get(&fd) else {
            return -(Errno::EBADF as i64);
        };
        // sun_family, then the path up to its NUL.
        let path = address.get(2..).unwrap_or_default();
        let path = Path::new(OsStr::from_bytes(
            &path[..path.iter().position(|&b| b == 0).unwrap_or(path.len())],
        ));
        if let Some(allowed) = &self.allowed {
            if let Err(refusal) = allowed.check(path) {
                // Once per address: a driver may retry in a loop.
                let first = self.refusals_logged.len() < MAX_REFUSALS_LOGGED
                    && self.refusals_logged.insert(path.to_owned());
                let level = if first {
                    log::Level::Warn
                } else {
                    log::Level::Debug
                };
                log::log!(
                    level,
                    "replicas may not connect to {}: {refusal} (allowed: {allowed})",
                    Clipped::new(&path.to_string_lossy())
                );
                return -(Errno::EACCES as i64);
            }
        }
        let result = UnixAddr::new(path).and_then(|address| connect(socket.as_raw_fd(), &address));
        if result.is_ok() {
            self.peers.insert(fd, path.to_owned());
        }
        errno_or(result.map(|()| 0))
    }

    /// Sends `data` as one message.
    pub fn send(&mut self, fd: u64, data: &[u8], flags: u64) -> i64 {
        let Some(socket) = self.sockets.get(&fd) else {
            return -(Errno::EBADF as i64);
        };
        let mut send_flags = MsgFlags::MSG_NOSIGNAL;
        if flags & MsgFlags::MSG_DONTWAIT.bits() as u64 != 0 {
            send_flags |= MsgFlags::MSG_DONTWAIT;
        }
        let result = sendmsg::<()>(
            socket.as_raw_fd(),
            &[IoSlice::new(data)],
            &[],
            send_flags,
            None,
        );
        errno_or(result.map(|sent| sent as i64))
    }

    /// Receives one message for a replica whose `msghdr` is `header` at `address`:
    /// the result and the stores that give every replica the same bytes. A passed
    /// descriptor is kept in `shared`, and the replicas get its virtual number.
    pub fn receive(
        &mut self,
        fd: u64,
        header: &MessageHeader,
        address: u64,
        flags: u64,
        shared: &mut SharedMemory,
    ) -> (i64, Vec<(u64, Vec<u8>)>) {
        let Some(socket) = self.sockets.get(&fd) else {
            return (-(Errno::EBADF as i64), Vec::new());
        };
        let total: u64 = header.iovecs.iter().map(|&(_, len)| len).sum();
        let mut data = vec![0; total as usize];
        let mut receive_flags = MsgFlags::MSG_CMSG_CLOEXEC;
        if flags & MsgFlags::MSG_DONTWAIT.bits() as u64 != 0 {
            receive_flags |= MsgFlags::MSG_DONTWAIT;
        }
        let received = receive_message(socket, &mut data, receive_flags);
        let (len, mut message_flags, mut passed) = match received {
            Ok(received) => received,
            Err(errno) => return (-(errno as i64), Vec::new()),
        };
        if !passed.is_empty() && self.peer_is(fd, mmio_scheme::SCHEME_NAME) {
            // A mapping of registers is no memory to keep in step: copying
            // it would read and write the device's registers wholesale. The
            // engine makes the replicas' register accesses itself instead.
            let level = match std::mem::replace(&mut self.register_map_refused, true) {
                false => log::Level::Warn,
                true => log::Level::Debug,
            };
            log::log!(
                level,
                "the replicas asked {}: to map registers; refused: a replicated driver reaches them through requests",
                mmio_scheme::SCHEME_NAME
            );
            passed.clear();
            message_flags |= MsgFlags::MSG_CTRUNC;
        }
        let mut stores = Vec::new();
        let mut rest = &data[..len];
        for &(base, iov_len) in &header.iovecs {
            let take = rest.len().min(iov_len as usize);
            if take > 0 {
                stores.push((base, rest[..take].to_vec()));
            }
            rest = &rest[take..];
        }
        let virtual_fds: Vec<u64> = passed
            .into_iter()
            .filter_map(|fd| shared.adopt(fd))
            .collect();
        let mut controllen = 0;
        if !virtual_fds.is_empty() {
            let cmsg = rights_message(&virtual_fds);
            if cmsg.len() as u64 <= header.controllen {
                controllen = cmsg.len() as u64;
                stores.push((header.control, cmsg));
            } else {
                for fd in virtual_fds {
                    shared.close(fd);
                }
                message_flags |= MsgFlags::MSG_CTRUNC;
            }
        }
        stores.push((
            address + MSGHDR_CONTROLLEN as u64,
            controllen.to_ne_bytes().to_vec(),
        ));
        stores.push((
            address + MSGHDR_FLAGS as u64,
            message_flags.bits().to_ne_bytes().to_vec(),
        ));
        (len as i64, stores)
    }

    /// Whether connection `fd` reached the socket of scheme `name`.
    fn peer_is(&self, fd: u64, name: &str) -> bool {
        self.peers
            .get(&fd)
            .and_then(|peer| peer.file_name())
            .is_some_and(|peer| peer == name)
    }

    /// Sends `request` as one message and receives the next into at most `capacity`
    /// bytes: the result (the length received, or a negated errno) and the bytes.
    /// A reply that does not fit fails with `EMSGSIZE`; one that passes descriptors
    /// (memory to map, which clients take with `recvmsg`) with `EPROTO`.
    pub fn exchange(&mut self, fd: u64, request: &[u8], capacity: u64) -> (i64, Vec<u8>) {
        if let Some(reply) = self.registers.answer(fd, request) {
            return match reply.len() as u64 <= capacity {
                true => (reply.len() as i64, reply),
                false => (-(Errno::EMSGSIZE as i64), Vec::new()),
            };
        }
        let (received, reply) = self.exchange_with_scheme(fd, request, capacity);
        let granted = reply
            .first_chunk::<RESPONSE_HEADER_LEN>()
            .and_then(ResponseHeader::decode)
            .is_some_and(|header| header.kind == ResponseKind::Reply && header.status >= 0);
        if let (true, Some(peer)) = (received >= 0 && granted, self.peers.get(&fd)) {
            self.registers.opened(fd, peer, request);
        }
        (received, reply)
    }

    fn exchange_with_scheme(&mut self, fd: u64, request: &[u8], capacity: u64) -> (i64, Vec<u8>) {
        let sent = self.send(fd, request, 0);
        if sent < 0 {
            return (sent, Vec::new());
        }
        let Some(socket) = self.sockets.get(&fd) else {
            return (-(Errno::EBADF as i64), Vec::new());
        };
        let mut data = vec![0; capacity.min(MAX_MESSAGE) as usize];
        match receive_message(socket, &mut data, MsgFlags::MSG_CMSG_CLOEXEC) {
            Err(errno) => (-(errno as i64), Vec::new()),
            Ok((_, _, passed)) if !passed.is_empty() => (-(Errno::EPROTO as i64), Vec::new()),
            Ok((_, flags, _)) if flags.contains(MsgFlags::MSG_TRUNC) => {
                (-(Errno::EMSGSIZE as i64), Vec::new())
            }
            Ok((len, _, _)) => {
                data.truncate(len);
                (len as i64, data)
            }
        }
    }

    /// Makes a call the replicas held for their reply: sends `request` on `fd`
    /// and waits for its reply, passing over the events the scheme posts before
    /// it (nobody waits for them: a driver holds calls only on handles that wait
    /// for no events). Returns the reply's status: the call's result or a
    /// negated errno.
    pub fn make_held_call(&mut self, fd: u64, request: &[u8]) -> i64 {
        self.make_call(fd, request).0
    }

    /// Makes a call for the replicas that none of them asked for at this
    /// event (see [`make_held_call`](Self::make_held_call)): the reply's
    /// status and its payload.
    pub fn make_call(&mut self, fd: u64, request: &[u8]) -> (i64, Vec<u8>) {
        // A reply is a header and at most the payload the request carried.
        let room = request.len().max(RESPONSE_HEADER_LEN) as u64;
        let (mut received, mut reply) = self.exchange(fd, request, room);
        loop {
            if received < 0 {
                return (received, Vec::new());
            }
            let header = reply
                .first_chunk::<RESPONSE_HEADER_LEN>()
                .and_then(ResponseHeader::decode);
            match header {
                Some(header) if header.kind == ResponseKind::Reply => {
                    return (header.status, reply.split_off(RESPONSE_HEADER_LEN))
                }
                Some(_) => {}
                None => return (-(Errno::EPROTO as i64), Vec::new()),
            }
            let Some(socket) = self.sockets.get(&fd) else {
                return (-(Errno::EBADF as i64), Vec::new());
            };
            reply.resize(room as usize, 0);
            match receive_message(socket, &mut reply, MsgFlags::MSG_CMSG_CLOEXEC) {
                Ok((len, _, _)) => {
                    reply.truncate(len);
                    received = len as i64;
                }
                Err(errno) => received = -(errno as i64),
            }
        }
    }

    pub fn close(&mut self, fd: u64) -> i64 {
        self.peers.remove(&fd);
        self.registers.close(fd);
        match self.sockets.remove(&fd) {
            Some(_) => 0,
            None => -(Errno::EBADF as i64),
        }
    }

    /// Closes every connection (the group starts afresh).
    pub fn clear(&mut self) {
        self.registers.clear();
        self.peers.clear();
        self.sockets.clear();
    }
}

/// Receives one message into `data`: its length, its flags and the descriptors it
/// passed (at most [`scheme_runtime::MAX_RECEIVED_FDS`]; the runtime closes any beyond, and says so
/// with `MSG_CTRUNC`).
fn receive_message(
    socket: &OwnedFd,
    data: &mut [u8],
    flags: MsgFlags,
) -> nix::Result<(usize, MsgFlags, Vec<OwnedFd>)> {
    let mut parts = [IoSliceMut::new(data)];
    let received = scheme_runtime::receive_message(socket.as_raw_fd(), &mut parts, flags)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(Errno::EIO as i32)))?;
    let mut message_flags = MsgFlags::empty();
    message_flags.set(MsgFlags::MSG_TRUNC, received.truncated);
    message_flags.set(MsgFlags::MSG_CTRUNC, received.fds_truncated);
    Ok((received.len, message_flags, received.fds))
}

/// An `SCM_RIGHTS` control message carrying `fds`, laid out as x86-64's
/// `CMSG_SPACE`: length, level, type, then the descriptors, padded to 8 bytes.
fn rights_message(fds: &[u64]) -> Vec<u8> {
    let len = 16 + 4 * fds.len();
    let mut cmsg = Vec::with_capacity(len.next_multiple_of(8));
    cmsg.extend((len as u64).to_ne_bytes());
    cmsg.extend(nix::libc::SOL_SOCKET.to_ne_bytes());
    cmsg.extend(nix::libc::SCM_RIGHTS.to_ne_bytes());
    for &fd in fds {
        cmsg.extend((fd as i32).to_ne_bytes());
    }
    cmsg.resize(len.next_multiple_of(8), 0);
    cmsg
}

fn errno_or(result: nix::Result<i64>) -> i64 {
    result.unwrap_or_else(|errno| -(errno as i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::recvmsg;
    use scheme_runtime::wire::Opcode;
    use std::os::fd::FromRawFd;

    #[test]
    fn a_rights_message_is_laid_out_as_cmsg_space() {
        let cmsg = rights_message(&[1536]);
        assert_eq!(cmsg.len(), 24);
        assert_eq!(u64::from_ne_bytes(cmsg[..8].try_into().unwrap()), 20);
        assert_eq!(i32::from_ne_bytes(cmsg[16..20].try_into().unwrap()), 1536);
    }

    #[test]
    fn virtual_descriptors_are_a_fixed_range() {
        assert!(!is_connection(3));
        assert!(is_connection(FIRST_CONNECTION_FD));
        assert!(!is_connection(FIRST_CONNECTION_FD + MAX_CONNECTIONS));
    }

    /// A scheme socket at a fresh path that answers each message with the next
    /// of `replies` (a reply with a descriptor passes standard input along).
    fn scheme_answering(
        name: &str,
        replies: Vec<(&'static [u8], bool)>,
    ) -> (std::path::PathBuf, std::thread::JoinHandle<()>) {
        use nix::sys::socket::{accept, bind, listen, Backlog, ControlMessage};
        let path = std::env::temp_dir().join(format!("romain-{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let listener = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        bind(listener.as_raw_fd(), &UnixAddr::new(&path).unwrap()).unwrap();
        listen(&listener, Backlog::new(1).unwrap()).unwrap();
        let server = std::thread::spawn(move || {
            // SAFETY: accept just returned this descriptor, owned from here on.
            let peer = unsafe { OwnedFd::from_raw_fd(accept(listener.as_raw_fd()).unwrap()) };
            for (reply, pass_stdin) in replies {
                let mut request = [0; 64];
                let mut parts = [IoSliceMut::new(&mut request)];
                recvmsg::<()>(peer.as_raw_fd(), &mut parts, None, MsgFlags::empty()).unwrap();
                let stdin = [0];
                let rights = [ControlMessage::ScmRights(&stdin)];
                let cmsgs: &[ControlMessage] = if pass_stdin { &rights } else { &[] };
                sendmsg::<()>(
                    peer.as_raw_fd(),
                    &[IoSlice::new(reply)],
                    cmsgs,
                    MsgFlags::empty(),
                    None,
                )
                .unwrap();
            }
        });
        (path, server)
    }

    #[test]
    fn an_exchange_sends_the_request_and_takes_the_reply() {
        let replies = vec![
            (&b"pong"[..], false),
            (&b"far too long"[..], false),
            (&b"memory"[..], true),
        ];
        let (path, server) = scheme_answering("exchange", replies);
        let mut connections = Connections::default();
        let fd = connections.open() as u64;
        let mut address = (nix::libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        address.extend(path.as_os_str().as_bytes());
        address.push(0);
        assert_eq!(connections.connect(fd, &address), 0);
        assert_eq!(connections.exchange(fd, b"ping", 16), (4, b"pong".to_vec()));
        assert_eq!(
            connections.exchange(fd, b"ping", 4),
            (-(Errno::EMSGSIZE as i64), Vec::new()),
            "a reply that does not fit"
        );
        assert_eq!(
            connections.exchange(fd, b"map", 16),
            (-(Errno::EPROTO as i64), Vec::new()),
            "descriptors come with recvmsg"
        );
        server.join().unwrap();
        assert_eq!(
            connections.exchange(600, b"ping", 16),
            (-(Errno::EBADF as i64), Vec::new())
        );
        let _ = std::fs::remove_file(&path);
    }

    /// An `mmio:` daemon in a scheme directory of its own, over a PCI function
    /// made of ordinary files (BAR 0 is the file `resource0`), whose e1000 rule
    /// lends BAR 0 in direct mode when `direct`; stopped on drop.
    struct MmioOnFiles {
        dir: PathBuf,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
        server: Option<std::thread::JoinHandle<()>>,
    }

    const BAR0: &str = "pci/0000:00:03.0/bar0?label=e1000";

    impl MmioOnFiles {
        fn start(name: &str, direct: bool) -> Self {
            use std::sync::atomic::{AtomicBool, Ordering};
            let dir =
                std::env::temp_dir().join(format!("romain-mmio-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let function = dir.join("devices/0000:00:03.0");
            std::fs::create_dir_all(&function).unwrap();
            std::fs::write(function.join("vendor"), "0x8086\n").unwrap();
            std::fs::write(function.join("device"), "0x100e\n").unwrap();
            std::fs::write(
                function.join("resource"),
                "0x00000000febc0000 0x00000000febc1fff 0x0000000000040200\n",
            )
            .unwrap();
            std::fs::write(function.join("config"), [0_u8; 64]).unwrap();
            std::fs::write(function.join("resource0"), [0_u8; 8192]).unwrap();
            // Root opens for the driver by its label; anyone else is the driver.
            let uid = match nix::unistd::getuid().as_raw() {
                0 => 1001,
                uid => uid,
            };
            let direct_bars = if direct { "direct_bars = [0]\n" } else { "" };
            let policy = format!(
                "[driver.e1000]\nuid = {uid}\ndevice = \"8086:100e\"\nbars = [0]\n{direct_bars}schemes = [\"mmio\"]\n"
            );
            let devices = dir.join("devices");
            let mut server = scheme_runtime::HostServer::bind(&dir, "mmio").unwrap();
            server.set_tick(Some(std::time::Duration::from_millis(10)));
            let stop = std::sync::Arc::new(AtomicBool::new(false));
            let stopped = stop.clone();
            let server = std::thread::spawn(move || {
                let hardware = mmio_scheme::hardware::LinuxHardware::at(&devices);
                let mut scheme = mmio_scheme::MmioScheme::new(policy.parse().unwrap(), hardware);
                while !stopped.load(Ordering::Relaxed) {
                    server.run_round(&mut scheme).unwrap();
                }
            });
            Self {
                dir,
                stop,
                server: Some(server),
            }
        }

        /// A connection of `connections` to this daemon.
        fn connect(&self, connections: &mut Connections) -> u64 {
            let fd = connections.open() as u64;
            assert_eq!(
                connections.connect(fd, &sockaddr(&self.dir.join("mmio"))),
                0
            );
            fd
        }

        /// The register at `offset` of BAR 0, as the device holds it.
        fn register(&self, offset: u64) -> u32 {
            use std::os::unix::fs::FileExt;
            let bar = std::fs::File::open(self.dir.join("devices/0000:00:03.0/resource0")).unwrap();
            let mut value = [0; 4];
            bar.read_exact_at(&mut value, offset).unwrap();
            u32::from_le_bytes(value)
        }

        /// A counter of `mmio:status` (`batches`, `accesses`, `handles`).
        fn counter(&self, key: &str) -> u64 {
            let status = scheme_runtime::Handle::open_in(&self.dir, "mmio:status", 0).unwrap();
            let mut text = vec![0; 4096];
            let len = status.read(&mut text).unwrap();
            let text = String::from_utf8_lossy(&text[..len]).into_owned();
            text.lines()
                .find_map(|line| line.strip_prefix(&format!("{key}: ")))
                .and_then(|count| count.trim().parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {text}"))
        }

        /// Open register and interrupt handles, once `mmio:` has seen the
        /// connections closed so far go.
        fn open_handles(&self, expected: u64) -> u64 {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            loop {
                let open = self.counter("handles");
                if open == expected || std::time::Instant::now() > deadline {
                    return open;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }

    impl Drop for MmioOnFiles {
        fn drop(&mut self) {
            self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
            if let Some(server) = self.server.take() {
                let _ = server.join();
            }
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// The `call` that asks `mmio:` to start the function's bus mastering.
    fn start_bus_master() -> Vec<u8> {
        use scheme_runtime::wire::{
            encode_request_head, RequestHeader, MAX_METADATA, REQUEST_HEADER_LEN,
        };
        let header = RequestHeader {
            opcode: Opcode::Call,
            flags: 0,
            offset: 0,
            len: 0,
        };
        let mut head = [0; REQUEST_HEADER_LEN + MAX_METADATA * 8];
        let len = encode_request_head(
            &header,
            &[mmio_scheme::wire::START_BUS_MASTER],
            0,
            &mut head,
        );
        head[..len].to_vec()
    }

    /// A request message as a replica's `Handle` lays it out.
    fn request(opcode: Opcode, flags: u64, offset: u64, len: u64, payload: &[u8]) -> Vec<u8> {
        use scheme_runtime::wire::{
            encode_request_head, RequestHeader, MAX_METADATA, REQUEST_HEADER_LEN,
        };
        let header = RequestHeader {
            opcode,
            flags,
            offset,
            len,
        };
        let mut head = [0; REQUEST_HEADER_LEN + MAX_METADATA * 8];
        let head_len = encode_request_head(&header, &[], payload.len(), &mut head);
        [&head[..head_len], payload].concat()
    }

    /// What the replicas' register requests get on BAR 0 opened with `flags`,
    /// one reply per request: the batch writes a register and reads it back,
    /// then come a batch past the end, a single read, a single write and the
    /// call that starts bus mastering (refused: the rule lists no `dma`).
    fn register_replies(mmio: &MmioOnFiles, flags: usize) -> Vec<(i64, Vec<u8>)> {
        use mmio_scheme::wire::{Batch, Width};
        let mut connections = Connections::default();
        let fd = mmio.connect(&mut connections);
        let (opened, _) = connections.exchange(
            fd,
            &request(Opcode::Open, flags as u64, 0, 0, BAR0.as_bytes()),
            64,
        );
        assert!(opened > 0, "the open is granted");
        let mut batch = Batch::new();
        batch.write(0x1004, Width::U32, 0xcafe_f00d).unwrap();
        batch.read(0x1004, Width::U32).unwrap();
        let mut past_the_end = Batch::new();
        past_the_end.read(0x2000, Width::U32).unwrap();
        let requests = [
            request(Opcode::Call, 0, 0, 0, batch.payload_mut()),
            request(Opcode::Call, 0, 0, 0, past_the_end.payload_mut()),
            request(Opcode::Read, 0, 0x1004, 4, &[]),
            request(Opcode::Write, 0, 0x1008, 4, &7_u32.to_le_bytes()),
            start_bus_master(),
        ];
        requests
            .iter()
            .map(|request| connections.make_call(fd, request))
            .collect()
    }

    #[test]
    fn register_requests_on_a_bar_the_policy_lends_are_made_by_the_engine_as_mmio_makes_them() {
        use syscall::flag::{O_RDONLY, O_RDWR};
        let through_mmio = MmioOnFiles::start("requests", false);
        let expected = register_replies(&through_mmio, O_RDWR);
        assert_eq!(
            through_mmio.counter("batches"),
            1,
            "the batch past the end is refused"
        );
        assert_eq!(expected[0].0, 2);
        assert_eq!(expected[1].0, -i64::from(syscall::error::EINVAL));
        assert_eq!(expected[2], (4, 0xcafe_f00d_u32.to_le_bytes().to_vec()));
        assert_eq!(expected[4].0, -i64::from(syscall::error::EACCES));

        let direct = MmioOnFiles::start("direct", true);
        assert_eq!(
            register_replies(&direct, O_RDWR),
            expected,
            "the same replies"
        );
        assert_eq!(direct.counter("accesses"), 0, "none reached mmio:");
        assert_eq!(
            (direct.register(0x1004), direct.register(0x1008)),
            (0xcafe_f00d, 7)
        );

        // A handle opened read-only writes nothing, either way.
        let read_only = register_replies(&MmioOnFiles::start("read-only-mmio", false), O_RDONLY);
        assert_eq!(read_only[0].0, -i64::from(syscall::error::EBADF));
        let direct_read_only = MmioOnFiles::start("read-only", true);
        assert_eq!(register_replies(&direct_read_only, O_RDONLY), read_only);
        assert_eq!(direct_read_only.register(0x1004), 0);
    }

    #[test]
    fn the_engine_holds_a_bar_it_mapped_only_while_the_replicas_hold_theirs() {
        let mmio = MmioOnFiles::start("held", true);
        let open = request(
            Opcode::Open,
            syscall::flag::O_RDWR as u64,
            0,
            0,
            BAR0.as_bytes(),
        );
        let mut connections = Connections::default();
        let fd = mmio.connect(&mut connections);
        assert!(connections.exchange(fd, &open, 64).0 > 0);
        assert_eq!(mmio.open_handles(2), 2, "the replicas' and the engine's");
        assert_eq!(connections.close(fd), 0);
        assert_eq!(mmio.open_handles(0), 0, "closed with the replicas' handle");

        let fd = mmio.connect(&mut connections);
        assert!(connections.exchange(fd, &open, 64).0 > 0);
        assert_eq!(mmio.open_handles(2), 2);
        connections.clear();
        assert_eq!(mmio.open_handles(0), 0, "closed as the group starts afresh");
    }

    #[test]
    fn only_an_open_the_scheme_granted_maps_a_bar() {
        let mmio = MmioOnFiles::start("granted", true);
        let mut connections = Connections::default();
        let fd = mmio.connect(&mut connections);
        let status = request(
            Opcode::Open,
            syscall::flag::O_RDONLY as u64,
            0,
            0,
            b"status",
        );
        assert!(connections.exchange(fd, &status, 64).0 > 0);
        // A read that carries the bytes of a BAR's path is answered, and
        // opens nothing: the status handle still takes no batch.
        let read = request(Opcode::Read, 0, 0, 16, BAR0.as_bytes());
        assert!(connections.make_call(fd, &read).0 > 0);
        let mut batch = mmio_scheme::wire::Batch::new();
        batch.read(0, mmio_scheme::wire::Width::U32).unwrap();
        let call = request(Opcode::Call, 0, 0, 0, batch.payload_mut());
        assert_eq!(
            connections.make_call(fd, &call).0,
            -i64::from(syscall::error::EBADF)
        );
    }

    #[test]
    fn registers_mmio_would_map_are_never_taken_for_memory_to_keep_in_step() {
        let mmio = MmioOnFiles::start("map", true);
        let mut connections = Connections::default();
        let fd = mmio.connect(&mut connections);
        let open = request(
            Opcode::Open,
            syscall::flag::O_RDWR as u64,
            0,
            0,
            BAR0.as_bytes(),
        );
        assert!(connections.exchange(fd, &open, 64).0 > 0);
        let map = request(Opcode::Mmap, 0, 0, 4096, &[]);
        assert_eq!(connections.send(fd, &map, 0), map.len() as i64);
        let header = MessageHeader {
            iovecs: vec![(0x1000, 64)],
            control: 0x2000,
            controllen: 64,
        };
        let mut shared = SharedMemory::default();
        let (received, stores) = connections.receive(fd, &header, 0x3000, 0, &mut shared);
        assert_eq!(
            received, RESPONSE_HEADER_LEN as i64,
            "the reply itself arrives"
        );
        assert_eq!(
            shared.close(crate::shared_memory::FIRST_OBJECT_FD),
            -(Errno::EBADF as i64),
            "the BAR was not kept as shared memory"
        );
        let flags = stores
            .iter()
            .find(|(address, _)| *address == 0x3000 + MSGHDR_FLAGS as u64)
            .map(|(_, bytes)| i32::from_ne_bytes(bytes[..4].try_into().unwrap()));
        assert_eq!(
            flags,
            Some(MsgFlags::MSG_CTRUNC.bits()),
            "the descriptor was cut"
        );
    }

    #[test]
    fn unknown_descriptors_and_paths_fail_with_their_errno() {
        let mut connections = Connections::default();
        assert_eq!(connections.send(600, b"x", 0), -(Errno::EBADF as i64));
        assert_eq!(connections.close(600), -(Errno::EBADF as i64));
        let fd = connections.open();
        assert_eq!(fd, FIRST_CONNECTION_FD as i64);
        let mut address = 1_u16.to_ne_bytes().to_vec();
        address.extend(b"/nonexistent/socket\0");
        assert_eq!(
            connections.connect(fd as u64, &address),
            -(Errno::ENOENT as i64)
        );
        assert_eq!(connections.close(fd as u64), 0);
        assert_eq!(connections.open(), FIRST_CONNECTION_FD as i64, "reused");
    }

    /// A `sockaddr_un` for `path`, as a replica writes it.
    fn sockaddr(path: &Path) -> Vec<u8> {
        let mut address = (nix::libc::AF_UNIX as u16).to_ne_bytes().to_vec();
        address.extend(path.as_os_str().as_bytes());
        address.push(0);
        address
    }

    /// A fresh scheme directory with nonblocking listening sockets `names`.
    fn scheme_dir_with(test: &str, names: &[&str]) -> (PathBuf, Vec<OwnedFd>) {
        use nix::sys::socket::{bind, listen, Backlog};
        let dir = std::env::temp_dir().join(format!("romain-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let listeners = names
            .iter()
            .map(|name| {
                let listener = socket(
                    AddressFamily::Unix,
                    SockType::SeqPacket,
                    SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
                    None,
                )
                .unwrap();
                bind(
                    listener.as_raw_fd(),
                    &UnixAddr::new(&dir.join(name)).unwrap(),
                )
                .unwrap();
                listen(&listener, Backlog::new(1).unwrap()).unwrap();
                listener
            })
            .collect();
        (dir, listeners)
    }

    /// Whether a client connected to `listener` (and takes the connection).
    fn was_reached(listener: &OwnedFd) -> bool {
        match nix::sys::socket::accept(listener.as_raw_fd()) {
            Ok(peer) => {
                // SAFETY: accept just returned this descriptor; closing it here.
                drop(unsafe { OwnedFd::from_raw_fd(peer) });
                true
            }
            Err(Errno::EAGAIN) => false,
            Err(errno) => panic!("accept: {errno}"),
        }
    }

    #[test]
    fn a_connect_to_a_scheme_the_rule_does_not_list_fails_with_eacces() {
        let (dir, listeners) = scheme_dir_with("allow", &["mmio", "romain"]);
        let (mmio, romain) = (&listeners[0], &listeners[1]);
        let allowed = SchemeAllowList::new(dir.clone(), vec!["mmio".into(), "dma".into()]);
        let mut connections = Connections::default();
        connections.restrict_to(allowed);
        let fd = connections.open() as u64;
        assert_eq!(
            connections.connect(fd, &sockaddr(&dir.join("romain"))),
            -(Errno::EACCES as i64)
        );
        assert!(
            !was_reached(romain),
            "the refused scheme never saw a connection"
        );
        assert_eq!(
            connections.connect(fd, &sockaddr(&dir.join("./mmio"))),
            0,
            "a listed scheme"
        );
        assert!(was_reached(mmio));

        let other = connections.open() as u64;
        for refused in [
            dir.join("sub/../romain"),
            PathBuf::from("romain"),
            PathBuf::new(),
        ] {
            assert_eq!(
                connections.connect(other, &sockaddr(&refused)),
                -(Errno::EACCES as i64),
                "{}",
                refused.display()
            );
        }
        assert!(!was_reached(romain));
        assert_eq!(
            connections.connect(600, &sockaddr(&dir.join("mmio"))),
            -(Errno::EBADF as i64),
            "an unknown descriptor is still EBADF"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn without_a_list_the_replicas_connect_to_any_scheme() {
        let (dir, listeners) = scheme_dir_with("unlisted", &["romain"]);
        let mut connections = Connections::default();
        let fd = connections.open() as u64;
        assert_eq!(connections.connect(fd, &sockaddr(&dir.join("romain"))), 0);
        assert!(was_reached(&listeners[0]));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn scheme_lists_are_comma_separated_names() {
        assert_eq!(
            scheme_names("mmio,dma"),
            Ok(vec!["mmio".into(), "dma".into()])
        );
        assert_eq!(
            scheme_names("network.e1000"),
            Ok(vec!["network.e1000".into()])
        );
        assert_eq!(scheme_names(""), Ok(Vec::new()), "a rule that lists none");
        assert_eq!(
            scheme_names("mmio,,dma"),
            Err("\"\" is not a scheme name".into())
        );
        assert_eq!(
            scheme_names("mmio,../x"),
            Err("\"../x\" is not a scheme name".into())
        );
    }

    #[test]
    fn a_scheme_is_a_socket_file_directly_in_the_scheme_directory() {
        let list = SchemeAllowList::new("/run/schemes".into(), vec!["mmio".into(), "dma".into()]);
        for path in [
            "/run/schemes/mmio",
            "/run//schemes/./dma",
            "/run/schemes/mmio/",
        ] {
            assert_eq!(list.check(Path::new(path)), Ok(()), "{path}");
        }
        assert_eq!(
            list.check(Path::new("/run/schemes/romain")),
            Err(ConnectRefusal::NotListed {
                scheme: "romain".into()
            })
        );
        for path in [
            "/tmp/mmio",
            "/run/schemes/sub/mmio",
            "/run/schemes/x/../mmio",
            "/run/schemes/..",
            "/run/schemes",
            "mmio",
            "",
            "/",
        ] {
            assert!(
                matches!(
                    list.check(Path::new(path)),
                    Err(ConnectRefusal::NotASchemeSocket { .. })
                ),
                "{path}"
            );
        }
        assert_eq!(list.to_string(), "[mmio, dma] in /run/schemes");
        assert_eq!(
            ConnectRefusal::NotListed {
                scheme: "romain".into()
            }
            .to_string(),
            "scheme romain is not in the driver's policy rule"
        );
    }
}
