//! One replica of a group as the engine sees it: a traced process, and what its latest
//! stop means (an externalization event, a crash, or a hang).

use std::ops::Range;

use nix::libc::{self, user_regs_struct};
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use iced_x86::Mnemonic;

use super::connections::MessageHeader;
use super::syscall_policy::{classify, SyscallClass};
use crate::trap::{
    decode, decode_memory_access, DecodeError, MemoryAccess, PortAccess, Syscall, Tracee, TrapError,
};
use crate::vote::{Event, Registers, ReplicaState};

/// `rdtsc` is `0f 31`, `rdtscp` is `0f 01 f9`; drivers emit them without prefixes.
const RDTSC_LEN: u64 = 2;
const RDTSCP_LEN: u64 = 3;

/// Most bytes of a buffer a syscall hands out that the vote compares and the engine
/// passes on: a channel reply or a log line.
pub const MAX_SYSCALL_DATA: u64 = 1 << 20;

/// `sizeof(struct sockaddr_un)`.
const MAX_SOCKET_ADDRESS: u64 = 110;

/// What the engine must do to complete the event a replica stopped at.
#[derive(Clone, Debug)]
pub enum Action {
    Syscall(Syscall, SyscallClass),
    Port(PortAccess),
    /// A load or store at `address` in the device window.
    Memory {
        access: MemoryAccess,
        address: u64,
    },
    /// `rdtsc` (`with_aux` false) or `rdtscp` of `len` bytes.
    TimeStamp {
        len: u64,
        with_aux: bool,
    },
}

/// A replica stopped at an externalization event.
#[derive(Clone, Debug)]
pub struct Stopped {
    pub event: Event,
    pub action: Action,
    pub regs: user_regs_struct,
}

impl Stopped {
    pub fn state(&self) -> ReplicaState {
        ReplicaState {
            event: self.event.clone(),
            registers: Registers::from(&self.regs),
        }
    }
}

/// What stopped a replica at an event, as its backend saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// A syscall the filter sent to the engine; the registers hold its number
    /// in `orig_rax` and its arguments.
    Syscall,
    /// A `SIGSEGV` with its `si_code` and `si_addr`.
    Fault { code: i32, address: u64 },
}

/// What became of a replica between two events.
#[derive(Debug)]
pub enum Arrival {
    Event(Box<Stopped>),
    /// It ended or crashed; the text says how, for the log.
    Died(String),
    /// The watchdog stopped it before it reached the event.
    Hung,
}

pub struct Member {
    pub tracee: Tracee,
}

impl Member {
    pub fn pid(&self) -> Pid {
        self.tracee.pid()
    }

    /// Interprets the wait status this replica reported, reading what the event needs
    /// from its registers and memory.
    pub fn arrival(&self, status: WaitStatus, channel: u64, window: Option<Range<u64>>) -> Arrival {
        match self.read_arrival(status, channel, window) {
            Ok(arrival) => arrival,
            Err(error) => Arrival::Died(format!("could not read its state: {error}")),
        }
    }

    fn read_arrival(
        &self,
        status: WaitStatus,
        channel: u64,
        window: Option<Range<u64>>,
    ) -> Result<Arrival, TrapError> {
        let pid = self.pid();
        Ok(match status {
            WaitStatus::PtraceEvent(_, Signal::SIGTRAP, libc::PTRACE_EVENT_SECCOMP) => {
                self.read_stop(Stop::Syscall, ptrace::getregs(pid)?, channel, window)?
            }
            WaitStatus::Stopped(_, Signal::SIGSEGV) => {
                let info = ptrace::getsiginfo(pid)?;
                // SAFETY: every SIGSEGV siginfo carries si_addr.
                let address = unsafe { info.si_addr() } as u64;
                let stop = Stop::Fault {
                    code: info.si_code,
                    address,
                };
                self.read_stop(stop, ptrace::getregs(pid)?, channel, window)?
            }
            WaitStatus::Stopped(_, signal) => Arrival::Died(format!("crashed with {signal}")),
            WaitStatus::Exited(_, code) => Arrival::Died(format!("exited with status {code}")),
            WaitStatus::Signaled(_, signal, _) => Arrival::Died(format!("killed by {signal}")),
            other => Arrival::Died(format!("stopped unexpectedly: {other:?}")),
        })
    }

    /// Interprets a stop a backend saw, with the registers the replica stopped
    /// with, reading what the event needs from its memory.
    pub fn interpret(
        &self,
        stop: Stop,
        regs: user_regs_struct,
        channel: u64,
        window: Option<Range<u64>>,
    ) -> Arrival {
        match self.read_stop(stop, regs, channel, window) {
            Ok(arrival) => arrival,
            Err(error) => Arrival::Died(format!("could not read its state: {error}")),
        }
    }

    fn read_stop(
        &self,
        stop: Stop,
        regs: user_regs_struct,
        channel: u64,
        window: Option<Range<u64>>,
    ) -> Result<Arrival, TrapError> {
        Ok(match stop {
            Stop::Syscall => {
                let syscall = Syscall::from_regs(&regs);
                let mut class = classify(&syscall, channel);
                let data = match class {
                    SyscallClass::Connect { address, len, .. } => self
                        .tracee
                        .read_memory(address, len.min(MAX_SOCKET_ADDRESS) as usize)
                        .unwrap_or_default(),
                    SyscallClass::SendMessage { header, .. } => {
                        let message = MessageHeader::read(&self.tracee, header);
                        match message
                            .as_ref()
                            .map(|m| (m.controllen, m.gather(&self.tracee)))
                        {
                            Some((0, Some(data))) => data,
                            // Passing descriptors to a scheme is not relayed.
                            Some((_, Some(_))) => {
                                class = SyscallClass::Refused(libc::EOPNOTSUPP);
                                Vec::new()
                            }
                            _ => {
                                class = SyscallClass::Refused(libc::EFAULT);
                                Vec::new()
                            }
                        }
                    }
                    SyscallClass::ConnectionExchange {
                        buffer,
                        request_len,
                        ..
                    } => match self
                        .tracee
                        .read_memory(buffer, request_len.min(MAX_SYSCALL_DATA) as usize)
                    {
                        Ok(data) if data.len() as u64 == request_len => data,
                        _ => {
                            class = SyscallClass::Refused(libc::EFAULT);
                            Vec::new()
                        }
                    },
                    SyscallClass::ChannelExchange {
                        buffer,
                        reply_len: len,
                        ..
                    }
                    | SyscallClass::Log { buffer, len, .. } => {
                        match self
                            .tracee
                            .read_memory(buffer, len.min(MAX_SYSCALL_DATA) as usize)
                        {
                            Ok(data) => data,
                            Err(_) => {
                                return Ok(Arrival::Died(format!(
                                    "{syscall:?} hands out memory it cannot read"
                                )))
                            }
                        }
                    }
                    SyscallClass::Sleep { buffer } => {
                        self.tracee.read_memory(buffer, 16).unwrap_or_default()
                    }
                    _ => Vec::new(),
                };
                let event = Event::Syscall {
                    number: syscall.number as u64,
                    args: syscall.args,
                    data,
                };
                Arrival::Event(Box::new(Stopped {
                    event,
                    action: Action::Syscall(syscall, class),
                    regs,
                }))
            }
            Stop::Fault { code, address } => self.at_fault(code, address, regs, window)?,
        })
    }

    /// A SIGSEGV is a port instruction or `rdtsc` (#GP, no address) or a genuine crash.
    fn at_fault(
        &self,
        code: i32,
        address: u64,
        regs: user_regs_struct,
        window: Option<Range<u64>>,
    ) -> Result<Arrival, TrapError> {
        if window.is_some_and(|window| window.contains(&address)) {
            return self.at_device_memory(address, regs);
        }
        if code != libc::SI_KERNEL || address != 0 {
            return Ok(Arrival::Died(format!(
                "crashed: SIGSEGV at address {address:#x}"
            )));
        }
        let bytes = self.tracee.read_instruction(regs.rip)?;
        let (event, action) = match decode(&bytes, &regs) {
            Ok(access) => {
                let event = port_event(&access, || match access.outs_span() {
                    Some((start, len)) => self.tracee.read_memory(start, len),
                    None => Ok(Vec::new()),
                })?;
                (event, Action::Port(access))
            }
            Err(DecodeError::NotPortIo(Mnemonic::Rdtsc)) => (
                Event::TimeStamp,
                Action::TimeStamp {
                    len: RDTSC_LEN,
                    with_aux: false,
                },
            ),
            Err(DecodeError::NotPortIo(Mnemonic::Rdtscp)) => (
                Event::TimeStamp,
                Action::TimeStamp {
                    len: RDTSCP_LEN,
                    with_aux: true,
                },
            ),
            Err(error) => {
                return Ok(Arrival::Died(format!(
                    "crashed: general protection fault at {:#x}: {error}",
                    regs.rip
                )))
            }
        };
        Ok(Arrival::Event(Box::new(Stopped {
            event,
            action,
            regs,
        })))
    }
}

impl Member {
    /// A load or store on the device window: decoded, not yet performed.
    fn at_device_memory(&self, address: u64, regs: user_regs_struct) -> Result<Arrival, TrapError> {
        let bytes = self.tracee.read_instruction(regs.rip)?;
        let access = match decode_memory_access(&bytes, &regs) {
            Ok(access) => access,
            Err(error) => {
                return Ok(Arrival::Died(format!(
                    "crashed: device memory access at {address:#x} by {:#x}: {error}",
                    regs.rip
                )))
            }
        };
        let event = match access {
            MemoryAccess::Load { width, .. } => Event::MemoryRead { address, width },
            MemoryAccess::Store { width, value, .. } => Event::MemoryWrite {
                address,
                width,
                value,
            },
        };
        Ok(Arrival::Event(Box::new(Stopped {
            event,
            action: Action::Memory { access, address },
            regs,
        })))
    }
}

/// The vote's view of a port access; an `outs`'s data is part of it.
fn port_event(
    access: &PortAccess,
    outs_data: impl FnOnce() -> Result<Vec<u8>, TrapError>,
) -> Result<Event, TrapError> {
    Ok(match access {
        PortAccess::In(access) => Event::PortIn {
            port: access.port,
            width: access.width.bytes() as u8,
        },
        PortAccess::Out(access) => Event::PortOut {
            port: access.port,
            width: access.width.bytes() as u8,
            value: access.value,
        },
        PortAccess::String(access) => match access.direction {
            crate::trap::Direction::In => Event::PortStringIn {
                port: access.port,
                width: access.width.bytes() as u8,
                count: access.count,
            },
            crate::trap::Direction::Out => Event::PortStringOut {
                port: access.port,
                width: access.width.bytes() as u8,
                data: outs_data()?,
            },
        },
    })
}
