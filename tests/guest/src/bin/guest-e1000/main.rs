//! In-guest tests of the e1000 driver (`drivers/e1000`) against QEMU's e1000. The
//! driver runs as the e1000 rule's uid, reaching the NIC only through `mmio:` and
//! `dma:`, once per register access mode; this program talks to `network.e1000` as
//! root, as a network stack does: the address, bad requests, ARP and ICMP echo with
//! QEMU's user-network gateway (both ways of waiting for a frame), a parked read, the
//! statistics and a clean stop. Prints `guest-test` lines, `guest-bench` lines with
//! the round trips, and a `guest:` summary.

mod driver;
mod frames;
mod nic;
mod session;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use driver_policy::Bdf;
use guest_harness::guest::daemons::{
    wait_until_serving, DAEMON_START_TIMEOUT, DMA_STATUS, MMIO_STATUS,
};
use guest_harness::guest::e1000::E1000Driver;
use guest_harness::guest::pci::SYSFS_PCI_DEVICES;
use guest_harness::guest::report::{Report, StepResult};
use guest_harness::protocol::{parse_mac, GUEST_MAC_VAR, GUEST_POLICY_PATH};

/// Tests the e1000 driver on QEMU's e1000 from inside the guest: starts it as the
/// e1000 driver of the policy in each access mode and uses its scheme; run as root.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// MAC address QEMU gave the e1000
    #[arg(long, env = GUEST_MAC_VAR, value_parser = parse_mac)]
    mac: [u8; 6],
    /// The driver policy the daemons enforce
    #[arg(long, default_value = GUEST_POLICY_PATH)]
    policy: PathBuf,
    /// Folder listing the PCI functions
    #[arg(long, default_value = SYSFS_PCI_DEVICES)]
    pci_devices: PathBuf,
    /// Echo requests per access mode and way of waiting
    #[arg(long, default_value_t = 20)]
    pings: u16,
}

/// What the tests need to know about the guest.
pub struct Environment {
    pub mac: [u8; 6],
    pub nic: Bdf,
    pub driver_uid: u32,
    pub pings: u16,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let mut report = Report::new();
    report.run("e1000-daemons-serving", || {
        Ok(wait_until_serving(
            &[MMIO_STATUS, DMA_STATUS],
            DAEMON_START_TIMEOUT,
        )?)
    });
    let env = report.run("e1000-driver-environment", || discover(&args));
    for access in session::ACCESS_MODES {
        session::run(&mut report, env.as_ref(), access);
    }
    if report.finish().failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn discover(args: &Args) -> StepResult<Environment> {
    let driver = E1000Driver::find(&args.policy, &args.pci_devices)?;
    Ok(Environment {
        mac: args.mac,
        nic: driver.nic,
        driver_uid: driver.uid,
        pings: args.pings.max(1),
    })
}
