//! Serving a scheme on Redox.
//!
//! The same loop as on the host: handle requests, park a read or write that
//! would block on a blocking handle, and after every round let the daemon run,
//! retry parked requests and post readiness events. The scheme socket is
//! non-blocking, and an event queue wakes the loop for requests, for the
//! daemon's wake descriptors (an interrupt line) or for a `time:` timer when
//! there is a tick or the daemon asks for an early round, whichever comes first.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::time::Duration;

use libredox::flag::{O_CLOEXEC, O_RDWR};
use redox_scheme::scheme::{register_sync_scheme, IntoTag, Op, SchemeResponse, SchemeState};
use redox_scheme::{Request, RequestKind, Response, SignalBehavior, Socket};
use syscall::error::{Error, EINTR, ENOSYS, EWOULDBLOCK};
use syscall::flag::{EventFlags, CLOCK_MONOTONIC};
use syscall::{CallFlags, Event, TimeSpec};

use crate::readiness::{Caller, Readiness};
use crate::{caller_ctx, io_error, SchemeDaemon};

fn lib_error(error: libredox::error::Error) -> io::Error {
    io_error(Error::new(error.errno()))
}

/// Makes `daemon` reachable as scheme `name` and serves it until the kernel
/// closes the scheme socket; a round runs when requests arrive or one of the
/// daemon's wake descriptors is readable.
pub fn serve<D: SchemeDaemon>(name: &str, daemon: &mut D) -> io::Result<()> {
    serve_with_tick(name, daemon, None)
}

/// As [`serve`], and also runs a round every `tick` when no request arrives, for
/// daemons whose state changes on its own (children to reap, a device to poll).
///
/// Started by init as a `type = { scheme = "name" }` service, the daemon hands
/// its scheme capability to init through the `INIT_NOTIFY` descriptor and init
/// registers it in the root namespace; started otherwise, it registers the scheme
/// in its own namespace.
///
/// Started as a replica ([`crate::REPLICA_CHANNEL_ENV`] is set), the daemon
/// serves the supervisor on that channel instead of creating the scheme.
pub fn serve_with_tick<D: SchemeDaemon>(
    name: &str,
    daemon: &mut D,
    tick: Option<Duration>,
) -> io::Result<()> {
    if let Some(served) = crate::replicated::serve_if_replica(name, daemon, tick) {
        return served;
    }
    let socket = Socket::nonblock().map_err(io_error)?;
    announce(&socket, name, daemon)?;
    log::info!("serving scheme {name}");
    let mut server = RedoxServer {
        socket,
        state: SchemeState::new(),
        parked: Vec::new(),
        readiness: Readiness::new(),
    };
    let mut wakeups = Wakeups::new(&server.socket, tick)?;
    loop {
        wakeups.follow(&daemon.wake_fds())?;
        wakeups.wait(daemon.next_round_within())?;
        // Drain what arrived; EWOULDBLOCK means the queue is empty.
        loop {
            match server.socket.next_request(SignalBehavior::Restart) {
                Ok(Some(request)) => server.handle(request, daemon)?,
                Ok(None) => return Ok(()),
                Err(error) if error.errno == EWOULDBLOCK => break,
                Err(error) => return Err(io_error(error)),
            }
        }
        server.round(daemon)?;
    }
}

fn announce<D: SchemeDaemon>(socket: &Socket, name: &str, daemon: &mut D) -> io::Result<()> {
    match std::env::var("INIT_NOTIFY")
        .ok()
        .and_then(|fd| fd.parse::<usize>().ok())
    {
        Some(notify_fd) => {
            let cap_id = daemon.scheme_root().map_err(io_error)?;
            let cap_fd = socket
                .create_this_scheme_fd(0, cap_id, 0, 0)
                .map_err(io_error)?;
            libredox::call::call_wo(notify_fd, &cap_fd.to_ne_bytes(), CallFlags::FD, &[])
                .map_err(lib_error)?;
            let _ = libredox::call::close(notify_fd);
            Ok(())
        }
        None => register_sync_scheme(socket, name, daemon).map_err(io_error),
    }
}

struct Parked {
    op: Op,
    caller: Caller,
}

struct RedoxServer {
    socket: Socket,
    state: SchemeState,
    parked: Vec<Parked>,
    readiness: Readiness<usize>,
}

impl RedoxServer {
    fn handle<D: SchemeDaemon>(&mut self, request: Request, daemon: &mut D) -> io::Result<()> {
        match request.kind() {
            RequestKind::Call(call) => {
                let ctx = call.caller();
                let caller = Caller {
                    pid: ctx.pid,
                    uid: ctx.uid,
                    gid: ctx.gid,
                };
                let mut op = match call.op() {
                    Ok(op) => op,
                    Err(call) => return self.respond(Response::err(ENOSYS, call)),
                };
                let response = op.handle_sync_dont_consume(&ctx, daemon, &mut self.state);
                // What a read or write used up is told afresh if it comes back
                // within the round (`Readiness::rearm`).
                let both = EventFlags::EVENT_READ | EventFlags::EVENT_WRITE;
                match &op {
                    Op::Read(read) => self.readiness.rearm(read.fd, both),
                    Op::Write(write) => self.readiness.rearm(write.fd, both),
                    _ => {}
                }
                if would_block(&op, &response) {
                    self.parked.push(Parked { op, caller });
                    return Ok(());
                }
                if let (Op::Fevent { fd, req_flags, .. }, SchemeResponse::Regular(Ok(ready))) =
                    (&op, &response)
                {
                    self.readiness.register(
                        *fd,
                        *fd,
                        caller,
                        *req_flags,
                        EventFlags::from_bits_truncate(*ready),
                    );
                }
                self.respond(into_response(response, op))
            }
            RequestKind::OnClose { id } => {
                self.readiness.forget(id);
                daemon.on_close(id);
                Ok(())
            }
            RequestKind::Cancellation(cancel) => {
                match self.parked.iter().position(|p| p.op.req_id() == cancel.id) {
                    Some(at) => {
                        let Parked { op, .. } = self.parked.swap_remove(at);
                        self.respond(Response::err(EINTR, op))
                    }
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }

    /// After a round of requests: the daemon's own work, parked requests, events.
    fn round<D: SchemeDaemon>(&mut self, daemon: &mut D) -> io::Result<()> {
        daemon.after_round();
        for Parked { mut op, caller } in std::mem::take(&mut self.parked) {
            let ctx = caller_ctx(caller.pid, caller.uid, caller.gid);
            let response = op.handle_sync_dont_consume(&ctx, daemon, &mut self.state);
            if would_block(&op, &response) {
                self.parked.push(Parked { op, caller });
            } else {
                self.respond(into_response(response, op))?;
            }
        }
        let mut posted = Ok(());
        let socket = &self.socket;
        self.readiness.poll(daemon, |id, _, flags| {
            if posted.is_ok() {
                posted = socket
                    .write_response(
                        Response::post_fevent(id, flags.bits()),
                        SignalBehavior::Restart,
                    )
                    .map(drop)
                    .map_err(io_error);
            }
        });
        posted
    }

    fn respond(&self, response: Response) -> io::Result<()> {
        self.socket
            .write_response(response, SignalBehavior::Restart)
            .map_err(io_error)?;
        Ok(())
    }
}

/// An event queue over the scheme socket and a monotonic `time:` timer: armed
/// a tick ahead every time the tick's deadline passes, and sooner when the
/// daemon asks for an early round.
struct Wakeups {
    queue: File,
    timer: File,
    tick: Option<Duration>,
    /// When the armed tick falls due (time since the clock's start).
    tick_due: Option<Duration>,
    /// When the earliest armed early round falls due.
    early_due: Option<Duration>,
    /// The daemon's wake descriptors the queue follows.
    followed: Vec<RawFd>,
}

impl Wakeups {
    const SOCKET: usize = 0;
    const TIMER: usize = 1;
    const WAKE: usize = 2;

    fn new(socket: &Socket, tick: Option<Duration>) -> io::Result<Self> {
        let open = |path: &str| -> io::Result<File> {
            let fd = libredox::call::open(path, O_RDWR | O_CLOEXEC, 0).map_err(lib_error)?;
            // SAFETY: open returned a new descriptor that nothing else owns.
            Ok(unsafe { File::from_raw_fd(fd as RawFd) })
        };
        let mut wakeups = Self {
            queue: open("/scheme/event")?,
            timer: open(&format!("/scheme/time/{CLOCK_MONOTONIC}"))?,
            tick,
            tick_due: None,
            early_due: None,
            followed: Vec::new(),
        };
        wakeups.subscribe(socket.inner().raw(), Self::SOCKET)?;
        wakeups.subscribe(wakeups.timer.as_raw_fd() as usize, Self::TIMER)?;
        wakeups.arm_tick()?;
        Ok(wakeups)
    }

    /// Follows the descriptors of `fds` the queue does not follow yet; the
    /// kernel drops a closed one from the queue by itself.
    fn follow(&mut self, fds: &[RawFd]) -> io::Result<()> {
        self.followed.retain(|fd| fds.contains(fd));
        for &fd in fds {
            if !self.followed.contains(&fd) {
                self.subscribe(fd as usize, Self::WAKE)?;
                self.followed.push(fd);
            }
        }
        Ok(())
    }

    fn subscribe(&mut self, fd: usize, data: usize) -> io::Result<()> {
        self.queue.write_all(&Event {
            id: fd,
            flags: EventFlags::EVENT_READ,
            data,
        })
    }

    /// The monotonic clock now, as time since its start.
    fn now(&mut self) -> io::Result<Duration> {
        let mut now = TimeSpec::default();
        self.timer.read_exact(&mut now)?;
        Ok(Duration::new(now.tv_sec as u64, now.tv_nsec as u32))
    }

    /// Asks the timer for an event at `due`. Every deadline written fires once.
    fn arm(&mut self, due: Duration) -> io::Result<()> {
        self.timer.write_all(&TimeSpec {
            tv_sec: due.as_secs() as i64,
            tv_nsec: due.subsec_nanos() as i32,
        })
    }

    /// Arms the tick a tick from now, if there is a tick.
    fn arm_tick(&mut self) -> io::Result<()> {
        let Some(tick) = self.tick else {
            return Ok(());
        };
        let due = self.now()? + tick;
        self.tick_due = Some(due);
        self.arm(due)
    }

    /// Blocks until a request, a wake descriptor or the timer wakes the loop;
    /// `early`, the daemon's wish for a round sooner than its tick.
    fn wait(&mut self, early: Option<Duration>) -> io::Result<()> {
        if let Some(early) = early {
            let due = self.now()? + early;
            // A round due sooner is armed already.
            let armed_sooner = |armed: Option<Duration>| armed.is_some_and(|armed| armed <= due);
            if !armed_sooner(self.early_due) && !armed_sooner(self.tick_due) {
                self.early_due = Some(due);
                self.arm(due)?;
            }
        }
        let mut event = Event::default();
        self.queue.read_exact(&mut event)?;
        if event.data == Self::TIMER {
            let now = self.now()?;
            if self.early_due.is_some_and(|due| due <= now) {
                self.early_due = None;
            }
            // Only the tick's own deadline arms the next tick, so early
            // rounds never multiply the ticks.
            if self.tick_due.is_some_and(|due| due <= now) {
                self.arm_tick()?;
            }
        }
        Ok(())
    }
}

fn would_block(op: &Op, response: &SchemeResponse) -> bool {
    matches!(op, Op::Read(_) | Op::Write(_))
        && !op.is_explicitly_nonblock()
        && matches!(
            response,
            SchemeResponse::Regular(Err(Error { errno: EWOULDBLOCK }))
        )
}

fn into_response(response: SchemeResponse, op: Op) -> Response {
    match response {
        SchemeResponse::Opened(open) => Response::open_dup_like(open, op),
        SchemeResponse::RegularAndNotifyOnDetach(status) => {
            Response::new_notify_on_detach(status, op)
        }
        SchemeResponse::Regular(status) => Response::new(status, op),
    }
}
