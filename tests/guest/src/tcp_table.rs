//! The benchmark's TCP table: round trips and throughput of each network path side
//! by side, with ratios to Linux's in-kernel e1000 measured in the same run, and
//! the round-trip goals (reported, never asserted).

use guest_net::load::{micros, PathReport, Workload};
use guest_net::paths::{NetPath, DRIVER_TICK_US, OUR_DRIVER_PATHS};

/// Rows, baseline first.
const ROWS: [NetPath; 3] = [
    NetPath::LinuxE1000,
    OUR_DRIVER_PATHS[0],
    OUR_DRIVER_PATHS[1],
];
/// Mean round trip of our driver over Linux's that each access mode aims at.
const GOALS: [(NetPath, f64); 2] = [(OUR_DRIVER_PATHS[0], 1.2), (OUR_DRIVER_PATHS[1], 1.5)];

/// The table's lines.
pub fn render(reports: &[PathReport], workload: &Workload) -> Vec<String> {
    let find = |path: NetPath| reports.iter().find(|r| r.label == path.label());
    let baseline = find(NetPath::LinuxE1000);
    let mut lines = vec![
        format!(
            "TCP echo from the host into the guest through QEMU's e1000 ({} round trips of {} \
             bytes, {} MiB each way; our driver polls every {DRIVER_TICK_US} us)",
            workload.round_trips,
            workload.message_len,
            workload.transfer_bytes >> 20
        ),
        format!(
            "{:<32} | {:>9} | {:>9} | {:>9} | {:>7} | {:>16} | {:>16}",
            "path", "mean us", "min us", "max us", "x Linux", "to guest MB/s", "from guest MB/s"
        ),
    ];
    for path in ROWS {
        lines.push(row(path, find(path), baseline));
    }
    for (path, goal) in GOALS {
        let verdict = match mean_ratio(find(path), baseline) {
            Some(ratio) if ratio <= goal => format!("{ratio:.2}x, met"),
            Some(ratio) => format!("{ratio:.2}x, missed"),
            None => "not measured".to_string(),
        };
        lines.push(format!(
            "goal: {} round trip within {goal}x Linux's: {verdict}",
            path.description()
        ));
    }
    lines
}

fn row(path: NetPath, report: Option<&PathReport>, baseline: Option<&PathReport>) -> String {
    let Some(report) = report else {
        return format!("{:<32} | not measured", path.description());
    };
    let timing = match &report.round_trips {
        Ok(rt) => format!(
            "{:>9.1} | {:>9.1} | {:>9.1} | {:>7}",
            micros(rt.mean),
            micros(rt.min),
            micros(rt.max),
            ratio_text(mean_ratio(Some(report), baseline))
        ),
        Err(_) => format!("{:>9} | {:>9} | {:>9} | {:>7}", "failed", "", "", ""),
    };
    let throughput = |of: fn(&PathReport) -> Option<f64>| match of(report) {
        Some(rate) => {
            let ratio = baseline.and_then(of).map(|base| rate / base);
            format!("{rate:>7.2} ({:>6})", ratio_text(ratio))
        }
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
            lines[0].ends_with("our driver polls every 100 us)"),
            "{}",
            lines[0]
        );
        assert!(
            lines[2].starts_with("Linux in-kernel e1000"),
            "{}",
            lines[2]
        );
        assert!(lines[2].contains("|     400.0 |     200.0 |    4000.0 |   1.00x |"));
        assert!(lines[3].contains("|     440.0 |"), "{}", lines[3]);
        assert!(
            lines[3].contains("|   1.10x |   10.00 ( 0.50x) |"),
            "{}",
            lines[3]
        );
        assert!(lines[4].contains("2.00x"), "{}", lines[4]);
        assert_eq!(
            lines[5],
            "goal: our e1000, BAR mapped (direct) round trip within 1.2x Linux's: 1.10x, met"
        );
        assert_eq!(
            lines[6],
            "goal: our e1000, through mmio: round trip within 1.5x Linux's: 2.00x, missed"
        );
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
}
