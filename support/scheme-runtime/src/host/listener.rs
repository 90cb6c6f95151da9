//! A scheme's name on the host: the listening socket in the scheme directory,
//! and the hand-over of that socket from a supervisor to the drivers it starts.
//!
//! A scheme is served as long as some process holds its listening socket open,
//! not only while one accepts on it: a client that connects is queued by the
//! kernel and its `open` is answered by whichever process accepts next. So a
//! supervisor that binds a driver's scheme itself and passes the socket to each
//! driver it starts (descriptor [`LISTENER_FD_ENV`] names) keeps the name served
//! across the driver's restarts:
//!
//! - a client that opens during a restart waits for the successor instead of
//!   failing and trying again, and its request is the successor's first;
//! - nobody else can take the name while no driver holds it.
//!
//! The handed-over socket is taken by [`claim_inherited`] (close-on-exec from
//! then on, so that a process the driver starts, a replica above all, never
//! holds it) and used by the first [`crate::HostServer::bind`] of the scheme it
//! is bound to. A process that received none binds the name itself.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::sys::socket::{bind, getsockname, listen, Backlog, UnixAddr};

use super::socket::{connect_to, pass_credentials, seqpacket_socket};

/// The environment variable naming the descriptor of a listening socket handed
/// over by the process that started this one.
pub const LISTENER_FD_ENV: &str = "SCHEME_LISTENER_FD";

/// Connections the kernel queues before the server accepts them: during a
/// restart, every client that opens meanwhile.
const BACKLOG: i32 = 128;

/// A listening scheme socket, and whether its holder bound the name (and takes
/// the socket file away when done) or was handed it.
#[derive(Debug)]
pub struct SchemeListener {
    socket: OwnedFd,
    path: PathBuf,
    owns_name: bool,
}

impl SchemeListener {
    /// Binds scheme `name` in `dir`: non-blocking, open to every user (the scheme
    /// decides per caller, as on Redox), passing every sender's credentials. A
    /// socket left by a server that died is replaced; one that still answers
    /// means the scheme is already served.
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
        let path = dir.join(name);
        if path.exists() {
            if connect_to(&path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("scheme {name} is already served at {}", path.display()),
                ));
            }
            std::fs::remove_file(&path)?;
        }
        let socket = seqpacket_socket()?;
        // Accepted sockets inherit it: every request says who sent it. Set
        // before the name exists, so that between `bind` (the name appears)
        // and `listen` (connects are taken) as little as possible runs: a
        // client that connects in between is refused as if nothing served.
        pass_credentials(&socket)?;
        bind(socket.as_raw_fd(), &UnixAddr::new(&path)?).map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("cannot bind {}: {e}", path.display()),
            )
        })?;
        // From here on the file is ours to take away, also on the errors below.
        let listener = Self {
            socket,
            path,
            owns_name: true,
        };
        std::fs::set_permissions(
            &listener.path,
            std::os::unix::fs::PermissionsExt::from_mode(0o666),
        )?;
        listen(
            &listener.socket,
            Backlog::new(BACKLOG).map_err(io::Error::from)?,
        )?;
        nix::fcntl::fcntl(
            &listener.socket,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )?;
        Ok(listener)
    }

    /// Scheme `name` in `dir` as the process that started this one handed it
    /// over, if it did; otherwise bound here ([`Self::bind`]).
    pub fn inherited_or_bind(dir: &Path, name: &str) -> io::Result<Self> {
        let path = dir.join(name);
        match take_inherited(&path) {
            Some(socket) => Ok(Self {
                socket,
                path,
                owns_name: false,
            }),
            None => Self::bind(dir, name),
        }
    }

    /// Where the socket file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this process bound the name, rather than being handed it.
    pub fn owns_name(&self) -> bool {
        self.owns_name
    }
}

impl AsFd for SchemeListener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl Drop for SchemeListener {
    fn drop(&mut self) {
        if self.owns_name {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The handed-over socket, once [`claim_inherited`] took it and until a server
/// of its scheme takes it from here.
static INHERITED: Mutex<Option<OwnedFd>> = Mutex::new(None);

/// Takes the listening socket [`LISTENER_FD_ENV`] names, if any, makes it
/// close-on-exec and keeps it for the server of its scheme. Call it before
/// starting any process (the replication engine does, before its replicas); a
/// server calls it itself. Later calls change nothing.
pub fn claim_inherited() {
    let Some(fd) = crate::descriptor_from_env(LISTENER_FD_ENV) else {
        return;
    };
    // Named once: a process this one starts finds no stale number.
    std::env::remove_var(LISTENER_FD_ENV);
    if let Some(socket) = listening_socket(fd) {
        *INHERITED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(socket);
    }
}

/// Descriptor `fd` as an owned listening socket, close-on-exec; `None` (and
/// the descriptor left alone) if it is not one, whatever else it may be.
fn listening_socket(fd: RawFd) -> Option<OwnedFd> {
    use nix::sys::socket::{getsockopt, sockopt};
    if fd < 0 {
        return None;
    }
    // SAFETY: only borrowed, to ask what it is; nothing is closed.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    if nix::fcntl::fcntl(borrowed, nix::fcntl::FcntlArg::F_GETFD).is_err() {
        return None;
    }
    if !getsockopt(&borrowed, sockopt::AcceptConn).unwrap_or(false) {
        log::warn!("{LISTENER_FD_ENV}={fd} is no listening socket; ignored");
        return None;
    }
    nix::fcntl::fcntl(
        borrowed,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .ok()?;
    // SAFETY: the process that started this one opened it for this process and
    // named it in the environment, which names it no more; nothing else here
    // owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The handed-over socket if it is bound to `path`.
fn take_inherited(path: &Path) -> Option<OwnedFd> {
    claim_inherited();
    let mut inherited = INHERITED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let bound_here = inherited
        .as_ref()
        .and_then(|socket| getsockname::<UnixAddr>(socket.as_raw_fd()).ok())
        .is_some_and(|address| address.path() == Some(path));
    if bound_here {
        inherited.take()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listener_removes_its_socket_file_only_if_it_bound_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let bound = SchemeListener::bind(dir.path(), "named").unwrap();
        assert!(bound.owns_name());
        let path = bound.path().to_owned();
        assert!(path.exists());
        let err = SchemeListener::bind(dir.path(), "named").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");

        let handed = SchemeListener {
            socket: bound.socket.try_clone().unwrap(),
            path: path.clone(),
            owns_name: false,
        };
        drop(handed);
        assert!(path.exists(), "a handed-over socket leaves the name");
        drop(bound);
        assert!(!path.exists(), "the binder takes it away");
    }

    #[test]
    fn only_a_listening_socket_is_taken_and_it_is_close_on_exec_then() {
        let dir = tempfile::tempdir().unwrap();
        let bound = SchemeListener::bind(dir.path(), "taken").unwrap();
        let copy = bound.socket.try_clone().unwrap();
        let fd = copy.as_raw_fd();
        std::mem::forget(copy);
        let taken = listening_socket(fd).expect("a listening socket");
        let flags = nix::fcntl::fcntl(&taken, nix::fcntl::FcntlArg::F_GETFD).unwrap();
        assert_ne!(flags & nix::libc::FD_CLOEXEC, 0);

        let plain = seqpacket_socket().unwrap();
        assert!(listening_socket(plain.as_raw_fd()).is_none());
        assert!(
            nix::fcntl::fcntl(&plain, nix::fcntl::FcntlArg::F_GETFD).is_ok(),
            "what is not taken stays open"
        );
        assert!(listening_socket(-1).is_none());
    }
}
