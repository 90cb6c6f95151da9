//! One access mode of our e1000 driver under the guest's own TCP/IP stack: the
//! driver started as the policy's e1000 driver, `tap-bridge` putting the stack on it,
//! the shared steps, then both stopped and the bridge's counters checked.

use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use guest_harness::guest::daemons::read_status;
use guest_harness::guest::report::{Report, StepResult};
use guest_net::bridge::RELAYING;
use guest_net::child::Child;
use guest_net::paths::{Access, NetPath};
use guest_net::relay::BridgeCounters;
use scheme_runtime::Handle;
use syscall::flag::O_RDONLY;

use crate::service::{self, Settings};
use crate::Environment;

/// The driver serves network.<NAME>; the bridge uses it.
const DRIVER_NAME: &str = "e1000";
const SCHEME: &str = "network.e1000";
const MAC_PATH: &str = "/scheme/network.e1000/mac";
const STATUS_PATH: &str = "/scheme/network.e1000/status";
/// Bring-up allocates two DMA buffers and configures the NIC; generous for TCG.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Both stop on SIGTERM at once (the driver after stopping the NIC's DMA).
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

pub fn run(report: &mut Report, env: Option<&Environment>, access: Access, settings: &Settings) {
    let path = NetPath::OurE1000(access);
    let step = |name: &str| format!("tcp-{path}-{name}");
    let mut driver = report.run_after(&step("driver-serving"), env, |env| {
        start_driver(env, access)
    });
    let mut bridge = report.run_after(&step("bridge-relaying"), driver.as_ref(), |_| {
        start_bridge()
    });
    service::run(report, path, settings, bridge.as_ref().map(drop));
    report.run_after(
        &step("bridge-stopped-nothing-dropped"),
        bridge.as_mut(),
        stop_bridge,
    );
    report.run_after(&step("driver-stopped"), driver.as_mut(), |driver| {
        log_driver_status();
        Ok(driver.stop(STOP_TIMEOUT)?)
    });
}

/// Starts the driver as the e1000 rule's uid and waits until its scheme answers.
fn start_driver(env: &Environment, access: Access) -> StepResult<Child> {
    let mut command = Command::new(DRIVER_NAME);
    command
        .args(["--pci", &env.nic.to_string(), "--access", access.name()])
        .args([
            "--name",
            DRIVER_NAME,
            "--tick-us",
            &env.driver_tick_us.to_string(),
        ])
        .uid(env.driver_uid)
        .gid(env.driver_uid);
    let mut driver = Child::spawn("the e1000 driver", command)?;
    driver.wait_until(START_TIMEOUT, || Handle::open(MAC_PATH, O_RDONLY).is_ok())?;
    Ok(driver)
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
