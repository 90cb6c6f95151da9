//! In-guest benchmark of register access through the `mmio:` daemon on QEMU's e1000: a
//! single register read, a read inside a 32-operation batch, and a read through the
//! BAR mapped in mmio's direct mode, each set against a baseline measured in the same
//! run. Runs as the e1000 driver; prints `guest-bench` table lines, one result line per
//! step and a `guest: N passed, M failed` summary.

mod measure;
mod table;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use driver_policy::Bdf;
use guest_harness::guest::daemons::{wait_until_serving, DAEMON_START_TIMEOUT, MMIO_STATUS};
use guest_harness::guest::e1000::E1000Driver;
use guest_harness::guest::pci::SYSFS_PCI_DEVICES;
use guest_harness::guest::report::{Report, StepResult};
use guest_harness::protocol::{GUEST_BENCH_PREFIX, GUEST_POLICY_PATH};
use nix::unistd::{setgid, setgroups, setuid, Gid, Uid};

use crate::measure::Settings;

/// Measures register access through mmio: on QEMU's e1000 from inside the guest; start
/// it as root, it becomes the e1000 driver of the policy.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The driver policy the daemons enforce
    #[arg(long, default_value = GUEST_POLICY_PATH)]
    policy: PathBuf,
    /// Folder listing the PCI functions
    #[arg(long, default_value = SYSFS_PCI_DEVICES)]
    pci_devices: PathBuf,
    /// Timed rounds per measurement; the table shows the median round
    #[arg(long, default_value_t = 7)]
    rounds: usize,
    /// Scheme requests per round (single reads, batches, status reads)
    #[arg(long, default_value_t = 1000)]
    requests: usize,
    /// Direct mapped reads per round
    #[arg(long, default_value_t = 20_000)]
    direct_reads: usize,
    /// Internal: be the echo partner of the plain round-trip baseline on this
    /// inherited socket
    #[arg(long, hide = true, value_name = "FD")]
    echo_fd: Option<i32>,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    if let Some(fd) = args.echo_fd {
        measure::serve_echo(fd);
        return ExitCode::SUCCESS;
    }
    let settings = Settings {
        rounds: args.rounds.max(1),
        requests: args.requests.max(1),
        direct_reads: args.direct_reads.max(1),
    };
    let mut report = Report::new();
    report.run("daemons-serving", || {
        Ok(wait_until_serving(&[MMIO_STATUS], DAEMON_START_TIMEOUT)?)
    });
    let e1000 = report.run("bench-runs-as-e1000-driver", || {
        become_e1000_driver(&args.policy, &args.pci_devices)
    });
    let measured = report.run_after("bench-measured", e1000, |e1000| {
        measure::all(e1000, &settings)
    });
    if let Some(measurements) = measured {
        for line in table::render(&measurements, &settings) {
            println!("{GUEST_BENCH_PREFIX} {line}");
        }
    }
    if report.finish().failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Drops root for the e1000 rule's uid and gid, so the daemons see the driver; returns
/// where the e1000 is.
fn become_e1000_driver(policy: &Path, pci_devices: &Path) -> StepResult<Bdf> {
    let driver = E1000Driver::find(policy, pci_devices)?;
    setgroups(&[])?;
    setgid(Gid::from_raw(driver.uid))?;
    setuid(Uid::from_raw(driver.uid))?;
    log::info!(
        "measuring as uid {} on the e1000 at {}",
        driver.uid,
        driver.nic
    );
    Ok(driver.nic)
}
