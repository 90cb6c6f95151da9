//! The few process operations std does not offer, for Linux and Redox.
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
