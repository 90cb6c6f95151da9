//! The seccomp filters of replicas: classic BPF that lets the calls touching
//! nothing but the replica's own state run natively and sends every other one
//! to the engine, as a ptrace stop ([`Outside::Trace`], the filter a replica
//! starts with) or as a `SIGSYS` its own stub catches ([`Outside::Trap`], the
//! filter the stub adds when it takes over).
//!
//! Each allowed call costs a few comparisons in the kernel and no stop, so
//! only externalizing calls pay for a round trip. Calls made from the stub's
//! syscall instruction ([`crate::SITE_PAGE`]) are always allowed: the stub
//! runs the calls the engine voted on there.

use std::io;
use std::mem::offset_of;

use nix::libc::{self, c_long, c_uint, seccomp_data, sock_filter, sock_fprog};

/// `EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`; the libc crate does not define it.
/// A 64-bit process entering the kernel through `int 0x80` reports the i386 value
/// instead, with a different syscall table.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;

/// Syscalls that run without a stop because they change only the replica's own state,
/// which the vote compares (registers, memory) and repairs anyway.
///
/// `mmap` is not here: only its anonymous form is allowed (a file or device mapping
/// reaches outside), which needs a look at its flags. `munmap`, `mprotect` and `madvise`
/// act on mappings the replica already has, so they cannot reach anything new.
/// `execve` must run unseen: the filter is installed just before the replica's first exec,
/// when the tracer cannot yet ask for seccomp stops; an exec still stops the replica
/// (with SIGTRAP) once it has happened.
/// Calls returning per-process values (`getpid`, `gettid`, `set_tid_address`) and clocks
/// (`clock_gettime` is a real syscall, the vDSO being hidden) are inputs and are traced.
pub const ALLOWED: &[c_long] = &[
    libc::SYS_brk,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_madvise,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_futex,
    libc::SYS_sched_yield,
    libc::SYS_arch_prctl,
    libc::SYS_set_robust_list,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_execve,
];

/// The low half of `mmap`'s flags argument, on little-endian x86-64.
const MMAP_FLAGS: usize = offset_of!(seccomp_data, args) + 3 * std::mem::size_of::<u64>();

/// Where a call that reaches outside the replica goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outside {
    /// A `PTRACE_EVENT_SECCOMP` stop for the tracer.
    Trace,
    /// A `SIGSYS` for the replica's own stub.
    Trap,
}

impl Outside {
    fn action(self) -> c_uint {
        match self {
            Outside::Trace => libc::SECCOMP_RET_TRACE,
            Outside::Trap => libc::SECCOMP_RET_TRAP,
        }
    }
}

/// The filter's program, in order: check the architecture (a mismatch kills the whole
/// replica), allow every call made from `site` (the address after a `syscall`
/// instruction; none: no such exception), allow anonymous `mmap` and the [`ALLOWED`]
/// calls, and send the rest `outside` with the syscall number as the data.
pub fn filter(outside: Outside, site: Option<u64>) -> Vec<sock_filter> {
    let allowed_checks = ALLOWED.len();
    let trace_len = 4;
    let mut program = vec![
        load(offset_of!(seccomp_data, arch)),
        jump_if_equal(AUDIT_ARCH_X86_64, 1, 0),
        ret(libc::SECCOMP_RET_KILL_PROCESS),
    ];
    if let Some(site) = site {
        let pointer = offset_of!(seccomp_data, instruction_pointer);
        program.extend([
            load(pointer),
            jump_if_equal(site as u32, 0, 3),
            load(pointer + 4),
            jump_if_equal((site >> 32) as u32, 0, 1),
            ret(libc::SECCOMP_RET_ALLOW),
        ]);
    }
    program.push(load(offset_of!(seccomp_data, nr)));
    // From the `jset`, TRACE is `allowed_checks` instructions ahead and ALLOW one more.
    program.extend([
        jump_if_equal(libc::SYS_mmap as u32, 0, 2),
        load(MMAP_FLAGS),
        jump(
            libc::BPF_JSET,
            libc::MAP_ANONYMOUS as u32,
            jump_offset(allowed_checks + trace_len),
            jump_offset(allowed_checks),
        ),
    ]);
    for (index, &number) in ALLOWED.iter().enumerate() {
        let to_allow = allowed_checks - index - 1 + trace_len;
        program.push(jump_if_equal(number as u32, jump_offset(to_allow), 0));
    }
    program.extend([
        load(offset_of!(seccomp_data, nr)),
        alu(libc::BPF_AND, libc::SECCOMP_RET_DATA),
        alu(libc::BPF_OR, outside.action()),
        statement(libc::BPF_RET | libc::BPF_A, 0),
        ret(libc::SECCOMP_RET_ALLOW),
    ]);
    program
}

/// Installs `program` as the calling thread's seccomp filter, making the two
/// calls it takes through `call` (number, arguments; a negative errno on
/// failure): the engine's spawn uses the C library, a stub its own syscall
/// site. The filter survives exec and cannot be removed.
pub fn install_with(
    program: &[sock_filter],
    call: impl Fn(c_long, [u64; 6]) -> i64,
) -> io::Result<()> {
    let failed = |result: i64| -> io::Result<()> {
        if result < 0 {
            Err(io::Error::from_raw_os_error(-result as i32))
        } else {
            Ok(())
        }
    };
    // Without no_new_privs an unprivileged process may not install a filter.
    failed(call(
        libc::SYS_prctl,
        [libc::PR_SET_NO_NEW_PRIVS as u64, 1, 0, 0, 0, 0],
    ))?;
    let len = u16::try_from(program.len()).map_err(|_| io::ErrorKind::InvalidInput)?;
    let fprog = sock_fprog {
        len,
        filter: program.as_ptr().cast_mut(),
    };
    // The kernel copies the instructions; fprog outlives the call.
    failed(call(
        libc::SYS_seccomp,
        [
            u64::from(libc::SECCOMP_SET_MODE_FILTER),
            0,
            &fprog as *const sock_fprog as u64,
            0,
            0,
            0,
        ],
    ))
}

fn statement(code: u32, k: u32) -> sock_filter {
    sock_filter {
        // Every BPF opcode fits in 16 bits.
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn load(offset: usize) -> sock_filter {
    // seccomp_data is 64 bytes.
    statement(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset as u32)
}

fn alu(operation: u32, k: u32) -> sock_filter {
    statement(libc::BPF_ALU | operation | libc::BPF_K, k)
}

fn ret(action: c_uint) -> sock_filter {
    statement(libc::BPF_RET | libc::BPF_K, action)
}

fn jump(condition: u32, k: u32, if_true: u8, if_false: u8) -> sock_filter {
    sock_filter {
        jt: if_true,
        jf: if_false,
        ..statement(libc::BPF_JMP | condition | libc::BPF_K, k)
    }
}

fn jump_if_equal(k: u32, if_true: u8, if_false: u8) -> sock_filter {
    jump(libc::BPF_JEQ, k, if_true, if_false)
}

/// Conditional jumps skip at most 255 instructions; the allow-list is far shorter.
fn jump_offset(skip: usize) -> u8 {
    u8::try_from(skip).expect("the allow-list fits in a conditional jump")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the kernel would return for `data`: a small interpreter of the instructions
    /// `filter` uses.
    fn verdict(program: &[sock_filter], data: &seccomp_data) -> u32 {
        // SAFETY: seccomp_data is plain integers; viewing it as bytes is what the kernel does.
        let bytes: &[u8; 64] = unsafe { &*(data as *const seccomp_data).cast() };
        let mut accumulator = 0_u32;
        let mut pc = 0;
        loop {
            let instruction = program[pc];
            let k = instruction.k;
            pc += 1;
            let code = u32::from(instruction.code);
            let jump = |taken: bool| {
                usize::from(if taken {
                    instruction.jt
                } else {
                    instruction.jf
                })
            };
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    let at = k as usize;
                    accumulator = u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap());
                }
                c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => {
                    pc += jump(accumulator == k)
                }
                c if c == libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K => {
                    pc += jump(accumulator & k != 0)
                }
                c if c == libc::BPF_ALU | libc::BPF_AND | libc::BPF_K => accumulator &= k,
                c if c == libc::BPF_ALU | libc::BPF_OR | libc::BPF_K => accumulator |= k,
                c if c == libc::BPF_RET | libc::BPF_K => return k,
                c if c == libc::BPF_RET | libc::BPF_A => return accumulator,
                other => panic!("unexpected BPF opcode {other:#x}"),
            }
        }
    }

    fn call(number: c_long, args: [u64; 6]) -> seccomp_data {
        seccomp_data {
            nr: number as i32,
            arch: AUDIT_ARCH_X86_64,
            instruction_pointer: 0x40_1000,
            args,
        }
    }

    fn traced(number: c_long) -> u32 {
        libc::SECCOMP_RET_TRACE | number as u32
    }

    #[test]
    fn every_allowed_call_runs_without_a_stop() {
        let program = filter(Outside::Trace, None);
        for &number in ALLOWED {
            assert_eq!(
                verdict(&program, &call(number, [0; 6])),
                libc::SECCOMP_RET_ALLOW,
                "syscall {number}"
            );
        }
    }

    #[test]
    fn externalizing_calls_are_traced_with_their_number() {
        let program = filter(Outside::Trace, None);
        for number in [
            libc::SYS_getpid,
            libc::SYS_write,
            libc::SYS_clock_gettime,
            libc::SYS_openat,
            libc::SYS_getrandom,
            libc::SYS_set_tid_address,
        ] {
            assert_eq!(verdict(&program, &call(number, [0; 6])), traced(number));
        }
    }

    #[test]
    fn only_anonymous_mmap_runs_without_a_stop() {
        let program = filter(Outside::Trace, None);
        let anonymous = (libc::MAP_PRIVATE | libc::MAP_ANONYMOUS) as u64;
        let file = libc::MAP_SHARED as u64;
        let mmap = |flags, fd| call(libc::SYS_mmap, [0, 4096, 3, flags, fd, 0]);
        assert_eq!(
            verdict(&program, &mmap(anonymous, u64::MAX)),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(verdict(&program, &mmap(file, 3)), traced(libc::SYS_mmap));
    }

    #[test]
    fn another_architecture_kills_the_process() {
        /// `EM_386 | __AUDIT_ARCH_LE`: the `int 0x80` entry.
        const AUDIT_ARCH_I386: u32 = 0x4000_0003;
        let data = seccomp_data {
            arch: AUDIT_ARCH_I386,
            ..call(libc::SYS_brk, [0; 6])
        };
        assert_eq!(
            verdict(&filter(Outside::Trace, None), &data),
            libc::SECCOMP_RET_KILL_PROCESS
        );
    }

    #[test]
    fn a_trapping_filter_sends_the_same_calls_to_the_stub() {
        let traced = filter(Outside::Trace, None);
        let trapped = filter(Outside::Trap, None);
        for number in [
            libc::SYS_getpid,
            libc::SYS_write,
            libc::SYS_brk,
            libc::SYS_futex,
        ] {
            let data = call(number, [0; 6]);
            let expected = match verdict(&traced, &data) {
                libc::SECCOMP_RET_ALLOW => libc::SECCOMP_RET_ALLOW,
                _ => libc::SECCOMP_RET_TRAP | number as u32,
            };
            assert_eq!(verdict(&trapped, &data), expected, "syscall {number}");
        }
    }

    #[test]
    fn calls_from_the_stubs_site_and_only_from_there_are_allowed() {
        let site = 0x6000_0000_0002_u64;
        let program = filter(Outside::Trap, Some(site));
        let from = |pointer: u64| seccomp_data {
            instruction_pointer: pointer,
            ..call(libc::SYS_write, [1, 0, 0, 0, 0, 0])
        };
        assert_eq!(verdict(&program, &from(site)), libc::SECCOMP_RET_ALLOW);
        for elsewhere in [site + 2, site & 0xffff_ffff, site + (1 << 32), 0x40_1000] {
            assert_eq!(
                verdict(&program, &from(elsewhere)),
                libc::SECCOMP_RET_TRAP | libc::SYS_write as u32,
                "{elsewhere:#x}"
            );
        }
        // The architecture is still checked first.
        let foreign = seccomp_data {
            arch: 0x4000_0003,
            ..from(site)
        };
        assert_eq!(verdict(&program, &foreign), libc::SECCOMP_RET_KILL_PROCESS);
    }
}
