//! The testbed scheme served through a replica: a `Forwarder` served to clients
//! by a host server, the replica on the other end of a `SOCK_SEQPACKET` pair (a
//! `testbed serve` child started as a replica, or `serve_replica` in a thread),
//! and clients that must see what they see when the scheme is served directly.

use std::fmt::Debug;
use std::io::{self, ErrorKind};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    recv, send, setsockopt, shutdown, socketpair, sockopt, AddressFamily, MsgFlags, Shutdown,
    SockFlag, SockType,
};
use nix::sys::time::TimeVal;
use scheme_runtime::replicated::codec::{
    decode_reply, encode_request, encode_round, RequestHead, MAX_REPLY_LEN,
};
use scheme_runtime::replicated::{serve_replica, Forwarder, Hello, ReplicaLink};
use scheme_runtime::wire::Opcode;
use scheme_runtime::{Caller, Handle, HostServer, SchemeDaemon, REPLICA_CHANNEL_ENV};
use scheme_testbed::{Testbed, CALL_REVERSE};
use syscall::error::{Error, EBADF, EINVAL, EIO, ENOENT, EPROTO, EWOULDBLOCK};
use syscall::flag::{EventFlags, MODE_FILE, O_NONBLOCK, O_RDWR};
use syscall::schemev2::NewFdFlags;
use syscall::Stat;

/// How long a test waits for anything before it calls it a hang.
const PATIENCE: Duration = Duration::from_secs(10);

/// The supervisor's end of a socket pair to one replica: every message one
/// datagram, every reply one datagram.
struct SeqpacketLink(OwnedFd);

impl SeqpacketLink {
    fn new(socket: OwnedFd) -> Self {
        // A replica that never answers fails the test instead of hanging it.
        setsockopt(
            &socket,
            sockopt::ReceiveTimeout,
            &TimeVal::new(PATIENCE.as_secs() as i64, 0),
        )
        .unwrap();
        Self(socket)
    }

    fn receive(&mut self, reply: &mut Vec<u8>) -> io::Result<()> {
        // One byte more than a reply can be, so that a longer one shows.
        reply.resize(MAX_REPLY_LEN + 1, 0);
        let n = recv(self.0.as_raw_fd(), reply, MsgFlags::empty())?;
        reply.truncate(n);
        match n {
            0 => Err(ErrorKind::UnexpectedEof.into()),
            _ => Ok(()),
        }
    }
}

impl ReplicaLink for SeqpacketLink {
    fn exchange(&mut self, message: &[u8], reply: &mut Vec<u8>) -> io::Result<()> {
        send(self.0.as_raw_fd(), message, MsgFlags::MSG_NOSIGNAL)?;
        self.receive(reply)
    }

    fn receive_hello(&mut self, reply: &mut Vec<u8>) -> io::Result<()> {
        self.receive(reply)
    }

    /// What the replica did besides answering is out of sight here.
    fn last_exchange_reached_out(&self) -> bool {
        false
    }
}

fn seqpacket_pair() -> (OwnedFd, OwnedFd) {
    socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .unwrap()
}

/// Starts `testbed serve` as a replica: its end of the channel is inherited
/// under the number [`REPLICA_CHANNEL_ENV`] names. Returns the child and the
/// supervisor's end.
fn spawn_replica() -> (Child, OwnedFd) {
    let (supervisor, replica) = seqpacket_pair();
    let raw = replica.as_raw_fd();
    let mut command = Command::new(env!("CARGO_BIN_EXE_testbed"));
    command
        .arg("serve")
        .env(REPLICA_CHANNEL_ENV, raw.to_string())
        .env("RUST_LOG", "warn");
    // Only the child's copy stays open across exec, so replicas spawned by tests
    // running in parallel do not hold each other's channels open.
    // SAFETY: between fork and exec only fcntl runs, which is async-signal-safe;
    // `raw` is open in the child, as it is here until after spawn.
    unsafe {
        command.pre_exec(move || {
            fcntl(
                BorrowedFd::borrow_raw(raw),
                FcntlArg::F_SETFD(FdFlag::empty()),
            )?;
            Ok(())
        });
    }
    let child = command.spawn().unwrap();
    drop(replica);
    (child, supervisor)
}

/// A scheme served as `testbed` by a host server in a thread, in a directory
/// of its own.
struct Served<D> {
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<io::Result<D>>,
}

impl<D: SchemeDaemon + Send + 'static> Served<D> {
    fn start(mut daemon: D) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "testbed-replicated-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let mut server = HostServer::bind(&dir, "testbed").unwrap();
        // Rounds also come with the tick, so the loop sees `stop` soon.
        server.set_tick(Some(Duration::from_millis(10)));
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                server.run_round(&mut daemon)?;
            }
            Ok(daemon)
        });
        Self { dir, stop, thread }
    }

    fn open(&self, path: &str, flags: usize) -> io::Result<Handle> {
        Handle::open_in(&self.dir, path, flags)
    }

    /// Stops serving; the daemon, or why serving failed.
    fn finish(self) -> D {
        self.stop.store(true, Ordering::Relaxed);
        let daemon = self.thread.join().unwrap().expect("the server ran cleanly");
        let _ = std::fs::remove_dir_all(&self.dir);
        daemon
    }
}

/// Notes what a step returned, so two sessions can be compared step by step.
fn note<T: Debug>(seen: &mut Vec<String>, step: &str, value: T) -> T {
    seen.push(format!("{step}: {value:?}"));
    value
}

fn errno<T: Debug>(result: io::Result<T>) -> i32 {
    result
        .expect_err("expected an error")
        .raw_os_error()
        .expect("an errno")
}

/// A client session that uses every method, checks what it can, and returns
/// what every step returned.
fn session<D: SchemeDaemon + Send + 'static>(served: &Served<D>) -> Vec<String> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 64];

    let queue = served.open("testbed:queue/q", O_RDWR).unwrap();
    assert_eq!(note(&mut seen, "write", queue.write(b"hello").unwrap()), 5);
    let stat = note(&mut seen, "fstat", queue.fstat().unwrap());
    assert_eq!(stat.st_size, 5);
    assert_eq!(
        note(&mut seen, "fpath", queue.fpath().unwrap()),
        "testbed:queue/q"
    );
    assert_eq!(
        note(
            &mut seen,
            "fevent",
            queue.fevent(EventFlags::all()).unwrap()
        ),
        EventFlags::EVENT_READ | EventFlags::EVENT_WRITE
    );
    let n = note(&mut seen, "read", queue.read(&mut buf[..3]).unwrap());
    assert_eq!(&buf[..n], b"hel");
    let mut payload = *b"abc";
    let called = queue.call(&mut payload, &[CALL_REVERSE]).unwrap();
    assert_eq!(note(&mut seen, "call", (called, payload)), (3, *b"cba"));
    assert_eq!(
        note(
            &mut seen,
            "bad call",
            errno(queue.call(&mut payload, &[77]))
        ),
        EINVAL
    );
    assert_eq!(
        note(
            &mut seen,
            "bad path",
            errno(served.open("testbed:no/such/path", O_RDWR))
        ),
        ENOENT
    );

    // A positioned handle: the open flags come back with the handle.
    let who = served.open("testbed:whoami", O_RDWR).unwrap();
    let n = who.read(&mut buf).unwrap();
    let whoami = note(&mut seen, "whoami", String::from_utf8_lossy(&buf[..n]));
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    assert_eq!(
        whoami,
        format!("pid={} uid={uid} gid={gid}\n", std::process::id())
    );
    assert_eq!(
        note(&mut seen, "whoami again", who.read(&mut buf).unwrap()),
        0,
        "the second read goes on from where the first ended"
    );

    let empty = served
        .open("testbed:queue/empty", O_RDWR | O_NONBLOCK)
        .unwrap();
    assert_eq!(
        note(
            &mut seen,
            "nonblocking read",
            empty.read(&mut buf).unwrap_err().kind()
        ),
        ErrorKind::WouldBlock
    );

    // A blocking read parks, other clients go on, and it completes later.
    let slow = served.open("testbed:queue/slow", O_RDWR).unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 16];
        let n = slow.read(&mut buf).unwrap();
        (slow, buf[..n].to_vec())
    });
    for _ in 0..20 {
        empty.write(b"x").unwrap();
        empty.read(&mut [0u8; 1]).unwrap();
    }
    assert!(
        !reader.is_finished(),
        "the read returned with nothing to read"
    );
    let writer = served.open("testbed:queue/slow", O_RDWR).unwrap();
    writer.write(b"finally").unwrap();
    writer.close().unwrap();
    let (slow, got) = reader.join().unwrap();
    assert_eq!(note(&mut seen, "parked read", got), b"finally");

    // A readiness event: the scheme is asked again after every round.
    let watcher = served.open("testbed:queue/events", O_RDWR).unwrap();
    assert_eq!(
        note(
            &mut seen,
            "watch",
            watcher.fevent(EventFlags::EVENT_READ).unwrap()
        ),
        EventFlags::empty()
    );
    let writer = served.open("testbed:queue/events", O_RDWR).unwrap();
    writer.write(b"news").unwrap();
    let mut fds = [PollFd::new(watcher.as_fd(), PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(PATIENCE).unwrap();
    assert_eq!(poll(&mut fds, timeout).unwrap(), 1, "no event");
    assert_eq!(
        note(&mut seen, "event", watcher.take_events().unwrap()),
        EventFlags::EVENT_READ
    );

    for handle in [queue, who, empty, slow, watcher, writer] {
        handle.close().unwrap();
    }
    let stats = served.open("testbed:stats", O_RDWR).unwrap();
    let n = stats.read(&mut buf).unwrap();
    assert_eq!(
        note(&mut seen, "stats", String::from_utf8_lossy(&buf[..n])),
        "opened=7 closed=7 queues=4\n"
    );
    seen
}

#[test]
fn served_through_a_replica_clients_see_what_they_see_served_directly() {
    let direct = Served::start(Testbed::new());
    let expected = session(&direct);
    direct.finish();

    let (mut replica, channel) = spawn_replica();
    let (forwarder, hello) = Forwarder::connect(SeqpacketLink::new(channel)).unwrap();
    assert_eq!(
        hello,
        Hello {
            tick: None,
            name: "testbed".into(),
            line: None,
            cause_read: None,
        }
    );
    let replicated = Served::start(forwarder);
    assert_eq!(session(&replicated), expected);

    // Dropping the forwarder ends the channel, which ends the replica.
    drop(replicated.finish());
    let status = replica.wait().unwrap();
    assert!(status.success(), "the replica ended with {status}");
}

#[test]
fn a_replica_that_died_is_eio_for_clients() {
    let (mut replica, channel) = spawn_replica();
    let (forwarder, _) = Forwarder::connect(SeqpacketLink::new(channel)).unwrap();
    let served = Served::start(forwarder);
    let queue = served.open("testbed:queue/q", O_RDWR).unwrap();
    assert_eq!(queue.write(b"before").unwrap(), 6);

    replica.kill().unwrap();
    replica.wait().unwrap();
    assert_eq!(errno(queue.write(b"after")), EIO);
    assert_eq!(errno(served.open("testbed:queue/q", O_RDWR)), EIO);
    served.finish();
}

fn head(opcode: Opcode, id: usize, len: u64) -> RequestHead {
    let caller = Caller {
        pid: 7,
        uid: 8,
        gid: 9,
    };
    let mut head = RequestHead::new(opcode, id, caller);
    head.header.len = len;
    head
}

fn request(head: RequestHead, metadata: &[u64], payload: &[u8]) -> Vec<u8> {
    let mut message = Vec::new();
    encode_request(&head, metadata, payload, &mut message).unwrap();
    message
}

/// The reply a message must get: its result, extra byte and payload.
type Expected = (syscall::error::Result<usize>, u8, Vec<u8>);

#[test]
fn the_replica_reads_once_and_writes_once_per_message() {
    let (supervisor, replica_end) = seqpacket_pair();
    let replica = std::thread::spawn(move || {
        serve_replica(replica_end, "testbed", &mut Testbed::new(), None)
    });

    let mut round = Vec::new();
    encode_round(&[], false, &mut round);
    let mut fevent = head(Opcode::Fevent, 1, 0);
    fevent.header.flags = EventFlags::EVENT_WRITE.bits() as u64;
    // What comes back is the Stat's bytes, padding zeroed.
    let mut stat = Stat::default();
    let bytes: &mut [u8] = &mut stat;
    bytes.fill(0);
    stat.st_mode = MODE_FILE | 0o666;
    let write_bits = EventFlags::EVENT_WRITE.bits();
    let script: Vec<(Vec<u8>, Expected)> = vec![
        (
            request(head(Opcode::Open, 0, 0), &[], b"queue/a"),
            (Ok(1), 0, vec![]),
        ),
        (
            request(head(Opcode::Write, 1, 5), &[], b"hello"),
            (Ok(5), 0, vec![]),
        ),
        (b"\x07junk".to_vec(), (Err(Error::new(EPROTO)), 0, vec![])),
        (
            request(head(Opcode::Read, 1, 16), &[], b""),
            (Ok(5), 0, b"hello".to_vec()),
        ),
        (
            request(head(Opcode::Read, 1, 16), &[], b""),
            (Err(Error::new(EWOULDBLOCK)), 0, vec![]),
        ),
        (
            request(head(Opcode::Call, 1, 0), &[CALL_REVERSE], b"abc"),
            (Ok(3), 0, b"cba".to_vec()),
        ),
        (round, (Ok(0), 0, vec![0; 16])), // no handles to answer for; no wish for the next round
        (
            request(head(Opcode::Fstat, 1, 0), &[], b""),
            (Ok(0), 0, stat.to_vec()),
        ),
        (
            request(head(Opcode::Fpath, 1, 64), &[], b""),
            (Ok(15), 0, b"testbed:queue/a".to_vec()),
        ),
        (request(fevent, &[], b""), (Ok(write_bits), 0, vec![])),
        (
            request(head(Opcode::Close, 1, 0), &[], b""),
            (Ok(0), 0, vec![]),
        ),
        (
            request(head(Opcode::Read, 1, 16), &[], b""),
            (Err(Error::new(EBADF)), 0, vec![]),
        ),
        (
            request(head(Opcode::Open, 0, 0), &[], b"whoami"),
            (Ok(2), NewFdFlags::POSITIONED.bits(), vec![]),
        ),
        (
            request(head(Opcode::Read, 2, 64), &[], b""),
            (Ok(18), 0, b"pid=7 uid=8 gid=9\n".to_vec()),
        ),
    ];

    // Every message before any reply is read: a replica that read twice for
    // one message would swallow the next one, and one that wrote twice would
    // leave a reply too many.
    let fd = supervisor.as_raw_fd();
    for (message, _) in &script {
        send(fd, message, MsgFlags::MSG_NOSIGNAL).unwrap();
    }
    shutdown(fd, Shutdown::Write).unwrap();
    replica
        .join()
        .unwrap()
        .expect("the end of the channel ends the replica cleanly");

    let mut written = Vec::new();
    let mut buf = vec![0u8; MAX_REPLY_LEN + 1];
    // Blocking, not MSG_DONTWAIT: a process another test forks at this moment
    // holds the replica's end until it execs, and the end of the stream comes
    // only then.
    let timeout = nix::sys::time::TimeVal::new(10, 0);
    nix::sys::socket::setsockopt(
        &supervisor,
        nix::sys::socket::sockopt::ReceiveTimeout,
        &timeout,
    )
    .unwrap();
    loop {
        match recv(fd, &mut buf, MsgFlags::empty()).unwrap() {
            0 => break,
            n => written.push(buf[..n].to_vec()),
        }
    }
    assert_eq!(written.len(), 1 + script.len(), "one hello, one reply each");
    assert_eq!(Hello::decode(&written[0]).unwrap().name, "testbed");
    for ((message, expected), reply) in script.iter().zip(&written[1..]) {
        let reply = decode_reply(reply).unwrap();
        let got = (
            reply.header.result(),
            reply.header.extra,
            reply.payload.to_vec(),
        );
        assert_eq!(&got, expected, "reply to {message:?}");
    }
}
