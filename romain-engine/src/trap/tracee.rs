//! A minimal ptrace harness: runs a child without I/O permission and emulates its port
//! instructions against a [`PortDevice`].
//!
//! The child's port instruction raises #GP, which Linux turns into SIGSEGV with
//! `si_code` SI_KERNEL and `si_addr` 0. The tracer sees that signal at the signal stop,
//! before any handler in the child (Rust's std installs one) runs, so emulating there and
//! continuing without the signal makes the instruction look as if it had executed.

use std::fmt;
use std::io::{IoSlice, IoSliceMut};

use nix::errno::Errno;
use nix::libc;
use nix::sys::ptrace;
use nix::sys::signal::{kill, raise, Signal};
use nix::sys::uio::{process_vm_readv, process_vm_writev, RemoteIoVec};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use super::port_io::{decode, DecodeError, PortDevice, MAX_INSTRUCTION_LEN};

/// The smallest x86-64 page: splitting reads here always splits at a page boundary.
const MIN_PAGE_SIZE: u64 = 4096;

/// Exit status of a forked child that could not ask to be traced.
const TRACEME_FAILED: i32 = 127;

/// Why tracing or emulation stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum TrapError {
    /// A ptrace, wait or memory-access call failed.
    Trace(Errno),
    /// The child stopped before running in a way other than its own SIGSTOP.
    UnexpectedStart(String),
    /// The faulting instruction is not one this engine emulates.
    Decode { rip: u64, error: DecodeError },
    /// A string instruction's memory is not (fully) accessible in the child.
    Memory { address: u64, len: usize },
}

impl fmt::Display for TrapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrapError::Trace(errno) => write!(f, "tracing failed: {errno}"),
            TrapError::UnexpectedStart(status) => {
                write!(f, "child did not start stopped: {status}")
            }
            TrapError::Decode { rip, error } => write!(f, "at {rip:#x}: {error}"),
            TrapError::Memory { address, len } => {
                write!(f, "child memory {address:#x}+{len:#x} not accessible")
            }
        }
    }
}

impl std::error::Error for TrapError {}

impl From<Errno> for TrapError {
    fn from(errno: Errno) -> Self {
        TrapError::Trace(errno)
    }
}

/// A traced child; killed and reaped on drop unless it already ended.
pub struct Tracee {
    pid: Pid,
    ended: bool,
}

impl Tracee {
    /// Forks a child that asks to be traced, stops, and then exits with `body()`.
    ///
    /// # Safety
    ///
    /// The caller may be multi-threaded, so `body` must do only what is async-signal-safe
    /// after `fork` (no allocation, no locks): typically a few instructions of inline asm.
    pub unsafe fn fork(body: fn() -> i32) -> Result<Tracee, TrapError> {
        // SAFETY: the child does only what is async-signal-safe (ptrace, raise,
        // the caller's `body`, _exit) and never returns into the caller's code.
        match unsafe { fork() }? {
            ForkResult::Child => {
                if ptrace::traceme().is_err() || raise(Signal::SIGSTOP).is_err() {
                    // SAFETY: ends the forked child without the parent's exit handlers.
                    unsafe { libc::_exit(TRACEME_FAILED) };
                }
                // SAFETY: as above.
                unsafe { libc::_exit(body()) }
            }
            ForkResult::Parent { child } => Tracee::adopt(child, Signal::SIGSTOP),
        }
    }

    /// Takes over `pid`, a child of this thread that asked to be traced, once it stops
    /// with `first_stop`; any other first status is an [`TrapError::UnexpectedStart`].
    pub fn adopt(pid: Pid, first_stop: Signal) -> Result<Tracee, TrapError> {
        let mut tracee = Tracee { pid, ended: false };
        match waitpid(pid, None)? {
            WaitStatus::Stopped(_, signal) if signal == first_stop => {}
            status => {
                tracee.ended = matches!(status, WaitStatus::Exited(..) | WaitStatus::Signaled(..));
                return Err(TrapError::UnexpectedStart(format!("{status:?}")));
            }
        }
        // A tracer that dies must not leave a child stuck at a port instruction.
        ptrace::setoptions(pid, ptrace::Options::PTRACE_O_EXITKILL)?;
        Ok(tracee)
    }

    /// A child of this process that it reads and writes but does not trace (any
    /// more, or ever): killed and reaped on drop like a traced one.
    pub fn owned(pid: Pid) -> Tracee {
        Tracee { pid, ended: false }
    }

    /// Says the child was reaped: dropping it kills nothing.
    pub fn ended(&mut self) {
        self.ended = true;
    }

    /// The child's process id.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// Runs the child to its end, emulating every port instruction against `device` and
    /// delivering every other signal. Returns the child's exit or death status.
    pub fn run(&mut self, device: &mut dyn PortDevice) -> Result<WaitStatus, TrapError> {
        let mut deliver = None;
        loop {
            deliver = match self.resume(deliver)? {
                WaitStatus::Stopped(_, Signal::SIGSEGV) if self.stopped_at_port_io()? => {
                    self.emulate(device)?;
                    None
                }
                WaitStatus::Stopped(_, signal) => Some(signal),
                status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => return Ok(status),
                _ => None,
            };
        }
    }

    /// Continues the stopped child, delivering `signal`, until its next stop or its end.
    pub fn resume(&mut self, signal: Option<Signal>) -> Result<WaitStatus, TrapError> {
        ptrace::cont(self.pid, signal)?;
        let status = waitpid(self.pid, None)?;
        self.ended = matches!(status, WaitStatus::Exited(..) | WaitStatus::Signaled(..));
        Ok(status)
    }

    /// Port I/O without permission is #GP, reported without an address; a real bad
    /// memory access carries its address and a SEGV_* code instead.
    fn stopped_at_port_io(&self) -> Result<bool, TrapError> {
        let info = ptrace::getsiginfo(self.pid)?;
        // SAFETY: every SIGSEGV siginfo carries si_addr.
        let address = unsafe { info.si_addr() };
        Ok(info.si_code == libc::SI_KERNEL && address.is_null())
    }

    fn emulate(&self, device: &mut dyn PortDevice) -> Result<(), TrapError> {
        let mut regs = ptrace::getregs(self.pid)?;
        let bytes = self.read_instruction(regs.rip)?;
        let access = decode(&bytes, &regs).map_err(|error| TrapError::Decode {
            rip: regs.rip,
            error,
        })?;
        let outs_data = match access.outs_span() {
            Some((start, len)) => self.read_memory(start, len)?,
            None => Vec::new(),
        };
        if let Some((address, bytes)) = access.perform(device, &mut regs, &outs_data) {
            self.write_memory(address, &bytes)?;
        }
        ptrace::setregs(self.pid, regs)?;
        Ok(())
    }

    /// Up to [`MAX_INSTRUCTION_LEN`] bytes at `rip`, fewer when the next page is unmapped:
    /// process_vm_readv stops at the first remote piece it cannot read.
    pub fn read_instruction(&self, rip: u64) -> Result<Vec<u8>, TrapError> {
        let first = (MIN_PAGE_SIZE - rip % MIN_PAGE_SIZE).min(MAX_INSTRUCTION_LEN as u64) as usize;
        let remote = [
            RemoteIoVec {
                base: rip as usize,
                len: first,
            },
            RemoteIoVec {
                base: rip as usize + first,
                len: MAX_INSTRUCTION_LEN - first,
            },
        ];
        let mut bytes = [0; MAX_INSTRUCTION_LEN];
        let read = process_vm_readv(self.pid, &mut [IoSliceMut::new(&mut bytes)], &remote)?;
        Ok(bytes[..read].to_vec())
    }

    pub fn read_memory(&self, address: u64, len: usize) -> Result<Vec<u8>, TrapError> {
        let mut bytes = vec![0; len];
        let remote = [RemoteIoVec {
            base: address as usize,
            len,
        }];
        let read = process_vm_readv(self.pid, &mut [IoSliceMut::new(&mut bytes)], &remote);
        match read {
            Ok(read) if read == len => Ok(bytes),
            _ => Err(TrapError::Memory { address, len }),
        }
    }

    pub fn write_memory(&self, address: u64, bytes: &[u8]) -> Result<(), TrapError> {
        let len = bytes.len();
        let remote = [RemoteIoVec {
            base: address as usize,
            len,
        }];
        match process_vm_writev(self.pid, &[IoSlice::new(bytes)], &remote) {
            Ok(written) if written == len => Ok(()),
            _ => Err(TrapError::Memory { address, len }),
        }
    }
}

impl Drop for Tracee {
    fn drop(&mut self) {
        if !self.ended {
            // Best effort: the child may already be gone, and there is no one to tell.
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
        }
    }
}

impl crate::backend::ReplicaMemory for Tracee {
    fn read_memory(&self, address: u64, len: usize) -> Result<Vec<u8>, TrapError> {
        Tracee::read_memory(self, address, len)
    }
}

#[cfg(test)]
mod tests {
    use std::arch::asm;
    use std::collections::HashMap;

    use super::*;
    use crate::trap::port_io::Width;

    const UART_DATA: u16 = 0x2f8;
    const UART_STATUS: u16 = 0x2f9;
    const STATUS_VALUE: u32 = 0x8765_43c3;
    const MESSAGE: &[u8; 3] = b"hi!";

    /// Ports read back fixed values; every write is recorded.
    #[derive(Default)]
    struct FakeDevice {
        values: HashMap<u16, u32>,
        writes: Vec<(u16, Width, u32)>,
    }

    impl PortDevice for FakeDevice {
        fn read(&mut self, port: u16, _width: Width) -> u32 {
            // An unclaimed ISA port floats high.
            self.values.get(&port).copied().unwrap_or(u32::MAX)
        }

        fn write(&mut self, port: u16, width: Width, value: u32) {
            self.writes.push((port, width, value));
        }
    }

    fn uart_device() -> FakeDevice {
        FakeDevice {
            values: HashMap::from([(UART_STATUS, STATUS_VALUE)]),
            writes: Vec::new(),
        }
    }

    /// Talks to a UART; exits 101..103 when a register effect is wrong, otherwise with a
    /// status made of both values it read.
    fn uart_child() -> i32 {
        let merged: u64;
        let widened: u64;
        let (rsi, rcx): (usize, usize);
        // SAFETY: port instructions fault to the tracer; outsb only reads MESSAGE.
        unsafe {
            asm!("out dx, al", in("dx") UART_DATA, in("al") 0x5a_u8, options(nomem, nostack, preserves_flags));
            asm!("in al, dx", in("dx") UART_STATUS, inout("rax") 0x1122_3344_5566_7700_u64 => merged,
                options(nomem, nostack, preserves_flags));
            asm!("in eax, dx", in("dx") UART_STATUS, inout("rax") u64::MAX => widened,
                options(nomem, nostack, preserves_flags));
            asm!("rep outsb", in("dx") UART_DATA, inout("rsi") MESSAGE.as_ptr() as usize => rsi,
                inout("rcx") MESSAGE.len() => rcx, options(readonly, nostack, preserves_flags));
        }
        if merged >> 8 != 0x11_2233_4455_6677 {
            return 101;
        }
        if widened >> 32 != 0 {
            return 102;
        }
        if rcx != 0 || rsi != MESSAGE.as_ptr() as usize + MESSAGE.len() {
            return 103;
        }
        i32::from(merged as u8 ^ (widened >> 24) as u8)
    }

    #[test]
    fn uart_session_is_emulated_against_the_fake_device() {
        // SAFETY: uart_child runs only inline asm and integer arithmetic.
        let mut tracee = unsafe { Tracee::fork(uart_child) }.unwrap();
        let mut device = uart_device();
        let status = tracee.run(&mut device).unwrap();
        assert_eq!(status, WaitStatus::Exited(tracee.pid(), 0xc3 ^ 0x87));
        let byte = |value: u8| (UART_DATA, Width::Byte, u32::from(value));
        let expected: Vec<_> = [0x5a, b'h', b'i', b'!'].into_iter().map(byte).collect();
        assert_eq!(device.writes, expected);
    }

    fn null_write_child() -> i32 {
        // SAFETY: none; the write is meant to crash the child.
        unsafe { asm!("mov byte ptr [{0}], 1", in(reg) 0_usize, options(nostack)) };
        0
    }

    #[test]
    fn a_genuine_crash_is_delivered_not_emulated() {
        // SAFETY: null_write_child runs only inline asm.
        let mut tracee = unsafe { Tracee::fork(null_write_child) }.unwrap();
        let mut device = FakeDevice::default();
        let status = tracee.run(&mut device).unwrap();
        assert!(
            matches!(status, WaitStatus::Signaled(_, Signal::SIGSEGV, _)),
            "{status:?}"
        );
        assert!(device.writes.is_empty());
    }

    fn addr32_outs_child() -> i32 {
        // SAFETY: the instruction faults to the tracer, which refuses it and kills us.
        unsafe {
            asm!(".byte 0x67, 0xf3, 0x6e", in("dx") UART_DATA, in("ecx") 1, options(nostack))
        };
        0
    }

    #[test]
    fn an_unemulatable_port_instruction_stops_the_run() {
        // SAFETY: addr32_outs_child runs only inline asm.
        let mut tracee = unsafe { Tracee::fork(addr32_outs_child) }.unwrap();
        let result = tracee.run(&mut FakeDevice::default());
        assert!(
            matches!(
                result,
                Err(TrapError::Decode {
                    error: DecodeError::AddressSize32,
                    ..
                })
            ),
            "{result:?}"
        );
    }
}
