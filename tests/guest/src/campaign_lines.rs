//! The console lines of a fault campaign against the replicated e1000 driver in the
//! guest, which the host reads as they come (to tell its TCP load which fault it
//! runs under) and after the boot (to classify each fault).
//!
//! The guest announces the echo service with the TCP tests' serving line (label
//! `e1000-campaign-x<N>`), then for every fault, one at a time:
//!
//! ```text
//! romain-campaign fault x3 17
//! romain-campaign trial x3 17 heap 1 served serving 183042 0/0/0/0/0/0 1/1/0/0/0/0 flip 1 mem 0x55d0 3
//! ```
//!
//! The first line comes just before the fault goes in: from then on, what the host's
//! load sees is this fault's. The second, once the fault's window is over, holds in
//! order: the group size, the fault's index, its kind ([`FaultKind::name`]), the
//! replica, whether the load went on (`served`) or stopped (`stalled`), what became
//! of the group ([`GroupFate`]), microseconds from the injection to the end of the
//! window, the engine's [`Counters`] before and after (divergences, repairs,
//! replacements, no majority, group restarts, and the supervisor's restarts of the
//! engine, `/`-separated), and last the engine command that injected the fault,
//! which may hold spaces. After the last fault: `romain-campaign done x3`.

use std::fmt;
use std::str::FromStr;

use romain_campaign::outcome::Counters;
use romain_campaign::FaultKind;

const PREFIX: &str = "romain-campaign";

/// The echo service's label while a campaign runs at `replicas`.
pub fn service_label(replicas: usize) -> String {
    format!("e1000-campaign-x{replicas}")
}

/// The group size a [`service_label`] names.
pub fn parse_service_label(label: &str) -> Option<usize> {
    label.strip_prefix("e1000-campaign-x")?.parse().ok()
}

/// Announces that fault `index` of the campaign at `replicas` goes in now.
pub fn fault_line(replicas: usize, index: usize) -> String {
    format!("{PREFIX} fault x{replicas} {index}")
}

/// The group size and index of a [`fault_line`].
pub fn parse_fault_line(line: &str) -> Option<(usize, usize)> {
    let rest = line
        .trim_end()
        .strip_prefix(PREFIX)?
        .strip_prefix(" fault x")?;
    let (replicas, index) = rest.split_once(' ')?;
    Some((replicas.parse().ok()?, index.parse().ok()?))
}

/// Says the campaign at `replicas` injected its last fault.
pub fn done_line(replicas: usize) -> String {
    format!("{PREFIX} done x{replicas}")
}

/// The group size of a [`done_line`].
pub fn parse_done_line(line: &str) -> Option<usize> {
    line.trim_end()
        .strip_prefix(PREFIX)?
        .strip_prefix(" done x")?
        .parse()
        .ok()
}

/// What became of the group during a fault's window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupFate {
    /// Its engine served throughout (replicas may have been repaired or replaced).
    Serving,
    /// The engine process ended and `romain:` started it again: at N >= 2 the
    /// engine failing.
    EngineRestarted,
    /// The lone replica (N = 1) died, its engine with it, and the campaign started
    /// it again: restart-only supervision.
    LoneReplicaRestarted,
}

impl GroupFate {
    fn name(self) -> &'static str {
        match self {
            GroupFate::Serving => "serving",
            GroupFate::EngineRestarted => "engine-restarted",
            GroupFate::LoneReplicaRestarted => "lone-replica-restarted",
        }
    }
}

impl FromStr for GroupFate {
    type Err = String;

    fn from_str(word: &str) -> Result<Self, String> {
        [
            GroupFate::Serving,
            GroupFate::EngineRestarted,
            GroupFate::LoneReplicaRestarted,
        ]
        .into_iter()
        .find(|fate| fate.name() == word)
        .ok_or_else(|| format!("{word:?} is not a group fate"))
    }
}

/// The engine's counters as a trial line carries them, with the supervisor's
/// restarts of the engine process last.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrialCounters {
    pub engine: Counters,
    pub engine_restarts: u64,
}

impl fmt::Display for TrialCounters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.engine;
        write!(
            f,
            "{}/{}/{}/{}/{}/{}",
            c.divergences,
            c.repairs,
            c.replacements,
            c.no_majority,
            c.restarts,
            self.engine_restarts
        )
    }
}

impl FromStr for TrialCounters {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let numbers: Vec<u64> = text
            .split('/')
            .map(|n| {
                n.parse()
                    .map_err(|_| format!("{text:?}: {n:?} is not a count"))
            })
            .collect::<Result<_, _>>()?;
        let [divergences, repairs, replacements, no_majority, restarts, engine_restarts] =
            numbers[..]
        else {
            return Err(format!("{text:?} does not hold six counts"));
        };
        Ok(TrialCounters {
            engine: Counters {
                divergences,
                repairs,
                replacements,
                no_majority,
                restarts,
            },
            engine_restarts,
        })
    }
}

/// One fault as the guest saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrialLine {
    pub replicas: usize,
    pub index: usize,
    pub kind: FaultKind,
    pub replica: usize,
    /// The host's load went on after the fault (round trips were echoed).
    pub served: bool,
    pub fate: GroupFate,
    pub micros: u128,
    pub before: TrialCounters,
    pub after: TrialCounters,
    pub command: String,
}

impl fmt::Display for TrialLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX} trial x{} {} {} {} {} {} {} {} {} {}",
            self.replicas,
            self.index,
            self.kind,
            self.replica,
            if self.served { "served" } else { "stalled" },
            self.fate.name(),
            self.micros,
            self.before,
            self.after,
            self.command
        )
    }
}

impl TrialLine {
    /// The trial a console line holds; `None` for any other line, an error for a
    /// trial line that does not parse.
    pub fn parse(line: &str) -> Option<Result<TrialLine, String>> {
        let rest = line
            .trim_end()
            .strip_prefix(PREFIX)?
            .strip_prefix(" trial x")?;
        Some(Self::parse_fields(rest).map_err(|why| format!("{line:?}: {why}")))
    }

    fn parse_fields(rest: &str) -> Result<TrialLine, String> {
        let mut words = rest.splitn(10, ' ');
        let mut next = |what: &str| words.next().ok_or(format!("no {what}"));
        let number = |word: &str| word.parse::<u64>().map_err(|_| format!("{word:?}"));
        let replicas = number(next("group size")?)? as usize;
        let index = number(next("index")?)? as usize;
        let kind = next("kind")?;
        let kind = FaultKind::from_name(kind).ok_or(format!("{kind:?} is not a fault kind"))?;
        let replica = number(next("replica")?)? as usize;
        let served = match next("load")? {
            "served" => true,
            "stalled" => false,
            other => return Err(format!("{other:?} is neither served nor stalled")),
        };
        let fate = next("fate")?.parse()?;
        let micros = u128::from(number(next("time")?)?);
        let before = next("counters before")?.parse()?;
        let after = next("counters after")?.parse()?;
        let command = next("command")?.to_owned();
        Ok(TrialLine {
            replicas,
            index,
            kind,
            replica,
            served,
            fate,
            micros,
            before,
            after,
            command,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trial_line_reads_back_as_written_its_command_spaces_and_all() {
        let trial = TrialLine {
            replicas: 3,
            index: 17,
            kind: FaultKind::Dma,
            replica: 1,
            served: false,
            fate: GroupFate::EngineRestarted,
            micros: 183_042,
            before: TrialCounters::default(),
            after: TrialCounters {
                engine: Counters {
                    divergences: 1,
                    repairs: 2,
                    replacements: 3,
                    no_majority: 4,
                    restarts: 5,
                },
                engine_restarts: 6,
            },
            command: "flip 1 mem 0x610000000040 3".into(),
        };
        let line = trial.to_string();
        assert_eq!(
            line,
            "romain-campaign trial x3 17 dma 1 stalled engine-restarted 183042 \
             0/0/0/0/0/0 1/2/3/4/5/6 flip 1 mem 0x610000000040 3"
        );
        assert_eq!(TrialLine::parse(&line), Some(Ok(trial)));
    }

    #[test]
    fn other_lines_are_not_trials_and_broken_trials_say_why() {
        assert_eq!(TrialLine::parse("guest-test x ... ok"), None);
        let broken = TrialLine::parse("romain-campaign trial x3 17 cosmic 1 served serving 5")
            .unwrap()
            .unwrap_err();
        assert!(
            broken.contains("\"cosmic\" is not a fault kind"),
            "{broken}"
        );
        let short = TrialLine::parse(
            "romain-campaign trial x3 17 heap 1 served serving 5 0/0/0/0/0/0 0/0/0",
        )
        .unwrap()
        .unwrap_err();
        assert!(short.contains("six counts"), "{short}");
    }

    #[test]
    fn fault_done_and_label_lines_name_their_group_size() {
        assert_eq!(parse_fault_line(&fault_line(2, 9041)), Some((2, 9041)));
        assert_eq!(parse_fault_line("romain-campaign fault x2"), None);
        assert_eq!(parse_done_line(&done_line(3)), Some(3));
        assert_eq!(parse_done_line(&fault_line(3, 1)), None);
        assert_eq!(parse_service_label(&service_label(1)), Some(1));
        assert_eq!(parse_service_label("e1000-replicated"), None);
    }
}
