//! What a hostile local user sends: raw messages on the scheme's socket, each
//! class a defect found or feared, each request answered or refused without harm.
//!
//! Every class runs on sockets with a receive timeout, so a daemon that stops
//! answering fails the class instead of hanging it. A class fails (`Err`) when the
//! daemon answers something it must not: replies to a half-closed connection
//! after the first, or no refusal for connections over the limit.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::Duration;

use nix::sys::socket::{
    connect, recv, sendmsg, setsockopt, shutdown, socket, sockopt, AddressFamily, ControlMessage,
    MsgFlags, Shutdown, SockFlag, SockType, UnixAddr,
};
use nix::sys::time::TimeVal;
use scheme_runtime::wire::{
    encode_request_head, Opcode, RequestHeader, ResponseHeader, MAX_METADATA, MAX_PAYLOAD,
    MAX_REQUEST_LEN, REQUEST_HEADER_LEN, RESPONSE_HEADER_LEN,
};
use syscall::error::{EMFILE, ENFILE};

use crate::Daemon;

/// The unprivileged user the attack runs as when started as root.
pub const NOBODY: u32 = 65534;

/// One kind of hostile request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AttackClass {
    /// Requests carrying nine descriptors each (`SCM_RIGHTS`).
    PassedDescriptors,
    /// Open, then shut down the writing side and keep reading.
    HalfClosed,
    /// More connections held at once than one uid may have.
    ConnectionFlood,
    /// Opens of a 64 KiB path of characters that log escaped at six times their size.
    HugePaths,
    /// Random bytes, truncated headers, oversized messages.
    Garbage,
    /// Requests out of order: before open, after close, open twice, on the wrong handle.
    OutOfOrder,
}

impl AttackClass {
    pub const ALL: [AttackClass; 6] = [
        AttackClass::PassedDescriptors,
        AttackClass::HalfClosed,
        AttackClass::ConnectionFlood,
        AttackClass::HugePaths,
        AttackClass::Garbage,
        AttackClass::OutOfOrder,
    ];
}

/// Drops root for [`NOBODY`] (when root), then sends `count` requests of each
/// class in `classes` (all when empty) to `daemon`, printing a line per class.
pub fn run(daemon: Daemon, count: usize, classes: &[AttackClass]) -> io::Result<()> {
    become_nobody()?;
    let socket_path = scheme_runtime::scheme_dir().join(daemon.scheme());
    let classes = if classes.is_empty() {
        &AttackClass::ALL[..]
    } else {
        classes
    };
    for &class in classes {
        let report = Attacker {
            socket_path: &socket_path,
            probe: daemon
                .probe_path()
                .split_once(':')
                .map_or(String::new(), |(_, path)| path.to_owned()),
        }
        .run(class, count)
        .map_err(|e| io::Error::new(e.kind(), format!("{class:?}: {e}")))?;
        println!("{class:?}: {report}");
    }
    Ok(())
}

/// Drops root for [`NOBODY`], opens `path` on the connection `fd` (made by
/// another process and inherited unopened), reads it and prints what it says.
pub fn open_inherited(fd: RawFd, path: &str) -> io::Result<()> {
    use std::os::fd::FromRawFd;
    // SAFETY: the parent handed this descriptor over on the command line and
    // nothing else in this process owns it.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    become_nobody()?;
    send_with(
        &socket,
        &request(Opcode::Open, 0, &[], path.as_bytes()),
        &[],
    )?;
    match answer(&socket)? {
        Answer::Reply(reply) => {
            reply.result().map_err(scheme_runtime::io_error)?;
        }
        Answer::Closed => return Err(io::Error::other("the daemon closed the connection")),
    }
    send_with(&socket, &request(Opcode::Read, 256, &[], &[]), &[])?;
    let mut buf = vec![0u8; RESPONSE_HEADER_LEN + 256];
    let n = recv(socket.as_raw_fd(), &mut buf, MsgFlags::empty())?;
    print!(
        "{}",
        String::from_utf8_lossy(buf.get(RESPONSE_HEADER_LEN..n).unwrap_or_default())
    );
    Ok(())
}

fn become_nobody() -> io::Result<()> {
    use nix::unistd::{getuid, setgid, setgroups, setuid, Gid, Uid};
    if getuid().is_root() {
        setgroups(&[])?;
        setgid(Gid::from_raw(NOBODY))?;
        setuid(Uid::from_raw(NOBODY))?;
    }
    Ok(())
}

struct Attacker<'a> {
    socket_path: &'a Path,
    /// The path (without the scheme) a well-behaved open names.
    probe: String,
}

/// What came back for one request.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    Reply(ResponseHeader),
    /// The daemon ended the connection.
    Closed,
}

impl Attacker<'_> {
    fn run(&self, class: AttackClass, count: usize) -> io::Result<String> {
        match class {
            AttackClass::PassedDescriptors => self.passed_descriptors(count),
            AttackClass::HalfClosed => self.half_closed(count),
            AttackClass::ConnectionFlood => self.connection_flood(count),
            AttackClass::HugePaths => self.huge_paths(count),
            AttackClass::Garbage => self.garbage(count),
            AttackClass::OutOfOrder => self.out_of_order(count),
        }
    }

    fn connect(&self) -> io::Result<OwnedFd> {
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        connect(fd.as_raw_fd(), &UnixAddr::new(self.socket_path)?)?;
        let timeout = TimeVal::new(ANSWER_TIMEOUT.as_secs() as _, 0);
        setsockopt(&fd, sockopt::ReceiveTimeout, &timeout)?;
        Ok(fd)
    }

    fn passed_descriptors(&self, count: usize) -> io::Result<String> {
        let null = std::fs::File::open("/dev/null")?;
        let fds = [null.as_raw_fd(); 9];
        let mut socket = self.connect()?;
        let (mut refused, mut dropped) = (0, 0);
        for i in 0..count {
            let message = if i % 2 == 0 {
                request(Opcode::Open, 0, &[], self.probe.as_bytes())
            } else {
                request(Opcode::Fstat, 0, &[], &[])
            };
            match send_with(&socket, &message, &fds).and_then(|()| answer(&socket)) {
                Ok(Answer::Reply(reply)) if reply.result().is_err() => refused += 1,
                Ok(Answer::Reply(_)) => {}
                Ok(Answer::Closed) | Err(_) => {
                    dropped += 1;
                    socket = self.connect()?;
                }
            }
        }
        Ok(format!(
            "{count} requests with 9 descriptors: {refused} refused, {dropped} connections dropped"
        ))
    }

    fn half_closed(&self, count: usize) -> io::Result<String> {
        for _ in 0..count {
            let socket = self.connect()?;
            send_with(
                &socket,
                &request(Opcode::Open, 0, &[], self.probe.as_bytes()),
                &[],
            )?;
            shutdown(socket.as_raw_fd(), Shutdown::Write)?;
            let mut replies = 0;
            while answer(&socket)? != Answer::Closed {
                replies += 1;
                if replies > 1 {
                    return Err(io::Error::other(
                        "a half-closed connection got more than the one reply it asked for",
                    ));
                }
            }
        }
        Ok(format!(
            "{count} half-closed connections, each closed by the daemon after one reply"
        ))
    }

    fn connection_flood(&self, count: usize) -> io::Result<String> {
        /// More than [`scheme_runtime::ConnectionLimits::PER_UID`].
        const HELD: usize = 600;
        let (mut admitted, mut refused, mut made) = (0, 0, 0);
        while made < count {
            let mut held = Vec::with_capacity(HELD);
            for _ in 0..HELD.min(count - made) {
                made += 1;
                let Ok(socket) = self.connect() else {
                    refused += 1;
                    continue;
                };
                let open = request(Opcode::Open, 0, &[], self.probe.as_bytes());
                let answered = send_with(&socket, &open, &[]).and_then(|()| answer(&socket));
                match answered {
                    Ok(Answer::Reply(reply)) => match reply.result() {
                        Err(e) if e.errno == EMFILE || e.errno == ENFILE => refused += 1,
                        // Opened, or refused by the scheme (a path this user may
                        // not open): either way a connection held.
                        _ => {
                            admitted += 1;
                            held.push(socket);
                        }
                    },
                    Ok(Answer::Closed) => refused += 1,
                    Err(e) if e.raw_os_error() == Some(nix::libc::EPIPE) => refused += 1,
                    Err(e) => return Err(e),
                }
            }
        }
        if count >= HELD && refused == 0 {
            return Err(io::Error::other(format!(
                "{HELD} connections held at once by one uid, none refused"
            )));
        }
        Ok(format!(
            "{made} connections, at most {HELD} held at once: {admitted} admitted, {refused} refused"
        ))
    }

    fn huge_paths(&self, count: usize) -> io::Result<String> {
        // Control characters: a `{:?}` of the path would be six times as long.
        let path = vec![1u8; MAX_PAYLOAD];
        let message = request(Opcode::Open, 0, &[], &path);
        let mut socket = self.connect()?;
        let mut refused = 0;
        for _ in 0..count {
            match send_and_answer(&socket, &message)? {
                Answer::Reply(reply) if reply.result().is_err() => refused += 1,
                Answer::Reply(_) => {
                    return Err(io::Error::other("a 64 KiB path of control bytes opened"))
                }
                Answer::Closed => socket = self.connect()?,
            }
        }
        Ok(format!("{count} opens of a 64 KiB path: {refused} refused"))
    }

    fn garbage(&self, count: usize) -> io::Result<String> {
        let mut random = Lcg(0x5eed);
        let mut socket = self.connect()?;
        let mut closed = 0;
        for i in 0..count {
            let message: Vec<u8> = match i % 4 {
                // Random bytes of a random length.
                0 => (0..random.below(200) + 1).map(|_| random.byte()).collect(),
                // A header cut short.
                1 => request(Opcode::Read, 0, &[], &[])[..random.below(REQUEST_HEADER_LEN)]
                    .iter()
                    .copied()
                    .chain([0])
                    .collect(),
                // Longer than any request.
                2 => vec![Opcode::Write as u8; MAX_REQUEST_LEN + 1 + random.below(100)],
                // A valid header whose length fields lie.
                _ => {
                    let mut lie = request(Opcode::Call, 0, &[1, 2], b"payload");
                    lie[1] = random.byte();
                    lie[4..8].copy_from_slice(&(random.below(1 << 20) as u32).to_le_bytes());
                    lie
                }
            };
            let sent = send_with(&socket, &message, &[]).and_then(|()| answer(&socket));
            match sent {
                Ok(Answer::Reply(reply)) if reply.result().is_ok() => {
                    return Err(io::Error::other(format!(
                        "garbage {message:02x?} was answered {reply:?}"
                    )))
                }
                Ok(Answer::Reply(_)) => {}
                Ok(Answer::Closed) | Err(_) => {
                    closed += 1;
                    socket = self.connect()?;
                }
            }
        }
        Ok(format!(
            "{count} malformed messages, all refused; {closed} connections ended by the daemon"
        ))
    }

    fn out_of_order(&self, count: usize) -> io::Result<String> {
        let mut socket = self.connect()?;
        let mut refused = 0;
        for i in 0..count {
            let message = match i % 8 {
                0 => request(Opcode::Read, 16, &[], &[]),
                1 => request(Opcode::Mmap, 4096, &[], &[]),
                2 => request(Opcode::Close, 0, &[], &[]),
                // Open (answered), then everything on the handle it gave.
                3 => request(Opcode::Open, 0, &[], self.probe.as_bytes()),
                4 => request(Opcode::Open, 0, &[], self.probe.as_bytes()),
                5 => request(Opcode::Write, 0, &[], b"not yours"),
                6 => request(Opcode::Call, 0, &[u64::MAX; MAX_METADATA], &[0; 64]),
                _ => request(Opcode::Close, 0, &[], &[]),
            };
            match send_and_answer(&socket, &message)? {
                Answer::Reply(reply) if reply.result().is_err() => refused += 1,
                Answer::Reply(_) => {}
                Answer::Closed => socket = self.connect()?,
            }
        }
        Ok(format!("{count} requests out of order: {refused} refused"))
    }
}

/// A request message: header, metadata, payload.
pub fn request(opcode: Opcode, len: u64, metadata: &[u64], payload: &[u8]) -> Vec<u8> {
    let header = RequestHeader {
        opcode,
        flags: 0,
        offset: 0,
        len,
    };
    let mut head = [0u8; REQUEST_HEADER_LEN + MAX_METADATA * 8];
    let n = encode_request_head(&header, metadata, payload.len(), &mut head);
    let mut message = head[..n].to_vec();
    message.extend_from_slice(payload);
    message
}

fn send_with(socket: &OwnedFd, message: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs = if fds.is_empty() { &[][..] } else { &rights[..] };
    sendmsg::<()>(
        socket.as_fd().as_raw_fd(),
        &[IoSlice::new(message)],
        cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    )?;
    Ok(())
}

/// Sends `message` and takes its answer; a daemon that already ended the
/// connection (it may, with a client that misbehaves) is an answer too.
fn send_and_answer(socket: &OwnedFd, message: &[u8]) -> io::Result<Answer> {
    match send_with(socket, message, &[]) {
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(nix::libc::EPIPE | nix::libc::ECONNRESET)
            ) =>
        {
            Ok(Answer::Closed)
        }
        Err(e) => Err(e),
        Ok(()) => answer(socket),
    }
}

/// The next reply (events are skipped), or the end of the connection.
fn answer(socket: &OwnedFd) -> io::Result<Answer> {
    loop {
        let mut buf = vec![0u8; RESPONSE_HEADER_LEN + MAX_PAYLOAD];
        let n = match recv(socket.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(n) => n,
            Err(nix::errno::Errno::ECONNRESET) => return Ok(Answer::Closed),
            Err(e) => return Err(e.into()),
        };
        if n == 0 {
            return Ok(Answer::Closed);
        }
        let head: [u8; RESPONSE_HEADER_LEN] = buf
            .get(..RESPONSE_HEADER_LEN)
            .and_then(|head| head.try_into().ok())
            .ok_or_else(|| io::Error::other(format!("a reply of {n} bytes")))?;
        let reply = ResponseHeader::decode(&head)
            .ok_or_else(|| io::Error::other("a reply with an unknown kind"))?;
        if reply.kind == scheme_runtime::wire::ResponseKind::Reply {
            return Ok(Answer::Reply(reply));
        }
    }
}

/// A small seeded generator: the same garbage on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound.max(1) as u64) as usize
    }
}

/// How long a class may wait for one answer before it fails.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
