//! The baseline path: Linux's own e1000 module drives the NIC as `eth0`, configured
//! as the TAP device is over our driver, then the shared steps.

use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;

use guest_harness::guest::report::{Report, StepResult};
use guest_net::ipconfig::{InterfaceConfig, QEMU_GATEWAY, QEMU_GUEST_ADDRESS};
use guest_net::paths::NetPath;

use crate::service::{self, Settings};

const INTERFACE: &str = "eth0";
/// The kernel module the baseline is about.
const DRIVER: &str = "e1000";

pub fn run(report: &mut Report, settings: &Settings) {
    let path = NetPath::LinuxE1000;
    let step = |name: &str| format!("tcp-{path}-{name}");
    let bound = report.run(&step("eth0-driven-by-e1000"), eth0_driver_is_e1000);
    let up = report.run_after(&step("eth0-configured"), bound, |()| configure_eth0());
    service::run(report, path, settings, up);
}

fn eth0_driver_is_e1000() -> StepResult<()> {
    let link = Path::new("/sys/class/net")
        .join(INTERFACE)
        .join("device/driver");
    let driver = fs::read_link(&link).map_err(|e| format!("{}: {e}", link.display()))?;
    match driver.file_name().and_then(|name| name.to_str()) {
        Some(DRIVER) => Ok(()),
        other => Err(format!("{INTERFACE} is driven by {other:?}, not {DRIVER}").into()),
    }
}

fn configure_eth0() -> StepResult<()> {
    let gateway: Ipv4Addr = QEMU_GATEWAY.parse()?;
    InterfaceConfig {
        name: INTERFACE.into(),
        mac: None,
        address: QEMU_GUEST_ADDRESS.parse()?,
        gateway,
    }
    .apply()?;
    Ok(())
}
