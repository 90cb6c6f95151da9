//! In-guest tests of the `mmio:` and `dma:` daemons against QEMU's e1000 and COM2. The
//! daemons run as root, started by /init; the tests act as the drivers the guest policy
//! names, each in a child process under the driver's uid, plus a uid with no rule and a
//! client killed mid-call. Prints `guest-test <name> ... ok|FAILED` per step and a
//! `guest: N passed, M failed` summary.

mod dead_driver_dma;
mod e1000_driver;
mod environment;
mod expect;
mod killed_client;
mod stranger;
mod tx_ring;
mod uart_16550;
mod uart_driver;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use guest_harness::guest::daemons::{
    wait_until_serving, DAEMON_START_TIMEOUT, DMA_STATUS, MMIO_STATUS,
};
use guest_harness::guest::mmio::Registers;
use guest_harness::guest::pci::SYSFS_PCI_DEVICES;
use guest_harness::guest::report::{Report, StepResult};
use guest_harness::guest::roles::{self, ROLE_SUBCOMMAND};
use guest_harness::protocol::{parse_mac, GUEST_MAC_VAR, GUEST_POLICY_PATH};
use syscall::error::EACCES;

use crate::environment::Environment;
use crate::expect::refused;

/// Tests the mmio: and dma: daemons on QEMU's e1000 and COM2 from inside the guest, as
/// the drivers of the guest policy; run as root.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// MAC address QEMU gave the e1000, expected in its registers and its EEPROM
    #[arg(long, env = GUEST_MAC_VAR, value_parser = parse_mac)]
    mac: [u8; 6],
    /// The driver policy the daemons enforce
    #[arg(long, default_value = GUEST_POLICY_PATH)]
    policy: PathBuf,
    /// Folder listing the PCI functions
    #[arg(long, default_value = SYSFS_PCI_DEVICES)]
    pci_devices: PathBuf,
    /// File naming the kernel modules /init loaded, one per line
    #[arg(long, default_value = "/etc/guest/modules")]
    modules: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run one role's steps as the current user (the full run starts each role itself,
    /// under the right uid, and counts its lines)
    #[command(name = ROLE_SUBCOMMAND)]
    Role {
        #[arg(value_enum)]
        role: Role,
    },
}

/// The parts of the run that act as someone other than root.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Role {
    /// The e1000 driver: BAR 0, EEPROM, denials, bad input, DMA quota, a transmit
    E1000Driver,
    /// The COM2 driver: scratch register, a line each way, denials, bad input
    UartDriver,
    /// A uid with no rule: refused everything but status
    Stranger,
    /// An e1000 driver that holds DMA buffers and calls mmio: until it is killed
    LoopingClient,
    /// An e1000 driver receiving a flood into a long ring until it is killed
    RxFloodDriver,
}

impl Role {
    pub fn name(self) -> String {
        self.to_possible_value()
            .map(|value| value.get_name().to_owned())
            .unwrap_or_default()
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    match args.command {
        None => run_all(&args),
        Some(Command::Role { role }) => run_role(&args, role),
    }
}

/// The whole run, as root: the environment, then each role in its own process.
fn run_all(args: &Args) -> ExitCode {
    let mut report = Report::new();
    report.run("kernel-modules-loaded", || modules_loaded(&args.modules));
    report.run("daemons-serving", || {
        let took = wait_until_serving(&[MMIO_STATUS, DMA_STATUS], DAEMON_START_TIMEOUT)?;
        log::info!("mmio: and dma: serve {took:?} after this program started");
        Ok(())
    });
    let env = report.run("environment-discovered", || discover(args));
    if let Some(env) = &env {
        report.run("mmio-denies-supervisor-without-label", || {
            refused(Registers::open(env.e1000_bar(0)), EACCES)
        });
        killed_client::check(&mut report, env);
        dead_driver_dma::check(&mut report, env);
        for (role, uid) in [
            (Role::E1000Driver, env.e1000_uid),
            (Role::UartDriver, env.uart_uid),
            (Role::Stranger, env.stranger_uid),
        ] {
            roles::run(&mut report, &role.name(), uid);
        }
    }
    if report.finish().failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// One role, in the child process the full run started. Its result lines are counted
/// by the parent; the exit status says only whether the role ran to its end.
fn run_role(args: &Args, role: Role) -> ExitCode {
    let env = match discover(args) {
        Ok(env) => env,
        Err(err) => {
            log::error!("role {}: {err}", role.name());
            return ExitCode::FAILURE;
        }
    };
    let mut report = Report::new();
    match role {
        Role::E1000Driver => e1000_driver::check(&mut report, &env),
        Role::UartDriver => uart_driver::check(&mut report, &env),
        Role::Stranger => stranger::check(&mut report, &env),
        Role::LoopingClient => killed_client::hold_and_loop(&mut report, &env),
        Role::RxFloodDriver => dead_driver_dma::receive_until_killed(&mut report, &env),
    }
    ExitCode::SUCCESS
}

fn discover(args: &Args) -> StepResult<Environment> {
    Environment::discover(&args.policy, &args.pci_devices, args.mac)
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
