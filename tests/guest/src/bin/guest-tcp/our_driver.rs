//! Our e1000 driver under the guest's own TCP/IP stack, alone in one access mode or
//! replicated by `romain replicate`: the driver started as the policy's e1000 driver,
//! `tap-bridge` putting the stack on it, the shared steps (while faults go into the
//! replicas of the replicated driver), then both stopped and the bridge's counters
//! and the engine's checked.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use guest_harness::guest::control::{self, Control, EngineStatus};
use guest_harness::guest::daemons::read_status;
use guest_harness::guest::faults::{self, Injected, Schedule};
use guest_harness::guest::report::{Report, StepResult};
use guest_harness::protocol::GUEST_BENCH_PREFIX;
use guest_net::bridge::RELAYING;
use guest_net::child::Child;
use guest_net::paths::{Access, NetPath, REPLICAS, REPLICATED_ACCESS};
use guest_net::relay::BridgeCounters;
use nix::sys::signal::Signal;
use scheme_runtime::Handle;
use syscall::flag::O_RDONLY;

use crate::service::{self, Settings};
use crate::Environment;

/// The driver serves network.<NAME>; the bridge uses it.
const DRIVER_NAME: &str = "e1000";
const DRIVER_PROGRAM: &str = "/bin/e1000";
const ROMAIN_PROGRAM: &str = "/bin/romain";
const SCHEME: &str = "network.e1000";
const MAC_PATH: &str = "/scheme/network.e1000/mac";
const STATUS_PATH: &str = "/scheme/network.e1000/status";
/// Bring-up allocates two DMA buffers and configures the NIC, under the engine
/// after it has started and traced its replicas; generous for TCG.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Both stop on SIGTERM at once (the driver after stopping the NIC's DMA).
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a replica may take to reach its next event: a replica waits for its NIC
/// a tick at a time, but under TCG with the others traced that can stretch far.
const REPLICA_WATCHDOG_MS: u32 = 5000;
/// A fault a second while the host's load runs; now and then a kill, which the
/// engine answers by putting a copy of a healthy replica in its place.
const FAULTS: Schedule = Schedule {
    pause_ms: (1000, 1000),
    kills_at: &[4, 14, 24, 34, 44, 54],
    hangs_at: &[],
};
/// What the engine went through under fault injection, as the report shows it.
const ENGINE_COUNTERS: [&str; 12] = [
    "events",
    "injected",
    "divergences",
    "repairs",
    "replacements",
    "crashes",
    "no-majority",
    "group-restarts",
    "requests",
    "rounds",
    "busy-ms",
    "memory-sync-ms",
];

/// Runs `path`, one of our driver's.
pub fn run(report: &mut Report, env: Option<&Environment>, path: NetPath, settings: &Settings) {
    let step = |name: &str| format!("tcp-{path}-{name}");
    let started = report.run_after(&step("driver-serving"), env, |env| start_driver(env, path));
    let (mut driver, control) = started.unzip();
    let control = control.flatten();
    let mut bridge = report.run_after(&step("bridge-relaying"), driver.as_ref(), |_| {
        start_bridge()
    });
    let up = bridge.as_ref().map(drop);
    if path == NetPath::ReplicatedE1000 {
        serve_under_faults(report, path, settings, up, control.as_ref());
    } else {
        service::run(report, path, settings, up);
    }
    report.run_after(
        &step("bridge-stopped-nothing-dropped"),
        bridge.as_mut(),
        stop_bridge,
    );
    report.run_after(&step("driver-stopped"), driver.as_mut(), |driver| {
        log_driver_status();
        stop_driver(driver, path)
    });
}

/// Starts the driver of `path` as the e1000 rule's uid and waits until its scheme
/// answers; the replicated one comes with our end of the engine's control socket.
fn start_driver(env: &Environment, path: NetPath) -> StepResult<(Child, Option<Control>)> {
    let driver_args = |access: Access| {
        [
            "--pci".to_owned(),
            env.nic.to_string(),
            "--access".to_owned(),
            access.name().to_owned(),
            "--name".to_owned(),
            DRIVER_NAME.to_owned(),
            "--tick-us".to_owned(),
            env.driver_tick_us.to_string(),
        ]
    };
    let (mut command, control) = match path {
        NetPath::OurE1000(access) => {
            let mut command = Command::new(DRIVER_PROGRAM);
            command.args(driver_args(access));
            (command, None)
        }
        NetPath::ReplicatedE1000 => {
            let (control, engine_end) = Control::pair()?;
            let mut command = Command::new(ROMAIN_PROGRAM);
            let control_fd = control::hand_over(&mut command, engine_end);
            command
                .args(["replicate", "--replicas", &REPLICAS.to_string()])
                .args(["--watchdog-ms", &REPLICA_WATCHDOG_MS.to_string()])
                .args(["--control-fd", &control_fd.to_string(), "--"])
                .arg(DRIVER_PROGRAM)
                .args(driver_args(REPLICATED_ACCESS));
            (command, Some(control))
        }
        NetPath::LinuxE1000 => return Err("Linux's e1000 is not our driver".into()),
    };
    command.uid(env.driver_uid).gid(env.driver_uid);
    let mut driver = Child::spawn("the e1000 driver", command)?;
    driver.wait_until(START_TIMEOUT, || Handle::open(MAC_PATH, O_RDONLY).is_ok())?;
    Ok((driver, control))
}

/// The shared steps while faults go into the replicas behind `control`, then the
/// faults sent and what the engine made of them.
fn serve_under_faults(
    report: &mut Report,
    path: NetPath,
    settings: &Settings,
    up: Option<()>,
    control: Option<&Control>,
) {
    let step = |name: &str| format!("tcp-{path}-{name}");
    let seed = faults::clock_seed();
    let done = AtomicBool::new(false);
    let injected = thread::scope(|scope| {
        let injector = control.map(|control| {
            scope.spawn(|| {
                faults::inject_until(control, FAULTS, REPLICAS, seed, &done)
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
        control.zip(injected.as_ref()),
        |(control, injected)| {
            let status = control.status()?;
            println!(
                "{GUEST_BENCH_PREFIX} tcp {path} x{REPLICAS} under fault injection: {injected}; \
                 engine: {}",
                status.counters(&ENGINE_COUNTERS)
            );
            check_masked(&status, injected)
        },
    );
}

/// The engine took faults in and never lost its majority.
fn check_masked(status: &EngineStatus, sent: &Injected) -> StepResult<()> {
    let injected = status.counter("injected")?;
    if injected == 0 || injected > sent.total() {
        return Err(format!(
            "{sent}, but the engine counts: {}",
            status.counters(&ENGINE_COUNTERS)
        )
        .into());
    }
    if status.counter("no-majority")? != 0 {
        return Err(format!(
            "the group lost its majority: {}; last fault: {}",
            status.counters(&ENGINE_COUNTERS),
            status.value("last-fault")?
        )
        .into());
    }
    Ok(())
}

/// Stops the driver: alone it must exit cleanly; the engine leaves on SIGTERM by the
/// signal itself, and its replicas with it.
fn stop_driver(driver: &mut Child, path: NetPath) -> StepResult<()> {
    if path != NetPath::ReplicatedE1000 {
        return Ok(driver.stop(STOP_TIMEOUT)?);
    }
    let status = driver.terminate(STOP_TIMEOUT)?;
    match status.signal() {
        Some(signal) if signal == Signal::SIGTERM as i32 => Ok(()),
        _ if status.success() => Ok(()),
        _ => Err(format!("romain ended with {status}").into()),
    }
}

fn start_bridge() -> StepResult<Child> {
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

/// The driver's and the NIC's counters, for the console log.
fn log_driver_status() {
    match read_status(STATUS_PATH) {
        Ok(text) => log::info!(
            "{SCHEME} status: {}",
            text.split_whitespace().collect::<Vec<_>>().join(" ")
        ),
        Err(err) => log::warn!("reading {STATUS_PATH}: {err}"),
    }
}
