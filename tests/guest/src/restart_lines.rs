//! The console lines of the restart benchmark (Herder's kill-every-k-seconds table),
//! which the host reads as they come (to start each row's stream) and after the boot
//! (to build the table).
//!
//! For each row the guest brings up a fresh `romain:` group, announces its stream
//! receiver with the TCP tests' serving line, labelled [`row_label`]
//! (`restart-x1-every-4s`, `restart-x3-never`, `restart-x3-never-again`), kills a replica every k seconds
//! while the host streams into it, and then reports the row:
//!
//! ```text
//! restart-bench row x1 every_s=4 again=0 window_ms=32000 kills=8 refused=0 received=41943040 in_window=40894464 restarts=8 replaced=- recovery_mean_ms=12.5 recovery_last_ms=11 bridge_restarts=0 kill_cost_ms=84.2 kill_cost_se_ms=9.1 sham_cost_ms=- sham_cost_se_ms=- engine_recovery_us=-
//! ```
//!
//! After the group size comes `key=value` words, in any order: the kill interval
//! (`-` for a row without kills), whether the row is the baseline measured again
//! at the group's end (`again=1`; absent means 0), the window, kill commands carried out and
//! refused (the driver was between processes), bytes received in all and within the
//! window (from the first byte on), the group's `restarts` and the engine's
//! `replacements` at the row's end (`-` where the group has no such counter), the
//! restart-to-serving times `romain:` reports (`-` while unknown), how often
//! the guest started the TAP bridge again because it had ended, the mean
//! milliseconds of stream a kill cost and that mean's standard error
//! ([`crate::kill_cost`]; `-` without kills), the same at sham kills a second
//! apart in a row without kills (`-` in a row with kills), and the time the
//! replication engine spent recovering from faults in the row, by its own clock
//! (`-` for a group without an engine). Keys it does not know are skipped, so
//! more can be added; the ones after `bridge_restarts` may be absent (older
//! lines).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::kill_cost::KillCost;

const PREFIX: &str = "restart-bench row x";

/// What a row does to its group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kills {
    /// No kills: the group's baseline, measured first.
    Never,
    /// A kill every this many seconds.
    Every(u64),
    /// No kills again, measured last: how far the baseline drifted meanwhile.
    NeverAgain,
}

impl Kills {
    /// The kill interval in seconds; `None` for a baseline.
    pub fn every_s(self) -> Option<u64> {
        match self {
            Kills::Every(k) => Some(k),
            Kills::Never | Kills::NeverAgain => None,
        }
    }
}

/// The stream receiver's label for a row: `restart-x<replicas>-every-<k>s`, or
/// `restart-x<replicas>-never` (`-never-again`) for the baselines.
pub fn row_label(replicas: usize, kills: Kills) -> String {
    match kills {
        Kills::Every(k) => format!("restart-x{replicas}-every-{k}s"),
        Kills::Never => format!("restart-x{replicas}-never"),
        Kills::NeverAgain => format!("restart-x{replicas}-never-again"),
    }
}

/// The group size and kills a [`row_label`] names.
pub fn parse_row_label(label: &str) -> Option<(usize, Kills)> {
    let (replicas, kills) = label.strip_prefix("restart-x")?.split_once('-')?;
    let kills = match kills {
        "never" => Kills::Never,
        "never-again" => Kills::NeverAgain,
        every => {
            let seconds = every.strip_prefix("every-")?.strip_suffix('s')?;
            Kills::Every(seconds.parse().ok()?)
        }
    };
    Some((replicas.parse().ok()?, kills))
}

/// One row as the guest measured it.
#[derive(Clone, Debug, PartialEq)]
pub struct RowLine {
    pub replicas: usize,
    pub kills_every: Kills,
    pub window: Duration,
    pub kills: u64,
    pub refused: u64,
    pub received: u64,
    pub in_window: u64,
    pub restarts: Option<u64>,
    pub replaced: Option<u64>,
    pub recovery_mean_ms: Option<f64>,
    pub recovery_last_ms: Option<f64>,
    pub bridge_restarts: u64,
    /// What one kill cost the stream, on the mean, measured around each.
    pub kill_cost: Option<KillCost>,
    /// The same reading at sham kills in a row without kills: the method's noise.
    pub sham_cost: Option<KillCost>,
    /// Microseconds the replication engine spent recovering from the row's faults.
    pub engine_recovery_us: Option<u64>,
}

impl RowLine {
    pub fn label(&self) -> String {
        row_label(self.replicas, self.kills_every)
    }

    /// The row a console line holds; `None` for any other line, an error for a
    /// row line that does not parse.
    pub fn parse(line: &str) -> Option<Result<RowLine, String>> {
        let rest = line.trim_end().strip_prefix(PREFIX)?;
        Some(Self::parse_fields(rest).map_err(|why| format!("{line:?}: {why}")))
    }

    fn parse_fields(rest: &str) -> Result<RowLine, String> {
        let mut words = rest.split(' ');
        let replicas = words.next().unwrap_or_default();
        let replicas = replicas
            .parse()
            .map_err(|_| format!("{replicas:?} is not a group size"))?;
        let fields: BTreeMap<&str, &str> = words.filter_map(|word| word.split_once('=')).collect();
        let text = |key: &str| fields.get(key).copied().ok_or(format!("no {key}"));
        let count = |key: &str| {
            let value = text(key)?;
            value
                .parse::<u64>()
                .map_err(|_| format!("{key}: {value:?} is not a count"))
        };
        let optional = |key: &str| -> Result<Option<&str>, String> {
            Ok(Some(text(key)?).filter(|value| *value != "-"))
        };
        let optional_count = |key: &str| {
            optional(key)?
                .map(|value| {
                    value
                        .parse::<u64>()
                        .map_err(|_| format!("{key}: {value:?} is not a count"))
                })
                .transpose()
        };
        let optional_ms = |key: &str| {
            optional(key)?
                .map(|value| {
                    value
                        .parse::<f64>()
                        .map_err(|_| format!("{key}: {value:?} is not a time"))
                })
                .transpose()
        };
        // Keys newer lines carry: absent reads as unknown.
        let newer_ms = |key: &str| match fields.get(key) {
            Some(_) => optional_ms(key),
            None => Ok(None),
        };
        let cost = |name: &str| -> Result<Option<KillCost>, String> {
            Ok(newer_ms(&format!("{name}_ms"))?.map(|mean_ms| KillCost {
                mean_ms,
                standard_error_ms: newer_ms(&format!("{name}_se_ms")).ok().flatten(),
            }))
        };
        let kills_every = match (optional_count("every_s")?, fields.get("again")) {
            (Some(k), _) => Kills::Every(k),
            (None, Some(&"1")) => Kills::NeverAgain,
            (None, _) => Kills::Never,
        };
        Ok(RowLine {
            replicas,
            kills_every,
            window: Duration::from_millis(count("window_ms")?),
            kills: count("kills")?,
            refused: count("refused")?,
            received: count("received")?,
            in_window: count("in_window")?,
            restarts: optional_count("restarts")?,
            replaced: optional_count("replaced")?,
            recovery_mean_ms: optional_ms("recovery_mean_ms")?,
            recovery_last_ms: optional_ms("recovery_last_ms")?,
            bridge_restarts: count("bridge_restarts")?,
            kill_cost: cost("kill_cost")?,
            sham_cost: cost("sham_cost")?,
            engine_recovery_us: match fields.get("engine_recovery_us") {
                Some(_) => optional_count("engine_recovery_us")?,
                None => None,
            },
        })
    }
}

impl fmt::Display for RowLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let or_dash = |value: Option<String>| value.unwrap_or_else(|| "-".to_owned());
        let error = |cost: Option<KillCost>| {
            cost.and_then(|cost| cost.standard_error_ms)
                .map(|ms| format!("{ms:.1}"))
        };
        write!(
            f,
            "{PREFIX}{} every_s={} again={} window_ms={} kills={} refused={} received={} \
             in_window={} restarts={} replaced={} recovery_mean_ms={} recovery_last_ms={} \
             bridge_restarts={} kill_cost_ms={} kill_cost_se_ms={} sham_cost_ms={} \
             sham_cost_se_ms={} engine_recovery_us={}",
            self.replicas,
            or_dash(self.kills_every.every_s().map(|k| k.to_string())),
            u8::from(self.kills_every == Kills::NeverAgain),
            self.window.as_millis(),
            self.kills,
            self.refused,
            self.received,
            self.in_window,
            or_dash(self.restarts.map(|n| n.to_string())),
            or_dash(self.replaced.map(|n| n.to_string())),
            or_dash(self.recovery_mean_ms.map(|ms| ms.to_string())),
            or_dash(self.recovery_last_ms.map(|ms| ms.to_string())),
            self.bridge_restarts,
            or_dash(self.kill_cost.map(|cost| format!("{:.1}", cost.mean_ms))),
            or_dash(error(self.kill_cost)),
            or_dash(self.sham_cost.map(|cost| format!("{:.1}", cost.mean_ms))),
            or_dash(error(self.sham_cost)),
            or_dash(self.engine_recovery_us.map(|us| us.to_string())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> RowLine {
        RowLine {
            replicas: 1,
            kills_every: Kills::Every(4),
            window: Duration::from_secs(32),
            kills: 8,
            refused: 1,
            received: 41_943_040,
            in_window: 40_894_464,
            restarts: Some(7),
            replaced: None,
            recovery_mean_ms: Some(12.5),
            recovery_last_ms: None,
            bridge_restarts: 0,
            kill_cost: Some(KillCost {
                mean_ms: 84.2,
                standard_error_ms: Some(9.1),
            }),
            sham_cost: None,
            engine_recovery_us: None,
        }
    }

    #[test]
    fn a_row_line_reads_back_as_written_with_dashes_for_what_is_unknown() {
        let line = row().to_string();
        assert_eq!(
            line,
            "restart-bench row x1 every_s=4 again=0 window_ms=32000 kills=8 refused=1 \
             received=41943040 in_window=40894464 restarts=7 replaced=- \
             recovery_mean_ms=12.5 recovery_last_ms=- bridge_restarts=0 kill_cost_ms=84.2 \
             kill_cost_se_ms=9.1 sham_cost_ms=- sham_cost_se_ms=- engine_recovery_us=-"
        );
        assert_eq!(RowLine::parse(&line), Some(Ok(row())));
        for kills_every in [Kills::Never, Kills::NeverAgain] {
            let baseline = RowLine {
                kills_every,
                kill_cost: None,
                sham_cost: Some(KillCost {
                    mean_ms: -3.5,
                    standard_error_ms: None,
                }),
                engine_recovery_us: Some(0),
                ..row()
            };
            assert_eq!(RowLine::parse(&baseline.to_string()), Some(Ok(baseline)));
        }
    }

    #[test]
    fn other_lines_are_not_rows_and_broken_rows_say_why() {
        assert_eq!(RowLine::parse("guest-test x ... ok"), None);
        let unknown_keys_skipped = format!("{} later_key=5", row());
        assert_eq!(RowLine::parse(&unknown_keys_skipped), Some(Ok(row())));
        let line = row().to_string();
        let older = &line[..line.find(" kill_cost_ms").unwrap()];
        assert_eq!(
            RowLine::parse(older),
            Some(Ok(RowLine {
                kill_cost: None,
                ..row()
            })),
            "a line from before the kill cost"
        );
        let without_error = &line[..line.find(" kill_cost_se_ms").unwrap()];
        assert_eq!(
            RowLine::parse(without_error).unwrap().unwrap().kill_cost,
            Some(KillCost {
                mean_ms: 84.2,
                standard_error_ms: None
            }),
            "a line from before the standard error"
        );
        let short = RowLine::parse("restart-bench row x1 every_s=4 window_ms=32000")
            .unwrap()
            .unwrap_err();
        assert!(short.contains("no kills"), "{short}");
        let bad = row().to_string().replace("kills=8", "kills=eight");
        let bad = RowLine::parse(&bad).unwrap().unwrap_err();
        assert!(bad.contains("\"eight\" is not a count"), "{bad}");
    }

    #[test]
    fn row_labels_name_the_group_size_and_the_interval() {
        assert_eq!(row_label(3, Kills::Never), "restart-x3-never");
        assert_eq!(row_label(3, Kills::NeverAgain), "restart-x3-never-again");
        assert_eq!(row_label(1, Kills::Every(16)), "restart-x1-every-16s");
        for kills in [Kills::Never, Kills::NeverAgain, Kills::Every(16)] {
            assert_eq!(parse_row_label(&row_label(2, kills)), Some((2, kills)));
        }
        assert_eq!(row().label(), "restart-x1-every-4s");
        for other in [
            "e1000-campaign-x1",
            "restart-x1-every-4",
            "restart-xa-never",
        ] {
            assert_eq!(parse_row_label(other), None, "{other}");
        }
    }
}
