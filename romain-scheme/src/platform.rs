//! The few process operations std does not offer, for Linux and Redox, and the
//! control socket of a replication engine (Linux only: the engine needs ptrace).
//!
//! Spawning, reaping (`Child::try_wait`, a `waitpid` with `WNOHANG`) and SIGKILL
//! (`Child::kill`) go through std on both platforms.

use std::io;

/// Sends SIGSTOP to `pid`.
#[cfg(target_os = "linux")]
pub fn stop(pid: u32) -> io::Result<()> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let pid = i32::try_from(pid).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    kill(Pid::from_raw(pid), Signal::SIGSTOP)?;
    Ok(())
}

/// Sends SIGSTOP to `pid`.
#[cfg(target_os = "redox")]
pub fn stop(pid: u32) -> io::Result<()> {
    libredox::call::kill(pid as usize, libredox::protocol::SIGSTOP as u32)
        .map_err(|e| scheme_runtime::io_error(syscall::error::Error::new(e.errno())))
}

/// Why a group asked for replicas runs its driver alone here (where the
/// supervisor has no engine to run).
#[cfg(target_os = "linux")]
pub fn why_replication_is_unavailable() -> &'static str {
    "this system cannot trace processes"
}

/// Why a group asked for replicas runs its driver alone on Redox: the
/// engine's group logic runs on Linux only, and the replicas' stubs need the
/// kernel of `recipes/kernel`, which is checked once.
#[cfg(target_os = "redox")]
pub fn why_replication_is_unavailable() -> &'static str {
    static FORWARDS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if *FORWARDS.get_or_init(romain_stub::kernel_forwards_faults) {
        "the kernel forwards faults to the replicas' stubs, but the engine does not run on \
         Redox yet"
    } else {
        "the kernel does not forward faults to threads (recipes/kernel builds one that \
         does) and the engine does not run on Redox yet"
    }
}

/// The (effective) user this supervisor runs as.
#[cfg(target_os = "linux")]
pub fn own_uid() -> u32 {
    nix::unistd::geteuid().as_raw()
}

/// The (effective) user this supervisor runs as.
#[cfg(target_os = "redox")]
pub fn own_uid() -> u32 {
    // Should geteuid fail, answering root leaves control to root alone.
    libredox::call::geteuid().map_or(0, |uid| uid as u32)
}

/// Has the end of any child process (a driver, an engine) interrupt the
/// supervisor's wait for requests, so that a dead driver is restarted at once
/// rather than at the next tick. The handler does nothing: `poll(2)` returns
/// `EINTR` whatever the flags, and the round that follows reaps the child.
/// `SA_RESTART` lets every other interrupted call carry on as if nothing
/// happened.
#[cfg(target_os = "linux")]
pub fn wake_on_child_exit() -> io::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    extern "C" fn wake(_: nix::libc::c_int) {}
    let action = SigAction::new(
        SigHandler::Handler(wake),
        SaFlags::SA_RESTART | SaFlags::SA_NOCLDSTOP,
        SigSet::empty(),
    );
    // SAFETY: the handler touches nothing; it only exists to interrupt poll(2).
    unsafe { sigaction(Signal::SIGCHLD, &action) }?;
    Ok(())
}

/// Redox's scheme loop waits on its socket; a dead driver is found at the next
/// tick.
#[cfg(target_os = "redox")]
pub fn wake_on_child_exit() -> io::Result<()> {
    Ok(())
}

/// Blocks `SIGCHLD` in the calling thread (a heartbeat probe), so that the
/// signal interrupts the main thread's wait, which reaps, and not this one.
#[cfg(target_os = "linux")]
pub fn leave_child_signals_to_the_main_thread() {
    use nix::sys::signal::{SigSet, Signal};
    let mut child = SigSet::empty();
    child.add(Signal::SIGCHLD);
    // Cannot fail with a valid set; at worst the tick finds the dead driver.
    let _ = child.thread_block();
}

/// Nothing to direct on Redox (see [`wake_on_child_exit`]).
#[cfg(target_os = "redox")]
pub fn leave_child_signals_to_the_main_thread() {}

/// Has the process `command` spawns run at a low priority: under load it gets
/// a few percent of the processor, and whatever time the others leave.
#[cfg(target_os = "linux")]
pub fn start_at_low_priority(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setpriority is async-signal-safe and touches no memory of the
    // parent.
    unsafe {
        command.pre_exec(|| {
            if nix::libc::setpriority(nix::libc::PRIO_PROCESS, 0, LOW_PRIORITY_NICE) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The nice value of a process started by [`start_at_low_priority`]: at 19 a standby
/// under a TCP stream was sometimes not ready a second later, at 10 it was, and
/// its start took about 70 ms of stream per kill instead of about 110 ms
/// (`make bench-restart`, the per-kill column).
#[cfg(target_os = "linux")]
const LOW_PRIORITY_NICE: i32 = 10;

/// Gives process `pid` the usual priority back (nice 0); only root may.
#[cfg(target_os = "linux")]
pub fn set_usual_priority(pid: u32) -> io::Result<()> {
    // SAFETY: a plain system call on a pid, no memory involved.
    let set = unsafe { nix::libc::setpriority(nix::libc::PRIO_PROCESS, pid, 0) };
    if set == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Redox: processes keep the priority they start with.
#[cfg(target_os = "redox")]
pub fn start_at_low_priority(_command: &mut std::process::Command) {}

#[cfg(target_os = "redox")]
pub fn set_usual_priority(_pid: u32) -> io::Result<()> {
    Ok(())
}

/// Makes the spawned process die with the supervisor, so that no driver runs
/// unsupervised and holds its scheme name against the next supervisor's
/// restarts. Redox has no equivalent (no parent-death signal).
#[cfg(target_os = "linux")]
pub fn die_with_supervisor(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    let supervisor = nix::unistd::getpid();
    // SAFETY: prctl and getppid are async-signal-safe and touch no memory of
    // the parent.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            // The supervisor may have died before the prctl took effect.
            if nix::unistd::getppid() != supervisor {
                return Err(io::Error::other("the supervisor is gone"));
            }
            Ok(())
        });
    }
}

/// Descriptors handed to a child wait in copies from here up, above every
/// descriptor they are handed over at, so that handing one over never
/// overwrites another's source.
#[cfg(target_os = "linux")]
const FIRST_STASHED_FD: std::os::fd::RawFd = 64;

/// Has the process `command` spawns find `source` at descriptor `at`, open
/// across its exec (and only there: the copy kept for it is close-on-exec in
/// this process). Any number of descriptors may be handed over this way, in any
/// order.
#[cfg(target_os = "linux")]
fn hand_over(
    command: &mut std::process::Command,
    source: std::os::fd::BorrowedFd<'_>,
    at: std::os::fd::RawFd,
) -> io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg};
    use nix::libc;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    debug_assert!(at < FIRST_STASHED_FD);
    let stashed = fcntl(source, FcntlArg::F_DUPFD_CLOEXEC(FIRST_STASHED_FD))?;
    // SAFETY: fcntl just opened it for this function alone.
    let stashed = unsafe { OwnedFd::from_raw_fd(stashed) };
    // SAFETY: dup2 is async-signal-safe and touches no memory of the parent.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(stashed.as_raw_fd(), at) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(())
}

/// A driver's scheme as the supervisor holds it across the driver's restarts
/// (see [`scheme_runtime::SchemeListener`]): clients that open it meanwhile
/// wait for the successor, and nobody else can take the name.
#[cfg(target_os = "linux")]
pub type HeldScheme = scheme_runtime::SchemeListener;

/// Binds scheme `name` for the drivers this supervisor starts.
#[cfg(target_os = "linux")]
pub fn hold_scheme(name: &str) -> io::Result<Option<HeldScheme>> {
    scheme_runtime::SchemeListener::bind(&scheme_runtime::scheme_dir(), name).map(Some)
}

/// Has the process `command` spawns find `scheme` at descriptor `at`, named in
/// its environment, where its server takes it instead of binding the name.
#[cfg(target_os = "linux")]
pub fn hand_over_scheme(
    command: &mut std::process::Command,
    scheme: &HeldScheme,
    at: std::os::fd::RawFd,
) -> io::Result<()> {
    use std::os::fd::AsFd;
    hand_over(command, scheme.as_fd(), at)?;
    command.env(scheme_runtime::LISTENER_FD_ENV, at.to_string());
    Ok(())
}

/// Redox: a driver registers its scheme itself at every start; nothing holds
/// the name between two of them yet.
#[cfg(target_os = "redox")]
#[derive(Debug)]
pub struct HeldScheme(std::convert::Infallible);

#[cfg(target_os = "redox")]
pub fn hold_scheme(_name: &str) -> io::Result<Option<HeldScheme>> {
    Ok(None)
}

#[cfg(target_os = "redox")]
pub fn hand_over_scheme(
    _command: &mut std::process::Command,
    scheme: &HeldScheme,
    _at: std::os::fd::RawFd,
) -> io::Result<()> {
    match scheme.0 {}
}

/// The supervisor's end of a standby's pipe ([`scheme_runtime::standby`]): one
/// byte tells the waiting process to take over; dropping it tells it to leave.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub struct StandbySignal(std::io::PipeWriter);

#[cfg(target_os = "linux")]
impl StandbySignal {
    /// Creates the pipe and has the process `command` spawns find its read end
    /// at descriptor `at`, named in its environment. Returns this end; the
    /// other is open in this process as long as `command` is.
    pub fn for_child(
        command: &mut std::process::Command,
        at: std::os::fd::RawFd,
    ) -> io::Result<Self> {
        use std::os::fd::AsFd;
        let (reader, writer) = std::io::pipe()?;
        hand_over(command, reader.as_fd(), at)?;
        command.env(scheme_runtime::standby::STANDBY_FD_ENV, at.to_string());
        Ok(Self(writer))
    }

    /// Tells the standby to take over; an error if it is gone.
    pub fn take_over(mut self) -> io::Result<()> {
        use std::io::Write;
        self.0.write_all(b"g")
    }
}

/// Redox: no standby processes yet (the descriptor passing they use is
/// Linux's); the supervisor starts a fresh process at every restart there.
#[cfg(target_os = "redox")]
#[derive(Debug)]
pub struct StandbySignal(std::convert::Infallible);

#[cfg(target_os = "redox")]
impl StandbySignal {
    pub fn for_child(
        _command: &mut std::process::Command,
        _at: std::os::fd::RawFd,
    ) -> io::Result<Self> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "standby processes are not supported on Redox yet",
        ))
    }

    pub fn take_over(self) -> io::Result<()> {
        match self.0 {}
    }
}

/// `romain:`'s end of a replication engine's control socket: SOCK_SEQPACKET, so
/// each command and each answer is one message, never split or merged.
#[cfg(target_os = "linux")]
#[derive(Debug)]
pub struct ControlSocket(std::os::fd::OwnedFd);

#[cfg(target_os = "linux")]
impl ControlSocket {
    /// Creates a connected pair and has the process `command` spawns find the
    /// other end at descriptor `at`, open across its exec (and only there: both
    /// ends are close-on-exec in this process). Returns this end; the other is
    /// open in this process as long as `command` is.
    pub fn for_child(
        command: &mut std::process::Command,
        at: std::os::fd::RawFd,
    ) -> io::Result<Self> {
        use std::os::fd::AsFd;
        let (ours, theirs) = Self::pair()?;
        hand_over(command, theirs.as_fd(), at)?;
        Ok(ours)
    }

    /// This end and the other, both close-on-exec.
    pub fn pair() -> io::Result<(Self, std::os::fd::OwnedFd)> {
        use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        Ok((Self(ours), theirs))
    }

    /// Sends one message; fails rather than waits when the socket is full.
    pub fn send(&self, message: &[u8]) -> io::Result<()> {
        use nix::sys::socket::{send, MsgFlags};
        use std::os::fd::AsRawFd;
        send(
            self.0.as_raw_fd(),
            message,
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        )?;
        Ok(())
    }

    /// Waits up to `wait` for one message and puts it in `buf` (cut to its
    /// length); its length, or `None` when none came in time. A closed peer is
    /// an `UnexpectedEof` error.
    pub fn receive(&self, buf: &mut [u8], wait: std::time::Duration) -> io::Result<Option<usize>> {
        use nix::errno::Errno;
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use nix::sys::socket::{recv, MsgFlags};
        use std::os::fd::{AsFd, AsRawFd};
        use std::time::Instant;

        let deadline = Instant::now() + wait;
        loop {
            match recv(self.0.as_raw_fd(), buf, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(len) => return Ok(Some(len)),
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(errno) => return Err(errno.into()),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            // Rounded up: a timeout rounded down to 0 would spin.
            let timeout =
                PollTimeout::try_from(left.as_micros().div_ceil(1000)).unwrap_or(PollTimeout::MAX);
            match poll(
                &mut [PollFd::new(self.0.as_fd(), PollFlags::POLLIN)],
                timeout,
            ) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(errno) => return Err(errno.into()),
            }
        }
    }
}

/// Redox has no process tracing, hence no replication engine to control: the
/// supervisor refuses replicated groups there, and this type has no value.
#[cfg(target_os = "redox")]
#[derive(Debug)]
pub struct ControlSocket(std::convert::Infallible);

#[cfg(target_os = "redox")]
impl ControlSocket {
    pub fn for_child(
        _command: &mut std::process::Command,
        _at: std::os::fd::RawFd,
    ) -> io::Result<Self> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "replication needs process tracing, which Redox lacks",
        ))
    }

    pub fn send(&self, _message: &[u8]) -> io::Result<()> {
        match self.0 {}
    }

    pub fn receive(
        &self,
        _buf: &mut [u8],
        _wait: std::time::Duration,
    ) -> io::Result<Option<usize>> {
        match self.0 {}
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    #[test]
    fn the_child_finds_its_end_of_the_control_socket_and_nothing_else() {
        // `cat` at the other end sends every message back as it came.
        let mut command = Command::new("/bin/sh");
        command
            .args(["-c", "exec cat <&3 >&3"])
            .stdin(Stdio::null());
        let socket = ControlSocket::for_child(&mut command, 3).unwrap();
        let mut child = command.spawn().unwrap();
        drop(command);

        let mut buf = [0u8; 64];
        let started = Instant::now();
        assert_eq!(
            socket.receive(&mut buf, Duration::from_millis(50)).unwrap(),
            None
        );
        assert!(started.elapsed() >= Duration::from_millis(50));

        for message in [&b"status"[..], b"flip 1 reg rax 3"] {
            socket.send(message).unwrap();
            let len = socket
                .receive(&mut buf, Duration::from_secs(10))
                .unwrap()
                .expect("an answer");
            assert_eq!(&buf[..len], message);
        }

        // `cat` ends at end of input only if this end is the last one open:
        // the child did not inherit it.
        drop(socket);
        let deadline = Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the child never saw the end");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_peer_that_ends_is_an_error() {
        let mut command = Command::new("/bin/true");
        command.stdin(Stdio::null());
        let socket = ControlSocket::for_child(&mut command, 3).unwrap();
        command.status().unwrap();
        drop(command);
        let error = socket
            .receive(&mut [0u8; 8], Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(
            socket.send(b"status").unwrap_err().kind(),
            io::ErrorKind::BrokenPipe
        );
    }
}
