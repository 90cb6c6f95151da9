//! The least a replicated event can cost on this machine (DESIGN section 4.1),
//! measured so that the benchmarks can set the engine's cost per event beside
//! it: `n` replicas (forked copies of the calling process) each make the same
//! system call again and again; the seccomp filter the engine gives its replicas
//! stops each at it, and a voter (the caller) reads every replica's registers,
//! compares them, performs the call once, answers its result to all and resumes
//! them. Nothing else: no memory kept in step, no bookkeeping, no scheme. About
//! `n + 1` context switches per event.

use std::time::{Duration, Instant};

use nix::libc;
use nix::sys::ptrace;
use nix::sys::signal::{raise, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::trap::is_seccomp_stop;
use crate::trap::syscalls::{filter, install, Outside};

/// Events run before the clock starts: the first stops fault in pages.
const WARM_UP: u32 = 100;

/// Why a measurement failed.
#[derive(Debug)]
pub enum FloorError {
    Trace(nix::Error),
    /// A replica did not stop where every replica must: at the call.
    UnexpectedStop(String),
    /// The replicas asked for different calls: the measurement is void.
    Diverged,
}

impl std::fmt::Display for FloorError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Trace(errno) => write!(f, "tracing the replicas: {errno}"),
            Self::UnexpectedStop(status) => write!(f, "a replica stopped as {status}"),
            Self::Diverged => f.write_str("the replicas asked for different calls"),
        }
    }
}

impl std::error::Error for FloorError {}

impl From<nix::Error> for FloorError {
    fn from(errno: nix::Error) -> Self {
        Self::Trace(errno)
    }
}

/// The time one event of `replicas` replicas takes, over `events` events.
pub fn measure(replicas: usize, events: u32) -> Result<Duration, FloorError> {
    // Built before forking: a child makes raw system calls only.
    let program = filter(Outside::Trace, None);
    let mut children = Vec::with_capacity(replicas);
    for _ in 0..replicas {
        // SAFETY: the child makes only raw system calls (ptrace, kill, prctl,
        // seccomp, getppid, exit) and never returns into this process's code.
        match unsafe { fork() }? {
            ForkResult::Child => replica(&program, WARM_UP + events),
            ForkResult::Parent { child } => children.push(KilledOnDrop(child)),
        }
    }
    for child in &children {
        match waitpid(child.0, None)? {
            WaitStatus::Stopped(_, Signal::SIGSTOP) => {}
            other => return Err(FloorError::UnexpectedStop(format!("{other:?}"))),
        }
        ptrace::setoptions(
            child.0,
            ptrace::Options::PTRACE_O_TRACESECCOMP | ptrace::Options::PTRACE_O_EXITKILL,
        )?;
        ptrace::cont(child.0, None)?;
    }
    let mut started = Instant::now();
    let mut stopped = Vec::with_capacity(replicas);
    for event in 0..WARM_UP + events {
        if event == WARM_UP {
            started = Instant::now();
        }
        stopped.clear();
        for child in &children {
            let status = waitpid(child.0, None)?;
            if !is_seccomp_stop(&status) {
                return Err(FloorError::UnexpectedStop(format!("{status:?}")));
            }
            stopped.push(ptrace::getregs(child.0)?);
        }
        let asked = |regs: &libc::user_regs_struct| {
            (
                regs.orig_rax,
                regs.rdi,
                regs.rsi,
                regs.rdx,
                regs.r10,
                regs.r8,
                regs.r9,
            )
        };
        if stopped.iter().any(|regs| asked(regs) != asked(&stopped[0])) {
            return Err(FloorError::Diverged);
        }
        // SAFETY: getppid has no arguments and no memory effects.
        let answer = unsafe { libc::getppid() };
        for (child, regs) in children.iter().zip(&mut stopped) {
            regs.orig_rax = u64::MAX;
            regs.rax = answer as u64;
            ptrace::setregs(child.0, *regs)?;
            ptrace::cont(child.0, None)?;
        }
    }
    let elapsed = started.elapsed();
    for child in children {
        waitpid(child.0, None)?;
        std::mem::forget(child);
    }
    Ok(elapsed / events.max(1))
}

/// A replica: stops for its tracer, takes the engine's filter, and makes `calls`
/// calls the filter stops at.
fn replica(program: &[libc::sock_filter], calls: u32) -> ! {
    let traced = ptrace::traceme().is_ok() && raise(Signal::SIGSTOP).is_ok();
    if traced && install(program).is_ok() {
        for _ in 0..calls {
            // Every argument register is set, so that what each replica asks
            // is the same whatever the code around the call left in them
            // (the replicas are forked at different turns of a loop). They
            // are passed as 64-bit values: a variadic `0` is an `int`, whose
            // upper half syscall() would read from whatever the stack held.
            let zero: libc::c_long = 0;
            // SAFETY: getppid takes no arguments and has no memory effects.
            unsafe { libc::syscall(libc::SYS_getppid, zero, zero, zero, zero, zero, zero) };
        }
    }
    // SAFETY: ends this forked child without running the parent's exit handlers.
    unsafe { libc::_exit(0) }
}

/// A replica killed if the measurement stops half-way.
struct KilledOnDrop(Pid);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, Signal::SIGKILL);
        let _ = waitpid(self.0, None);
    }
}
