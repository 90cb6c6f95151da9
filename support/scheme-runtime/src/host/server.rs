//! Serving a scheme on the Linux host.
//!
//! A plain single-threaded event loop over poll(2): the listening socket, one
//! connection per open handle, and an optional tick. A request that would block on
//! a blocking handle is parked, not waited for, so one client's blocking read never
//! stalls another; parked requests are retried after every round.
//!
//! The descriptor set is rebuilt from the connection table every round, so
//! parking and resuming a connection needs no bookkeeping beyond `parked`;
//! poll's cost per round grows with the number of connections, which for a
//! driver's handful of clients is nothing next to the wake-ups.

use std::collections::HashMap;
use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{accept4, bind, getsockopt, listen, sockopt, Backlog, SockFlag, UnixAddr};
use syscall::error::{Error, Result, EBADF, EINVAL, EMSGSIZE, EPROTO, EWOULDBLOCK};
use syscall::flag::{EventFlags, O_FCNTL_MASK, O_NONBLOCK};

use super::socket::{recv, send, seqpacket_socket};
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
    socket_path: PathBuf,
    listener: OwnedFd,
    connections: HashMap<u64, Connection>,
    next_token: u64,
    readiness: Readiness<u64>,
    root_id: Option<usize>,
    tick: Option<Duration>,
    receive_buffer: Vec<u8>,
    data_buffer: Vec<u8>,
}

impl HostServer {
    /// Listens as scheme `name` in `dir`. A socket left by a daemon that died is
    /// replaced; one that still answers means the scheme is already served.
    pub fn bind(dir: &Path, name: &str) -> io::Result<Self> {
        crate::SchemePath::parse(&format!("{name}:")).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("scheme name {name:?}: {e}"),
            )
        })?;
        std::fs::create_dir_all(dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create scheme directory {}: {e}", dir.display()),
            )
        })?;
        let socket_path = dir.join(name);
        if socket_path.exists() {
            if super::socket::connect_to(&socket_path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "scheme {name} is already served at {}",
                        socket_path.display()
                    ),
                ));
            }
            std::fs::remove_file(&socket_path)?;
        }
        let listener = seqpacket_socket()?;
        bind(listener.as_raw_fd(), &UnixAddr::new(&socket_path)?).map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("cannot bind {}: {e}", socket_path.display()),
            )
        })?;
        // Any user may connect: the scheme decides per caller, as on Redox.
        std::fs::set_permissions(
            &socket_path,
            std::os::unix::fs::PermissionsExt::from_mode(0o666),
        )?;
        listen(&listener, Backlog::new(128).map_err(io::Error::from)?)?;
        nix::fcntl::fcntl(
            &listener,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )?;
        log::info!("serving scheme {name} at {}", socket_path.display());
        Ok(Self {
            name: name.to_owned(),
            socket_path,
            listener,
            connections: HashMap::new(),
            next_token: 0,
            readiness: Readiness::new(),
            root_id: None,
            tick: None,
            receive_buffer: vec![0; MAX_REQUEST_LEN + 1],
            data_buffer: vec![0; MAX_PAYLOAD],
        })
    }

    /// Also run a round every `tick` when no request arrives, for daemons whose
    /// state changes on its own (a device to poll in `after_round`).
    pub fn set_tick(&mut self, tick: Option<Duration>) {
        self.tick = tick;
    }

    pub fn socket_path(&self) -> &Path {
        &self.socket_path
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
        fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
        for token in &tokens {
            let connection = &self.connections[token];
            let wanted = match connection.parked {
                Some(_) => PollFlags::empty(),
                None => PollFlags::POLLIN,
            };
            fds.push(PollFd::new(connection.socket.as_fd(), wanted));
        }
        let timeout = match self.tick {
            Some(tick) => PollTimeout::try_from(tick).unwrap_or(PollTimeout::MAX),
            None => PollTimeout::NONE,
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
        for (index, revents) in ready {
            match index {
                0 => self.accept_all()?,
                i => self.serve_connection(tokens[i - 1], revents, root_id, daemon),
            }
        }
        daemon.after_round();
        self.retry_parked(daemon);
        self.report_readiness(daemon);
        Ok(())
    }

    fn accept_all(&mut self) -> io::Result<()> {
        loop {
            let raw = match accept4(
                self.listener.as_raw_fd(),
                SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
            ) {
                Ok(raw) => raw,
                Err(Errno::EAGAIN) => return Ok(()),
                Err(Errno::EINTR | Errno::ECONNABORTED) => continue,
                // Out of descriptors or memory: keep serving the clients we have.
                Err(e) => {
                    log::warn!("{}: accept failed: {e}", self.name);
                    return Ok(());
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
            Ok(received) if received.len == 0 && hung_up => return self.disconnect(token, daemon),
            Ok(received) if received.truncated => {
                log::warn!(
                    "{}: connection {token}: message over {MAX_REQUEST_LEN} bytes",
                    self.name
                );
                Outcome::status(Err(Error::new(EMSGSIZE)))
            }
            Ok(received) => self.dispatch(token, received.len, root_id, daemon),
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
                return Outcome::Park(Parked {
                    header,
                    data: if header.opcode == Opcode::Write {
                        request.payload.to_vec()
                    } else {
                        Vec::new()
                    },
                });
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

impl Drop for HostServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.socket_path);
    }
}

/// Whether a read or write must wait for the scheme's state to change: it would
/// block, on a handle that blocks.
fn must_wait(fcntl_flags: u32, result: Result<usize>) -> bool {
    let blocking = fcntl_flags as usize & O_NONBLOCK == 0;
    blocking && matches!(result, Err(Error { errno: EWOULDBLOCK }))
}
