//! In-guest test of the uart16550 driver on QEMU's COM2, alone in both access modes
//! and replicated by the engine: start the driver (direct as root, through `mmio:` as the uart
//! rule's uid through `mmio:`, or `romain replicate` as root with 1, 2 and 3 replicas
//! whose port accesses the engine performs through `mmio:`), stream the run's bytes
//! out through it while reading what the host answers, compare what arrived, check the
//! driver's counters (and the engine's), and stop it. One replicated run injects
//! faults into its replicas all the while. Then check that direct access is refused to
//! an unprivileged user, and run the driver under `romain:` while a client streams
//! through it: killed, then hung, it comes back with its line settings and the
//! client reopens (`restarted`). Runs after the `mmio:` tests, which use COM2 too.
//! Prints result lines, a `guest-bench` throughput line per run and a summary.

mod bulk;
mod driver;
mod restarted;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use clap::Parser;
use driver_policy::{Policy, PortRange};
use guest_harness::com2_bulk::{BulkRun, Setup, BULK_RUNS};
use guest_harness::guest::control::{Control, EngineStatus};
use guest_harness::guest::daemons::{wait_until_serving, DAEMON_START_TIMEOUT, MMIO_STATUS};
use guest_harness::guest::faults::{self, Injected, Schedule};
use guest_harness::guest::report::{Report, StepResult};
use guest_harness::protocol::{GUEST_BENCH_PREFIX, GUEST_POLICY_PATH, UART_DRIVER_LABEL};

use crate::bulk::Throughput;
use crate::driver::Driver;

/// Tests the uart16550 driver on QEMU's COM2 in its direct and mmio access modes and
/// replicated, against the host's end of COM2; run as root.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The driver policy the mmio daemon enforces
    #[arg(long, default_value = GUEST_POLICY_PATH)]
    policy: PathBuf,
    /// The driver's executable
    #[arg(long, default_value = "/bin/uart16550")]
    driver: PathBuf,
    /// The replication engine's executable
    #[arg(long, default_value = "/bin/romain")]
    romain: PathBuf,
}

/// What the policy's uart rule grants.
struct UartRule {
    uid: u32,
    ports: PortRange,
}

/// A fault every 20-50 ms; early on one kill and one hang, so they land while the
/// exchange runs.
const FAULTS: Schedule = Schedule {
    pause_ms: (20, 50),
    kills_at: &[1],
    hangs_at: &[3],
};

/// Counters that stay 0 while no replica is faulty.
const FAULT_COUNTERS: [&str; 6] = [
    "divergences",
    "hangs",
    "crashes",
    "no_majority",
    "group_restarts",
    "injected",
];
/// What the engine went through under fault injection, as the report shows it.
const FAULT_RUN_COUNTERS: [&str; 9] = [
    "events",
    "injected",
    "divergences",
    "repairs",
    "replacements",
    "hangs",
    "crashes",
    "no_majority",
    "group_restarts",
];

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let mut report = Report::new();
    report.run("uart16550-mmio-serving", || {
        Ok(wait_until_serving(&[MMIO_STATUS], DAEMON_START_TIMEOUT)?)
    });
    if let Some(rule) = report.run("uart16550-policy-has-uart-rule", || uart_rule(&args.policy)) {
        for run in &BULK_RUNS {
            exercise(&mut report, &args, &rule, run);
        }
        report.run("uart16550-direct-access-refused-to-uart-uid", || {
            let direct = driver::alone(&args.driver, "direct", "direct", rule.ports, rule.uid);
            driver::refused(direct, "no port rights")
        });
        restarted::run(&mut report, &args.driver, &rule);
    }
    if report.finish().failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn uart_rule(policy: &Path) -> StepResult<UartRule> {
    let policy = Policy::load(policy)?;
    let rule = policy
        .driver(UART_DRIVER_LABEL)
        .ok_or("the policy has no uart driver")?;
    Ok(UartRule {
        uid: rule.uid(),
        ports: *rule
            .ports()
            .first()
            .ok_or("the uart rule grants no ports")?,
    })
}

/// One run: start the driver, exchange the run's bytes each way (injecting faults if
/// the run says so), check the driver's counters and the engine's, stop it.
fn exercise(report: &mut Report, args: &Args, rule: &UartRule, run: &BulkRun) {
    let step = |name: &str| format!("uart16550-{}-{name}", run.name);
    // Direct access needs port rights (root), and so does acting for the uart rule
    // through `mmio:` (the engine); access through `mmio:` is the policy's driver.
    let uid = match run.setup {
        Setup::Mmio
        | Setup::Replicated {
            through_mmio: true, ..
        } => rule.uid,
        _ => 0,
    };
    let started = report.run(&step("driver-serving"), || start(args, rule, run, uid));
    let (driver, control) = started.unzip();
    let control = control.flatten();
    report.run_after(
        &step("driver-runs-as-its-uid"),
        driver.as_ref(),
        |driver| match driver.uid()? {
            running if running == uid => Ok(()),
            other => Err(format!("the driver runs as uid {other}, not {uid}").into()),
        },
    );
    // The replicas of a run that injects faults into them.
    let faulted = match run.setup {
        Setup::Replicated {
            replicas,
            faults: true,
            ..
        } => Some(replicas),
        _ => None,
    };
    let mut injected = None;
    let exchanged = report.run_after(
        &step(&format!("{}k-each-way-arrived-intact", run.len / 1024)),
        driver.as_ref(),
        |_| match (&control, faulted) {
            (Some(control), Some(replicas)) => {
                let (exchanged, faults) = exchange_under_faults(run, control, replicas);
                injected = Some(faults);
                exchanged
            }
            _ => bulk::exchange(run),
        },
    );
    let injected = match faulted {
        Some(_) => report.run_after(
            &step("faults-injected-during-exchange"),
            injected,
            |faults| faults,
        ),
        None => None,
    };
    report.run_after(
        &step("driver-counted-every-byte"),
        exchanged.as_ref(),
        |_| bulk::check_counters(run),
    );
    let engine = match (run.setup, faulted) {
        (Setup::Direct | Setup::Mmio, _) => None,
        (Setup::Replicated { replicas, .. }, None) => report.run_after(
            &step("replicas-agreed-at-every-event"),
            control.as_ref(),
            |control| {
                let status = control.status()?;
                check_agreed(&status, replicas)?;
                Ok(status)
            },
        ),
        (Setup::Replicated { .. }, Some(_)) => report.run_after(
            &step("engine-masked-every-fault"),
            control.as_ref().zip(injected.as_ref()),
            |(control, injected)| {
                let status = control.status()?;
                check_masked(&status, injected)?;
                Ok(status)
            },
        ),
    };
    if let Some(throughput) = &exchanged {
        print_throughput(run, throughput, engine.as_ref());
    }
    if let (Some(injected), Some(engine)) = (&injected, &engine) {
        println!(
            "{GUEST_BENCH_PREFIX} uart16550 {}: {injected}; engine: {}",
            how(run.setup),
            engine.counters(&FAULT_RUN_COUNTERS)
        );
    }
    report.run_after(&step("driver-survived"), driver, Driver::stop);
}

/// Starts the run's driver as `uid`, with the engine's control socket if replicated.
fn start(
    args: &Args,
    rule: &UartRule,
    run: &BulkRun,
    uid: u32,
) -> StepResult<(Driver, Option<Control>)> {
    let (command, control) = match run.setup {
        Setup::Direct => (
            driver::alone(&args.driver, "direct", run.name, rule.ports, uid),
            None,
        ),
        Setup::Mmio => (
            driver::alone(&args.driver, "mmio", run.name, rule.ports, uid),
            None,
        ),
        Setup::Replicated {
            replicas,
            through_mmio,
            ..
        } => {
            let (control, theirs) = Control::pair()?;
            let mut command = driver::replicated(
                &args.romain,
                &args.driver,
                replicas,
                run.name,
                rule.ports,
                (!through_mmio).then_some(UART_DRIVER_LABEL),
                theirs,
            );
            if through_mmio {
                command.uid(uid).gid(uid);
            }
            (command, Some(control))
        }
    };
    Ok((Driver::start(command, run.name)?, control))
}

/// The exchange while faults go into the replicas, and what went in.
fn exchange_under_faults(
    run: &BulkRun,
    control: &Control,
    replicas: usize,
) -> (StepResult<Throughput>, StepResult<Injected>) {
    let seed = faults::clock_seed();
    let done = AtomicBool::new(false);
    thread::scope(|scope| {
        let injector = scope.spawn(|| {
            faults::inject_until(control, FAULTS, replicas, seed, &done)
                .map_err(|err| err.to_string())
        });
        let exchanged = bulk::exchange(run);
        done.store(true, Ordering::Relaxed);
        let injected = match injector.join() {
            Ok(result) => result.map_err(Into::into),
            Err(_) => Err("the fault injector panicked".into()),
        };
        (exchanged, injected)
    })
}

/// Without faults the replicas agree at every event: nothing diverged, hung, crashed
/// or was restarted, and with more than one replica every event was voted on.
fn check_agreed(status: &EngineStatus, replicas: usize) -> StepResult<()> {
    let running = status.counter("replicas")?;
    if running != replicas as u64 {
        return Err(format!("the engine runs {running} replicas, not {replicas}").into());
    }
    status.every_place_filled()?;
    for key in FAULT_COUNTERS {
        if status.counter(key)? != 0 {
            return Err(format!(
                "{key} without an injected fault: {}; last fault: {}",
                status.counters(&FAULT_COUNTERS),
                status.value("last_fault")?
            )
            .into());
        }
    }
    let (events, votes) = (status.counter("events")?, status.counter("votes")?);
    let voted = if replicas > 1 { events } else { 0 };
    match (events, votes) {
        (0, _) => Err("the engine saw no event".into()),
        (_, votes) if votes == voted => Ok(()),
        _ => Err(format!("{votes} votes in {events} events of {replicas} replicas").into()),
    }
}

/// Under injection the group masked every fault: the engine took faults in, caught
/// the hang, replaced the killed replica (and any that crashed), repaired what
/// diverged, never lost its majority, and fills every place at the end.
fn check_masked(status: &EngineStatus, sent: &Injected) -> StepResult<()> {
    let counters = || status.counters(&FAULT_RUN_COUNTERS);
    let injected = status.counter("injected")?;
    if injected == 0 || injected > sent.total() {
        return Err(format!("{sent}, but the engine counts: {}", counters()).into());
    }
    for (key, least) in [
        ("hangs", sent.hangs),
        ("crashes", sent.kills),
        ("replacements", sent.kills),
        ("repairs", sent.hangs),
    ] {
        if status.counter(key)? < least {
            return Err(format!("{key} below {least} after {sent}: {}", counters()).into());
        }
    }
    for key in ["no_majority", "group_restarts"] {
        if status.counter(key)? != 0 {
            return Err(format!(
                "{key}: {}, last fault: {}",
                counters(),
                status.value("last_fault")?
            )
            .into());
        }
    }
    status.every_place_filled()
}

fn print_throughput(run: &BulkRun, throughput: &Throughput, engine: Option<&EngineStatus>) {
    let rate = |took: Duration| run.len as f64 / 1024.0 / took.as_secs_f64();
    let events = engine
        .and_then(|engine| engine.value("events").ok())
        .map_or(String::new(), |events| format!(", {events} engine events"));
    println!(
        "{GUEST_BENCH_PREFIX} uart16550 {}, {} KiB each way at once: \
         guest to host {:.1} KiB/s ({:.0} ms), host to guest {:.1} KiB/s ({:.0} ms), \
         {} register batches{events}",
        how(run.setup),
        run.len / 1024,
        rate(throughput.to_host),
        throughput.to_host.as_secs_f64() * 1000.0,
        rate(throughput.from_host),
        throughput.from_host.as_secs_f64() * 1000.0,
        throughput.steps,
    );
}

/// How the run's driver runs, for report lines.
fn how(setup: Setup) -> String {
    match setup {
        Setup::Direct => "direct access".to_owned(),
        Setup::Mmio => "access through mmio:".to_owned(),
        Setup::Replicated {
            replicas,
            faults,
            through_mmio,
        } => format!(
            "replicated x{replicas}{}{}",
            if through_mmio { ", through mmio:" } else { "" },
            if faults { " under fault injection" } else { "" }
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(counters: &str) -> EngineStatus {
        EngineStatus::parse(&format!("ok\nreplicas: 3\npids: 1 2 3\n{counters}")).unwrap()
    }

    const QUIET: &str = "events: 50\nvotes: 50\ndivergences: 0\nrepairs: 0\n\
                         replacements: 0\nhangs: 0\ncrashes: 0\nno-majority: 0\n\
                         group-restarts: 0\ninjected: 0\nlast-fault: none\n";

    #[test]
    fn agreement_means_no_fault_counted_and_every_event_voted() {
        assert!(check_agreed(&status(QUIET), 3).is_ok());
        assert!(check_agreed(&status(QUIET), 2).is_err(), "replica count");
        let diverged = QUIET.replace("divergences: 0", "divergences: 1");
        let err = check_agreed(&status(&diverged), 3).unwrap_err();
        assert!(err.to_string().starts_with("divergences without"), "{err}");
        let unvoted = QUIET.replace("votes: 50", "votes: 49");
        assert!(check_agreed(&status(&unvoted), 3).is_err());
        let idle = QUIET.replace("events: 50", "events: 0");
        assert!(check_agreed(&status(&idle), 3).is_err());
    }

    const MASKED: &str = "events: 900\nvotes: 900\ndivergences: 40\nrepairs: 41\n\
                          replacements: 3\nhangs: 1\ncrashes: 3\nno-majority: 0\n\
                          group-restarts: 0\ninjected: 80\nlast-fault: replica 2\n";

    fn sent() -> Injected {
        Injected {
            seed: 1,
            flips: 80,
            kills: 1,
            hangs: 1,
        }
    }

    #[test]
    fn masking_wants_the_kill_and_hang_handled_and_no_restart() {
        assert!(check_masked(&status(MASKED), &sent()).is_ok());
        for (from, to) in [
            ("injected: 80", "injected: 0"),
            ("injected: 80", "injected: 83"),
            ("hangs: 1", "hangs: 0"),
            ("replacements: 3", "replacements: 0"),
            ("no-majority: 0", "no-majority: 1"),
            ("group-restarts: 0", "group-restarts: 1"),
            ("pids: 1 2 3", "pids: 1 - 3"),
        ] {
            let text = format!("ok\nreplicas: 3\npids: 1 2 3\n{MASKED}").replace(from, to);
            let broken = EngineStatus::parse(&text).unwrap();
            assert!(check_masked(&broken, &sent()).is_err(), "{to}");
        }
    }
}
