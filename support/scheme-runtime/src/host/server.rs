//! Serving a scheme on the Linux host.
//!
//! A plain single-threaded event loop over poll(2): the listening socket, one
//! connection per open handle, the daemon's wake descriptors (an interrupt
//! line) and an optional tick. A request that would block on
//! a blocking handle is parked, not waited for, so one client's blocking read never
//! stalls another; parked requests are retried after every round.
//!
//! The descriptor set is rebuilt from the connection table every round, so
//! parking and resuming a connection needs no bookkeeping beyond `parked`;
//! poll's cost per round grows with the number of connections, which for a
//! driver's handful of clients is nothing next to the wake-ups.
//!
//! Any local user may connect, so what one client can hold is bounded
//! ([`ConnectionLimits`]): connections per uid and in all, below the descriptor
//! limit, so the daemon always keeps descriptors for its own work. A refused
//! connection gets one reply (`EMFILE` over the uid's share, `ENFILE` over the
//! total) and is closed. When `accept` itself fails for want of descriptors or
//! memory, the listener rests for a moment instead of being polled in a loop.
//! Requests carry no descriptors: any a client sends are closed on arrival and the
//! request is refused. End of stream, half-closed or not, ends the connection.
//! The identity a handle acts with is that of the process that sent the `open`
//! (`SCM_CREDENTIALS`), not of the one that connected, so an unopened connection
//! handed to another process opens as that process.

use std::collections::HashMap;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{accept4, getsockopt, sockopt, SockFlag};
use syscall::error::{Error, Result, EBADF, EINVAL, EMFILE, EMSGSIZE, ENFILE, EPROTO, EWOULDBLOCK};
use syscall::flag::{EventFlags, O_FCNTL_MASK, O_NONBLOCK};

use super::listener::SchemeListener;
use super::socket::{recv, send, Credentials};
use crate::perform::{perform, Operation, Performed};
use crate::readiness::{Caller, Readiness};
use crate::wire::{
    decode_request, Opcode, RequestHeader, ResponseHeader, ResponseKind, MAX_PAYLOAD,
    MAX_REQUEST_LEN,
};
use crate::{caller_ctx, SchemeDaemon};

/// The environment variable naming the directory of scheme sockets.
pub const SCHEME_DIR_ENV: &str = "SCHEME_DIR";
const DEFAULT_SCHEME_DIR: &str = "/run/schemes";

/// Where scheme sockets live: `$SCHEME_DIR`, or `/run/schemes`.
pub fn scheme_dir() -> PathBuf {
    std::env::var_os(SCHEME_DIR_ENV)
        .filter(|dir| !dir.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_SCHEME_DIR), PathBuf::from)
}

/// Serves `daemon` as scheme `name` in [`scheme_dir`] until an I/O error stops it;
/// a round runs only when requests arrive.
pub fn serve<D: SchemeDaemon>(name: &str, daemon: &mut D) -> io::Result<()> {
    serve_with_tick(name, daemon, None)
}

/// As [`serve`], and also runs a round every `tick` when no request arrives, for
/// daemons whose state changes on its own (children to reap, a device to poll).
///
/// Started as a replica ([`crate::REPLICA_CHANNEL_ENV`] is set), the daemon
/// serves the supervisor on that channel instead of binding the scheme.
pub fn serve_with_tick<D: SchemeDaemon>(
    name: &str,
    daemon: &mut D,
    tick: Option<Duration>,
) -> io::Result<()> {
    if let Some(served) = crate::replicated::serve_if_replica(name, daemon, tick) {
        return served;
    }
    let mut server = HostServer::bind(&scheme_dir(), name)?;
    server.set_tick(tick);
    server.run(daemon)
}

/// How many connections a server keeps at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Per uid other than root.
    pub per_uid: usize,
    /// In all, root's included.
    pub total: usize,
}

impl ConnectionLimits {
    /// Connections a uid other than root may hold: far more than a driver or a
    /// client opens, far fewer than the descriptors a daemon has.
    pub const PER_UID: usize = 256;

    /// The defaults for this process: three quarters of the descriptor limit in
    /// all, the rest kept for the daemon's own files (buffers, devices, the
    /// drivers it starts); per uid [`Self::PER_UID`] or half the total, whichever
    /// is less, so one user never takes every place.
    pub fn for_this_process() -> Self {
        let soft = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
            .map_or(1024, |(soft, _)| soft);
        Self::within(usize::try_from(soft).unwrap_or(usize::MAX))
    }

    /// The defaults under a limit of `descriptors` open files.
    pub fn within(descriptors: usize) -> Self {
        let total = (descriptors / 4 * 3).max(4);
        Self {
            per_uid: Self::PER_UID.min(total / 2),
            total,
        }
    }

    /// Whether one more connection from `uid` fits beside `held_by_uid` of its
    /// own and `held` in all; the errno of the refusal if not.
    fn admit(&self, uid: u32, held_by_uid: usize, held: usize) -> Result<()> {
        if held >= self.total {
            Err(Error::new(ENFILE))
        } else if uid != 0 && held_by_uid >= self.per_uid {
            Err(Error::new(EMFILE))
        } else {
            Ok(())
        }
    }
}

/// Connections held per uid, for [`ConnectionLimits::per_uid`]; a uid holding
/// none has no entry, so the table does not grow with every uid ever seen.
#[derive(Debug, Default)]
struct UidCounts(HashMap<u32, usize>);

impl UidCounts {
    fn held(&self, uid: u32) -> usize {
        self.0.get(&uid).copied().unwrap_or(0)
    }

    fn add(&mut self, uid: u32) {
        *self.0.entry(uid).or_default() += 1;
    }

    fn release(&mut self, uid: u32) {
        if let Some(held) = self.0.get_mut(&uid) {
            *held -= 1;
            if *held == 0 {
                self.0.remove(&uid);
            }
        }
    }

    fn move_one(&mut self, from: u32, to: u32) {
        self.release(from);
        self.add(to);
    }
}

/// How long the listener rests after `accept` failed for want of descriptors or
/// memory; the clients already connected are served meanwhile.
const ACCEPT_REST: Duration = Duration::from_millis(50);

/// A request that could not proceed and waits for the scheme's state to change.
struct Parked {
    header: RequestHeader,
    /// A parked write keeps its data: the receive buffer is reused.
    data: Vec<u8>,
}

/// One client connection, holding at most one handle.
struct Connection {
    socket: OwnedFd,
    caller: Caller,
    handle: Option<usize>,
    parked: Option<Parked>,
}

/// What became of a request.
enum Outcome {
    Reply {
        header: ResponseHeader,
        data_len: usize,
        fd: Option<OwnedFd>,
    },
    Park(Parked),
}

impl Outcome {
    fn status(result: Result<usize>) -> Self {
        Self::Reply {
            header: ResponseHeader::reply(result),
            data_len: 0,
            fd: None,
        }
    }

    /// The reply to a performed request, its data in the server's data buffer.
    fn performed(performed: Performed) -> Self {
        let mut header = ResponseHeader::reply(performed.result);
        header.extra = performed.extra;
        Self::Reply {
            header,
            data_len: performed.data_len,
            fd: None,
        }
    }
}

pub struct HostServer {
    name: String,
    listener: SchemeListener,
    connections: HashMap<u64, Connection>,
    next_token: u64,
    readiness: Readiness<u64>,
    root_id: Option<usize>,
    tick: Option<Duration>,
    receive_buffer: Vec<u8>,
    data_buffer: Vec<u8>,
    limits: ConnectionLimits,
    per_uid: UidCounts,
    /// Set while the listener rests after a failed `accept`.
    accept_paused_until: Option<Instant>,
}

impl HostServer {
    /// Listens as scheme `name` in `dir`, on the socket the process that
    /// started this one handed over if it did ([`SchemeListener`]), else on one
    /// bound here: a socket left by a daemon that died is replaced; one that
    /// still answers means the scheme is already served.
    pub fn bind(dir: &Path, name: &str) -> io::Result<Self> {
        let listener = SchemeListener::inherited_or_bind(dir, name)?;
        let handed = if listener.owns_name() {
            ""
        } else {
            " (handed over)"
        };
        log::info!(
            "serving scheme {name} at {}{handed}",
            listener.path().display()
        );
        Ok(Self {
            name: name.to_owned(),
            listener,
            connections: HashMap::new(),
            next_token: 0,
            readiness: Readiness::new(),
            root_id: None,
            tick: None,
            receive_buffer: vec![0; MAX_REQUEST_LEN + 1],
            data_buffer: vec![0; MAX_PAYLOAD],
            limits: ConnectionLimits::for_this_process(),
            per_uid: UidCounts::default(),
            accept_paused_until: None,
        })
    }

    /// Replaces the default [`ConnectionLimits`].
    pub fn set_limits(&mut self, limits: ConnectionLimits) {
        self.limits = limits;
    }

    /// How many client connections are open.
    pub fn connection_count(&self) -> usize {
        self.connections.len()
    }

    /// Also run a round every `tick` when no request arrives, for daemons whose
    /// state changes on its own (a device to poll in `after_round`).
    pub fn set_tick(&mut self, tick: Option<Duration>) {
        self.tick = tick;
    }

    pub fn socket_path(&self) -> &Path {
        self.listener.path()
    }

    /// Serves forever.
    pub fn run<D: SchemeDaemon>(&mut self, daemon: &mut D) -> io::Result<()> {
        loop {
            self.run_round(daemon)?;
        }
    }

    /// Waits for requests (or the tick), handles them, then lets the daemon run,
    /// retries parked requests and reports readiness.
    pub fn run_round<D: SchemeDaemon>(&mut self, daemon: &mut D) -> io::Result<()> {
        let root_id = match self.root_id {
            Some(id) => id,
            None => {
                let id = daemon.scheme_root().map_err(crate::io_error)?;
                *self.root_id.insert(id)
            }
        };
        // The listener first, then every connection: a parked one only to learn of
        // a hang-up. The kernel reports POLLHUP and POLLERR whatever is asked, and a
        // SEQPACKET peer's close sets POLLHUP.
        let tokens: Vec<u64> = self.connections.keys().copied().collect();
        let mut fds = Vec::with_capacity(tokens.len() + 1);
        let resting = self
            .accept_paused_until
            .and_then(|until| until.checked_duration_since(Instant::now()));
        if resting.is_none() {
            self.accept_paused_until = None;
        }
        let listen_for = match resting {
            Some(_) => PollFlags::empty(),
            None => PollFlags::POLLIN,
        };
        fds.push(PollFd::new(self.listener.as_fd(), listen_for));
        for token in &tokens {
            let connection = &self.connections[token];
            let wanted = match connection.parked {
                Some(_) => PollFlags::empty(),
                None => PollFlags::POLLIN,
            };
            fds.push(PollFd::new(connection.socket.as_fd(), wanted));
        }
        let wake_fds = daemon.wake_fds();
        for &fd in &wake_fds {
            // SAFETY: the daemon keeps its wake descriptors open while it runs,
            // and `fds` is dropped before the daemon is called again.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        let tick = round_wait(self.tick, daemon.next_round_within());
        let timeout = match (tick, resting) {
            (Some(a), Some(b)) => PollTimeout::try_from(a.min(b)).unwrap_or(PollTimeout::MAX),
            (Some(wait), None) | (None, Some(wait)) => {
                PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX)
            }
            (None, None) => PollTimeout::NONE,
        };
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        let ready: Vec<(usize, PollFlags)> = fds
            .iter()
            .enumerate()
            .filter_map(|(i, fd)| fd.revents().filter(|r| !r.is_empty()).map(|r| (i, r)))
            .collect();
        drop(fds);
        let mut accepted = Vec::new();
        for (index, revents) in ready {
            match index {
                0 => accepted = self.accept_all()?,
                // A wake descriptor: the round runs, and the daemon drains it.
                i if i > tokens.len() => {}
                i => self.serve_connection(tokens[i - 1], revents, root_id, daemon),
            }
        }
        // A client sends its open right after it connects: answered in the round
        // that accepts it, it waits for no device poll and no second wake-up (a
        // client queued while the scheme restarted has waited long enough).
        // After the connections that were ready, so that a handle closed before
        // another was opened is gone when that one opens, as on Redox.
        for token in accepted {
            self.serve_connection(token, PollFlags::POLLIN, root_id, daemon);
        }
        daemon.after_round();
        self.retry_parked(daemon);
        self.report_readiness(daemon);
        Ok(())
    }

    /// Accepts every waiting connection; the tokens of those admitted.
    fn accept_all(&mut self) -> io::Result<Vec<u64>> {
        let mut accepted = Vec::new();
        loop {
            let raw = match accept4(
                self.listener.as_fd().as_raw_fd(),
                SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            ) {
                Ok(raw) => raw,
                Err(Errno::EAGAIN) => return Ok(accepted),
                Err(Errno::EINTR | Errno::ECONNABORTED) => continue,
                // Out of descriptors or memory: keep serving the clients we have
                // and let the listener rest rather than spin on it.
                Err(e) => {
                    log::warn!(
                        "{}: accept failed: {e}; not accepting for {ACCEPT_REST:?}",
                        self.name
                    );
                    self.accept_paused_until = Some(Instant::now() + ACCEPT_REST);
                    return Ok(accepted);
                }
            };
            // SAFETY: accept4 returned a new descriptor that nothing else owns.
            let socket = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(raw) };
            let credentials = getsockopt(&socket, sockopt::PeerCredentials)?;
            let caller = Caller {
                pid: credentials.pid() as usize,
                uid: credentials.uid(),
                gid: credentials.gid(),
            };
            let held_by_uid = self.per_uid.held(caller.uid);
            if let Err(refusal) = self
                .limits
                .admit(caller.uid, held_by_uid, self.connections.len())
            {
                log::warn!(
                    "{}: connection from pid {} uid {} refused: {} connections held, {held_by_uid} by that uid ({:?})",
                    self.name,
                    caller.pid,
                    caller.uid,
                    self.connections.len(),
                    self.limits
                );
                // One reply says why; the client reads it even after the close.
                let head = ResponseHeader::reply(Err(refusal)).encode();
                let _ = send(socket.as_raw_fd(), &[IoSlice::new(&head)], None, true);
                continue;
            }
            self.per_uid.add(caller.uid);
            let token = self.next_token;
            self.next_token += 1;
            log::debug!(
                "{}: connection {token} from pid {} uid {}",
                self.name,
                caller.pid,
                caller.uid
            );
            self.connections.insert(
                token,
                Connection {
                    socket,
                    caller,
                    handle: None,
                    parked: None,
                },
            );
            accepted.push(token);
        }
    }

    fn serve_connection<D: SchemeDaemon>(
        &mut self,
        token: u64,
        events: PollFlags,
        root_id: usize,
        daemon: &mut D,
    ) {
        let Some(connection) = self.connections.get(&token) else {
            return;
        };
        let hung_up = events.intersects(PollFlags::POLLHUP | PollFlags::POLLERR);
        if connection.parked.is_some() {
            // Only a hang-up wakes a parked connection (see `park`).
            if hung_up {
                self.disconnect(token, daemon);
            }
            return;
        }
        let fd = connection.socket.as_raw_fd();
        let received = {
            let mut parts = [IoSliceMut::new(&mut self.receive_buffer)];
            recv(fd, &mut parts, true)
        };
        let outcome = match received {
            // No request is empty: a zero-length read is the end of the stream,
            // whether or not the client still reads.
            Ok(received) if received.len == 0 => return self.disconnect(token, daemon),
            Ok(received) if !received.fds.is_empty() || received.fds_truncated => {
                log::warn!(
                    "{}: connection {token}: a request carried descriptors (closed)",
                    self.name
                );
                Outcome::status(Err(Error::new(EPROTO)))
            }
            Ok(received) if received.truncated => {
                log::warn!(
                    "{}: connection {token}: message over {MAX_REQUEST_LEN} bytes",
                    self.name
                );
                Outcome::status(Err(Error::new(EMSGSIZE)))
            }
            Ok(received) => self.dispatch(token, received.len, received.sender, root_id, daemon),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) => {
                log::debug!("{}: connection {token}: receive failed: {e}", self.name);
                return self.disconnect(token, daemon);
            }
        };
        self.conclude(token, outcome, daemon);
    }

    /// Decodes and performs one request.
    fn dispatch<D: SchemeDaemon>(
        &mut self,
        token: u64,
        len: usize,
        sender: Option<Credentials>,
        root_id: usize,
        daemon: &mut D,
    ) -> Outcome {
        let connection = self
            .connections
            .get_mut(&token)
            .expect("dispatch on a live connection");
        let request = match decode_request(&mut self.receive_buffer[..len]) {
            Ok(request) => request,
            Err(malformed) => {
                log::warn!(
                    "{}: connection {token}: malformed request: {malformed}",
                    self.name
                );
                return Outcome::status(Err(Error::new(EPROTO)));
            }
        };
        let header = request.header;
        if header.opcode == Opcode::Open && connection.handle.is_none() {
            // The handle acts for whoever sent the open, which need not be the
            // process that connected.
            if let Some(sender) = sender {
                let opener = Caller {
                    pid: sender.pid as usize,
                    uid: sender.uid,
                    gid: sender.gid,
                };
                if opener.uid != connection.caller.uid {
                    self.per_uid.move_one(connection.caller.uid, opener.uid);
                }
                connection.caller = opener;
            }
        }
        let Caller { pid, uid, gid } = connection.caller;
        let ctx = caller_ctx(pid, uid, gid);

        // The connection is the handle: open makes one from the scheme root,
        // everything else uses it.
        let id = match (header.opcode, connection.handle) {
            (Opcode::Open, None) => root_id,
            (Opcode::Open, Some(_)) => {
                log::warn!(
                    "{}: connection {token}: open on a connection that holds a handle",
                    self.name
                );
                return Outcome::status(Err(Error::new(EINVAL)));
            }
            (_, Some(id)) => id,
            (_, None) => return Outcome::status(Err(Error::new(EBADF))),
        };
        if header.opcode == Opcode::Mmap {
            return match daemon.map_fd(id, header.offset, header.len as usize, &ctx) {
                Ok(grant) => Outcome::Reply {
                    header: ResponseHeader::reply(Ok(grant.offset as usize)),
                    data_len: 0,
                    fd: Some(grant.fd),
                },
                Err(error) => Outcome::status(Err(error)),
            };
        }
        let fcntl_flags = match header.opcode {
            Opcode::Open => (header.flags as usize & O_FCNTL_MASK) as u32,
            // Read and write carry the handle's fcntl flags in `flags`.
            _ => header.flags as u32,
        };
        let performed = perform(
            daemon,
            Operation {
                header,
                id,
                fcntl_flags,
                metadata: request.metadata.as_slice(),
                payload: &mut *request.payload,
            },
            &ctx,
            &mut self.data_buffer,
        );
        match header.opcode {
            Opcode::Open => {
                let Ok(number) = performed.result else {
                    return Outcome::status(performed.result);
                };
                connection.handle = Some(number);
                // The client names the handle by its connection, not by number.
                return Outcome::performed(Performed {
                    result: Ok(0),
                    ..performed
                });
            }
            Opcode::Read | Opcode::Write if must_wait(fcntl_flags, performed.result) => {
                self.readiness.rearm(token, REARMED_BY_IO);
                return Outcome::Park(Parked {
                    header,
                    data: if header.opcode == Opcode::Write {
                        request.payload.to_vec()
                    } else {
                        Vec::new()
                    },
                });
            }
            Opcode::Read | Opcode::Write => {
                self.readiness.rearm(token, REARMED_BY_IO);
            }
            Opcode::Fevent => {
                if let Ok(ready) = performed.result {
                    let wanted = EventFlags::from_bits_truncate(header.flags as usize);
                    let ready = EventFlags::from_bits_truncate(ready);
                    self.readiness
                        .register(token, id, connection.caller, wanted, ready);
                }
            }
            Opcode::Close => {
                connection.handle = None;
                self.readiness.forget(token);
            }
            _ => {}
        }
        Outcome::performed(performed)
    }

    /// Sends a reply, or parks the request.
    fn conclude<D: SchemeDaemon>(&mut self, token: u64, outcome: Outcome, daemon: &mut D) {
        let Some(connection) = self.connections.get_mut(&token) else {
            return;
        };
        match outcome {
            // The next rounds stop reading this connection until the request
            // completes, but still learn of a hang-up.
            Outcome::Park(parked) => connection.parked = Some(parked),
            Outcome::Reply {
                header,
                data_len,
                fd,
            } => {
                let head = header.encode();
                let parts = [
                    IoSlice::new(&head),
                    IoSlice::new(&self.data_buffer[..data_len]),
                ];
                let pass_fd = fd.as_ref().map(|fd| fd.as_raw_fd());
                // The client waits for this reply, so its receive queue has room;
                // a full queue means a client that does not play by the protocol.
                if let Err(e) = send(connection.socket.as_raw_fd(), &parts, pass_fd, true) {
                    log::debug!(
                        "{}: connection {token}: reply lost ({e}); closing",
                        self.name
                    );
                    self.disconnect(token, daemon);
                }
            }
        }
    }

    fn retry_parked<D: SchemeDaemon>(&mut self, daemon: &mut D) {
        let parked: Vec<u64> = self
            .connections
            .iter()
            .filter_map(|(token, c)| c.parked.as_ref().map(|_| *token))
            .collect();
        for token in parked {
            let connection = self.connections.get_mut(&token).expect("listed above");
            let (Some(id), Some(mut parked)) = (connection.handle, connection.parked.take()) else {
                continue;
            };
            let Caller { pid, uid, gid } = connection.caller;
            let fcntl_flags = parked.header.flags as u32;
            let performed = perform(
                daemon,
                Operation {
                    header: parked.header,
                    id,
                    fcntl_flags,
                    metadata: &[],
                    payload: &mut parked.data,
                },
                &caller_ctx(pid, uid, gid),
                &mut self.data_buffer,
            );
            if must_wait(fcntl_flags, performed.result) {
                connection.parked = Some(parked);
                continue;
            }
            self.conclude(token, Outcome::performed(performed), daemon);
        }
    }

    fn report_readiness<D: SchemeDaemon>(&mut self, daemon: &mut D) {
        let connections = &self.connections;
        let name = &self.name;
        self.readiness.poll(daemon, |token, id, flags| {
            let Some(connection) = connections.get(&token) else {
                return;
            };
            let header = ResponseHeader {
                kind: ResponseKind::Event,
                extra: 0,
                status: flags.bits() as i64,
            };
            // An event is a hint the client can always re-query: when its queue is
            // full it has unread events already, so dropping this one loses nothing.
            if let Err(e) = send(
                connection.socket.as_raw_fd(),
                &[IoSlice::new(&header.encode())],
                None,
                true,
            ) {
                log::debug!("{name}: handle {id}: event not delivered: {e}");
            }
        });
    }

    fn disconnect<D: SchemeDaemon>(&mut self, token: u64, daemon: &mut D) {
        let Some(connection) = self.connections.remove(&token) else {
            return;
        };
        self.per_uid.release(connection.caller.uid);
        self.readiness.forget(token);
        if let Some(id) = connection.handle {
            log::debug!(
                "{}: connection {token} gone; closing handle {id}",
                self.name
            );
            daemon.on_close(id);
        }
    }
}

/// The wait before the next round: the sooner of the tick and what the daemon
/// asks for.
fn round_wait(tick: Option<Duration>, asked: Option<Duration>) -> Option<Duration> {
    match (tick, asked) {
        (Some(tick), Some(asked)) => Some(tick.min(asked)),
        (tick, asked) => tick.or(asked),
    }
}

/// Whether a read or write must wait for the scheme's state to change: it would
/// block, on a handle that blocks.
fn must_wait(fcntl_flags: u32, result: Result<usize>) -> bool {
    let blocking = fcntl_flags as usize & O_NONBLOCK == 0;
    blocking && matches!(result, Err(Error { errno: EWOULDBLOCK }))
}

/// The readiness a read or a write may use up or restore, which the client's
/// next event should tell afresh ([`Readiness::rearm`]): an acknowledging
/// write may make a handle readable again within the round, as a read may.
const REARMED_BY_IO: EventFlags = EventFlags::EVENT_READ.union(EventFlags::EVENT_WRITE);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sooner_of_the_tick_and_the_daemons_wish_is_waited_for() {
        let ms = Duration::from_millis;
        assert_eq!(round_wait(Some(ms(100)), Some(ms(1))), Some(ms(1)));
        assert_eq!(round_wait(Some(ms(1)), Some(ms(100))), Some(ms(1)));
        assert_eq!(round_wait(None, Some(ms(3))), Some(ms(3)));
        assert_eq!(round_wait(Some(ms(7)), None), Some(ms(7)));
        assert_eq!(round_wait(None, None), None);
    }

    #[test]
    fn limits_keep_a_reserve_of_descriptors_and_half_the_places_from_any_one_uid() {
        assert_eq!(
            ConnectionLimits::within(1024),
            ConnectionLimits {
                per_uid: 256,
                total: 768
            }
        );
        assert_eq!(
            ConnectionLimits::within(64),
            ConnectionLimits {
                per_uid: 24,
                total: 48
            }
        );
        assert_eq!(ConnectionLimits::within(0).total, 4);
    }

    #[test]
    fn a_uid_over_its_share_gets_emfile_and_a_full_server_enfile_even_for_root() {
        let limits = ConnectionLimits {
            per_uid: 2,
            total: 5,
        };
        assert_eq!(limits.admit(1000, 1, 4), Ok(()));
        assert_eq!(limits.admit(1000, 2, 4), Err(Error::new(EMFILE)));
        assert_eq!(
            limits.admit(0, 4, 4),
            Ok(()),
            "root has no share of its own"
        );
        assert_eq!(limits.admit(0, 4, 5), Err(Error::new(ENFILE)));
        assert_eq!(limits.admit(1000, 0, 5), Err(Error::new(ENFILE)));
    }

    #[test]
    fn uid_counts_forget_a_uid_that_holds_nothing() {
        let mut counts = UidCounts::default();
        counts.add(7);
        counts.add(7);
        counts.move_one(7, 8);
        assert_eq!((counts.held(7), counts.held(8)), (1, 1));
        counts.release(7);
        counts.release(8);
        counts.release(9);
        assert!(counts.0.is_empty());
    }
}
