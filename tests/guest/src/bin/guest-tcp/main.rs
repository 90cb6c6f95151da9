//! In-guest half of the TCP acceptance tests and benchmark: serves the TCP echo
//! service over each network path in turn for the host's load client, which QEMU's
//! port forward lets in. Over our e1000 driver, the driver (alone, or replicated as a
//! group of `romain:` with faults injected into its replicas, or as 1, 2 or 3
//! replicas without faults for the benchmark, or killed every few seconds for
//! Herder's table, `restart_bench`) runs as the e1000 rule's
//! uid and the guest's own TCP/IP stack reaches it through `tap-bridge`; over Linux's
//! e1000 (the baseline guest), the stack drives `eth0` itself. Prints `guest-test`
//! lines, the `tcp-echo serving` line the host waits for, and a `guest:` summary.

mod campaign;
mod linux;
mod our_driver;
mod restart_bench;
mod restarted;
mod service;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use driver_policy::Bdf;
use guest_harness::guest::daemons::{
    wait_until_serving, DAEMON_START_TIMEOUT, DMA_STATUS, MMIO_STATUS,
};
use guest_harness::guest::e1000::E1000Driver;
use guest_harness::guest::pci::SYSFS_PCI_DEVICES;
use guest_harness::guest::report::{Report, StepResult};
use guest_harness::protocol::GUEST_POLICY_PATH;
use guest_net::paths::{NetPath, DRIVER_TICK_US};

/// Serve the TCP echo service over each network path in turn, until the host's load
/// client says `quit` on each; run as root.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Port the service listens on; QEMU forwards the host's same port to it
    #[arg(long, env = "GUEST_TCP_PORT")]
    port: u16,
    /// Network paths to serve over, in order
    #[arg(
        long,
        env = "GUEST_TCP_PATHS",
        value_delimiter = ',',
        default_value = "e1000-direct,e1000-mmio,e1000-replicated"
    )]
    paths: Vec<NetPath>,
    /// The path whose link the host takes down and up during its upload: the
    /// driver and the bridge must both follow
    #[arg(long, env = "GUEST_TCP_LINK_FLAP", value_name = "LABEL")]
    link_flap: Option<NetPath>,
    /// Our driver's polling tick in microseconds (its --tick-us)
    #[arg(long, env = "GUEST_TCP_DRIVER_TICK_US", default_value_t = DRIVER_TICK_US)]
    driver_tick_us: u32,
    /// Seconds the host may take over one path's load before the path fails and the
    /// next one starts (under TCG the tests' load takes under a minute on the
    /// unreplicated driver and about 5 minutes on the replicated one)
    #[arg(long, default_value_t = 900, value_name = "SECS")]
    host_timeout: u64,
    /// The driver policy the daemons enforce
    #[arg(long, default_value = GUEST_POLICY_PATH)]
    policy: PathBuf,
    /// Folder listing the PCI functions
    #[arg(long, default_value = SYSFS_PCI_DEVICES)]
    pci_devices: PathBuf,
    /// Milliseconds a replica may take to its next event before the engine counts
    /// it as hung (a replica waits for its NIC a tick at a time, and under TCG with
    /// the others traced that can stretch far)
    #[arg(long, env = "GUEST_TCP_REPLICA_WATCHDOG_MS", default_value_t = 5000)]
    replica_watchdog_ms: u32,
    /// Run a fault campaign of this many faults per group size instead of the
    /// paths: the replicated driver serves the host's load while faults go into its
    /// replicas one at a time, each reported on the console
    #[arg(long, env = "GUEST_CAMPAIGN_FAULTS")]
    campaign_faults: Option<usize>,
    /// The campaign's group sizes (1 to 3), in order
    #[arg(
        long,
        env = "GUEST_CAMPAIGN_REPLICAS",
        value_delimiter = ',',
        default_value = "1,2,3"
    )]
    campaign_replicas: Vec<usize>,
    /// Seed of the campaign's faults (the same seed replays the same faults)
    #[arg(long, env = "GUEST_CAMPAIGN_SEED", default_value_t = 1)]
    campaign_seed: u64,
    /// Measure Herder's kill-every-k-seconds table instead of the paths: the host
    /// streams into the guest for this many seconds per row while the driver
    /// (under `romain:`) is killed every k seconds
    #[arg(long, env = "GUEST_RESTART_WINDOW_S", value_name = "SECS")]
    restart_window_s: Option<u64>,
    /// The table's kill intervals in seconds; each group size also gets a row
    /// without kills
    #[arg(
        long,
        env = "GUEST_RESTART_KILL_EVERY",
        value_delimiter = ',',
        default_value = "1,2,4,8,16"
    )]
    restart_kill_every: Vec<u64>,
    /// The table's group sizes, in order
    #[arg(
        long,
        env = "GUEST_RESTART_REPLICAS",
        value_delimiter = ',',
        default_value = "1,3"
    )]
    restart_replicas: Vec<usize>,
}

/// Where our driver runs and how, found once per run.
pub struct Environment {
    pub nic: Bdf,
    pub driver_uid: u32,
    pub driver_tick_us: u32,
    pub replica_watchdog_ms: u32,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let mut report = Report::new();
    let ours = args.campaign_faults.is_some()
        || args.restart_window_s.is_some()
        || args.paths.iter().any(|path| *path != NetPath::LinuxE1000);
    let env = if ours {
        report.run("tcp-daemons-serving", || {
            Ok(wait_until_serving(
                &[MMIO_STATUS, DMA_STATUS],
                DAEMON_START_TIMEOUT,
            )?)
        });
        report.run("tcp-driver-environment", || discover(&args))
    } else {
        None
    };
    let service = service::Settings {
        port: args.port,
        host_timeout: Duration::from_secs(args.host_timeout),
        link_flap: args.link_flap,
    };
    if let Some(window_s) = args.restart_window_s {
        let plan = restart_bench::Plan {
            window: Duration::from_secs(window_s),
            kill_every: args.restart_kill_every.clone(),
            replicas: args.restart_replicas.clone(),
            port: args.port,
        };
        restart_bench::run(&mut report, env.as_ref(), &plan);
    } else if let Some(faults) = args.campaign_faults {
        let plan = campaign::Plan {
            faults,
            replicas: args.campaign_replicas.clone(),
            seed: args.campaign_seed,
        };
        campaign::run(&mut report, env.as_ref(), &plan, &service);
    } else {
        for &path in &args.paths {
            match path {
                NetPath::LinuxE1000 => linux::run(&mut report, &service),
                ours => our_driver::run(&mut report, env.as_ref(), ours, &service),
            }
        }
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
        nic: driver.nic,
        driver_uid: driver.uid,
        driver_tick_us: args.driver_tick_us,
        replica_watchdog_ms: args.replica_watchdog_ms,
    })
}
