//! In-guest environment check: proves that a user-space program inside the QEMU guest
//! reaches the emulated e1000 (config space, BAR0 registers, DMA) and COM2 (port I/O)
//! directly, printing one result line per step for the host harness.

mod com2;
mod e1000;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use guest_harness::guest::pci::SYSFS_PCI_DEVICES;
use guest_harness::guest::report::{Report, StepResult};
use guest_harness::protocol::{parse_mac, GUEST_MAC_VAR};

/// Checks direct access to QEMU's e1000 and COM2 from inside the guest; prints
/// `guest-test <name> ... ok|FAILED` per step and a `guest: N passed, M failed` summary.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// MAC address QEMU gave the e1000, expected in its receive address registers
    #[arg(long, env = GUEST_MAC_VAR, value_parser = parse_mac)]
    mac: [u8; 6],
    /// Folder listing the PCI functions
    #[arg(long, default_value = SYSFS_PCI_DEVICES)]
    pci_devices: PathBuf,
    /// File naming the kernel modules /init loaded, one per line
    #[arg(long, default_value = "/etc/guest/modules")]
    modules: PathBuf,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let mut report = Report::new();
    report.run("kernel-modules-loaded", || modules_loaded(&args.modules));
    e1000::check(&mut report, &args.pci_devices, args.mac);
    com2::check(&mut report);
    if report.finish().failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Every module named in `list` shows up in /sys/module.
fn modules_loaded(list: &Path) -> StepResult<()> {
    let names = fs::read_to_string(list)?;
    let missing: Vec<&str> = names
        .lines()
        .filter(|name| !Path::new("/sys/module").join(name).exists())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("not loaded: {}", missing.join(", ")).into())
    }
}
