//! `romain-probe`: prints what differs between processes that are not made
//! deterministic (addresses, the time stamp counter, the environment, the auxiliary
//! vector), so tests can compare replicas by their output.

use clap::{Parser, ValueEnum};

#[derive(Parser)]
#[command(
    version,
    about = "Prints per-process values (addresses, time stamp, environment) as name=value lines"
)]
struct Cli {
    /// What to print, in order.
    #[arg(value_enum, required = true)]
    reports: Vec<Report>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Report {
    /// Addresses of a stack variable, a heap allocation and `main`.
    Layout,
    /// The value `rdtsc` reads.
    Tsc,
    /// Every environment variable, as `env NAME=VALUE`.
    Env,
    /// The working directory.
    Cwd,
    /// The vDSO address and the `AT_RANDOM` bytes the C library sees.
    #[cfg(target_os = "linux")]
    Auxv,
    /// A `getpid` (printed), a `clock_gettime` (its outcome printed) and a thousand
    /// `brk(0)` and `sched_yield`, for tests of which syscalls stop a replica.
    #[cfg(target_os = "linux")]
    Syscalls,
    /// The i386 `getpid` through `int 0x80`, which a replica's filter must refuse.
    #[cfg(target_os = "linux")]
    Int80,
}

fn main() {
    env_logger::init();
    for report in Cli::parse().reports {
        log::debug!("reporting {report:?}");
        match report {
            Report::Layout => print_layout(),
            // SAFETY: rdtsc has no memory effects; every x86-64 CPU has it.
            Report::Tsc => println!("tsc={}", unsafe { std::arch::x86_64::_rdtsc() }),
            Report::Env => {
                for (name, value) in std::env::vars_os() {
                    println!("env {}={}", name.to_string_lossy(), value.to_string_lossy());
                }
            }
            Report::Cwd => match std::env::current_dir() {
                Ok(dir) => println!("cwd={}", dir.display()),
                Err(error) => println!("cwd error={error}"),
            },
            #[cfg(target_os = "linux")]
            Report::Auxv => print_auxv(),
            #[cfg(target_os = "linux")]
            Report::Syscalls => make_syscalls(),
            #[cfg(target_os = "linux")]
            Report::Int80 => print_int80_getpid(),
        }
    }
}

fn print_layout() {
    let on_stack = std::hint::black_box(0_u8);
    let on_heap = std::hint::black_box(Box::new(0_u8));
    println!("stack={:p}", &on_stack);
    println!("heap={:p}", on_heap);
    println!("main={:p}", main as fn() as *const ());
}

#[cfg(target_os = "linux")]
fn print_auxv() {
    use nix::libc::{getauxval, AT_RANDOM};
    /// Not defined by the libc crate for every Linux target.
    const AT_SYSINFO_EHDR: u64 = 33;
    // SAFETY: getauxval only reads the auxiliary vector.
    let (vdso, random) = unsafe { (getauxval(AT_SYSINFO_EHDR), getauxval(AT_RANDOM)) };
    println!("sysinfo_ehdr={vdso:#x}");
    if random != 0 {
        // SAFETY: the kernel points AT_RANDOM at 16 bytes on the initial stack.
        let bytes = unsafe { std::slice::from_raw_parts(random as *const u8, 16) };
        let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        println!("random={hex}");
    }
}

#[cfg(target_os = "linux")]
fn make_syscalls() {
    use nix::libc;
    /// Enough calls that stopping at each would show; the tests count no stops.
    const OWN_STATE_CALLS: usize = 1000;
    // SAFETY: getpid takes no arguments.
    let pid = unsafe { libc::syscall(libc::SYS_getpid) };
    println!("pid={pid}");
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec to write.
    match unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) } {
        0 => println!("clock=ok"),
        _ => println!("clock={}", std::io::Error::last_os_error()),
    }
    for _ in 0..OWN_STATE_CALLS {
        // SAFETY: brk(0) only reports the program break; sched_yield takes no arguments.
        unsafe {
            libc::syscall(libc::SYS_brk, 0);
            libc::sched_yield();
        }
    }
}

#[cfg(target_os = "linux")]
fn print_int80_getpid() {
    /// `getpid` in the i386 syscall table.
    const I386_GETPID: i64 = 20;
    let result: i64;
    // SAFETY: getpid touches no memory; the 32-bit entry clobbers r8-r11.
    unsafe {
        std::arch::asm!("int 0x80", inout("rax") I386_GETPID => result,
            out("r8") _, out("r9") _, out("r10") _, out("r11") _, options(nostack));
    }
    println!("int80={result}");
}
