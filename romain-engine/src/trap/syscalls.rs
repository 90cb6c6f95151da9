//! Stops a replica only at the system calls that reach outside it: the seccomp
//! filter ([`romain_stub::filter`]) lets the calls that touch nothing but the
//! replica's own state run natively and sends every other one to the tracer as a
//! `PTRACE_EVENT_SECCOMP` stop, where the tracer lets it run or performs it itself
//! and hands back the result.

use std::io;

use nix::libc::{self, c_long, sock_filter};
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;

use super::tracee::{Tracee, TrapError};

pub use romain_stub::filter::{filter, Outside, ALLOWED, AUDIT_ARCH_X86_64};

/// Installs `program` as the calling thread's seccomp filter; it survives exec and
/// cannot be removed. Makes only raw system calls, so it may run between fork and exec.
pub fn install(program: &[sock_filter]) -> io::Result<()> {
    romain_stub::filter::install_with(program, |number, [a0, a1, a2, a3, a4, a5]| {
        // SAFETY: prctl and seccomp with integer arguments and a pointer to a
        // program that outlives the call; a failure comes back as -1 and errno.
        let result = unsafe { libc::syscall(number, a0, a1, a2, a3, a4, a5) };
        if result < 0 {
            -i64::from(
                io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EINVAL),
            )
        } else {
            result
        }
    })
}

/// A system call the filter sent to the tracer, as the registers hold it at the stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Syscall {
    pub number: c_long,
    pub args: [u64; 6],
}

impl Syscall {
    pub fn from_regs(regs: &libc::user_regs_struct) -> Self {
        Syscall {
            number: regs.orig_rax as c_long,
            args: [regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9],
        }
    }
}

/// Whether `status` is a stop at a syscall the filter sent to the tracer.
pub fn is_seccomp_stop(status: &WaitStatus) -> bool {
    matches!(
        status,
        WaitStatus::PtraceEvent(_, Signal::SIGTRAP, libc::PTRACE_EVENT_SECCOMP)
    )
}

impl Tracee {
    /// The syscall the tracee is stopped at; valid at a seccomp stop. Resuming the
    /// tracee runs it.
    pub fn intercepted_syscall(&self) -> Result<Syscall, TrapError> {
        Ok(Syscall::from_regs(&ptrace::getregs(self.pid())?))
    }

    /// Makes the syscall the tracee is stopped at (at a seccomp stop) not run and, once
    /// resumed, return `result` (a negated errno for a failure). A syscall number of -1
    /// is the kernel's documented way to skip it, keeping RAX as the return value.
    pub fn skip_syscall(&self, result: c_long) -> Result<(), TrapError> {
        let mut regs = ptrace::getregs(self.pid())?;
        regs.orig_rax = u64::MAX;
        regs.rax = result as u64;
        ptrace::setregs(self.pid(), regs)?;
        Ok(())
    }
}
