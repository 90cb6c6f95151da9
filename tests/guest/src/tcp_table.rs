//! The benchmark's TCP tables: round trips and throughput of each network path side
//! by side, with ratios to Linux's in-kernel e1000 measured in the same run; and the
//! cost of replication, laid out like Bailleu's Table 4.1 (the unreplicated driver
//! against 1, 2 and 3 replicas), with ratios to the unreplicated driver. Goals are
//! reported, never asserted.

use std::time::Duration;

use guest_net::cpu::DriverCpu;
use guest_net::load::{micros, PathReport, Workload};
use guest_net::paths::{
    NetPath, Waiting, BUSY_POLL_US, DRIVER_TICK_US, OUR_DRIVER_PATHS, REPLICATED_ACCESS,
    REPLICA_COUNT_PATHS, STUB_REPLICA_COUNT_PATH, WAITING_PATHS,
};

/// Rows, baseline first.
const ROWS: [NetPath; 3] = [
    NetPath::LinuxE1000,
    OUR_DRIVER_PATHS[0],
    OUR_DRIVER_PATHS[1],
];
/// Each access mode's goals against Linux: mean round trip at most, and
/// throughput each way at least, this many times Linux's.
const GOALS: [(NetPath, f64, f64); 2] = [
    (OUR_DRIVER_PATHS[0], 2.0, 0.5),
    (OUR_DRIVER_PATHS[1], 2.5, 0.3),
];
/// The share of the processor an idle driver may take, in percent.
const IDLE_CPU_GOAL: f64 = 1.0;

/// Rows of the replication table, baseline first: the driver unreplicated in the
/// access mode its replicas use, then 1, 2 and 3 replicas, then 3 on the stub
/// backend.
const REPLICATION_ROWS: [NetPath; 5] = [
    NetPath::OurE1000(REPLICATED_ACCESS, Waiting::BusyPolling),
    REPLICA_COUNT_PATHS[0],
    REPLICA_COUNT_PATHS[1],
    REPLICA_COUNT_PATHS[2],
    STUB_REPLICA_COUNT_PATH,
];
/// The replicated row the throughput and idle goals judge: the fewest
/// replicas that mask a fault.
const GOAL_ROW: NetPath = REPLICA_COUNT_PATHS[2];
/// Mean round trips over the unreplicated driver's, at most: 3 replicas
/// (Bailleu: 1.97x), then one replica traced alone (Bailleu: 1.36x).
const ROUND_TRIP_GOALS: [(NetPath, f64); 2] =
    [(REPLICA_COUNT_PATHS[2], 1.9), (REPLICA_COUNT_PATHS[0], 1.3)];
/// [`GOAL_ROW`]'s throughput over the unreplicated driver's, at least, each
/// way (Bailleu: about 0.33x).
const THROUGHPUT_GOAL: f64 = 0.4;
/// The unreplicated driver with its BAR mapped: where the policy lends the BAR,
/// the engine makes the replicas' register accesses on it mapped, as this
/// driver makes its own, so beside it the replicas pay for replication alone.
const MAPPED_BASELINE: NetPath = OUR_DRIVER_PATHS[0];
/// The anchor's figures (DESIGN.md, section 8).
const BAILLEU: &str = "Bailleu 2015, Table 4.1 (82540EM, lwIP, ping, i7-4770): native \
                       0.152 ms; 1 / 2 / 3 replicas 0.206 / 0.254 / 0.299 ms (1.36x / \
                       1.67x / 1.97x); throughput about 0.33x native with 3 replicas";

/// One way's throughput of a report, in MB/s; `None` if that transfer failed.
type Rate = fn(&PathReport) -> Option<f64>;

/// How a table shows times.
#[derive(Debug, Clone, Copy)]
enum TimeUnit {
    Micros,
    Millis,
}

impl TimeUnit {
    fn name(self) -> &'static str {
        match self {
            TimeUnit::Micros => "us",
            TimeUnit::Millis => "ms",
        }
    }

    /// A time right-aligned in a column.
    fn show(self, time: Duration) -> String {
        match self {
            TimeUnit::Micros => format!("{:>9.1}", micros(time)),
            TimeUnit::Millis => format!("{:>9.3}", micros(time) / 1e3),
        }
    }
}

/// The table of paths against Linux's e1000.
pub fn render(reports: &[PathReport], workload: &Workload) -> Vec<String> {
    let find = |path: NetPath| find(reports, path);
    let baseline = find(NetPath::LinuxE1000);
    let mut lines = vec![
        format!(
            "TCP echo from the host into the guest through QEMU's e1000 ({}; our driver \
             sleeps on its interrupt, then polls every {DRIVER_TICK_US} us while frames move)",
            load_text(workload)
        ),
        header(TimeUnit::Micros, "x Linux"),
    ];
    for path in ROWS {
        lines.push(row(path, find(path), baseline, TimeUnit::Micros));
    }
    for (path, round_trip, throughput) in GOALS {
        let fast = verdict(mean_ratio(find(path), baseline), |ratio| {
            ratio <= round_trip
        });
        lines.push(format!(
            "goal: {} round trip within {round_trip}x Linux's: {fast}",
            path.description()
        ));
        let ways: [(&str, Rate); 2] = [("to guest", upload_rate), ("from guest", download_rate)];
        for (way, rate) in ways {
            let moved = verdict(rate_ratio(find(path), baseline, rate), |ratio| {
                ratio >= throughput
            });
            lines.push(format!(
                "goal: {} throughput {way} at least {throughput}x Linux's: {moved}",
                path.description()
            ));
        }
    }
    lines
}

/// The table of the ways our driver alone may wait for its NIC (direct mode):
/// round trip and throughput beside what the driver cost the processor under
/// the load and idle after it (`driver_cpu`, by path label), the default way
/// first.
pub fn render_waiting(reports: &[PathReport], driver_cpu: &[(&str, DriverCpu)]) -> Vec<String> {
    let cpu_of = |path: NetPath| cpu_of(driver_cpu, path);
    let default = WAITING_PATHS[0];
    let baseline = find(reports, default);
    let mut lines = vec![
        format!(
            "How the driver waits for its NIC (direct mode): the interrupt, then polling \
             every {DRIVER_TICK_US} us until {BUSY_POLL_US} us pass without a frame (the \
             default, chosen from this table); the interrupt for every burst; polling \
             every {DRIVER_TICK_US} us"
        ),
        format!(
            "{} | {:>8} | {:>10} | {:>10}",
            header(TimeUnit::Micros, "x chosen"),
            "CPU load",
            "CPU idle",
            "idle over"
        ),
    ];
    for path in WAITING_PATHS {
        let cpu = cpu_of(path).map_or_else(
            || format!("{:>8} | {:>10} | {:>10}", "-", "-", "-"),
            |cpu| {
                format!(
                    "{:>7.2}% | {:>9.2}% | {:>8} s",
                    cpu.under_load_percent,
                    cpu.idle_percent,
                    cpu.idle_window.as_secs()
                )
            },
        );
        let row = row(path, find(reports, path), baseline, TimeUnit::Micros);
        lines.push(format!("{row} | {cpu}"));
    }
    let idle = idle_verdict(cpu_of(default));
    lines.push(format!(
        "goal: the idle driver (default) at most {IDLE_CPU_GOAL}% of the processor: {idle}"
    ));
    lines
}

/// The table of replica counts against the unreplicated driver, laid out like
/// Bailleu's Table 4.1: `unreplicated` is the load on the unreplicated row,
/// `replicated` the load on each replicated one.
pub fn render_replication(
    reports: &[PathReport],
    unreplicated: &Workload,
    replicated: &Workload,
    driver_cpu: &[(&str, DriverCpu)],
) -> Vec<String> {
    let find = |path: NetPath| find(reports, path);
    let baseline = find(REPLICATION_ROWS[0]);
    let mut lines = vec![
        format!(
            "Replication, laid out like Bailleu's Table 4.1: TCP echo through our e1000 \
             driver in {} access mode, unreplicated ({}) and as 1, 2 and 3 replicas under \
             romain's engine (and 3 on its stub backend) without faults ({} per row)",
            REPLICATED_ACCESS.name(),
            load_text(unreplicated),
            load_text(replicated)
        ),
        header(TimeUnit::Millis, "x unrepl"),
    ];
    for path in REPLICATION_ROWS {
        lines.push(row(path, find(path), baseline, TimeUnit::Millis));
    }
    for (path, most) in ROUND_TRIP_GOALS {
        let round_trip = verdict(mean_ratio(find(path), baseline), |ratio| ratio <= most);
        lines.push(format!(
            "goal: {} round trip within {most}x unreplicated: {round_trip}",
            path.description()
        ));
    }
    let goal = find(GOAL_ROW);
    let ways: [(&str, Rate); 2] = [("to guest", upload_rate), ("from guest", download_rate)];
    let throughput = ways.map(|(way, rate)| {
        let ratio = rate_ratio(goal, baseline, rate);
        (way, ratio, ratio.is_some_and(|r| r >= THROUGHPUT_GOAL))
    });
    let ratios: Vec<String> = throughput
        .iter()
        .map(|(way, ratio, _)| format!("{} {way}", ratio_text(*ratio)))
        .collect();
    let outcome = match throughput {
        [(_, Some(_), true), (_, Some(_), true)] => "met",
        [(_, Some(_), _), (_, Some(_), _)] => "missed",
        _ => "not measured",
    };
    lines.push(format!(
        "goal: {} throughput at least {THROUGHPUT_GOAL}x unreplicated each way: {}, {outcome}",
        GOAL_ROW.description(),
        ratios.join(", ")
    ));
    let mapped = find(MAPPED_BASELINE);
    lines.push(format!(
        "beside {} (the engine makes the replicas' register accesses on the BAR it maps): {} \
         round trip {}, throughput {} to guest, {} from guest",
        MAPPED_BASELINE.description(),
        GOAL_ROW.description(),
        ratio_text(mean_ratio(goal, mapped)),
        ratio_text(rate_ratio(goal, mapped, upload_rate)),
        ratio_text(rate_ratio(goal, mapped, download_rate)),
    ));
    for path in &REPLICATION_ROWS[1..] {
        let path = *path;
        let cpu = cpu_of(driver_cpu, path)
            .map_or_else(|| "not measured".to_string(), |cpu| cpu.to_string());
        lines.push(format!(
            "processor time of romain:, the engine and the replicas, {}: {cpu}",
            path.description()
        ));
    }
    let idle = idle_verdict(cpu_of(driver_cpu, GOAL_ROW));
    lines.push(format!(
        "goal: {} idle at most {IDLE_CPU_GOAL}% of the processor: {idle}",
        GOAL_ROW.description()
    ));
    lines.push(BAILLEU.to_string());
    lines
}

/// What the guest said `path`'s driver cost the processor.
fn cpu_of(driver_cpu: &[(&str, DriverCpu)], path: NetPath) -> Option<DriverCpu> {
    driver_cpu
        .iter()
        .find(|(label, _)| *label == path.label())
        .map(|(_, cpu)| *cpu)
}

/// The idle share against [`IDLE_CPU_GOAL`].
fn idle_verdict(cpu: Option<DriverCpu>) -> String {
    match cpu {
        Some(cpu) if cpu.idle_percent <= IDLE_CPU_GOAL => format!("{:.2}%, met", cpu.idle_percent),
        Some(cpu) => format!("{:.2}%, missed", cpu.idle_percent),
        None => "not measured".to_string(),
    }
}

fn find(reports: &[PathReport], path: NetPath) -> Option<&PathReport> {
    reports.iter().find(|r| r.label == path.label())
}

/// `1000 round trips of 64 bytes, 2 MiB each way`.
fn load_text(workload: &Workload) -> String {
    format!(
        "{} round trips of {} bytes, {} MiB each way",
        workload.round_trips,
        workload.message_len,
        workload.transfer_bytes >> 20
    )
}

fn header(unit: TimeUnit, ratio: &str) -> String {
    let unit = unit.name();
    format!(
        "{:<32} | {:>9} | {:>9} | {:>9} | {ratio:>8} | {:>16} | {:>16}",
        "path",
        format!("mean {unit}"),
        format!("min {unit}"),
        format!("max {unit}"),
        "to guest MB/s",
        "from guest MB/s"
    )
}

/// `ratio, met` when `met` holds, `ratio, missed` when not.
fn verdict(ratio: Option<f64>, met: impl Fn(f64) -> bool) -> String {
    match ratio {
        Some(ratio) if met(ratio) => format!("{ratio:.2}x, met"),
        Some(ratio) => format!("{ratio:.2}x, missed"),
        None => "not measured".to_string(),
    }
}

fn row(
    path: NetPath,
    report: Option<&PathReport>,
    baseline: Option<&PathReport>,
    unit: TimeUnit,
) -> String {
    let Some(report) = report else {
        return format!("{:<32} | not measured", path.description());
    };
    let timing = match &report.round_trips {
        Ok(rt) => format!(
            "{} | {} | {} | {:>8}",
            unit.show(rt.mean),
            unit.show(rt.min),
            unit.show(rt.max),
            ratio_text(mean_ratio(Some(report), baseline))
        ),
        Err(_) => format!("{:>9} | {:>9} | {:>9} | {:>8}", "failed", "", "", ""),
    };
    let throughput = |rate: Rate| match rate(report) {
        Some(value) => format!(
            "{value:>7.2} ({:>6})",
            ratio_text(rate_ratio(Some(report), baseline, rate))
        ),
        None => "failed".to_string(),
    };
    format!(
        "{:<32} | {timing} | {:>16} | {:>16}",
        path.description(),
        throughput(upload_rate),
        throughput(download_rate)
    )
}

fn mean_ratio(report: Option<&PathReport>, baseline: Option<&PathReport>) -> Option<f64> {
    let mean = |r: Option<&PathReport>| Some(r?.round_trips.as_ref().ok()?.mean.as_secs_f64());
    Some(mean(report)? / mean(baseline)?)
}

fn rate_ratio(
    report: Option<&PathReport>,
    baseline: Option<&PathReport>,
    rate: Rate,
) -> Option<f64> {
    Some(rate(report?)? / rate(baseline?)?)
}

fn upload_rate(report: &PathReport) -> Option<f64> {
    Some(report.upload.as_ref().ok()?.megabytes_per_second())
}

fn download_rate(report: &PathReport) -> Option<f64> {
    Some(report.download.as_ref().ok()?.megabytes_per_second())
}

fn ratio_text(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "-".to_string(), |r| format!("{r:.2}x"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_net::load::{RoundTrips, Transfer};
    use std::time::Duration;

    const WORKLOAD: Workload = Workload {
        round_trips: 10_000,
        message_len: 64,
        transfer_bytes: 20 << 20,
    };

    fn report(path: NetPath, mean_us: u64, mb_per_s: u64) -> PathReport {
        let transfer = Transfer {
            bytes: mb_per_s * 1_000_000,
            elapsed: Duration::from_secs(1),
        };
        PathReport {
            label: path.label().into(),
            round_trips: Ok(RoundTrips {
                count: 10_000,
                mean: Duration::from_micros(mean_us),
                min: Duration::from_micros(mean_us / 2),
                max: Duration::from_micros(mean_us * 10),
            }),
            upload: Ok(transfer),
            download: Ok(transfer),
            quit: Ok(()),
        }
    }

    #[test]
    fn ratios_are_to_linux_and_goals_are_judged() {
        let reports = [
            report(OUR_DRIVER_PATHS[1], 800, 5),
            report(NetPath::LinuxE1000, 400, 20),
            report(OUR_DRIVER_PATHS[0], 440, 10),
        ];
        let lines = render(&reports, &WORKLOAD);
        assert!(lines[0].contains("10000 round trips of 64 bytes, 20 MiB each way"));
        assert!(
            lines[0].ends_with("then polls every 100 us while frames move)"),
            "{}",
            lines[0]
        );
        assert!(
            lines[2].starts_with("Linux in-kernel e1000"),
            "{}",
            lines[2]
        );
        assert!(lines[2].contains("|     400.0 |     200.0 |    4000.0 |    1.00x |"));
        assert!(lines[3].contains("|     440.0 |"), "{}", lines[3]);
        assert!(
            lines[3].contains("|    1.10x |   10.00 ( 0.50x) |"),
            "{}",
            lines[3]
        );
        assert!(lines[4].contains("2.00x"), "{}", lines[4]);
        assert_eq!(
            lines[5..],
            [
                "goal: our e1000, BAR mapped (direct) round trip within 2x Linux's: 1.10x, met",
                "goal: our e1000, BAR mapped (direct) throughput to guest at least 0.5x \
                 Linux's: 0.50x, met",
                "goal: our e1000, BAR mapped (direct) throughput from guest at least 0.5x \
                 Linux's: 0.50x, met",
                "goal: our e1000, through mmio: round trip within 2.5x Linux's: 2.00x, met",
                "goal: our e1000, through mmio: throughput to guest at least 0.3x Linux's: \
                 0.25x, missed",
                "goal: our e1000, through mmio: throughput from guest at least 0.3x \
                 Linux's: 0.25x, missed",
            ]
        );
    }

    #[test]
    fn the_ways_of_waiting_are_shown_with_the_drivers_processor_time_against_the_default() {
        let reports = [
            report(WAITING_PATHS[0], 1000, 2),
            report(WAITING_PATHS[1], 2000, 1),
        ];
        let cpu = |load: f64, idle: f64| DriverCpu {
            under_load_percent: load,
            idle_percent: idle,
            idle_window: Duration::from_secs(10),
        };
        let driver_cpu = [
            ("e1000-direct-notified", cpu(40.0, 0.5)),
            ("e1000-direct", cpu(30.5, 0.25)),
        ];
        let lines = render_waiting(&reports, &driver_cpu);
        assert!(
            lines[0].contains("until 2000 us pass without a frame"),
            "{}",
            lines[0]
        );
        assert!(lines[1].ends_with("| x chosen |    to guest MB/s |  from guest MB/s | CPU load |   CPU idle |  idle over"), "{}", lines[1]);
        assert!(
            lines[2].starts_with("our e1000, BAR mapped (direct) "),
            "{}",
            lines[2]
        );
        assert!(lines[2].contains("|    1.00x |"), "{}", lines[2]);
        assert!(
            lines[2].ends_with("|   30.50% |      0.25% |       10 s"),
            "{}",
            lines[2]
        );
        assert!(lines[3].contains("|    2.00x |"), "{}", lines[3]);
        assert!(lines[3].contains("( 0.50x)"), "{}", lines[3]);
        assert!(
            lines[3].ends_with("|   40.00% |      0.50% |       10 s"),
            "{}",
            lines[3]
        );
        assert!(
            lines[4].starts_with("our e1000, direct, polled"),
            "{}",
            lines[4]
        );
        assert!(lines[4].contains("not measured"), "{}", lines[4]);
        assert_eq!(
            lines[5],
            "goal: the idle driver (default) at most 1% of the processor: 0.25%, met"
        );
        let busy = [("e1000-direct", cpu(30.5, 1.5))];
        assert!(render_waiting(&reports, &busy)[5].ends_with(": 1.50%, missed"));
        assert!(render_waiting(&reports, &[])[5].ends_with(": not measured"));
    }

    #[test]
    fn missing_and_failed_measurements_are_shown_as_such() {
        let mut failed = report(OUR_DRIVER_PATHS[0], 440, 10);
        failed.round_trips = Err("stuck".into());
        failed.download = Err("checksum".into());
        let lines = render(&[failed], &WORKLOAD);
        assert!(lines[2].ends_with("| not measured"), "{}", lines[2]);
        assert!(lines[3].contains("|    failed |"), "{}", lines[3]);
        assert!(
            lines[3].contains("   10.00 (     -)"),
            "no baseline: {}",
            lines[3]
        );
        assert!(lines[3].ends_with("|           failed"), "{}", lines[3]);
        assert!(lines[5].ends_with("not measured"), "{}", lines[5]);
    }

    const REPLICATED_WORKLOAD: Workload = Workload {
        round_trips: 1_000,
        message_len: 64,
        transfer_bytes: 2 << 20,
    };

    /// `report` with its transfers at `to_guest` and `from_guest` MB/s.
    fn with_rates(mut report: PathReport, to_guest: f64, from_guest: f64) -> PathReport {
        let transfer = |mb_per_s: f64| Transfer {
            bytes: (mb_per_s * 1e6) as u64,
            elapsed: Duration::from_secs(1),
        };
        report.upload = Ok(transfer(to_guest));
        report.download = Ok(transfer(from_guest));
        report
    }

    fn replication(rows: [(u64, f64, f64); 5]) -> Vec<PathReport> {
        REPLICATION_ROWS
            .into_iter()
            .zip(rows)
            .map(|(path, (mean_us, to_guest, from_guest))| {
                with_rates(report(path, mean_us, 0), to_guest, from_guest)
            })
            .collect()
    }

    #[test]
    fn replication_rows_are_to_the_unreplicated_driver_in_milliseconds() {
        let mut reports = replication([
            (1_300, 2.0, 4.0),
            (5_200, 1.0, 2.0),
            (11_700, 0.5, 1.0),
            (17_000, 0.2, 0.3),
            (16_900, 0.2, 0.3),
        ]);
        reports.push(report(NetPath::LinuxE1000, 100, 50));
        reports.push(with_rates(report(MAPPED_BASELINE, 850, 0), 4.0, 6.0));
        let lines = render_replication(&reports, &WORKLOAD, &REPLICATED_WORKLOAD, &[]);
        assert!(
            lines[0].contains("like Bailleu's Table 4.1"),
            "{}",
            lines[0]
        );
        assert!(
            lines[0].contains(
                "in mmio access mode, unreplicated (10000 round trips of 64 bytes, 20 MiB \
                 each way) and as 1, 2 and 3 replicas"
            ),
            "{}",
            lines[0]
        );
        assert!(
            lines[0].ends_with("(1000 round trips of 64 bytes, 2 MiB each way per row)"),
            "{}",
            lines[0]
        );
        assert!(lines[1].contains("|   mean ms |"), "{}", lines[1]);
        assert!(lines[1].contains("| x unrepl |"), "{}", lines[1]);
        let names: Vec<&str> = lines[2..7]
            .iter()
            .map(|line| line.split(" | ").next().unwrap().trim_end())
            .collect();
        assert_eq!(
            names,
            [
                "our e1000, through mmio:",
                "our e1000, 1 replica (engine)",
                "our e1000, 2 replicas (engine)",
                "our e1000, 3 replicas (engine)",
                "our e1000, 3 replicas (stub engine)"
            ]
        );
        assert!(
            lines[2]
                .contains("|     1.300 |     0.650 |    13.000 |    1.00x |    2.00 ( 1.00x) |"),
            "{}",
            lines[2]
        );
        assert!(
            lines[3].contains("|    4.00x |    1.00 ( 0.50x) |"),
            "{}",
            lines[3]
        );
        assert!(lines[4].contains("|    9.00x |"), "{}", lines[4]);
        assert!(
            lines[5].contains("|    17.000 |     8.500 |   170.000 |   13.08x |    0.20 ( 0.10x) |    0.30 ( 0.07x)"),
            "{}",
            lines[5]
        );
        assert!(lines[6].contains("|   13.00x |"), "{}", lines[6]);
        assert_eq!(
            lines[7],
            "goal: our e1000, 3 replicas (engine) round trip within 1.9x unreplicated: 13.08x, \
             missed"
        );
        assert_eq!(
            lines[8],
            "goal: our e1000, 1 replica (engine) round trip within 1.3x unreplicated: 4.00x, \
             missed"
        );
        assert_eq!(
            lines[9],
            "goal: our e1000, 3 replicas (engine) throughput at least 0.4x unreplicated each \
             way: 0.10x to guest, 0.07x from guest, missed"
        );
        assert_eq!(
            lines[10],
            "beside our e1000, BAR mapped (direct) (the engine makes the replicas' register \
             accesses on the BAR it maps): our e1000, 3 replicas (engine) round trip 20.00x, \
             throughput 0.05x to guest, 0.05x from guest"
        );
        assert_eq!(
            lines[11..16],
            [
                "processor time of romain:, the engine and the replicas, our e1000, 1 replica \
                 (engine): not measured",
                "processor time of romain:, the engine and the replicas, our e1000, 2 \
                 replicas (engine): not measured",
                "processor time of romain:, the engine and the replicas, our e1000, 3 \
                 replicas (engine): not measured",
                "processor time of romain:, the engine and the replicas, our e1000, 3 \
                 replicas (stub engine): not measured",
                "goal: our e1000, 3 replicas (engine) idle at most 1% of the processor: not \
                 measured",
            ]
        );
        assert!(
            lines[16].starts_with("Bailleu 2015, Table 4.1"),
            "{}",
            lines[16]
        );
        assert!(
            lines[16].contains("0.206 / 0.254 / 0.299 ms (1.36x / 1.67x / 1.97x)"),
            "{}",
            lines[16]
        );
        assert_eq!(lines.len(), 17);

        let cpu = DriverCpu {
            under_load_percent: 60.0,
            idle_percent: 1.25,
            idle_window: Duration::from_secs(10),
        };
        let lines = render_replication(
            &reports,
            &WORKLOAD,
            &REPLICATED_WORKLOAD,
            &[("e1000-replicated-3", cpu)],
        );
        assert!(
            lines[13].ends_with("3 replicas (engine): 60.00% under load, 1.25% idle over 10 s"),
            "{}",
            lines[13]
        );
        assert!(lines[15].ends_with(": 1.25%, missed"), "{}", lines[15]);
    }

    #[test]
    fn replication_goals_are_met_only_when_both_ways_are() {
        let verdicts = |to_guest: f64, from_guest: f64| {
            let reports = replication([
                (1_000, 2.0, 2.0),
                (1_100, 2.0, 2.0),
                (1_300, 2.0, 2.0),
                (1_500, to_guest, from_guest),
                (1_500, 2.0, 2.0),
            ]);
            let lines = render_replication(&reports, &WORKLOAD, &REPLICATED_WORKLOAD, &[]);
            (lines[7].clone(), lines[8].clone(), lines[9].clone())
        };
        let (three, one, throughput) = verdicts(0.8, 1.2);
        assert!(three.ends_with(": 1.50x, met"), "{three}");
        assert!(one.ends_with(": 1.10x, met"), "{one}");
        assert!(
            throughput.ends_with(": 0.40x to guest, 0.60x from guest, met"),
            "{throughput}"
        );
        let (_, _, throughput) = verdicts(1.2, 0.7);
        assert!(
            throughput.ends_with(": 0.60x to guest, 0.35x from guest, missed"),
            "{throughput}"
        );
    }

    #[test]
    fn replication_rows_not_measured_or_failed_show_as_such() {
        let mut reports = replication([
            (1_300, 2.0, 2.0),
            (5_000, 1.0, 1.0),
            (9_000, 1.0, 1.0),
            (17_000, 0.2, 0.2),
            (17_000, 0.2, 0.2),
        ]);
        reports[3].upload = Err("checksum".into());
        reports.remove(2);
        reports.remove(0);
        let lines = render_replication(&reports, &WORKLOAD, &REPLICATED_WORKLOAD, &[]);
        assert!(lines[2].ends_with("| not measured"), "{}", lines[2]);
        assert!(
            lines[3].contains("|        - |    1.00 (     -) |"),
            "{}",
            lines[3]
        );
        assert!(lines[4].ends_with("| not measured"), "{}", lines[4]);
        assert!(lines[5].contains("|           failed |"), "{}", lines[5]);
        assert!(lines[6].contains("|    0.20 (     -) |"), "{}", lines[6]);
        assert!(lines[7].ends_with(": not measured"), "{}", lines[7]);
        assert!(lines[8].ends_with(": not measured"), "{}", lines[8]);
        assert!(
            lines[9].ends_with(": - to guest, - from guest, not measured"),
            "{}",
            lines[9]
        );
    }
}
