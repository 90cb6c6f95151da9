//! Replicas started through `ReplicaCommand` run deterministically: the probe binary
//! prints per-process values, which must match between replicas.
#![cfg(target_os = "linux")]

use std::io::Read;
use std::process::Command;

use iced_x86::Mnemonic;
use nix::sys::personality::Persona;
use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use romain_scheme::trap::{decode, DecodeError, Replica, ReplicaCommand, SpawnError};

const PROBE: &str = env!("CARGO_BIN_EXE_romain-probe");

/// The time stamp every replica reads.
const EMULATED_TSC: u64 = 0x1234_5678_9abc_def0;

const RDTSC_LEN: u64 = 2;

/// What a replica printed and how many `rdtsc` the tracer emulated for it.
struct Run {
    output: String,
    rdtsc_emulated: usize,
}

fn probe(reports: &[&str]) -> ReplicaCommand {
    let mut command = ReplicaCommand::new(PROBE);
    for report in reports {
        command.arg(report);
    }
    command
}

/// Runs `replica` to a clean exit, emulating `rdtsc` and delivering every other signal.
fn run(replica: Replica) -> Run {
    let Replica {
        mut tracee,
        mut stdout,
    } = replica;
    let pid = tracee.pid();
    let mut rdtsc_emulated = 0;
    let mut deliver = None;
    loop {
        deliver = match tracee.resume(deliver).unwrap() {
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
            WaitStatus::Exited(_, 0) => break,
            status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..)) => {
                panic!("replica ended with {status:?}")
            }
            _ => None,
        };
    }
    let mut output = String::new();
    stdout.read_to_string(&mut output).unwrap();
    Run {
        output,
        rdtsc_emulated,
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
