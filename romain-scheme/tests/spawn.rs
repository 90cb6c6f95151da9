//! Replicas started through `ReplicaCommand` run deterministically: the probe binary
//! prints per-process values, which must match between replicas, and stops only at the
//! syscalls that reach outside it.
#![cfg(target_os = "linux")]

use std::io::Read;
use std::process::Command;

use iced_x86::Mnemonic;
use nix::libc::{self, c_long};
use nix::sys::personality::Persona;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use romain_engine::trap::syscalls::ALLOWED;
use romain_engine::trap::{
    decode, is_seccomp_stop, DecodeError, ReplicaCommand, SpawnError, Spawned, Syscall,
};

const PROBE: &str = env!("CARGO_BIN_EXE_romain-probe");

/// The time stamp every replica reads.
const EMULATED_TSC: u64 = 0x1234_5678_9abc_def0;

const RDTSC_LEN: u64 = 2;

/// What a replica printed, how it ended, how many `rdtsc` the tracer emulated for it and
/// the syscalls it stopped at, in order.
struct Run {
    pid: Pid,
    output: String,
    status: WaitStatus,
    rdtsc_emulated: usize,
    syscalls: Vec<Syscall>,
}

fn probe(reports: &[&str]) -> ReplicaCommand {
    let mut command = ReplicaCommand::new(PROBE);
    for report in reports {
        command.arg(report);
    }
    command
}

/// Runs `replica` to a clean exit, emulating `rdtsc`, running every intercepted syscall
/// and delivering every other signal.
fn run(replica: Spawned) -> Run {
    let run = run_emulating(replica, |_| None);
    assert_eq!(run.status, WaitStatus::Exited(run.pid, 0), "{}", run.output);
    run
}

/// Runs `replica` to its end, emulating `rdtsc` and delivering every other signal; an
/// intercepted syscall for which `emulate` gives a result is skipped with that result,
/// any other runs.
fn run_emulating(replica: Spawned, emulate: impl Fn(&Syscall) -> Option<c_long>) -> Run {
    let Spawned {
        mut tracee,
        mut stdout,
    } = replica;
    let pid = tracee.pid();
    let mut rdtsc_emulated = 0;
    let mut syscalls = Vec::new();
    let mut deliver = None;
    let status = loop {
        deliver = match tracee.resume(deliver).unwrap() {
            status if is_seccomp_stop(&status) => {
                let syscall = tracee.intercepted_syscall().unwrap();
                // The filter passes the syscall number as the event's data.
                assert_eq!(ptrace::getevent(pid).unwrap(), syscall.number);
                if let Some(result) = emulate(&syscall) {
                    tracee.skip_syscall(result).unwrap();
                }
                syscalls.push(syscall);
                None
            }
            WaitStatus::Stopped(_, Signal::SIGSEGV) => {
                let mut regs = ptrace::getregs(pid).unwrap();
                let code = ptrace::read(pid, regs.rip as ptrace::AddressType).unwrap();
                match decode(&code.to_ne_bytes(), &regs) {
                    Err(DecodeError::NotPortIo(Mnemonic::Rdtsc)) => {
                        regs.rax = EMULATED_TSC & 0xffff_ffff;
                        regs.rdx = EMULATED_TSC >> 32;
                        regs.rip += RDTSC_LEN;
                        ptrace::setregs(pid, regs).unwrap();
                        rdtsc_emulated += 1;
                        None
                    }
                    _ => Some(Signal::SIGSEGV),
                }
            }
            WaitStatus::Stopped(_, signal) => Some(signal),
            status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => break status,
            _ => None,
        };
    };
    let mut output = String::new();
    stdout.read_to_string(&mut output).unwrap();
    Run {
        pid,
        output,
        status,
        rdtsc_emulated,
        syscalls,
    }
}

fn spawn_and_run(command: &ReplicaCommand) -> Run {
    run(command.spawn().unwrap())
}

fn run_untraced(reports: &[&str]) -> String {
    let output = Command::new(PROBE).args(reports).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn replicas_have_identical_address_space_layouts() {
    let command = probe(&["layout"]);
    let first = spawn_and_run(&command).output;
    let second = spawn_and_run(&command).output;
    assert_eq!(first.lines().count(), 3, "{first}");
    assert_eq!(first, second);
    // The probe's output does reflect randomisation when it is on.
    assert_ne!(
        run_untraced(&["layout"]),
        run_untraced(&["layout"]),
        "is address-space randomisation off on this host?"
    );
}

#[test]
fn a_replica_runs_without_address_randomisation() {
    let replica = probe(&["layout"]).spawn().unwrap();
    let path = format!("/proc/{}/personality", replica.tracee.pid());
    let personality = std::fs::read_to_string(path).unwrap();
    let personality = i32::from_str_radix(personality.trim(), 16).unwrap();
    assert_ne!(personality & Persona::ADDR_NO_RANDOMIZE.bits(), 0);
}

#[test]
fn rdtsc_traps_to_the_tracer_which_supplies_the_value() {
    let run = spawn_and_run(&probe(&["tsc", "tsc"]));
    // The dynamic loader times its own start-up with rdtsc too.
    let start_up = spawn_and_run(&probe(&["cwd"])).rdtsc_emulated;
    assert_eq!(run.rdtsc_emulated, start_up + 2);
    let expected = format!("tsc={EMULATED_TSC}\n");
    assert_eq!(run.output, expected.repeat(2));
}

#[test]
fn the_environment_is_only_the_callers_plus_the_rseq_tunable() {
    let mut command = probe(&["env", "cwd"]);
    command.env("LANG", "C").current_dir("/tmp");
    let mut lines: Vec<_> = spawn_and_run(&command)
        .output
        .lines()
        .map(String::from)
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "cwd=/tmp",
            "env GLIBC_TUNABLES=glibc.pthread.rseq=0",
            "env LANG=C"
        ]
    );
}

#[test]
fn the_working_directory_defaults_to_the_root() {
    assert_eq!(spawn_and_run(&probe(&["cwd"])).output, "cwd=/\n");
}

#[test]
fn the_vdso_is_hidden_and_at_random_is_the_callers() {
    let mut command = probe(&["auxv"]);
    command.at_random(*b"0123456789abcdef");
    assert_eq!(
        spawn_and_run(&command).output,
        "sysinfo_ehdr=0x0\nrandom=30313233343536373839616263646566\n"
    );
    // Untraced, the probe does see the vDSO and random bytes.
    assert!(!run_untraced(&["auxv"]).starts_with("sysinfo_ehdr=0x0\n"));
}

#[test]
fn a_missing_program_is_a_start_error() {
    let error = ReplicaCommand::new("/nonexistent/program").spawn().err();
    assert!(
        matches!(&error, Some(SpawnError::Start { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound),
        "{error:?}"
    );
}

#[test]
fn a_missing_working_directory_is_a_start_error() {
    let mut command = probe(&["cwd"]);
    command.current_dir("/nonexistent/directory");
    assert!(matches!(
        command.spawn().err(),
        Some(SpawnError::Start { .. })
    ));
}

fn numbers(syscalls: &[Syscall]) -> Vec<c_long> {
    syscalls.iter().map(|syscall| syscall.number).collect()
}

/// The syscalls from the probe's `getpid` on: the start-up before it makes its own.
fn from_getpid(syscalls: &[Syscall]) -> Vec<c_long> {
    let numbers = numbers(syscalls);
    let start = numbers
        .iter()
        .position(|&number| number == libc::SYS_getpid)
        .expect("the probe's getpid was intercepted");
    numbers[start..].to_vec()
}

#[test]
fn only_externalizing_syscalls_stop_the_replica() {
    let run = spawn_and_run(&probe(&["syscalls"]));
    assert_eq!(run.output, format!("pid={}\nclock=ok\n", run.pid));
    // The thousand brk(0) and sched_yield after the second write run without a stop.
    assert_eq!(
        from_getpid(&run.syscalls),
        [
            libc::SYS_getpid,
            libc::SYS_write,
            libc::SYS_clock_gettime,
            libc::SYS_write
        ]
    );
    let allowed: Vec<_> = numbers(&run.syscalls)
        .into_iter()
        .filter(|number| ALLOWED.contains(number))
        .collect();
    assert_eq!(allowed, []);
}

#[test]
fn the_tracer_sees_the_arguments_of_a_write() {
    let run = spawn_and_run(&probe(&["syscalls"]));
    let write = run
        .syscalls
        .iter()
        .find(|syscall| syscall.number == libc::SYS_write)
        .unwrap();
    let line = format!("pid={}\n", run.pid);
    assert_eq!(write.args[0], libc::STDOUT_FILENO as u64);
    assert_eq!(write.args[2], line.len() as u64);
}

#[test]
fn file_mappings_are_intercepted_and_anonymous_ones_are_not() {
    let run = spawn_and_run(&probe(&["cwd"]));
    let flags: Vec<u64> = run
        .syscalls
        .iter()
        .filter(|syscall| syscall.number == libc::SYS_mmap)
        .map(|syscall| syscall.args[3])
        .collect();
    // The dynamic loader maps the C library from its file.
    assert!(!flags.is_empty(), "{:?}", numbers(&run.syscalls));
    assert!(flags
        .iter()
        .all(|flags| flags & libc::MAP_ANONYMOUS as u64 == 0));
}

#[test]
fn an_emulated_getpid_returns_the_tracers_value() {
    const REPLICA_PID: c_long = 4242;
    let replica = probe(&["syscalls"]).spawn().unwrap();
    let run = run_emulating(replica, |syscall| {
        (syscall.number == libc::SYS_getpid).then_some(REPLICA_PID)
    });
    assert_eq!(run.status, WaitStatus::Exited(run.pid, 0));
    assert_eq!(run.output, format!("pid={REPLICA_PID}\nclock=ok\n"));
}

#[test]
fn a_skipped_syscall_can_fail_with_the_tracers_errno() {
    let replica = probe(&["syscalls"]).spawn().unwrap();
    let run = run_emulating(replica, |syscall| {
        (syscall.number == libc::SYS_clock_gettime).then_some(-c_long::from(libc::EPERM))
    });
    let clock = run.output.lines().nth(1).unwrap();
    assert_eq!(
        clock,
        format!("clock={}", std::io::Error::from_raw_os_error(libc::EPERM))
    );
}

#[test]
fn a_syscall_through_the_i386_entry_kills_the_replica() {
    let replica = probe(&["int80"]).spawn().unwrap();
    let run = run_emulating(replica, |_| None);
    assert!(
        matches!(run.status, WaitStatus::Signaled(_, Signal::SIGSYS, _)),
        "{:?}: {}",
        run.status,
        run.output
    );
    assert_eq!(run.output, "");
    // Untraced, the i386 entry works on this host.
    assert!(run_untraced(&["int80"]).starts_with("int80="));
}
