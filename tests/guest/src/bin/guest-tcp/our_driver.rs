//! Our e1000 driver under the guest's own TCP/IP stack, alone in one access mode or
//! replicated. Alone, this program starts it as the policy's e1000 driver.
//! Replicated, `romain:` starts it from a registry this program writes (the NIC's PCI
//! address is found at run time), as `romain:e1000?replicas=N`, and supervises it;
//! a group of one `romain:` runs as the driver alone, so for the benchmark's row of
//! one replica this program starts the engine itself (`romain replicate --replicas
//! 1`, as `romain:` would for more). Then `tap-bridge` puts the stack on it, the
//! shared steps run (on the tests' path while faults go into the replicas through
//! the group's `romain:` handle), both are stopped (a group by `down`) and the
//! bridge's counters and the engine's checked.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use guest_harness::guest::control::{self, Control, EngineStatus};
use guest_harness::guest::daemons::read_status;
use guest_harness::guest::faults::{self, Injected, Schedule};
use guest_harness::guest::report::{Report, StepResult};
use guest_harness::guest::romain::{RegistryEntry, Romain, RomainGroup, ROMAIN_PROGRAM};
use guest_harness::protocol::{E1000_DRIVER_LABEL, GUEST_BENCH_PREFIX};
use guest_net::bridge::RELAYING;
use guest_net::child::Child;
use guest_net::cpu::{cpu_time, percent, DriverCpu};
use guest_net::echo::SessionNews;
use guest_net::paths::{
    Access, BackendKind, NetPath, ReplicaCount, Waiting, REPLICAS, REPLICATED_ACCESS,
};
use guest_net::protocol::Command as EchoCommand;
use guest_net::relay::BridgeCounters;
use nix::sys::signal::Signal;
use scheme_runtime::Handle;
use syscall::flag::O_RDONLY;

use crate::restarted;
use crate::service::{self, Settings};
use crate::Environment;

/// The driver serves network.<NAME>; the bridge uses it. Also its name in the
/// registry.
pub(crate) const DRIVER_NAME: &str = "e1000";
const DRIVER_PROGRAM: &str = "/bin/e1000";
const SCHEME: &str = "network.e1000";
const MAC_PATH: &str = "/scheme/network.e1000/mac";
const STATUS_PATH: &str = "/scheme/network.e1000/status";
/// Bring-up allocates two DMA buffers and configures the NIC, under the engine
/// after it has started and traced its replicas; generous for TCG.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The driver stops on SIGTERM at once (after stopping the NIC's DMA), the engine
/// on `down`, and romain on SIGTERM.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the engine may take to report its counters: it answers between two
/// requests it serves, which a replica the watchdog waits for can hold up.
const ENGINE_STATUS_TIMEOUT: Duration = Duration::from_secs(10);
/// A fault a second while the host's load runs; every tenth a kill, which the
/// engine answers by putting a copy of a healthy replica in its place.
const FAULTS: Schedule = Schedule {
    pause_ms: (1000, 1000),
    kills_at: &KILLS_AT,
    hangs_at: &[],
};
/// Faults 4, 14, 24, ...: a kill about every ten seconds for the first 1,000
/// seconds, longer than the tests' load lasts (some 5 minutes under TCG).
const KILLS_AT: [u64; 100] = every_tenth_from(4);
/// What the engine went through under fault injection, as the report shows it (the
/// keys of `romain:`'s group status).
const ENGINE_COUNTERS: [&str; 12] = [
    "events",
    "injected",
    "divergences",
    "repairs",
    "replacements",
    "crashes",
    "no_majority",
    "group_restarts",
    "requests",
    "rounds",
    "busy_ms",
    "memory_sync_ms",
];

/// The counters the benchmark's rows show of the engine's work.
const ENGINE_WORK: [&str; 11] = [
    "replicas",
    "events",
    "requests",
    "rounds",
    "quiet",
    "held_calls",
    "cause_reads",
    "busy_ms",
    "memory_sync_ms",
    "running_ms",
    "effects_ms",
];

/// Our driver as a path runs it.
pub(crate) enum Driver {
    /// Started by this program.
    Alone(Child),
    /// A replicated group, started and supervised by `romain:`.
    Supervised { romain: Romain, group: RomainGroup },
    /// The replication engine, started by this program, with its control socket.
    Traced { engine: Child, control: Control },
}

impl Driver {
    /// The process at the top of the driver (the driver, the engine, or
    /// `romain:`), the processor time it and its descendants used so far, and
    /// when: what [`driver_cpu`] measures from.
    fn before_load(&self) -> (u32, std::io::Result<Duration>, Instant) {
        let pid = match self {
            Driver::Alone(child) => child.id(),
            Driver::Supervised { romain, .. } => romain.id(),
            Driver::Traced { engine, .. } => engine.id(),
        };
        (pid, cpu_time(pid), Instant::now())
    }

    /// The replication engine's status; an error for the driver alone.
    pub(crate) fn engine_status(&self) -> StepResult<EngineStatus> {
        match self {
            Driver::Alone(_) => Err("the driver runs alone, without the engine".into()),
            Driver::Supervised { group, .. } => group.engine_status(ENGINE_STATUS_TIMEOUT),
            Driver::Traced { control, .. } => control.status(),
        }
    }
}

/// Runs `path`, one of our driver's.
pub fn run(report: &mut Report, env: Option<&Environment>, path: NetPath, settings: &Settings) {
    let step = |name: &str| format!("tcp-{path}-{name}");
    let mut driver = report.run_after(&step("driver-serving"), env, |env| start_driver(env, path));
    let mut bridge = report.run_after(&step("bridge-relaying"), driver.as_ref(), |_| {
        start_bridge()
    });
    let up = bridge.as_ref().map(drop);
    let mut faults = None;
    let mut engine_events = None;
    match path {
        NetPath::ReplicatedE1000(_) => {
            let group = match &driver {
                Some(Driver::Supervised { group, .. }) => Some(group),
                _ => None,
            };
            serve_under_faults(report, path, settings, up, group);
        }
        NetPath::ReplicaCountE1000(count, _) => {
            let before_load = driver.as_ref().map(Driver::before_load);
            let mut sessions = SessionEvents::default();
            service::run_telling(report, path, settings, up, &mut |news| {
                if let Some(driver) = &driver {
                    sessions.note(&news, || {
                        Some(Count {
                            events: driver.engine_status().ok()?.counter("events").ok()?,
                            frames: nic_frames()?,
                        })
                    });
                }
            });
            for line in sessions.lines() {
                println!("{GUEST_BENCH_PREFIX} tcp {path} events per {line}");
            }
            engine_events = report.run_after(&step("engine-ran"), driver.as_ref(), |driver| {
                engine_ran(driver, path, count)
            });
            report.run_after(&step("driver-cpu"), before_load, |(pid, used, started)| {
                driver_cpu(path, pid, used?, started)
            });
        }
        NetPath::RestartedE1000 => {
            let group = match &driver {
                Some(Driver::Supervised { group, .. }) => Some(group),
                _ => None,
            };
            faults = restarted::serve_under_kills(report, path, settings, up, group);
        }
        NetPath::OurE1000(_, waiting) => {
            let before_load = driver.as_ref().map(Driver::before_load);
            service::run(report, path, settings, up);
            report.run_after(&step("driver-cpu"), before_load, |(pid, used, started)| {
                driver_cpu(path, pid, used?, started)
            });
            if waiting != Waiting::Polled {
                report.run_after(&step("driven-by-interrupts"), driver.as_ref(), |driver| {
                    driven_by_interrupts(driver)
                });
            }
            if settings.link_flap == Some(path) {
                report.run_after(
                    &step("driver-reported-the-link-down-and-up"),
                    driver.as_ref(),
                    |_| interrupt_count("link_changes").and_then(at_least_two_link_changes),
                );
            }
        }
        NetPath::LinuxE1000 => service::run(report, path, settings, up),
    }
    let counters = report.run_after(
        &step("bridge-stopped-nothing-dropped"),
        bridge.as_mut(),
        stop_bridge,
    );
    if let Some((events, counters)) = engine_events.zip(counters) {
        let frames = counters.nic_to_tap.frames + counters.tap_to_nic.frames;
        println!(
            "{GUEST_BENCH_PREFIX} tcp {path} events per frame: {:.2} ({events} events, \
             {frames} frames both ways, over the whole load)",
            events as f64 / frames.max(1) as f64
        );
    }
    if settings.link_flap == Some(path) {
        report.run_after(&step("bridge-followed-the-link"), counters, |counters| {
            at_least_two_link_changes(counters.link_changes)
        });
    }
    if path == NetPath::RestartedE1000 {
        report.run_after(
            &step("bridge-reopened-after-every-restart"),
            counters.zip(faults),
            |(counters, faults)| restarted::bridge_reopened(&counters, faults),
        );
    }
    report.run_after(&step("driver-stopped"), driver.as_mut(), |driver| {
        log_driver_status();
        stop_driver(driver)
    });
}

/// Starts the driver of `path` as the e1000 rule's uid and waits until its scheme
/// answers.
pub(crate) fn start_driver(env: &Environment, path: NetPath) -> StepResult<Driver> {
    match path {
        NetPath::OurE1000(access, waiting) => {
            let mut command = Command::new(DRIVER_PROGRAM);
            command
                .args(driver_args(env, access))
                .args(waiting.driver_args())
                .uid(env.driver_uid)
                .gid(env.driver_uid);
            let mut driver = Child::spawn("the e1000 driver", command)?;
            driver.wait_until(START_TIMEOUT, serving)?;
            Ok(Driver::Alone(driver))
        }
        NetPath::ReplicatedE1000(backend) => start_group(env, REPLICAS, backend),
        NetPath::RestartedE1000 => restarted::start_group(env),
        NetPath::ReplicaCountE1000(count, backend) if count.get() == 1 => {
            start_engine(env, count, backend)
        }
        NetPath::ReplicaCountE1000(count, backend) => start_group(env, count.get(), backend),
        NetPath::LinuxE1000 => Err("Linux's e1000 is not our driver".into()),
    }
}

/// The driver's command line in `access` mode.
fn driver_args(env: &Environment, access: Access) -> Vec<String> {
    vec![
        "--pci".to_owned(),
        env.nic.to_string(),
        "--access".to_owned(),
        access.name().to_owned(),
        "--name".to_owned(),
        DRIVER_NAME.to_owned(),
        "--tick-us".to_owned(),
        env.driver_tick_us.to_string(),
    ]
}

/// The registry entry of our driver in `access` mode, as the e1000 rule's user.
pub(crate) fn registry_entry(env: &Environment, access: Access) -> RegistryEntry {
    RegistryEntry {
        driver: DRIVER_NAME.to_owned(),
        binary: DRIVER_PROGRAM.to_owned(),
        args: driver_args(env, access),
        policy: E1000_DRIVER_LABEL.to_owned(),
        uid: env.driver_uid,
        gid: env.driver_uid,
        watchdog_ms: env.replica_watchdog_ms,
        backend: BackendKind::Ptrace,
    }
}

/// `romain:e1000?replicas=<replicas>` on `backend`, from a registry this program
/// writes, as the e1000 rule's user.
fn start_group(env: &Environment, replicas: usize, backend: BackendKind) -> StepResult<Driver> {
    let entry = RegistryEntry {
        backend,
        ..registry_entry(env, REPLICATED_ACCESS)
    };
    let mut romain = Romain::start(&entry.registry())?;
    let group = RomainGroup::up(DRIVER_NAME, replicas)?;
    romain.wait_until(START_TIMEOUT, serving).map_err(|err| {
        let detail = group.status().map_or_else(
            |e| e.to_string(),
            |status| status.value("last_fault_detail").unwrap_or("?").to_owned(),
        );
        format!("{err}; the group's last fault: {detail}")
    })?;
    runs_as(&group.status()?, env.driver_uid)?;
    Ok(Driver::Supervised { romain, group })
}

/// `romain replicate` running the driver as `count` replicas on `backend`, as the
/// e1000 rule's user: what `romain:` starts for a group of two or more.
fn start_engine(
    env: &Environment,
    count: ReplicaCount,
    backend: BackendKind,
) -> StepResult<Driver> {
    let (control, engine_end) = Control::pair()?;
    let mut command = Command::new(ROMAIN_PROGRAM);
    let control_fd = control::hand_over(&mut command, engine_end);
    command
        .args(["replicate", "--replicas", &count.get().to_string()])
        .args(["--label", E1000_DRIVER_LABEL])
        .args(["--watchdog-ms", &env.replica_watchdog_ms.to_string()])
        .args(["--backend", &backend.to_string()])
        .args([
            "--control-fd",
            &control_fd.to_string(),
            "--",
            DRIVER_PROGRAM,
        ])
        .args(driver_args(env, REPLICATED_ACCESS))
        .uid(env.driver_uid)
        .gid(env.driver_uid);
    let mut engine = Child::spawn("romain replicate", command)?;
    engine.wait_until(START_TIMEOUT, serving)?;
    Ok(Driver::Traced { engine, control })
}

/// The driver's scheme answers.
pub(crate) fn serving() -> bool {
    Handle::open(MAC_PATH, O_RDONLY).is_ok()
}

/// The group's process (the engine) runs as `uid`, as the registry says.
fn runs_as(status: &EngineStatus, uid: u32) -> StepResult<()> {
    let pid = status.value("pids")?;
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let ids = proc_status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .ok_or_else(|| format!("/proc/{pid}/status has no Uid line"))?;
    match ids.split_whitespace().all(|id| id == uid.to_string()) {
        true => Ok(()),
        false => Err(format!("the engine (pid {pid}) runs as uids {ids:?}, not {uid}").into()),
    }
}

/// The shared steps while faults go into the replicas of `group`, then the faults
/// sent and what the engine made of them.
fn serve_under_faults(
    report: &mut Report,
    path: NetPath,
    settings: &Settings,
    up: Option<()>,
    group: Option<&RomainGroup>,
) {
    let step = |name: &str| format!("tcp-{path}-{name}");
    let seed = faults::clock_seed();
    let done = AtomicBool::new(false);
    let injected = thread::scope(|scope| {
        let injector = group.map(|group| {
            scope.spawn(|| {
                faults::inject_until(group, FAULTS, REPLICAS, seed, &done)
                    .map_err(|err| err.to_string())
            })
        });
        service::run(report, path, settings, up);
        done.store(true, Ordering::Relaxed);
        injector.map(|injector| injector.join())
    });
    let injected = report.run_after(&step("faults-injected"), injected, |joined| match joined {
        Ok(sent) => Ok(sent?),
        Err(_) => Err("the fault injector panicked".into()),
    });
    report.run_after(
        &step("faults-masked"),
        group.zip(injected.as_ref()),
        |(group, injected)| {
            let status = group.engine_status(ENGINE_STATUS_TIMEOUT)?;
            println!(
                "{GUEST_BENCH_PREFIX} tcp {path} x{REPLICAS} under fault injection: {injected}; \
                 engine: {}",
                status.counters(&ENGINE_COUNTERS)
            );
            check_masked(&status, injected)?;
            on_its_backend(&status, path)
        },
    );
}

/// The engine runs the backend `path` names.
fn on_its_backend(status: &EngineStatus, path: NetPath) -> StepResult<()> {
    let wanted = match path {
        NetPath::ReplicatedE1000(backend) | NetPath::ReplicaCountE1000(_, backend) => backend,
        _ => return Ok(()),
    };
    let running = status.value("engine_backend")?;
    if running != wanted.to_string() {
        return Err(format!("the engine runs the {running} backend, not {wanted}").into());
    }
    Ok(())
}

/// The engine took faults in, never lost its majority, and, if replicas were killed,
/// put copies of healthy ones in their places.
fn check_masked(status: &EngineStatus, sent: &Injected) -> StepResult<()> {
    let counters = || status.counters(&ENGINE_COUNTERS);
    let injected = status.counter("injected")?;
    if injected == 0 || injected > sent.total() {
        return Err(format!("{sent}, but the engine counts: {}", counters()).into());
    }
    if status.counter("no_majority")? != 0 {
        return Err(format!(
            "the group lost its majority: {}; last fault: {}",
            counters(),
            status.value("engine_last_fault")?
        )
        .into());
    }
    if sent.kills > 0 && status.counter("replacements")? == 0 {
        return Err(format!("{sent}, but no replica was replaced: {}", counters()).into());
    }
    Ok(())
}

/// The driver ran under the engine as `count` replicas, which handled its events;
/// prints what the engine did for the benchmark's record.
/// The engine ran `count` replicas through the load; returns its events.
fn engine_ran(driver: &Driver, path: NetPath, count: ReplicaCount) -> StepResult<u64> {
    let status = driver.engine_status()?;
    // Measured here, after the load, on the same machine in the same run.
    let floor = romain_engine::floor::measure(count.get(), FLOOR_EVENTS)
        .map_err(|error| format!("measuring the floor: {error}"))?;
    println!(
        "{GUEST_BENCH_PREFIX} tcp {path} engine: {}{}",
        status.counters(&ENGINE_WORK),
        time_per_event(&status, floor).unwrap_or_default()
    );
    check_engine_work(&status, count)?;
    status.counter("events")
}

/// The engine's events and the NIC's frames (received and sent) at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Count {
    events: u64,
    frames: u64,
}

/// The frames the NIC received and sent so far (`gprc` + `gptc` of the
/// driver's status): read through the driver, which costs the group a few
/// events of its own.
fn nic_frames() -> Option<u64> {
    let status = read_status(STATUS_PATH).ok()?;
    let count = |key: &str| -> Option<u64> {
        status
            .split_whitespace()
            .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))?
            .parse()
            .ok()
    };
    Some(count("gprc")? + count("gptc")?)
}

/// The engine's events during the service's sessions: per round trip of the
/// echo session, and per frame of the bulk transfers each way.
#[derive(Default)]
struct SessionEvents {
    at_start: Option<Count>,
    /// (events, round trips) of the echo session.
    echo: Option<(u64, u64)>,
    /// (events, frames) of the transfers to and from the guest.
    to_guest: Option<(u64, u64)>,
    from_guest: Option<(u64, u64)>,
}

impl SessionEvents {
    /// Takes `news`, reading the counts with `count` at each session's
    /// beginning and end.
    fn note(&mut self, news: &SessionNews, count: impl FnOnce() -> Option<Count>) {
        let SessionNews::Ended { command, exchanges } = news else {
            self.at_start = count();
            return;
        };
        let Some((start, end)) = self.at_start.take().zip(count()) else {
            return;
        };
        let events = end.events.saturating_sub(start.events);
        let frames = end.frames.saturating_sub(start.frames);
        match command {
            EchoCommand::Echo => self.echo = Some((events, *exchanges)),
            EchoCommand::Sink { .. } => self.to_guest = Some((events, frames)),
            EchoCommand::Source { .. } => self.from_guest = Some((events, frames)),
            EchoCommand::Quit => {}
        }
    }

    /// `round trip: 2.10 (2100 events, 1000 round trips)`, `frame to the
    /// guest: 0.40 (...)`, `frame from the guest: ...`: those counted.
    fn lines(&self) -> Vec<String> {
        let ratio = |what: &str, (events, of): (u64, u64), unit: &str| {
            (of > 0).then(|| {
                format!(
                    "{what}: {:.2} ({events} events, {of} {unit})",
                    events as f64 / of as f64
                )
            })
        };
        [
            self.echo
                .and_then(|counted| ratio("round trip", counted, "round trips")),
            self.to_guest
                .and_then(|counted| ratio("frame to the guest", counted, "frames")),
            self.from_guest
                .and_then(|counted| ratio("frame from the guest", counted, "frames")),
        ]
        .into_iter()
        .flatten()
        .collect()
    }
}

/// Events the floor of a replicated event is measured over.
const FLOOR_EVENTS: u32 = 500;

/// `; per event 0.90 ms (replicas running 0.30, effects 0.20, memory sync 0.30,
/// the rest 0.10), 0.60 ms of it without memory sync; the floor 0.30 ms: 3.00x,
/// 2.00x without memory sync`: what one event costs the engine and where it
/// goes, beside the least any replicated event of as many replicas costs
/// (`floor`, DESIGN section 4.1).
fn time_per_event(status: &EngineStatus, floor: Duration) -> Option<String> {
    let events = status.counter("events").ok().filter(|&n| n > 0)? as f64;
    let per_event = |key| Some(status.counter(key).ok()? as f64 / events);
    let busy = per_event("busy_ms")?;
    let memory_sync = per_event("memory_sync_ms")?;
    let running = per_event("running_ms")?;
    let effects = per_event("effects_ms")?;
    let rest = busy - running - effects - memory_sync;
    let without_sync = busy - memory_sync;
    let floor_ms = floor.as_secs_f64() * 1e3;
    Some(format!(
        "; per event {busy:.2} ms (replicas running {running:.2}, effects {effects:.2}, \
         memory sync {memory_sync:.2}, the rest {rest:.2}), {without_sync:.2} ms of it \
         without memory sync; the floor {floor_ms:.2} ms: {:.2}x, {:.2}x without memory sync",
        busy / floor_ms,
        without_sync / floor_ms
    ))
}

/// The engine ran `count` replicas and handled events.
fn check_engine_work(status: &EngineStatus, count: ReplicaCount) -> StepResult<()> {
    let replicas = status.counter("replicas")?;
    if replicas != count.get() as u64 {
        return Err(format!("the engine runs {replicas} replicas, not {}", count.get()).into());
    }
    match status.counter("events")? {
        0 => Err("the engine handled no events".into()),
        _ => Ok(()),
    }
}

/// Stops the driver: alone it must exit cleanly; a group goes `down` (its engine,
/// and the replicas with it, end), then romain, which must have run all along; an
/// engine of our own must have run until its SIGTERM (its replicas end with it).
pub(crate) fn stop_driver(driver: &mut Driver) -> StepResult<()> {
    match driver {
        Driver::Alone(driver) => Ok(driver.stop(STOP_TIMEOUT)?),
        Driver::Supervised { romain, group } => {
            group.down(STOP_TIMEOUT)?;
            romain.stop(STOP_TIMEOUT)
        }
        Driver::Traced { engine, .. } => {
            let status = engine.terminate(STOP_TIMEOUT)?;
            match status.signal() {
                Some(signal) if signal == Signal::SIGTERM as i32 => Ok(()),
                _ => Err(
                    format!("romain replicate had ended before it was stopped: {status}").into(),
                ),
            }
        }
    }
}

pub(crate) fn start_bridge() -> StepResult<Child> {
    let mut command = Command::new("tap-bridge");
    command.args(["--scheme", SCHEME]);
    let mut bridge = Child::spawn("tap-bridge", command)?;
    let relaying = bridge.wait_for_line(RELAYING, START_TIMEOUT)?;
    log::info!("{relaying}");
    Ok(bridge)
}

/// Stops the bridge; frames must have gone both ways and none been dropped.
fn stop_bridge(bridge: &mut Child) -> StepResult<BridgeCounters> {
    bridge.stop(STOP_TIMEOUT)?;
    let counters = bridge
        .output()
        .iter()
        .find_map(|line| BridgeCounters::parse(line))
        .ok_or("tap-bridge stopped without printing its counters")?;
    println!("{counters}");
    let (to_tap, to_nic) = (counters.nic_to_tap, counters.tap_to_nic);
    if to_tap.frames == 0 || to_nic.frames == 0 {
        return Err(format!("frames did not go both ways: {counters}").into());
    }
    if to_tap.dropped + to_nic.dropped > 0 {
        return Err(format!("the bridge dropped frames: {counters}").into());
    }
    Ok(counters)
}

/// How long the driver is watched idle after its load, for its CPU time.
const IDLE_WINDOW: Duration = Duration::from_secs(10);

/// The driver alone waited on its interrupt through the load: it took some,
/// and read the NIC's causes once for each.
fn driven_by_interrupts(driver: &Driver) -> StepResult<String> {
    let Driver::Alone(_) = driver else {
        return Err("only the driver alone waits on its interrupt".into());
    };
    let line = interrupts_line()?;
    let (taken, cause_reads) = (interrupt_count("taken")?, interrupt_count("cause_reads")?);
    match status_field(&line, "mode")? {
        "line" if taken > 0 && taken == cause_reads => {
            Ok(format!("{taken} interrupts, each cause read once"))
        }
        _ => Err(format!("{line:?}: not driven by its interrupt").into()),
    }
}

/// The `interrupts` line of the driver's status.
fn interrupts_line() -> StepResult<String> {
    let status = read_status(STATUS_PATH)?;
    Ok(status
        .lines()
        .find(|line| line.starts_with("interrupts "))
        .ok_or("no interrupts line in the driver's status")?
        .to_owned())
}

/// The value of `key=` among the words of `line`.
fn status_field<'a>(line: &'a str, key: &str) -> StepResult<&'a str> {
    Ok(line
        .split_whitespace()
        .find_map(|word| word.strip_prefix(key)?.strip_prefix('='))
        .ok_or_else(|| format!("no {key} in {line:?}"))?)
}

/// A count of the driver's `interrupts` status line.
fn interrupt_count(key: &str) -> StepResult<u64> {
    let line = interrupts_line()?;
    let value = status_field(&line, key)?;
    Ok(value
        .parse()
        .map_err(|_| format!("{key}={value:?} in {line:?}"))?)
}

/// The link went down and came up again: two changes at least.
fn at_least_two_link_changes(changes: u64) -> StepResult<String> {
    match changes {
        0 | 1 => Err(format!("{changes} link changes; the host took the link down and up").into()),
        changes => Ok(format!("{changes} link changes")),
    }
}

/// The share of the processor the driver (`pid` and its descendants: the
/// engine and replicas of a replicated one) used under the load that started
/// at `started`, when it had used `used`, and then idle over [`IDLE_WINDOW`];
/// printed as the line the host's table reads.
fn driver_cpu(path: NetPath, pid: u32, used: Duration, started: Instant) -> StepResult<String> {
    let under_load = cpu_time(pid)?.saturating_sub(used);
    let load_time = started.elapsed();
    let idle_from = cpu_time(pid)?;
    thread::sleep(IDLE_WINDOW);
    let idle = cpu_time(pid)?.saturating_sub(idle_from);
    let cpu = DriverCpu {
        under_load_percent: percent(under_load, load_time),
        idle_percent: percent(idle, IDLE_WINDOW),
        idle_window: IDLE_WINDOW,
    };
    println!("{}", cpu.line(path.label()));
    Ok(cpu.to_string())
}

fn log_driver_status() {
    match read_status(STATUS_PATH) {
        Ok(text) => log::info!(
            "{SCHEME} status: {}",
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        ),
        Err(err) => log::warn!("reading {STATUS_PATH}: {err}"),
    }
}

/// `N` fault indices ten apart from `first`.
const fn every_tenth_from<const N: usize>(first: u64) -> [u64; N] {
    let mut indices = [0; N];
    let mut i = 0;
    while i < N {
        indices[i] = first + 10 * i as u64;
        i += 1;
    }
    indices
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group_status(counters: &str) -> EngineStatus {
        EngineStatus::from_group_status(&format!(
            "state=running\nevents=900\nengine_last_fault=replica 2 killed\n{counters}"
        ))
        .unwrap()
    }

    fn sent(flips: u64, kills: u64) -> Injected {
        Injected {
            flips,
            kills,
            ..Injected::default()
        }
    }

    #[test]
    fn masked_faults_need_the_engine_to_count_them_keep_its_majority_and_replace_the_killed() {
        let counted = |injected: u64, no_majority: u64, replacements: u64| {
            group_status(&format!(
                "injected={injected}\nno_majority={no_majority}\nreplacements={replacements}\n\
                 repairs=3\n"
            ))
        };
        assert!(check_masked(&counted(12, 0, 2), &sent(10, 2)).is_ok());
        assert!(check_masked(&counted(10, 0, 0), &sent(10, 0)).is_ok());
        let failure = |status: EngineStatus, sent: Injected| {
            check_masked(&status, &sent).unwrap_err().to_string()
        };
        let uncounted = failure(counted(0, 0, 2), sent(10, 2));
        assert!(uncounted.contains("but the engine counts"), "{uncounted}");
        let overcounted = failure(counted(13, 0, 2), sent(10, 2));
        assert!(
            overcounted.contains("but the engine counts"),
            "{overcounted}"
        );
        let lost = failure(counted(12, 1, 2), sent(10, 2));
        assert!(lost.contains("lost its majority"), "{lost}");
        assert!(lost.ends_with("last fault: replica 2 killed"), "{lost}");
        let unreplaced = failure(counted(12, 0, 0), sent(10, 2));
        assert!(
            unreplaced.contains("no replica was replaced"),
            "{unreplaced}"
        );
    }

    #[test]
    fn events_are_counted_per_round_trip_of_the_echo_and_per_frame_of_each_transfer() {
        let at = |events, frames| move || Some(Count { events, frames });
        let mut counted = SessionEvents::default();
        let echo = EchoCommand::Echo;
        let sink = EchoCommand::Sink { len: 9 };
        counted.note(&SessionNews::Began(sink), at(1, 10));
        assert!(counted.lines().is_empty(), "nothing ended yet");
        counted.note(
            &SessionNews::Ended {
                command: sink,
                exchanges: 0,
            },
            at(401, 1_010),
        );
        counted.note(&SessionNews::Began(echo), at(500, 2_000));
        counted.note(
            &SessionNews::Ended {
                command: echo,
                exchanges: 1000,
            },
            at(3_000, 4_000),
        );
        counted.note(&SessionNews::Began(EchoCommand::Quit), at(9_999, 9_999));
        assert_eq!(
            counted.lines(),
            [
                "round trip: 2.50 (2500 events, 1000 round trips)",
                "frame to the guest: 0.40 (400 events, 1000 frames)",
            ]
        );
        let mut unread = SessionEvents::default();
        unread.note(&SessionNews::Began(echo), || None);
        unread.note(
            &SessionNews::Ended {
                command: echo,
                exchanges: 10,
            },
            at(5, 5),
        );
        assert!(unread.lines().is_empty(), "a count that could not be read");
    }

    #[test]
    fn time_per_event_divides_busy_time_by_events() {
        let status = |text: &str| EngineStatus::parse(text).unwrap();
        assert_eq!(
            time_per_event(
                &status(
                    "ok\nevents: 200\nbusy-ms: 180\nmemory-sync-ms: 60\nrunning-ms: 60\n\
                     effects-ms: 40\n"
                ),
                Duration::from_micros(300)
            )
            .as_deref(),
            Some(
                "; per event 0.90 ms (replicas running 0.30, effects 0.20, memory sync 0.30, \
                 the rest 0.10), 0.60 ms of it without memory sync; \
                 the floor 0.30 ms: 3.00x, 2.00x without memory sync"
            )
        );
        let floor = Duration::from_micros(300);
        assert_eq!(
            time_per_event(
                &status("ok\nevents: 0\nbusy-ms: 1\nmemory-sync-ms: 0\n"),
                floor
            ),
            None
        );
        assert_eq!(time_per_event(&status("ok\nevents: 5\n"), floor), None);
    }

    #[test]
    fn engine_work_needs_the_asked_replicas_and_events() {
        let [one, _, three] = ReplicaCount::ALL;
        let status = |text: &str| EngineStatus::parse(text).unwrap();
        assert!(check_engine_work(&status("ok\nreplicas: 1\nevents: 25\n"), one).is_ok());
        let wrong = check_engine_work(&status("ok\nreplicas: 1\nevents: 25\n"), three);
        assert!(wrong
            .unwrap_err()
            .to_string()
            .contains("runs 1 replicas, not 3"));
        let idle = check_engine_work(&status("ok\nreplicas: 1\nevents: 0\n"), one);
        assert!(idle.unwrap_err().to_string().contains("no events"));
        assert!(check_engine_work(&status("ok\nevents: 5\n"), one).is_err());
    }

    #[test]
    fn kills_come_every_ten_faults() {
        assert_eq!(KILLS_AT[..3], [4, 14, 24]);
        assert_eq!(KILLS_AT[99], 994);
    }
}
