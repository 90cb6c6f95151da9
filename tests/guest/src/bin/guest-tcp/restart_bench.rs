//! Herder's kill-every-k-seconds table, the guest's half: for each row a fresh
//! `romain serve` runs our e1000 driver as `romain:e1000` (a group of one, which
//! romain restarts when it dies) or `romain:e1000?replicas=N`, `tap-bridge` puts
//! the guest's stack on it, and the host streams into a receiver here for a fixed
//! window while a `kill <i>` goes to the group every k seconds (rotating the
//! replica). Then one [`RowLine`] says what arrived and what `romain:` counted.
//!
//! A fresh supervisor per row keeps each row's counters and restart-to-serving
//! mean its own, and starts every row with the backoff at rest. Its registry
//! (`Supervision::quick_restart`) makes every kill a first fault, so even a
//! kill a second is restarted at once, and keeps a standby of the lone driver
//! waiting to take over.

use std::net::{Ipv4Addr, TcpListener};
use std::sync::Arc;
use std::thread::{self, sleep};
use std::time::Duration;

use guest_harness::guest::report::{Report, StepResult};
use guest_harness::guest::romain::{Romain, RomainGroup};
use guest_harness::kill_cost::{span_for, Timeline};
use guest_harness::restart_lines::{row_label, Kills, RowLine};
use guest_net::child::Child;
use guest_net::paths::REPLICATED_ACCESS;
use guest_net::protocol::serving_line;
use guest_net::stream::{self, Progress, Received};

use crate::our_driver::{start_bridge, STOP_TIMEOUT};
use crate::restarted::start_supervised;
use crate::service::gateway_answers;
use crate::Environment;

/// The host starts streaming once the receiver is announced; a dropped SYN costs
/// QEMU's user network a few seconds.
const LOAD_START_TIMEOUT: Duration = Duration::from_secs(60);
/// One read of the stream: longer than any restart, so a path down for a restart
/// does not end the row.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the row looks at the clock, the receiver and the bridge.
const POLL: Duration = Duration::from_millis(10);
/// The interval of the sham kills a row without kills is read at.
const SHAM_EVERY: Duration = Duration::from_secs(1);
/// How long the engine may take to report its counters after the row.
const ENGINE_STATUS_TIMEOUT: Duration = Duration::from_secs(10);

/// The rows to measure.
pub struct Plan {
    /// How long the host streams in each row.
    pub window: Duration,
    /// The kill intervals in seconds; each group size also gets a row without kills.
    pub kill_every: Vec<u64>,
    /// Group sizes, in order.
    pub replicas: Vec<usize>,
    /// The port the receiver listens on (QEMU forwards the host's same port).
    pub port: u16,
}

/// Measures every row, a step each: per group size a row without kills first and
/// again last, the baseline its other rows are compared with and how far it
/// drifted meanwhile.
pub fn run(report: &mut Report, env: Option<&Environment>, plan: &Plan) {
    for &replicas in &plan.replicas {
        let rows = std::iter::once(Kills::Never)
            .chain(plan.kill_every.iter().copied().map(Kills::Every))
            .chain(std::iter::once(Kills::NeverAgain));
        for kills in rows {
            let label = row_label(replicas, kills);
            report.run_after(&format!("{label}-measured"), env, |env| {
                row(env, plan, replicas, kills)
            });
        }
    }
}

fn row(env: &Environment, plan: &Plan, replicas: usize, kills: Kills) -> StepResult<String> {
    let mut target = Target::start(env, replicas)?;
    let measured = target.measure(plan, replicas, kills);
    let stopped = target.stop();
    let row = measured?;
    println!("{row}");
    stopped?;
    Ok(format!(
        "{} kills ({} refused), {} of {} bytes within the window",
        row.kills, row.refused, row.in_window, row.received
    ))
}

/// When the kills of one row go in, from the stream's first byte: one in the
/// middle of each k-second slice of the window, so a row has window / k kills and
/// each kill has its whole interval inside the window.
pub fn kill_times(window: Duration, every_s: Option<u64>) -> Vec<Duration> {
    let Some(every) = every_s.filter(|&k| k > 0).map(Duration::from_secs) else {
        return Vec::new();
    };
    (0u32..)
        .map(|i| every * (2 * i + 1) / 2)
        .take_while(|at| *at < window)
        .collect()
}

/// A time `romain:` reports in milliseconds; `None` while it is unknown (`-`,
/// `unknown`, absent) or not a number.
pub fn reported_ms(value: Option<&str>) -> Option<f64> {
    let value = value?.trim();
    let number = value.strip_suffix("ms").unwrap_or(value).trim();
    number.parse::<f64>().ok().filter(|ms| ms.is_finite())
}

/// A count of the group's status, `None` while it is unknown.
fn reported_count(value: Option<&str>) -> Option<u64> {
    value?.trim().parse().ok()
}

/// One row's supervisor, group and bridge.
struct Target {
    romain: Romain,
    group: RomainGroup,
    bridge: Option<Child>,
    /// Times the bridge was found ended and started again.
    bridge_restarts: u64,
}

impl Target {
    fn start(env: &Environment, replicas: usize) -> StepResult<Target> {
        let (romain, group) = start_supervised(env, REPLICATED_ACCESS, replicas)?;
        let bridge = start_bridge()?;
        gateway_answers()?;
        Ok(Target {
            romain,
            group,
            bridge: Some(bridge),
            bridge_restarts: 0,
        })
    }

    /// Announces the receiver, kills on schedule while the host streams, and
    /// reads the group's counters once the stream has ended.
    fn measure(&mut self, plan: &Plan, replicas: usize, kills_every: Kills) -> StepResult<RowLine> {
        let label = row_label(replicas, kills_every);
        let listener = TcpListener::bind((Ipv4Addr::UNSPECIFIED, plan.port))?;
        let progress = Arc::new(Progress::default());
        let window = plan.window;
        let receiver = thread::spawn({
            let (progress, label) = (Arc::clone(&progress), label.clone());
            move || {
                stream::receive(
                    &listener,
                    &label,
                    window,
                    LOAD_START_TIMEOUT,
                    IO_TIMEOUT,
                    &progress,
                )
            }
        });
        println!("{}", serving_line(&label, plan.port));
        let first_byte = loop {
            if let Some(at) = progress.first_byte() {
                break Some(at);
            }
            if receiver.is_finished() {
                break None;
            }
            self.keep_bridge()?;
            sleep(POLL);
        };
        let (mut kills, mut refused) = (0, 0);
        // The stream's progress every poll, and when each kill went in: what
        // each kill cost the stream (`kill_cost`).
        let mut timeline = Timeline::default();
        let mut killed_at = Vec::new();
        let sample = |timeline: &mut Timeline| {
            if let Some(first_byte) = first_byte {
                timeline.record(first_byte.elapsed(), progress.received());
            }
        };
        if let Some(first_byte) = first_byte {
            let schedule = kill_times(window, kills_every.every_s());
            for (index, at) in schedule.into_iter().enumerate() {
                while first_byte.elapsed() < at {
                    self.keep_bridge()?;
                    sleep(POLL.min(at.saturating_sub(first_byte.elapsed())));
                    sample(&mut timeline);
                }
                // Refused while the driver is between processes: the kill finds
                // nothing to kill, and the row says how often.
                let when = first_byte.elapsed();
                match self.group.command(&format!("kill {}", index % replicas)) {
                    Ok(()) => {
                        kills += 1;
                        killed_at.push(when);
                    }
                    Err(why) => {
                        log::warn!("{label}: kill {index} refused: {why}");
                        refused += 1;
                    }
                }
            }
        }
        while !receiver.is_finished() {
            self.keep_bridge()?;
            sleep(POLL);
            sample(&mut timeline);
        }
        // A row without kills is read at sham kills a second apart: what the
        // method finds where nothing happened.
        let (kill_cost, sham_cost) = match kills_every.every_s() {
            Some(every) => (
                timeline.kill_cost(&killed_at, span_for(Duration::from_secs(every))),
                None,
            ),
            None => (
                None,
                timeline.kill_cost(
                    &kill_times(window, Some(SHAM_EVERY.as_secs())),
                    span_for(SHAM_EVERY),
                ),
            ),
        };
        let received: Received = match receiver.join() {
            Ok(received) => received.map_err(|e| format!("the stream failed: {e}"))?,
            Err(_) => return Err("the stream's receiver panicked".into()),
        };
        let status = match replicas {
            1 => self.group.status()?,
            _ => self.group.engine_status(ENGINE_STATUS_TIMEOUT)?,
        };
        let value = |key: &str| status.value(key).ok();
        Ok(RowLine {
            replicas,
            kills_every,
            window,
            kills,
            refused,
            received: received.bytes,
            in_window: received.in_window,
            restarts: reported_count(value("restarts")),
            replaced: match replicas {
                1 => None,
                _ => reported_count(value("replacements")),
            },
            recovery_mean_ms: reported_ms(value("restart_to_serving_mean_ms")),
            recovery_last_ms: reported_ms(value("restart_to_serving_last_ms")),
            bridge_restarts: self.bridge_restarts,
            kill_cost,
            sham_cost,
            engine_recovery_us: match replicas {
                1 => None,
                _ => reported_count(value("recovery_us")),
            },
        })
    }

    /// Starts the bridge again if it ended: one that does not open the NIC again
    /// by itself ends when the driver's handles go stale with a restart. While the
    /// driver is still coming back the start fails, and the next call tries again.
    fn keep_bridge(&mut self) -> StepResult<()> {
        let ended = match &mut self.bridge {
            Some(bridge) => bridge.has_ended()?,
            None => true,
        };
        if ended {
            if self.bridge.take().is_some() {
                self.bridge_restarts += 1;
                log::info!("tap-bridge ended: starting it again");
            }
            match start_bridge() {
                Ok(bridge) => self.bridge = Some(bridge),
                Err(why) => log::warn!("tap-bridge did not start again yet: {why}"),
            }
        }
        Ok(())
    }

    fn stop(mut self) -> StepResult<()> {
        if let Some(mut bridge) = self.bridge.take() {
            let _ = bridge.terminate(STOP_TIMEOUT);
        }
        self.group.down(STOP_TIMEOUT)?;
        self.romain.stop(STOP_TIMEOUT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_has_window_over_k_kills_each_in_the_middle_of_its_slice() {
        let window = Duration::from_secs(32);
        let count = |k| kill_times(window, Some(k)).len();
        assert_eq!([1, 2, 4, 8, 16].map(count), [32, 16, 8, 4, 2]);
        assert_eq!(
            kill_times(window, Some(16)),
            [Duration::from_secs(8), Duration::from_secs(24)]
        );
        assert_eq!(kill_times(window, Some(1))[0], Duration::from_millis(500));
        assert!(kill_times(window, None).is_empty());
        assert!(kill_times(window, Some(0)).is_empty());
        assert!(kill_times(window, Some(64)).is_empty());
    }

    #[test]
    fn reported_times_are_read_tolerantly() {
        assert_eq!(reported_ms(Some("12.5")), Some(12.5));
        assert_eq!(reported_ms(Some(" 40ms")), Some(40.0));
        for unknown in [Some("-"), Some("unknown"), Some("none"), Some("NaN"), None] {
            assert_eq!(reported_ms(unknown), None, "{unknown:?}");
        }
        assert_eq!(reported_count(Some("7")), Some(7));
        assert_eq!(reported_count(Some("unknown")), None);
    }
}
