//! Our e1000 driver under the guest's own TCP/IP stack, alone in one access mode or
//! replicated: alone, this program starts it as the policy's e1000 driver; replicated,
//! `romain:` does, from a registry this program writes (the NIC's PCI address is
//! found at run time), as `romain:e1000?replicas=3`, and supervises it. Then
//! `tap-bridge` puts the stack on it, the shared steps run (while faults go into the
//! replicas through the group's `romain:` handle), both are stopped (the group by
//! `down`) and the bridge's counters and the engine's checked.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use guest_harness::guest::control::EngineStatus;
use guest_harness::guest::daemons::read_status;
use guest_harness::guest::faults::{self, Injected, Schedule};
use guest_harness::guest::report::{Report, StepResult};
use guest_harness::guest::romain::{RegistryEntry, Romain, RomainGroup};
use guest_harness::protocol::{E1000_DRIVER_LABEL, GUEST_BENCH_PREFIX};
use guest_net::bridge::RELAYING;
use guest_net::child::Child;
use guest_net::paths::{Access, NetPath, REPLICAS, REPLICATED_ACCESS};
use guest_net::relay::BridgeCounters;
use scheme_runtime::Handle;
use syscall::flag::O_RDONLY;

use crate::service::{self, Settings};
use crate::Environment;

/// The driver serves network.<NAME>; the bridge uses it. Also its name in the
/// registry.
const DRIVER_NAME: &str = "e1000";
const DRIVER_PROGRAM: &str = "/bin/e1000";
const SCHEME: &str = "network.e1000";
const MAC_PATH: &str = "/scheme/network.e1000/mac";
const STATUS_PATH: &str = "/scheme/network.e1000/status";
/// Bring-up allocates two DMA buffers and configures the NIC, under the engine
/// after it has started and traced its replicas; generous for TCG.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// The driver stops on SIGTERM at once (after stopping the NIC's DMA), the engine
/// on `down`, and romain on SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a replica may take to reach its next event: a replica waits for its NIC
/// a tick at a time, but under TCG with the others traced that can stretch far.
const REPLICA_WATCHDOG_MS: u32 = 5000;
/// How long the engine may take to report its counters: it answers between two
/// requests it serves, which a replica the watchdog waits for can hold up.
const ENGINE_STATUS_TIMEOUT: Duration = Duration::from_secs(10);
/// A fault a second while the host's load runs; now and then a kill, which the
/// engine answers by putting a copy of a healthy replica in its place.
const FAULTS: Schedule = Schedule {
    pause_ms: (1000, 1000),
    kills_at: &[4, 14, 24, 34, 44, 54],
    hangs_at: &[],
};
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

/// Our driver as a path runs it.
enum Driver {
    /// Started by this program.
    Alone(Child),
    /// A replicated group, started and supervised by `romain:`.
    Supervised { romain: Romain, group: RomainGroup },
}

/// Runs `path`, one of our driver's.
pub fn run(report: &mut Report, env: Option<&Environment>, path: NetPath, settings: &Settings) {
    let step = |name: &str| format!("tcp-{path}-{name}");
    let mut driver = report.run_after(&step("driver-serving"), env, |env| start_driver(env, path));
    let mut bridge = report.run_after(&step("bridge-relaying"), driver.as_ref(), |_| {
        start_bridge()
    });
    let up = bridge.as_ref().map(drop);
    if path == NetPath::ReplicatedE1000 {
        let group = match &driver {
            Some(Driver::Supervised { group, .. }) => Some(group),
            _ => None,
        };
        serve_under_faults(report, path, settings, up, group);
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
        stop_driver(driver)
    });
}

/// Starts the driver of `path` as the e1000 rule's uid and waits until its scheme
/// answers.
fn start_driver(env: &Environment, path: NetPath) -> StepResult<Driver> {
    let driver_args = |access: Access| {
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
    };
    let serving = || Handle::open(MAC_PATH, O_RDONLY).is_ok();
    match path {
        NetPath::OurE1000(access) => {
            let mut command = Command::new(DRIVER_PROGRAM);
            command
                .args(driver_args(access))
                .uid(env.driver_uid)
                .gid(env.driver_uid);
            let mut driver = Child::spawn("the e1000 driver", command)?;
            driver.wait_until(START_TIMEOUT, serving)?;
            Ok(Driver::Alone(driver))
        }
        NetPath::ReplicatedE1000 => {
            let entry = RegistryEntry {
                driver: DRIVER_NAME.to_owned(),
                binary: DRIVER_PROGRAM.to_owned(),
                args: driver_args(REPLICATED_ACCESS),
                policy: E1000_DRIVER_LABEL.to_owned(),
                uid: env.driver_uid,
                gid: env.driver_uid,
                watchdog_ms: REPLICA_WATCHDOG_MS,
            };
            let mut romain = Romain::start(&entry.registry())?;
            let group = RomainGroup::up(DRIVER_NAME, REPLICAS)?;
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
        NetPath::LinuxE1000 => Err("Linux's e1000 is not our driver".into()),
    }
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
    if status.counter("no_majority")? != 0 {
        return Err(format!(
            "the group lost its majority: {}; last fault: {}",
            status.counters(&ENGINE_COUNTERS),
            status.value("engine_last_fault")?
        )
        .into());
    }
    Ok(())
}

/// Stops the driver: alone it must exit cleanly; a group goes `down` (its engine,
/// and the replicas with it, end), then romain, which must have run all along.
fn stop_driver(driver: &mut Driver) -> StepResult<()> {
    match driver {
        Driver::Alone(driver) => Ok(driver.stop(STOP_TIMEOUT)?),
        Driver::Supervised { romain, group } => {
            group.down(STOP_TIMEOUT)?;
            romain.stop(STOP_TIMEOUT)
        }
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
