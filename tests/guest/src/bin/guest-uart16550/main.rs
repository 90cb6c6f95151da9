//! In-guest test of the uart16550 driver on QEMU's COM2, in both access modes: start
//! the driver (direct as root, split as the uart rule's uid through `mmio:`), stream
//! 64 KiB out through it while reading the 64 KiB the host answers, compare what
//! arrived, check the driver's counters, and stop it; then check that direct access is
//! refused to an unprivileged user. Runs after the `mmio:` tests, which use COM2 too.
//! Prints result lines, a `guest-bench` throughput line per mode and a summary.

mod bulk;
mod driver;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use driver_policy::{Policy, PortRange};
use guest_harness::com2_bulk::{BulkRun, BULK_RUNS};
use guest_harness::guest::daemons::{wait_until_serving, DAEMON_START_TIMEOUT, MMIO_STATUS};
use guest_harness::guest::report::{Report, StepResult};
use guest_harness::protocol::{GUEST_BENCH_PREFIX, GUEST_POLICY_PATH, UART_DRIVER_LABEL};

use crate::bulk::Throughput;
use crate::driver::Driver;

/// Tests the uart16550 driver on QEMU's COM2 in its direct and split modes, against
/// the host's end of COM2; run as root.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The driver policy the mmio daemon enforces
    #[arg(long, default_value = GUEST_POLICY_PATH)]
    policy: PathBuf,
    /// The driver's executable
    #[arg(long, default_value = "/bin/uart16550")]
    driver: PathBuf,
}

/// What the policy's uart rule grants.
struct UartRule {
    uid: u32,
    ports: PortRange,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let mut report = Report::new();
    report.run("uart16550-mmio-serving", || {
        Ok(wait_until_serving(&[MMIO_STATUS], DAEMON_START_TIMEOUT)?)
    });
    if let Some(rule) = report.run("uart16550-policy-has-uart-rule", || uart_rule(&args.policy)) {
        for run in &BULK_RUNS {
            exercise(&mut report, &args.driver, &rule, run);
        }
        report.run("uart16550-direct-access-refused-to-uart-uid", || {
            driver::refused(
                &args.driver,
                "direct",
                rule.ports,
                rule.uid,
                "no port rights",
            )
        });
    }
    if report.finish().failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn uart_rule(policy: &Path) -> StepResult<UartRule> {
    let policy = Policy::load(policy)?;
    let rule = policy
        .driver(UART_DRIVER_LABEL)
        .ok_or("the policy has no uart driver")?;
    Ok(UartRule {
        uid: rule.uid(),
        ports: *rule
            .ports()
            .first()
            .ok_or("the uart rule grants no ports")?,
    })
}

/// One access mode: start the driver, exchange 64 KiB each way, check its counters,
/// stop it.
fn exercise(report: &mut Report, program: &Path, rule: &UartRule, run: &BulkRun) {
    let step = |name: &str| format!("uart16550-{}-{name}", run.access);
    // Direct access needs port rights (root); split access is the policy's driver.
    let uid = if run.access == "direct" { 0 } else { rule.uid };
    let driver = report.run(&step("driver-serving"), || {
        Driver::start(program, run.access, rule.ports, uid)
    });
    report.run_after(
        &step("driver-runs-as-its-uid"),
        driver.as_ref(),
        |driver| match driver.uid()? {
            running if running == uid => Ok(()),
            other => Err(format!("the driver runs as uid {other}, not {uid}").into()),
        },
    );
    let exchanged = report.run_after(
        &step("64k-each-way-arrived-intact"),
        driver.as_ref(),
        |_| bulk::exchange(run),
    );
    if let Some(throughput) = &exchanged {
        print_throughput(run, throughput);
    }
    report.run_after(&step("driver-counted-every-byte"), exchanged, |_| {
        bulk::check_counters(run)
    });
    report.run_after(&step("driver-survived"), driver, Driver::stop);
}

fn print_throughput(run: &BulkRun, throughput: &Throughput) {
    let rate =
        |took: Duration| guest_harness::com2_bulk::BULK_LEN as f64 / 1024.0 / took.as_secs_f64();
    println!(
        "{GUEST_BENCH_PREFIX} uart16550 {} access, 64 KiB each way at once: \
         guest to host {:.0} KiB/s ({:.0} ms), host to guest {:.0} KiB/s ({:.0} ms), \
         {} register batches",
        run.access,
        rate(throughput.to_host),
        throughput.to_host.as_secs_f64() * 1000.0,
        rate(throughput.from_host),
        throughput.from_host.as_secs_f64() * 1000.0,
        throughput.steps,
    );
}
