//! The benchmark's report: one row per path, then the ratios with the goals they are
//! held against (reported, not asserted: these are emulation costs under TCG).

use std::time::Duration;

use crate::measure::{Measurements, Settings, BATCH_OPS};

/// A batched register read should cost at most this many direct reads.
const BATCHED_GOAL: f64 = 20.0;
/// A single register read should cost one round trip to the daemon, not two: below
/// this ratio to the plain round trip it does.
const SINGLE_GOAL: f64 = 1.5;

/// The report's lines, without the protocol prefix.
pub fn render(m: &Measurements, settings: &Settings) -> Vec<String> {
    let rows = [
        (
            "plain socket echo with another process (no scheme)",
            m.echo,
            settings.requests,
        ),
        (
            "scheme round trip (pread of mmio:status, no device)",
            m.round_trip,
            settings.requests,
        ),
        (
            "single register read (pread of STATUS via mmio:)",
            m.single_read,
            settings.requests,
        ),
        (
            "batched register read (per op, 32-op call via mmio:)",
            m.batched_read,
            settings.requests * BATCH_OPS,
        ),
        (
            "direct mapped read (BAR 0 via mmio: direct mode)",
            m.direct_read,
            settings.direct_reads,
        ),
    ];
    let batched_ratio = ratio(m.batched_read, m.direct_read);
    // What a batched operation costs beyond its share of the one round trip: the
    // daemon's decoding, checking and device access.
    let batch = m.batched_read * BATCH_OPS as u32;
    let daemon_work = batch.saturating_sub(m.round_trip) / BATCH_OPS as u32;
    let single_ratio = ratio(m.single_read, m.round_trip);
    let mut lines = vec![
        format!(
            "register access on QEMU's e1000 inside the guest: median of {} rounds",
            settings.rounds
        ),
        format!("| {:<54} | {:>10} | {:>9} |", "path", "per op", "ops/round"),
    ];
    for (path, per_op, ops) in rows {
        lines.push(format!(
            "| {path:<54} | {:>10} | {ops:>9} |",
            duration(per_op)
        ));
    }
    lines.push(format!(
        "| {:<54} | {:>9.1}x | goal <= {BATCHED_GOAL}x: {} |",
        "batched per op / direct read",
        batched_ratio,
        verdict(batched_ratio <= BATCHED_GOAL)
    ));
    lines.push(format!(
        "| {:<54} | {:>9.1}x | the rest is the round trip over {BATCH_OPS} ops |",
        "  of which the daemon's work per op / direct read",
        ratio(daemon_work, m.direct_read)
    ));
    lines.push(format!(
        "| {:<54} | {:>9.1}x | the transport's own cost under TCG |",
        "scheme round trip / plain socket echo",
        ratio(m.round_trip, m.echo)
    ));
    lines.push(format!(
        "| {:<54} | {:>9.2}x | goal one round trip (< {SINGLE_GOAL}x): {} |",
        "single read / scheme round trip",
        single_ratio,
        verdict(single_ratio < SINGLE_GOAL)
    ));
    lines
}

fn ratio(numerator: Duration, denominator: Duration) -> f64 {
    numerator.as_secs_f64() / denominator.as_secs_f64().max(f64::MIN_POSITIVE)
}

fn verdict(met: bool) -> &'static str {
    if met {
        "met"
    } else {
        "missed"
    }
}

/// Nanoseconds below a microsecond, else microseconds with one decimal.
fn duration(d: Duration) -> String {
    if d < Duration::from_micros(1) {
        format!("{} ns", d.as_nanos())
    } else {
        format!("{:.1} us", d.as_secs_f64() * 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_each_path_and_both_ratios_with_verdicts() {
        let m = Measurements {
            echo: Duration::from_micros(20),
            round_trip: Duration::from_micros(40),
            single_read: Duration::from_micros(42),
            batched_read: Duration::from_nanos(1_500),
            direct_read: Duration::from_nanos(60),
        };
        let settings = Settings {
            rounds: 7,
            requests: 1000,
            direct_reads: 20_000,
        };
        let lines = render(&m, &settings);
        assert!(lines[0].contains("median of 7 rounds"));
        assert!(lines[2].contains("20.0 us") && lines[2].contains("echo"));
        assert!(lines[3].contains("40.0 us") && lines[3].ends_with(" 1000 |"));
        assert!(lines[5].contains("1.5 us") && lines[5].contains("32000"));
        assert!(lines[6].contains("60 ns"));
        assert!(lines[7].contains("25.0x") && lines[7].ends_with("missed |"));
        // (32 * 1.5 us - 40 us) / 32 = 250 ns, about 4 direct reads.
        assert!(lines[8].contains("4.2x"), "{}", lines[8]);
        assert!(
            lines[9].contains("2.0x") && lines[9].contains("transport"),
            "{}",
            lines[9]
        );
        assert!(lines[10].contains("1.05x") && lines[10].ends_with("met |"));
    }
}
