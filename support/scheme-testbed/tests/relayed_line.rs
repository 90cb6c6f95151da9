//! An interrupt line relayed to a replica, over the real host transport: the
//! replica names its line in the hello, the forwarder opens it, wakes on its
//! readiness event, tells the replica in a round that it fired, and unmasks it
//! when the replica acknowledges. Alone in its test binary because the
//! forwarder opens the line through the process's scheme directory
//! (`SCHEME_DIR`).

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};
use redox_scheme::scheme::SchemeSync;
use redox_scheme::{CallerCtx, OpenResult};
use scheme_runtime::replicated::codec::MAX_REPLY_LEN;
use scheme_runtime::replicated::{serve_replica, Forwarder, RelayedLine, ReplicaLink};
use scheme_runtime::{HostServer, SchemeDaemon, SCHEME_DIR_ENV};
use syscall::error::{Error, Result, EBADF, EINVAL, ENOENT, EWOULDBLOCK};
use syscall::flag::EventFlags;
use syscall::schemev2::NewFdFlags;

/// How long the test waits for anything before it calls it a hang.
const PATIENCE: Duration = Duration::from_secs(10);

/// A line as `mmio:` serves one: its path `line` reads the count of firings
/// (`EWOULDBLOCK` while none), a write acknowledges them, and it is readable
/// while it has fired.
#[derive(Default)]
struct LineState {
    fired: u64,
    acknowledgements: u64,
}

struct Lines(Arc<Mutex<LineState>>);

impl SchemeSync for Lines {
    fn scheme_root(&mut self) -> Result<usize> {
        Ok(0)
    }

    fn openat(
        &mut self,
        _: usize,
        path: &str,
        _: usize,
        _: u32,
        _: &CallerCtx,
    ) -> Result<OpenResult> {
        match path {
            "line" => Ok(OpenResult::ThisScheme {
                number: 1,
                flags: NewFdFlags::empty(),
            }),
            _ => Err(Error::new(ENOENT)),
        }
    }

    fn read(&mut self, id: usize, buf: &mut [u8], _: u64, _: u32, _: &CallerCtx) -> Result<usize> {
        let state = self.0.lock().expect("line state");
        match (id, state.fired) {
            (1, 0) => Err(Error::new(EWOULDBLOCK)),
            (1, fired) => {
                buf[..8].copy_from_slice(&fired.to_le_bytes());
                Ok(8)
            }
            _ => Err(Error::new(EBADF)),
        }
    }

    fn write(&mut self, id: usize, buf: &[u8], _: u64, _: u32, _: &CallerCtx) -> Result<usize> {
        if id != 1 || buf.len() != 8 {
            return Err(Error::new(EINVAL));
        }
        let mut state = self.0.lock().expect("line state");
        state.fired = 0;
        state.acknowledgements += 1;
        Ok(8)
    }

    fn fevent(&mut self, _: usize, flags: EventFlags, _: &CallerCtx) -> Result<EventFlags> {
        let fired = self.0.lock().expect("line state").fired > 0;
        Ok(flags
            & if fired {
                EventFlags::EVENT_READ
            } else {
                EventFlags::empty()
            })
    }
}

impl SchemeDaemon for Lines {}

/// A daemon whose line is relayed: it counts the firings it is told of and
/// acknowledges each.
struct Relaying {
    line: RelayedLine,
    told: Arc<AtomicUsize>,
}

impl SchemeSync for Relaying {
    fn scheme_root(&mut self) -> Result<usize> {
        Ok(0)
    }
}

impl SchemeDaemon for Relaying {
    fn after_round(&mut self) {
        if self.line.take_fired() {
            self.told.fetch_add(1, Ordering::SeqCst);
            self.line.acknowledge();
        }
    }

    fn relayed_line(&self) -> Option<RelayedLine> {
        Some(self.line.clone())
    }
}

/// The supervisor's end of a socket pair to one replica.
struct SeqpacketLink(OwnedFd);

impl SeqpacketLink {
    fn receive(&mut self, reply: &mut Vec<u8>) -> io::Result<()> {
        reply.resize(MAX_REPLY_LEN + 1, 0);
        let n = recv(self.0.as_raw_fd(), reply, MsgFlags::empty())?;
        reply.truncate(n);
        match n {
            0 => Err(io::ErrorKind::UnexpectedEof.into()),
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

    fn last_exchange_reached_out(&self) -> bool {
        false
    }
}

/// `daemon` served as `name` in `dir` by a thread, a round every `tick`,
/// until `stop`.
fn serve<D: SchemeDaemon + Send + 'static>(
    dir: &Path,
    name: &str,
    mut daemon: D,
    tick: Duration,
    stop: &Arc<AtomicBool>,
) -> JoinHandle<io::Result<()>> {
    let mut server = HostServer::bind(dir, name).expect("bind");
    server.set_tick(Some(tick));
    let stop = Arc::clone(stop);
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            server.run_round(&mut daemon)?;
        }
        Ok(())
    })
}

fn wait_for(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < PATIENCE,
            "{what}: not within {PATIENCE:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_relayed_line_wakes_the_forwarder_reaches_the_replica_once_and_is_unmasked_by_its_acknowledgement(
) {
    let dir: PathBuf = std::env::temp_dir().join(format!("relayed-line-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scheme dir");
    // The only test in this binary, so no other reads the variable meanwhile.
    std::env::set_var(SCHEME_DIR_ENV, &dir);
    let stop = Arc::new(AtomicBool::new(false));

    let state = Arc::new(Mutex::new(LineState::default()));
    let lines = serve(
        &dir,
        "lines",
        Lines(Arc::clone(&state)),
        Duration::from_millis(5),
        &stop,
    );

    let (supervisor, replica_end) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .expect("socketpair");
    let told = Arc::new(AtomicUsize::new(0));
    let told_replica = Arc::clone(&told);
    let replica = std::thread::spawn(move || {
        let mut daemon = Relaying {
            line: RelayedLine::new("/scheme/lines/line"),
            told: told_replica,
        };
        serve_replica(replica_end, "relaying", &mut daemon, None)
    });
    let (forwarder, hello) = Forwarder::connect(SeqpacketLink(supervisor)).expect("connect");
    assert_eq!(hello.line.as_deref(), Some("/scheme/lines/line"));
    // A tick far longer than the test: only the line can start a round.
    let relaying = serve(
        &dir,
        "relaying",
        forwarder,
        Duration::from_secs(3600),
        &stop,
    );

    let acknowledgements = || state.lock().expect("line state").acknowledgements;
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(told.load(Ordering::SeqCst), 0, "quiet line, no firing told");
    state.lock().expect("line state").fired = 1;
    wait_for("the replica told of the firing", || {
        told.load(Ordering::SeqCst) == 1
    });
    wait_for("the line acknowledged", || acknowledgements() == 1);
    assert_eq!(state.lock().expect("line state").fired, 0, "unmasked");
    state.lock().expect("line state").fired = 3;
    wait_for("the second firing told", || {
        told.load(Ordering::SeqCst) == 2
    });
    wait_for("and acknowledged", || acknowledgements() == 2);

    stop.store(true, Ordering::Relaxed);
    // The forwarder's server sleeps on its hour-long tick: the test ends
    // without joining it; the replica ends with the process.
    drop(relaying);
    drop(replica);
    lines.join().expect("lines thread").expect("lines served");
    let _ = std::fs::remove_dir_all(&dir);
}
