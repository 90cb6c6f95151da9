//! The host transport end to end: a testbed daemon in its own process, clients in
//! this process, in threads, in child processes, and raw sockets speaking the wire
//! protocol badly on purpose.

use std::io::{self, ErrorKind};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{
    connect, recv, send, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr,
};
use scheme_runtime::wire::{
    encode_request_head, Opcode, RequestHeader, ResponseHeader, MAX_METADATA, MAX_PAYLOAD,
    MAX_REQUEST_LEN, REQUEST_HEADER_LEN, RESPONSE_HEADER_LEN,
};
use scheme_testbed::process::{DaemonProcess, Stats};
use scheme_testbed::{CALL_REVERSE, QUEUE_CAPACITY};
use syscall::error::{EBADF, EINVAL, EMSGSIZE, ENODEV, ENOENT, EPROTO};
use syscall::flag::{EventFlags, O_NONBLOCK, O_RDWR};

fn start() -> DaemonProcess {
    DaemonProcess::start(env!("CARGO_BIN_EXE_testbed").as_ref()).expect("testbed daemon starts")
}

fn errno(result: io::Result<impl std::fmt::Debug>) -> i32 {
    result
        .expect_err("expected an error")
        .raw_os_error()
        .expect("an errno")
}

/// Proves the daemon still serves after whatever a test did to it.
fn assert_serving(daemon: &mut DaemonProcess) {
    assert!(daemon.is_alive(), "daemon died");
    let handle = daemon
        .open("testbed:queue/alive", O_RDWR)
        .expect("open after the fault");
    let mut payload = *b"ok?";
    handle
        .call(&mut payload, &[CALL_REVERSE])
        .expect("call after the fault");
    assert_eq!(&payload, b"?ko");
}

/// A client that writes raw messages to the scheme's socket.
struct RawClient(OwnedFd);

impl RawClient {
    fn connect(daemon: &DaemonProcess) -> Self {
        let fd = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        connect(
            fd.as_raw_fd(),
            &UnixAddr::new(&daemon.dir().join("testbed")).unwrap(),
        )
        .unwrap();
        Self(fd)
    }

    fn send(&self, message: &[u8]) {
        send(self.0.as_raw_fd(), message, MsgFlags::MSG_NOSIGNAL).unwrap();
    }

    fn request(&self, header: RequestHeader, payload: &[u8]) {
        let mut head = [0u8; REQUEST_HEADER_LEN + MAX_METADATA * 8];
        let n = encode_request_head(&header, &[], payload.len(), &mut head);
        let mut message = head[..n].to_vec();
        message.extend_from_slice(payload);
        self.send(&message);
    }

    fn reply(&self) -> ResponseHeader {
        let mut buf = [0u8; RESPONSE_HEADER_LEN + 256];
        let n = recv(self.0.as_raw_fd(), &mut buf, MsgFlags::empty()).unwrap();
        assert!(n >= RESPONSE_HEADER_LEN, "short reply of {n} bytes");
        ResponseHeader::decode(buf[..RESPONSE_HEADER_LEN].try_into().unwrap())
            .expect("a valid reply")
    }
}

fn header(opcode: Opcode, len: u64) -> RequestHeader {
    RequestHeader {
        opcode,
        flags: 0,
        offset: 0,
        len,
    }
}

#[test]
fn eight_concurrent_clients_get_their_own_results() {
    let mut daemon = start();
    std::thread::scope(|scope| {
        for client in 0..8 {
            let daemon = &daemon;
            scope.spawn(move || {
                let queue = daemon
                    .open(&format!("testbed:queue/client-{client}"), O_RDWR)
                    .unwrap();
                let mut buf = [0u8; 64];
                for round in 0..200 {
                    let message = format!("client {client} round {round}");
                    assert_eq!(queue.write(message.as_bytes()).unwrap(), message.len());
                    let n = queue.read(&mut buf).unwrap();
                    assert_eq!(
                        &buf[..n],
                        message.as_bytes(),
                        "client {client} got another's data"
                    );
                    let mut payload = message.clone().into_bytes();
                    assert_eq!(
                        queue.call(&mut payload, &[CALL_REVERSE]).unwrap(),
                        message.len()
                    );
                    assert_eq!(payload, message.bytes().rev().collect::<Vec<_>>());
                }
                queue.close().unwrap();
            });
        }
    });
    let stats = Stats::read(&daemon).unwrap();
    assert_eq!((stats.opened, stats.closed), (8, 8));
    assert_serving(&mut daemon);
}

#[test]
fn a_blocking_read_does_not_stall_other_clients() {
    let daemon = start();
    let reader = daemon.open("testbed:queue/slow", O_RDWR).unwrap();
    std::thread::scope(|scope| {
        let blocked = scope.spawn(move || {
            let mut buf = [0u8; 16];
            let n = reader.read(&mut buf).unwrap();
            buf[..n].to_vec()
        });
        // While the reader is parked, other clients go on being served.
        let other = daemon.open("testbed:queue/busy", O_RDWR).unwrap();
        for _ in 0..100 {
            other.write(b"x").unwrap();
            other.read(&mut [0u8; 1]).unwrap();
        }
        assert!(
            !blocked.is_finished(),
            "the read returned with nothing to read"
        );
        daemon
            .open("testbed:queue/slow", O_RDWR)
            .unwrap()
            .write(b"finally")
            .unwrap();
        assert_eq!(blocked.join().unwrap(), b"finally");
    });
}

#[test]
fn nonblocking_handles_get_would_block_and_writers_get_back_pressure() {
    let daemon = start();
    let queue = daemon
        .open("testbed:queue/nb", O_RDWR | O_NONBLOCK)
        .unwrap();
    assert_eq!(
        queue.read(&mut [0u8; 8]).unwrap_err().kind(),
        ErrorKind::WouldBlock
    );

    let chunk = vec![1u8; MAX_PAYLOAD];
    let mut queued = 0;
    while queued < QUEUE_CAPACITY {
        queued += queue.write(&chunk).unwrap();
    }
    assert_eq!(
        queue.write(b"more").unwrap_err().kind(),
        ErrorKind::WouldBlock
    );
    queue.set_nonblocking(false);
    assert_eq!(queue.read(&mut [0u8; 8]).unwrap(), 8);
}

#[test]
fn the_scheme_sees_the_callers_pid_uid_and_gid() {
    let daemon = start();
    let who = daemon.open("testbed:whoami", O_RDWR).unwrap();
    let mut buf = [0u8; 64];
    let n = who.read(&mut buf).unwrap();
    let (uid, gid) = (nix::unistd::getuid(), nix::unistd::getgid());
    assert_eq!(
        std::str::from_utf8(&buf[..n]).unwrap(),
        format!("pid={} uid={uid} gid={gid}\n", std::process::id())
    );

    if !uid.is_root() {
        eprintln!("not root: the identity of a client running as another user is not checked");
        return;
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_testbed"));
    child
        .args(["client", "testbed:whoami", "--read"])
        .env(scheme_runtime::SCHEME_DIR_ENV, daemon.dir())
        .uid(4321)
        .gid(8765);
    let output = child.output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.ends_with(" uid=4321 gid=8765\n"), "{text:?}");
}

#[test]
fn unknown_scheme_bad_path_and_unknown_handle_are_clear_errors() {
    let mut daemon = start();
    assert_eq!(errno(daemon.open("nosuch:thing", O_RDWR)), ENODEV);
    assert_eq!(errno(daemon.open("testbed:no/such/path", O_RDWR)), ENOENT);
    assert_eq!(
        daemon.open("not a scheme path", O_RDWR).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );

    // A request on a connection that holds no handle.
    let raw = RawClient::connect(&daemon);
    raw.request(header(Opcode::Read, 8), &[]);
    assert_eq!(raw.reply().result().unwrap_err().errno, EBADF);

    // A handle used after it was closed.
    raw.request(header(Opcode::Open, 0), b"queue/closed");
    assert_eq!(raw.reply().result(), Ok(0));
    raw.request(header(Opcode::Close, 0), &[]);
    assert_eq!(raw.reply().result(), Ok(0));
    raw.request(header(Opcode::Fpath, 64), &[]);
    assert_eq!(raw.reply().result().unwrap_err().errno, EBADF);
    // A second open on a connection that already holds a handle.
    raw.request(header(Opcode::Open, 0), b"queue/one");
    assert_eq!(raw.reply().result(), Ok(0));
    raw.request(header(Opcode::Open, 0), b"queue/two");
    assert_eq!(raw.reply().result().unwrap_err().errno, EINVAL);
    assert_serving(&mut daemon);
}

#[test]
fn malformed_messages_get_eproto_and_the_daemon_goes_on() {
    let mut daemon = start();
    let raw = RawClient::connect(&daemon);
    raw.send(b"garbage");
    assert_eq!(raw.reply().result().unwrap_err().errno, EPROTO);
    let mut bad_opcode = [0u8; REQUEST_HEADER_LEN];
    bad_opcode[0] = 0xee;
    raw.send(&bad_opcode);
    assert_eq!(raw.reply().result().unwrap_err().errno, EPROTO);
    // The same connection still works for a good request.
    raw.request(header(Opcode::Open, 0), b"whoami");
    assert_eq!(raw.reply().result(), Ok(0));
    assert_serving(&mut daemon);
}

#[test]
fn oversized_payloads_are_refused_whole() {
    let mut daemon = start();
    let queue = daemon.open("testbed:queue/big", O_RDWR).unwrap();
    assert_eq!(errno(queue.write(&vec![0u8; MAX_PAYLOAD + 1])), EMSGSIZE);
    let mut payload = vec![0u8; MAX_PAYLOAD + 1];
    assert_eq!(errno(queue.call(&mut payload, &[CALL_REVERSE])), EMSGSIZE);
    assert_eq!(
        errno(queue.call(&mut [0u8; 4], &[0; MAX_METADATA + 1])),
        EINVAL
    );

    // A client that ignores the limit and sends one huge message anyway.
    let raw = RawClient::connect(&daemon);
    raw.send(&vec![0u8; MAX_REQUEST_LEN + 100]);
    assert_eq!(raw.reply().result().unwrap_err().errno, EMSGSIZE);
    assert_eq!(
        queue.fstat().unwrap().st_size,
        0,
        "nothing of the refused writes was queued"
    );
    assert_serving(&mut daemon);
}

#[test]
fn clients_that_vanish_mid_request_are_cleaned_up() {
    let mut daemon = start();
    // Parked in a blocking read, then gone.
    let raw = RawClient::connect(&daemon);
    raw.request(header(Opcode::Open, 0), b"queue/vanish");
    assert_eq!(raw.reply().result(), Ok(0));
    raw.request(
        RequestHeader {
            opcode: Opcode::Read,
            flags: 0,
            offset: 0,
            len: 8,
        },
        &[],
    );
    drop(raw);
    // Sent a request and left before its reply.
    let raw = RawClient::connect(&daemon);
    raw.request(header(Opcode::Open, 0), b"whoami");
    drop(raw);

    let stats = Stats::wait_closed(&daemon, 2, Duration::from_secs(5)).unwrap();
    assert_eq!((stats.opened, stats.closed), (2, 2));
    assert_serving(&mut daemon);
}

#[test]
fn a_killed_clients_handles_are_all_closed() {
    let mut daemon = start();
    let mut holder = daemon
        .spawn_holding_client("testbed:queue/held", 3)
        .unwrap();
    assert_eq!(
        Stats::read(&daemon).unwrap(),
        Stats {
            opened: 3,
            closed: 0
        }
    );
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(
        Stats::wait_closed(&daemon, 3, Duration::from_secs(5)).unwrap(),
        Stats {
            opened: 3,
            closed: 3
        }
    );
    assert_serving(&mut daemon);
}

#[test]
fn readiness_events_arrive_on_the_handle() {
    let daemon = start();
    let watcher = daemon.open("testbed:queue/events", O_RDWR).unwrap();
    assert_eq!(
        watcher.fevent(EventFlags::EVENT_READ).unwrap(),
        EventFlags::empty()
    );
    assert_eq!(watcher.take_events().unwrap(), EventFlags::empty());

    daemon
        .open("testbed:queue/events", O_RDWR)
        .unwrap()
        .write(b"news")
        .unwrap();
    let mut fds = [PollFd::new(watcher.as_fd(), PollFlags::POLLIN)];
    assert_eq!(
        poll(&mut fds, PollTimeout::from(5000u16)).unwrap(),
        1,
        "no event within 5 s"
    );
    assert_eq!(watcher.take_events().unwrap(), EventFlags::EVENT_READ);
    // One report per edge: nothing more until the queue drains and fills again.
    assert_eq!(watcher.take_events().unwrap(), EventFlags::empty());
    // An event that arrives while a reply is awaited is kept for take_events.
    assert_eq!(watcher.read(&mut [0u8; 8]).unwrap(), 4);
    daemon
        .open("testbed:queue/events", O_RDWR)
        .unwrap()
        .write(b"more")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = EventFlags::empty();
    while seen.is_empty() && Instant::now() < deadline {
        watcher.fstat().unwrap();
        seen = watcher.take_events().unwrap();
    }
    assert_eq!(seen, EventFlags::EVENT_READ);
}

#[test]
fn fstat_fpath_and_shared_memory() {
    let daemon = start();
    let queue = daemon.open("/scheme/testbed/queue/meta", O_RDWR).unwrap();
    queue.write(b"12345").unwrap();
    assert_eq!(queue.fstat().unwrap().st_size, 5);
    assert_eq!(queue.fpath().unwrap(), "testbed:queue/meta");

    let writer = daemon
        .open("testbed:shared", O_RDWR)
        .unwrap()
        .mmap(0, 4096, true)
        .unwrap();
    let reader = daemon
        .open("testbed:shared", O_RDWR)
        .unwrap()
        .mmap(0, 4096, false)
        .unwrap();
    // SAFETY: both mappings are 4096 bytes and live to the end of the test.
    unsafe {
        writer.as_ptr().add(100).write_volatile(0xa5);
        assert_eq!(reader.as_ptr().add(100).read_volatile(), 0xa5);
    }
    let shared = daemon.open("testbed:shared", O_RDWR).unwrap();
    assert_eq!(errno(shared.mmap(0, 8192, false)), EINVAL);
    assert_eq!(errno(shared.mmap(0, 0, false)), EINVAL);
    assert_eq!(errno(queue.mmap(0, 4096, false)), EINVAL);
}

#[test]
fn a_second_daemon_for_the_same_scheme_is_refused() {
    let daemon = start();
    let output = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .arg("serve")
        .env(scheme_runtime::SCHEME_DIR_ENV, daemon.dir())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("already served"), "{stderr}");
}

/// Linux's `ESTALE`, as clients on the host see it (Redox numbers it alike).
const ESTALE: i32 = 116;

#[test]
fn a_handle_whose_server_died_is_stale_once_and_reopens_on_the_successor() {
    let mut daemon = start();
    let mut handle = daemon.open("testbed:queue/restart", O_RDWR).unwrap();
    handle.write(b"before").unwrap();
    std::thread::scope(|scope| {
        // A request in flight when the server dies fails once, cleanly.
        let parked = daemon.open("testbed:queue/parked", O_RDWR).unwrap();
        let reader = scope.spawn(move || errno(parked.read(&mut [0u8; 8])));
        std::thread::sleep(Duration::from_millis(50));
        assert!(!reader.is_finished(), "the read had nothing to return");
        daemon.kill().unwrap();
        assert_eq!(reader.join().unwrap(), ESTALE, "the parked read");
    });
    assert_eq!(errno(handle.write(b"lost")), ESTALE);
    assert_eq!(errno(handle.read(&mut [0u8; 8])), ESTALE);

    std::thread::scope(|scope| {
        let reopened = scope.spawn(|| {
            let started = Instant::now();
            handle
                .reopen(Duration::from_secs(10))
                .map(|()| started.elapsed())
        });
        // The reopen waits for the successor rather than failing at once.
        std::thread::sleep(Duration::from_millis(100));
        daemon.start_successor().unwrap();
        let waited = reopened.join().unwrap().expect("reopened");
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
    });
    // The same path, on the successor: a fresh queue, working as ever.
    handle.write(b"after").unwrap();
    let mut buf = [0u8; 16];
    let n = handle.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"after");
}

#[test]
fn reopening_a_scheme_that_does_not_come_back_gives_up_after_the_wait() {
    let mut daemon = start();
    let mut handle = daemon.open("testbed:queue/gone", O_RDWR).unwrap();
    daemon.kill().unwrap();
    let started = Instant::now();
    assert_eq!(errno(handle.reopen(Duration::from_millis(200))), ENODEV);
    let waited = started.elapsed();
    assert!(
        (Duration::from_millis(200)..Duration::from_secs(5)).contains(&waited),
        "{waited:?}"
    );
}
