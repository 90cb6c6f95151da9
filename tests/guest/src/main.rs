//! Runs the project's programs against QEMU's real emulated e1000 and 16550 inside a
//! small Linux guest: provisions the host, builds the daemons and the guest programs
//! statically, packs an initramfs, boots it under a timeout, and judges what the guest
//! and host saw. A benchmark run boots the same guest with the benchmark programs.

mod baseline;
mod campaign;
mod initramfs;
mod pcap;
mod programs;
mod provision;
mod qemu;
mod qmp;
mod restart_bench;
mod results;
mod run;
mod serial_peer;
mod show;
mod tcp_load;
mod tcp_table;
mod udp_flood;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::{Parser, Subcommand};
use guest_harness::com2_bulk::BULK_RUNS;
use guest_harness::protocol::{
    parse_mac, test_frame, Summary, COM2_GUEST_LINE, COM2_HOST_LINE, GUEST_BENCH_PREFIX,
    GUEST_SUMMARY_LABEL, GUEST_TEST_PREFIX,
};
use guest_net::cpu::DriverCpu;
use guest_net::load::Workload;
use guest_net::paths::{
    NetPath, OUR_DRIVER_PATHS, REPLICA_COUNT_PATHS, STUB_REPLICATED_PATH, STUB_REPLICA_COUNT_PATH,
    WAITING_PATHS,
};

use crate::campaign::{CampaignLoad, CampaignPlan};
use crate::programs::{Purpose, Workspace, GUEST_PROGRAMS};
use crate::qemu::{AccelChoice, BootConfig, GUEST_MAC};
use crate::restart_bench::{RestartLoad, RestartPlan};
use crate::results::{host_check, HARNESS_SUMMARY_LABEL};
use crate::serial_peer::Exchange;
use crate::tcp_load::{LinkFlap, TcpLoad};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The guest programs' and daemons' log level in the restart benchmark.
const BENCH_LOG_LEVEL: &str = "RUST_LOG=warn";

/// The benchmark's network paths: our driver in both access modes, in direct
/// mode the other ways it may wait for its NIC, then replicated as 1, 2 and 3
/// replicas without faults, and as 3 on the stub backend.
const BENCH_PATHS: [NetPath; 8] = [
    OUR_DRIVER_PATHS[0],
    OUR_DRIVER_PATHS[1],
    WAITING_PATHS[1],
    WAITING_PATHS[2],
    REPLICA_COUNT_PATHS[0],
    REPLICA_COUNT_PATHS[1],
    REPLICA_COUNT_PATHS[2],
    STUB_REPLICA_COUNT_PATH,
];

/// The tests' network paths: our driver's, then the replicated driver under
/// faults on the stub backend.
const TEST_PATHS: [NetPath; 5] = [
    OUR_DRIVER_PATHS[0],
    OUR_DRIVER_PATHS[1],
    OUR_DRIVER_PATHS[2],
    OUR_DRIVER_PATHS[3],
    STUB_REPLICATED_PATH,
];

/// Boots a small Linux guest in QEMU with an emulated e1000 NIC and 16550 COM2, starts
/// the mmio and dma daemons there, runs the guest test programs, checks the host's side
/// (the daemons survived, COM2 bytes, captured frames), and prints `guest-test` and
/// `host-check` lines and a `harness: N passed, M failed` summary.
///
/// Provisioning (Debian packages, the cloud kernel unpacked into <target>/guest/kernel)
/// happens on the first run and is a no-op afterwards. Log detail: RUST_LOG=debug.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    mode: Mode,
    /// Seconds QEMU may run before it is killed and the run fails (under TCG a test
    /// run takes about 9 minutes, 5 of them the replicated driver's TCP load)
    #[arg(long, global = true, default_value_t = 1200, value_name = "SECS")]
    timeout: u64,
    /// Guest memory in MiB
    #[arg(long, global = true, default_value_t = 512, value_name = "MIB")]
    memory: u32,
    /// Extra kernel parameter, repeatable; unknown KEY=VALUE ones become environment
    /// variables of /init and the guest programs (e.g. RUST_LOG=debug, loglevel=7)
    #[arg(long = "kernel-param", global = true, value_name = "PARAM")]
    kernel_params: Vec<String>,
    /// Run only this guest program (repeatable; e.g. guest-tcp), for a quick loop
    /// while working on one part; host checks of the programs left out then fail
    #[arg(long = "only", global = true, value_name = "PROGRAM")]
    only: Vec<String>,
    /// Serve the host's TCP load only on this network path (repeatable; default: all
    /// of our driver's paths)
    #[arg(long = "tcp-path", global = true, value_name = "LABEL")]
    tcp_paths: Vec<NetPath>,
    /// Forward 127.0.0.1:PORT on the host to PORT in the guest, repeatable
    #[arg(long = "forward", global = true, value_name = "PORT")]
    forwarded_ports: Vec<u16>,
    /// Keep this run's artifacts in a new folder under <target>/guest/runs/ instead of
    /// replacing <target>/guest/last-run
    #[arg(long, global = true)]
    keep: bool,
    /// Accelerator; auto uses KVM only where it really works
    #[arg(long, global = true, value_enum, default_value_t = AccelChoice::Auto)]
    accel: AccelChoice,
    /// Campaign: faults per group size
    #[arg(long, global = true, default_value_t = 1000)]
    faults: usize,
    /// Group sizes: a campaign's (1 to 3, each with --faults faults; default 1,2,3)
    /// or the restart benchmark's (default 1,3)
    #[arg(long, global = true, value_delimiter = ',')]
    replicas: Option<Vec<usize>>,
    /// Campaign: seed of the fault sequence (the same seed replays the same faults)
    #[arg(long, global = true, default_value_t = 1)]
    seed: u64,
    /// Campaign: milliseconds a replica may take to its next event before the
    /// engine counts it as hung (each stop and endless loop costs one: 5,000 of
    /// the driver's 100 us ticks, and no fault-free replica was seen caught)
    #[arg(long, global = true, default_value_t = 500, value_name = "MS")]
    watchdog_ms: u32,
    /// Restart benchmark: seconds the host streams into the guest per row
    #[arg(long, global = true, default_value_t = 32, value_name = "SECS")]
    window: u64,
    /// Restart benchmark: kill intervals in seconds, a row each (every group size
    /// also gets a row without kills)
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "1,2,4,8,16",
        value_name = "SECS"
    )]
    kill_every: Vec<u64>,
    /// Campaign: where the CSV and the plot go
    #[arg(long, global = true, default_value = "target/campaign/e1000")]
    out: PathBuf,
    /// Run: instead of handing the console over, type into it and check the
    /// page, the echo under faults and `romain top` from the host
    #[arg(long, global = true)]
    check: bool,
    /// Run: the host port (127.0.0.1) forwarded to the guest's web page
    #[arg(long, global = true, default_value_t = 8080, value_name = "PORT")]
    web_port: u16,
    /// Run: the host port (127.0.0.1) forwarded to the guest's TCP echo
    #[arg(long, global = true, default_value_t = 8007, value_name = "PORT")]
    echo_port: u16,
}

#[derive(Subcommand, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Provision, build, boot and check; exits non-zero on any failure, a missing
    /// summary or a timeout (what `make test-guest` runs)
    Test,
    /// The system at work in about a minute and a half (what `make demo`
    /// runs): the image boots with the e1000 driver as 3 voting replicas, the
    /// host's round trips go through it while a fault of each kind goes into a
    /// replica; a table and a plot of round-trip time over time end it
    Demo,
    /// Boot the guest with the benchmark programs instead of the tests and print their
    /// tables (what `make bench` runs after the host benchmarks)
    Bench,
    /// A fault campaign against the replicated e1000 driver under the host's TCP
    /// load: seeded faults one at a time, each classified; prints a table and
    /// writes a CSV and a plot (what `make campaign` runs)
    Campaign,
    /// Herder's table: our e1000 driver under romain:, alone and as 3 replicas,
    /// killed every k seconds while the host streams into the guest; prints the
    /// throughput lost against the same group without kills, the restarts and
    /// romain's restart-to-serving time, beside MINIX 3's figures (what `make
    /// bench-restart` runs)
    BenchRestart,
    /// A guest you can use (what `make run` runs): the image's own init units
    /// bring up mmio:, dma:, romain: and the e1000 driver as 3 voting replicas,
    /// the guest's TCP/IP goes through it, a web page and a TCP echo are
    /// forwarded to 127.0.0.1, and the console is a shell (Ctrl-A X ends it)
    Run,
}

impl Mode {
    /// Which guest programs /init runs besides the daemons.
    fn runs(self) -> Purpose {
        match self {
            Mode::Test => Purpose::Test,
            Mode::Bench => Purpose::Bench,
            Mode::Campaign => Purpose::Campaign,
            Mode::BenchRestart => Purpose::RestartBench,
            // Boot the image's units, not test programs.
            Mode::Demo | Mode::Run => Purpose::Helper,
        }
    }

    /// The host's TCP load on network path `path`.
    fn tcp_workload(self, path: NetPath) -> Workload {
        match (self, path) {
            (_, NetPath::ReplicaCountE1000(..)) => tcp_load::REPLICA_COUNT_WORKLOAD,
            // The ptrace backend carries the full load under faults; the stub
            // backend, the same mechanism otherwise, a smaller one.
            (Mode::Test, STUB_REPLICATED_PATH) => tcp_load::STUB_TEST_WORKLOAD,
            (Mode::Test, _) => tcp_load::TEST_WORKLOAD,
            (Mode::Bench | Mode::Campaign | Mode::BenchRestart | Mode::Demo | Mode::Run, _) => {
                tcp_load::BENCH_WORKLOAD
            }
        }
    }

    /// The network paths the host's TCP load runs on unless told otherwise.
    fn tcp_paths(self) -> &'static [NetPath] {
        match self {
            Mode::Test => &TEST_PATHS,
            Mode::Bench => &BENCH_PATHS,
            // These run their own loads, or none.
            Mode::Campaign | Mode::BenchRestart | Mode::Demo | Mode::Run => &[],
        }
    }
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    match run(&cli) {
        Ok(summary) if summary.failed == 0 => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(err) => {
            log::error!("{err}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<Summary> {
    let workspace = Workspace::locate()?;
    let guest_dir = workspace.target_dir.join("guest");
    if let Mode::Demo | Mode::Run = cli.mode {
        let run_dir = prepare_run_dir(&guest_dir.join("run"), cli.keep)?;
        let options = run::RunOptions {
            workspace: &workspace,
            web_port: cli.web_port,
            echo_port: cli.echo_port,
            memory_mib: cli.memory,
            accel: cli.accel.resolve(),
            kernel_params: &cli.kernel_params,
            run_dir: &run_dir,
        };
        if cli.mode == Mode::Demo {
            return show::show(&options, &workspace.target_dir.join("demo"));
        }
        let check = cli.check.then(|| Duration::from_secs(cli.timeout));
        return run::run(&options, check);
    }

    let started = Instant::now();
    let script = workspace.root.join("tests/guest/provision.sh");
    let kernel = provision::provision(&script, &guest_dir.join("kernel"))?;
    log::info!(
        "kernel {} ready in {:.1?}",
        kernel.release,
        started.elapsed()
    );

    let mut chosen = programs::for_run(GUEST_PROGRAMS, cli.mode.runs());
    if let Some(unknown) = cli.only.iter().find(|name| {
        !chosen
            .iter()
            .any(|program| program.purpose.is_run() && program.bin == *name)
    }) {
        return Err(format!("--only {unknown}: no such guest program in this mode").into());
    }
    if !cli.only.is_empty() {
        chosen.retain(|program| {
            !program.purpose.is_run() || cli.only.iter().any(|name| name == program.bin)
        });
    }
    let programs = programs::build(&workspace, &chosen)?;

    let run_dir = prepare_run_dir(&guest_dir, cli.keep)?;
    let initrd = run_dir.join("initramfs.cpio.gz");
    let contents = initramfs::Contents {
        busybox: Path::new(provision::BUSYBOX),
        programs: &programs,
        modules: &kernel.modules,
        policy: initramfs::GUEST_POLICY,
    };
    let started = Instant::now();
    initramfs::write(&contents, &initrd)?;
    let size_kib = fs::metadata(&initrd)?.len() >> 10;
    log::info!(
        "initramfs {} ({size_kib} KiB) in {:.1?}",
        initrd.display(),
        started.elapsed()
    );

    let mode = cli.mode;
    // The tests take the link down and up under the first path's upload.
    let link_flap = (mode == Mode::Test).then(|| LinkFlap {
        path: OUR_DRIVER_PATHS[0],
        qmp: qemu::qmp_socket_in(&run_dir),
    });
    let tcp = TcpLoad::start(move |path| mode.tcp_workload(path), link_flap)?;
    let flood = udp_flood::UdpFlood::start()?;
    let tcp_paths = match cli.tcp_paths.as_slice() {
        [] => mode.tcp_paths(),
        chosen => chosen,
    };
    let plan = CampaignPlan {
        faults: cli.faults,
        replicas: cli.replicas.clone().unwrap_or_else(|| vec![1, 2, 3]),
        seed: cli.seed,
        watchdog_ms: cli.watchdog_ms,
    };
    let campaign = match mode {
        Mode::Campaign => Some(CampaignLoad::start(&plan)?),
        _ => None,
    };
    let restart_plan = RestartPlan {
        window: Duration::from_secs(cli.window),
        kill_every: cli.kill_every.clone(),
        replicas: cli.replicas.clone().unwrap_or_else(|| vec![1, 3]),
    };
    let restart = match mode {
        Mode::BenchRestart => Some(RestartLoad::start(&restart_plan)?),
        _ => None,
    };
    let (tcp_params, tcp_port) = match (&campaign, &restart) {
        (Some(campaign), _) => (campaign.kernel_params(&plan), campaign.port()),
        (None, Some(restart)) => {
            let mut params = restart.kernel_params(&restart_plan);
            // The daemons log to the guest's serial console, a byte per trap
            // into QEMU, and a restart logs a dozen lines: at `info` the bench
            // would measure the test rig's console (Redox logs to memory). A
            // RUST_LOG given on the command line wins.
            if !cli.kernel_params.iter().any(|p| p.starts_with("RUST_LOG=")) {
                params.push(BENCH_LOG_LEVEL.to_owned());
            }
            (params, restart.port())
        }
        (None, None) => (tcp.kernel_params(tcp_paths), tcp.port()),
    };
    let config = BootConfig {
        serial: qemu::Serial::Harness,
        kernel: kernel.vmlinuz,
        initrd,
        memory_mib: cli.memory,
        accel: cli.accel.resolve(),
        kernel_params: [&cli.kernel_params[..], &tcp_params].concat(),
        forwarded_ports: [&cli.forwarded_ports[..], &[tcp_port]].concat(),
        forwarded_udp_ports: vec![flood.port()],
        run_dir: run_dir.clone(),
    };
    let mut com2_script = vec![Exchange {
        expect: COM2_GUEST_LINE,
        answer: COM2_HOST_LINE.as_bytes().into(),
    }];
    com2_script.extend(BULK_RUNS.iter().map(|run| Exchange {
        expect: run.marker,
        answer: run.host_bytes().into(),
    }));
    let show_line = |line: &str| {
        if let Some(bench) = line.strip_prefix(GUEST_BENCH_PREFIX) {
            println!("{}", bench.trim_start());
        } else if line.starts_with(GUEST_TEST_PREFIX) || line.starts_with(GUEST_SUMMARY_LABEL) {
            println!("{line}");
        }
    };
    let boot = qemu::boot(
        &config,
        Duration::from_secs(cli.timeout),
        com2_script,
        |line: &str| {
            match (&campaign, &restart) {
                (Some(campaign), _) => campaign.observe(line),
                (None, Some(restart)) => restart.observe(line),
                (None, None) => tcp.observe(line),
            }
            flood.observe(line);
            show_line(line)
        },
    )?;
    let tallies = campaign.map(CampaignLoad::finish);
    let streams = restart.map(RestartLoad::finish);
    let mut tcp_reports = tcp.finish();
    log::info!("the UDP flood sent {} datagrams", flood.finish());
    match boot.ending {
        qemu::Ending::Exited(_) => log::info!("QEMU ran {:.2?} from start to exit", boot.elapsed),
        qemu::Ending::TimedOut(_) => log::warn!("QEMU killed after {:.2?}", boot.elapsed),
    }

    let guest = results::parse_console(&boot.console);
    let runs = programs.iter().filter(|program| program.purpose.is_run());
    let daemons: Vec<&str> = programs
        .iter()
        .filter(|program| program.purpose.is_daemon())
        .map(|program| program.name.as_str())
        .collect();
    let mut checks = vec![
        host_check(
            "qemu-powered-off",
            results::check_ending(&boot.ending, &boot.console),
        ),
        host_check(
            "guest-summaries",
            results::check_summaries(&guest, runs.count()),
        ),
        host_check(
            "daemons-survived-the-run",
            results::check_daemons(&guest, &daemons),
        ),
    ];
    if cli.mode.runs() == Purpose::Test {
        let frame = test_frame(parse_mac(GUEST_MAC)?);
        let capture = fs::read(config.capture())
            .map_err(|err| format!("cannot read {}: {err}", config.capture().display()));
        checks.extend([
            host_check(
                "com2-output-has-uart-driver-line",
                results::check_com2(&boot.com2),
            ),
            host_check(
                "capture-has-e1000-driver-frame",
                capture.and_then(|bytes| results::check_capture(&bytes, &frame)),
            ),
        ]);
        checks.extend(BULK_RUNS.iter().map(|run| {
            host_check(
                &format!("com2-uart16550-{}-bytes-reached-host", run.name),
                results::check_com2_bulk(&boot.com2, run),
            )
        }));
    }
    let (tcp_checks, mut tcp_lines) = tcp_load::checks(&tcp_reports, tcp_paths);
    checks.extend(tcp_checks);
    if let Some(tallies) = &tallies {
        checks.extend(campaign::report(&plan, &boot.console, tallies, &cli.out));
    }
    if let Some(streams) = &streams {
        let (lines, restart_checks) = restart_bench::report(&restart_plan, &boot.console, streams);
        tcp_lines.extend(lines);
        checks.extend(restart_checks);
    }
    if cli.mode == Mode::Bench {
        let settings = baseline::Settings {
            workspace: &workspace,
            timeout: Duration::from_secs(cli.timeout),
            memory_mib: cli.memory,
            accel: config.accel,
            kernel_params: &cli.kernel_params,
            keep: cli.keep,
            workload: cli.mode.tcp_workload(NetPath::LinuxE1000),
        };
        match baseline::run(&settings) {
            Ok(baseline) => {
                checks.extend(baseline.checks);
                tcp_lines.extend(baseline.lines);
                tcp_reports.extend(baseline.reports);
            }
            Err(err) => checks.push(host_check("baseline-run", Err(err.to_string()))),
        }
        let workload = cli.mode.tcp_workload(NetPath::LinuxE1000);
        let driver_cpu: Vec<(&str, DriverCpu)> =
            boot.console.lines().filter_map(DriverCpu::parse).collect();
        tcp_lines.extend(tcp_table::render(&tcp_reports, &workload));
        tcp_lines.extend(tcp_table::render_waiting(&tcp_reports, &driver_cpu));
        tcp_lines.extend(tcp_table::render_replication(
            &tcp_reports,
            &cli.mode.tcp_workload(OUR_DRIVER_PATHS[1]),
            &cli.mode.tcp_workload(REPLICA_COUNT_PATHS[0]),
            &driver_cpu,
        ));
    }
    for line in &tcp_lines {
        println!("{line}");
    }
    for check in &checks {
        println!("{check}");
    }
    let summary = results::overall(&guest.tests, &checks);
    println!(
        "artifacts: {} (console.log, com2.txt, dump.pcap, qemu-stderr.log)",
        run_dir.display()
    );
    println!("{}", summary.format(HARNESS_SUMMARY_LABEL));
    Ok(summary)
}

/// A fresh folder for this run's artifacts.
fn prepare_run_dir(guest_dir: &Path, keep: bool) -> Result<PathBuf> {
    let dir = if keep {
        let seconds = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        // Runs started in the same second by two harnesses stay apart.
        let pid = std::process::id();
        guest_dir.join("runs").join(format!("run-{seconds}-{pid}"))
    } else {
        guest_dir.join("last-run")
    };
    if dir.exists() {
        fs::remove_dir_all(&dir)?;
    }
    fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tests_fault_the_replicated_driver_under_full_load_and_the_bench_counts_replicas() {
        assert_eq!(Mode::Test.tcp_paths()[..4], OUR_DRIVER_PATHS);
        assert_eq!(Mode::Test.tcp_paths()[4], STUB_REPLICATED_PATH);
        assert_eq!(
            Mode::Test.tcp_workload(OUR_DRIVER_PATHS[2]),
            tcp_load::TEST_WORKLOAD
        );
        assert_eq!(
            Mode::Test.tcp_workload(STUB_REPLICATED_PATH),
            tcp_load::STUB_TEST_WORKLOAD
        );
        let bench = Mode::Bench.tcp_paths();
        for faulted in [OUR_DRIVER_PATHS[2], STUB_REPLICATED_PATH] {
            assert!(!bench.contains(&faulted), "no faults in the bench");
        }
        assert!(
            bench.contains(&STUB_REPLICA_COUNT_PATH),
            "a row per backend"
        );
        assert!(REPLICA_COUNT_PATHS.iter().all(|path| bench.contains(path)));
        assert!(
            bench.contains(&OUR_DRIVER_PATHS[1]),
            "the unreplicated baseline"
        );
        for path in REPLICA_COUNT_PATHS {
            assert_eq!(
                Mode::Bench.tcp_workload(path),
                tcp_load::REPLICA_COUNT_WORKLOAD
            );
        }
        assert_eq!(
            Mode::Bench.tcp_workload(OUR_DRIVER_PATHS[1]),
            tcp_load::BENCH_WORKLOAD
        );
    }
}
