//! What the engine does with each syscall a replica stops at.
//!
//! The supervisor owns the outside world: replicas hold no descriptor that reaches it.
//! Their scheme requests arrive on the replica channel, whose reads and writes the
//! engine performs itself; everything else a replica may do either stays inside it
//! (runs in each replica, the results compared at the next event) or is an input every
//! replica must see identically (pids, clocks, random bytes), which the engine produces
//! once. Anything else is refused with the same errno in every replica.

use nix::libc;

use super::connections::is_connection;
use super::shared_memory::is_object;
use crate::trap::Syscall;

/// The virtual process id every replica of a group sees for itself.
pub const VIRTUAL_PID: i64 = 2;
/// The virtual id of the replicas' parent.
pub const VIRTUAL_PARENT_PID: i64 = 1;

/// Standard input, output and error: replicas share the supervisor's.
const STDIN: u64 = 0;
const STDOUT: u64 = 1;
const STDERR: u64 = 2;

/// How the engine handles one syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyscallClass {
    /// The replica channel's exchange, `pread(channel, buffer, len, reply_len)`:
    /// the first `reply_len` bytes at `buffer` are the reply to the last message
    /// (the hello, the first time), voted byte for byte; the next message comes
    /// back in `buffer`, the same bytes for every replica. One stop per message.
    ChannelExchange {
        buffer: u64,
        len: u64,
        reply_len: u64,
    },
    /// A write to standard output or error, performed once by the supervisor.
    Log {
        fd: u64,
        buffer: u64,
        len: u64,
    },
    /// Fill `len` bytes at `buffer` with fresh random bytes, the same in every replica.
    Random {
        buffer: u64,
        len: u64,
    },
    /// Read clock `clock` into the `timespec` at `buffer`.
    Clock {
        clock: u64,
        buffer: u64,
    },
    /// Sleep for the `timespec` at `buffer` once, then return 0 to every replica.
    Sleep {
        buffer: u64,
    },
    /// The same fixed result in every replica (virtual pids, granted port rights, an
    /// empty standard input).
    Fixed(i64),
    /// `socket(AF_UNIX, SOCK_SEQPACKET)`: a scheme connection the engine holds for
    /// the replicas ([`super::connections`]).
    OpenConnection,
    Connect {
        fd: u64,
        address: u64,
        len: u64,
    },
    SendMessage {
        fd: u64,
        header: u64,
        flags: u64,
    },
    ReceiveMessage {
        fd: u64,
        header: u64,
        flags: u64,
    },
    /// `pread(connection, buffer, len, request_len)`: send the first `request_len`
    /// bytes at `buffer` as one message and take the next message into `buffer`,
    /// one stop where `sendmsg` and `recvmsg` are two. A real socket answers
    /// `ESPIPE`, so a client can use it without knowing whether it is replicated.
    ConnectionExchange {
        fd: u64,
        buffer: u64,
        len: u64,
        request_len: u64,
    },
    CloseConnection {
        fd: u64,
    },
    /// `mmap` of a scheme's memory object the engine keeps
    /// ([`super::shared_memory`]).
    MapObject {
        fd: u64,
        len: u64,
        offset: u64,
    },
    CloseObject {
        fd: u64,
    },
    /// Touches only the replica's own state (its own files, limits, identity), so each
    /// replica runs it; a difference shows at the next event.
    RunInEach,
    /// Not available to a replicated driver: fails with this errno.
    Refused(i32),
}

/// Classifies `syscall` for a replica whose channel is descriptor `channel`.
pub fn classify(syscall: &Syscall, channel: u64) -> SyscallClass {
    let [a0, a1, a2, a3, a4, _] = syscall.args;
    let engine_held = |fd: u64| is_connection(fd) || is_object(fd);
    let own_descriptor = |fd: u64| fd != channel && fd > STDERR && !engine_held(fd);
    let seqpacket = |kind: u64| kind & 0xf == libc::SOCK_SEQPACKET as u64;
    match syscall.number {
        libc::SYS_pread64 if a0 == channel => SyscallClass::ChannelExchange {
            buffer: a1,
            len: a2,
            reply_len: a3,
        },
        libc::SYS_write if a0 == STDOUT || a0 == STDERR => SyscallClass::Log {
            fd: a0,
            buffer: a1,
            len: a2,
        },
        libc::SYS_read if a0 == STDIN => SyscallClass::Fixed(0),
        libc::SYS_getrandom => SyscallClass::Random {
            buffer: a0,
            len: a1,
        },
        libc::SYS_clock_gettime => SyscallClass::Clock {
            clock: a0,
            buffer: a1,
        },
        libc::SYS_nanosleep => SyscallClass::Sleep { buffer: a0 },
        // Only the relative form: an absolute deadline would need the clock's value.
        libc::SYS_clock_nanosleep if a1 == 0 => SyscallClass::Sleep { buffer: a2 },
        libc::SYS_getpid | libc::SYS_gettid | libc::SYS_set_tid_address => {
            SyscallClass::Fixed(VIRTUAL_PID)
        }
        libc::SYS_getppid => SyscallClass::Fixed(VIRTUAL_PARENT_PID),
        // The engine holds the port rights; the replica's port instructions trap to it
        // either way, and each access is checked by `mmio:`.
        libc::SYS_ioperm | libc::SYS_iopl => SyscallClass::Fixed(0),
        // std polls the standard descriptors once at start-up to see they are open.
        libc::SYS_poll if a1 <= 3 && a2 == 0 => SyscallClass::Fixed(0),
        libc::SYS_close if a0 == channel => SyscallClass::Fixed(0),
        libc::SYS_socket if a0 == libc::AF_UNIX as u64 && seqpacket(a1) => {
            SyscallClass::OpenConnection
        }
        libc::SYS_connect if is_connection(a0) => SyscallClass::Connect {
            fd: a0,
            address: a1,
            len: a2,
        },
        libc::SYS_sendmsg if is_connection(a0) => SyscallClass::SendMessage {
            fd: a0,
            header: a1,
            flags: a2,
        },
        libc::SYS_pread64 if is_connection(a0) => SyscallClass::ConnectionExchange {
            fd: a0,
            buffer: a1,
            len: a2,
            request_len: a3,
        },
        libc::SYS_recvmsg if is_connection(a0) => SyscallClass::ReceiveMessage {
            fd: a0,
            header: a1,
            flags: a2,
        },
        libc::SYS_close if is_connection(a0) => SyscallClass::CloseConnection { fd: a0 },
        libc::SYS_close if is_object(a0) => SyscallClass::CloseObject { fd: a0 },
        libc::SYS_mmap if is_object(a4) => SyscallClass::MapObject {
            fd: a4,
            len: a1,
            offset: syscall.args[5],
        },
        // std checks descriptors it adopts; the engine's are close-on-exec and
        // read-write, and their flags are the engine's to keep.
        libc::SYS_fcntl if engine_held(a0) => SyscallClass::Fixed(match a1 as i32 {
            libc::F_GETFD => i64::from(libc::FD_CLOEXEC),
            libc::F_GETFL => i64::from(libc::O_RDWR),
            libc::F_SETFD | libc::F_SETFL => 0,
            _ => -i64::from(libc::EINVAL),
        }),
        // Loggers ask whether standard error is a terminal: it is not, for replicas.
        libc::SYS_ioctl if a0 <= STDERR => SyscallClass::Fixed(-i64::from(libc::ENOTTY)),
        libc::SYS_openat if a2 & libc::O_ACCMODE as u64 == libc::O_RDONLY as u64 => {
            SyscallClass::RunInEach
        }
        libc::SYS_read
        | libc::SYS_pread64
        | libc::SYS_lseek
        | libc::SYS_close
        | libc::SYS_fcntl
        | libc::SYS_fstat
            if own_descriptor(a0) =>
        {
            SyscallClass::RunInEach
        }
        libc::SYS_fstat | libc::SYS_fcntl if a0 <= STDERR => SyscallClass::RunInEach,
        libc::SYS_newfstatat | libc::SYS_statx | libc::SYS_readlink | libc::SYS_getcwd => {
            SyscallClass::RunInEach
        }
        libc::SYS_sched_getaffinity
        | libc::SYS_getuid
        | libc::SYS_geteuid
        | libc::SYS_getgid
        | libc::SYS_getegid
        | libc::SYS_uname => SyscallClass::RunInEach,
        // Reading limits only: setting one would reach outside.
        libc::SYS_prlimit64 if a0 == 0 && a2 == 0 => SyscallClass::RunInEach,
        libc::SYS_getrlimit => SyscallClass::RunInEach,
        // A private mapping of the replica's own file (the dynamic loader mapping
        // libraries) copies the file into the replica; a shared one would reach out.
        libc::SYS_mmap if a3 & libc::MAP_SHARED as u64 == 0 && own_descriptor(a4) => {
            SyscallClass::RunInEach
        }
        libc::SYS_access | libc::SYS_faccessat | libc::SYS_faccessat2 => SyscallClass::RunInEach,
        _ => SyscallClass::Refused(libc::ENOSYS),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::libc::c_long;

    const CHANNEL: u64 = 3;

    fn call(number: c_long, args: [u64; 6]) -> SyscallClass {
        classify(&Syscall { number, args }, CHANNEL)
    }

    #[test]
    fn the_channel_exchange_is_the_engines_and_nothing_else_on_the_channel_is() {
        assert_eq!(
            call(libc::SYS_pread64, [CHANNEL, 0x1000, 64, 16, 0, 0]),
            SyscallClass::ChannelExchange {
                buffer: 0x1000,
                len: 64,
                reply_len: 16
            }
        );
        for number in [libc::SYS_read, libc::SYS_write] {
            assert_eq!(
                call(number, [CHANNEL, 0x2000, 16, 0, 0, 0]),
                SyscallClass::Refused(libc::ENOSYS)
            );
        }
    }

    #[test]
    fn per_process_values_are_the_same_in_every_replica() {
        assert_eq!(
            call(libc::SYS_getpid, [0; 6]),
            SyscallClass::Fixed(VIRTUAL_PID)
        );
        assert_eq!(
            call(libc::SYS_gettid, [0; 6]),
            SyscallClass::Fixed(VIRTUAL_PID)
        );
        assert_eq!(
            call(libc::SYS_getrandom, [0x3000, 16, 0, 0, 0, 0]),
            SyscallClass::Random {
                buffer: 0x3000,
                len: 16
            }
        );
        assert_eq!(
            call(libc::SYS_clock_gettime, [1, 0x4000, 0, 0, 0, 0]),
            SyscallClass::Clock {
                clock: 1,
                buffer: 0x4000
            }
        );
    }

    #[test]
    fn standard_streams_are_not_terminals() {
        let tcgets = 0x5401;
        assert_eq!(
            call(libc::SYS_ioctl, [2, tcgets, 0x7000, 0, 0, 0]),
            SyscallClass::Fixed(-i64::from(libc::ENOTTY))
        );
        assert_eq!(
            call(libc::SYS_ioctl, [4, tcgets, 0x7000, 0, 0, 0]),
            SyscallClass::Refused(libc::ENOSYS)
        );
    }

    #[test]
    fn logs_go_out_once_and_stdin_is_empty() {
        assert_eq!(
            call(libc::SYS_write, [2, 0x5000, 5, 0, 0, 0]),
            SyscallClass::Log {
                fd: 2,
                buffer: 0x5000,
                len: 5
            }
        );
        assert_eq!(
            call(libc::SYS_read, [0, 0, 5, 0, 0, 0]),
            SyscallClass::Fixed(0)
        );
    }

    #[test]
    fn own_files_run_in_each_replica_and_writes_elsewhere_are_refused() {
        let read_only = libc::O_RDONLY as u64 | libc::O_CLOEXEC as u64;
        assert_eq!(
            call(libc::SYS_openat, [0, 0x6000, read_only, 0, 0, 0]),
            SyscallClass::RunInEach
        );
        assert_eq!(
            call(libc::SYS_read, [4, 0x6000, 100, 0, 0, 0]),
            SyscallClass::RunInEach
        );
        assert_eq!(
            call(libc::SYS_openat, [0, 0x6000, libc::O_RDWR as u64, 0, 0, 0]),
            SyscallClass::Refused(libc::ENOSYS)
        );
        assert_eq!(
            call(libc::SYS_write, [4, 0x6000, 1, 0, 0, 0]),
            SyscallClass::Refused(libc::ENOSYS)
        );
        for number in [
            libc::SYS_socket,
            libc::SYS_connect,
            libc::SYS_fork,
            libc::SYS_kill,
        ] {
            assert_eq!(
                call(number, [0; 6]),
                SyscallClass::Refused(libc::ENOSYS),
                "{number}"
            );
        }
    }

    #[test]
    fn only_private_mappings_of_own_files_run_in_each_replica() {
        let private = libc::MAP_PRIVATE as u64;
        let shared = libc::MAP_SHARED as u64;
        assert_eq!(
            call(libc::SYS_mmap, [0, 4096, 1, private, 4, 0]),
            SyscallClass::RunInEach
        );
        assert_eq!(
            call(libc::SYS_mmap, [0, 4096, 3, shared, 4, 0]),
            SyscallClass::Refused(libc::ENOSYS)
        );
        assert_eq!(
            call(libc::SYS_mmap, [0, 4096, 1, private, CHANNEL, 0]),
            SyscallClass::Refused(libc::ENOSYS)
        );
    }

    #[test]
    fn scheme_connections_are_held_by_the_engine() {
        use super::super::connections::FIRST_CONNECTION_FD as CONNECTION;
        let stream = libc::SOCK_SEQPACKET as u64 | libc::SOCK_CLOEXEC as u64;
        assert_eq!(
            call(libc::SYS_socket, [libc::AF_UNIX as u64, stream, 0, 0, 0, 0]),
            SyscallClass::OpenConnection
        );
        assert_eq!(
            call(libc::SYS_socket, [libc::AF_INET as u64, 1, 0, 0, 0, 0]),
            SyscallClass::Refused(libc::ENOSYS)
        );
        assert_eq!(
            call(libc::SYS_sendmsg, [CONNECTION, 0x8000, 0, 0, 0, 0]),
            SyscallClass::SendMessage {
                fd: CONNECTION,
                header: 0x8000,
                flags: 0
            }
        );
        assert_eq!(
            call(libc::SYS_pread64, [CONNECTION, 0x8000, 4096, 40, 0, 0]),
            SyscallClass::ConnectionExchange {
                fd: CONNECTION,
                buffer: 0x8000,
                len: 4096,
                request_len: 40
            }
        );
        assert_eq!(
            call(libc::SYS_close, [CONNECTION, 0, 0, 0, 0, 0]),
            SyscallClass::CloseConnection { fd: CONNECTION }
        );
        assert_eq!(
            call(libc::SYS_read, [CONNECTION, 0x8000, 1, 0, 0, 0]),
            SyscallClass::Refused(libc::ENOSYS),
            "no other call on a connection"
        );
        assert_eq!(
            call(libc::SYS_sendmsg, [4, 0x8000, 0, 0, 0, 0]),
            SyscallClass::Refused(libc::ENOSYS)
        );
    }

    #[test]
    fn setting_a_limit_is_refused_reading_one_is_not() {
        assert_eq!(
            call(libc::SYS_prlimit64, [0, 3, 0, 0x7000, 0, 0]),
            SyscallClass::RunInEach
        );
        assert_eq!(
            call(libc::SYS_prlimit64, [0, 3, 0x7000, 0, 0, 0]),
            SyscallClass::Refused(libc::ENOSYS)
        );
    }
}
