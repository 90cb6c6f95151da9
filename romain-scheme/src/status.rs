//! The status text of a group: stable `key=value` lines, one key per line.
//!
//! ```text
//! driver=e1000
//! state=running              running | backoff | stopping | down
//! replicas=1
//! pids=4242                  comma-separated, empty when no process runs
//! policy=e1000
//! heartbeat=network.e1000:   or `off`
//! period_ms=5000
//! restarts=2                 processes started to replace failed or restarted ones
//! repetition=1               consecutive faults (drives the backoff)
//! generation=3               processes started since the group was opened, from 1
//! restart_to_serving_last_ms=12.3   the last restart, from the fault (death or missed
//!                            heartbeat) to the successor's first heartbeat answer;
//!                            `none` until one is measured (it takes a heartbeat path)
//! restart_to_serving_mean_ms=14.1   the mean over every measured restart, or `none`
//! restart_to_serving_count=2 restarts measured
//! standby_pid=4250           a driver alone with `standby`: the process waiting to
//!                            take over, or `none`
//! last_fault=signal          exit | signal | hang | killed | spawn | none
//! last_fault_detail=terminated by signal 9
//! last_fault_at=1767225600.125   Unix time, milliseconds; `none` without a fault
//! next_restart_at=none       Unix time of the pending restart while in backoff
//! ```
//!
//! Where replication is unavailable (Redox today: the engine runs on Linux only,
//! and the replicas' stubs need the kernel of `recipes/kernel`), a group opened
//! with 2 or more replicas runs the driver alone and adds
//! `replication=unavailable: N replicas asked; <why>, so the driver runs alone`,
//! the reason saying whether the kernel forwards faults.
//!
//! A replicated group (2 or more replicas) runs one process, the replication
//! engine: `pids` is the engine's, and the engine's own counters follow, each
//! `unknown` while no engine answers (none runs, or it did not answer within
//! [`ENGINE_WAIT`](crate::process::ENGINE_WAIT)):
//!
//! ```text
//! engine_backend=ptrace      how replicas stop at their events: ptrace or stub
//! events=1234                externalization events (syscalls, port accesses) handled
//! votes=1234                 events at which replicas were compared
//! divergences=1              replicas found in a state other than the majority's
//! repairs=1                  replicas brought back to the majority's state
//! replacements=0             dead replicas replaced by a copy of a healthy one
//! hangs=0                    replicas the engine's watchdog caught
//! crashes=0                  replicas that crashed or ended
//! no_majority=0              events without a majority: effect withheld, replicas restarted
//! group_restarts=0           times the engine started its replicas afresh
//! injected=1                 faults injected on command
//! requests=40                client requests the replicas answered
//! rounds=80                  rounds the replicas ran
//! quiet=20                   events that found nothing to do: clock reads, log
//!                            lines, receives that would block
//! busy_ms=12                 time spent running the group, all included
//! memory_sync_ms=0           the part of it keeping shared memory in step with the device
//! recovery_us=3000           the part of it recovering from faults: settling memory,
//!                            repairing and replacing replicas (the group's stall)
//! running_ms=7               the part of it the replicas ran to their next event, stops included
//! effects_ms=3               the part of it performing the events' effects once
//! replica_pids=4243,4244,4245    comma-separated; `-` for a place being refilled
//! engine_last_fault=replica 1 at syscall(1): diverged: ...   or `none`
//! ```
//!
//! Keys are only ever added, so readers should look keys up rather than count
//! lines. The scheme root lists one [`GroupStatus::summary`] line per group.
//!
//! **Who sees what** ([`Audience`]). Root, the supervisor's own user and the
//! group's driver (the registry's `uid`) see everything above. Anyone else sees
//! the state, the configuration and the counters, without the keys that tell
//! about processes and their faults: `pids`, `standby_pid`, `last_fault_detail`,
//! `replica_pids` and `engine_last_fault` are left out (from the summary line
//! too), since a pid is a target and a fault's detail can carry addresses,
//! register values and the reason a start failed. `last_fault` (the kind) and
//! `last_fault_at` stay.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::fault::Fault;
use crate::serving_time::ServingTimes;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Running,
    /// Waiting to restart after a fault.
    Backoff,
    /// Told to go down; waiting for its process to end.
    Stopping,
    Down,
}

impl fmt::Display for GroupState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Running => "running",
            Self::Backoff => "backoff",
            Self::Stopping => "stopping",
            Self::Down => "down",
        })
    }
}

/// Who reads a status, which decides the keys it shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Root, the supervisor's user, the group's driver: every key.
    Trusted,
    /// Anyone else: no pids and no fault details.
    Public,
}

/// A snapshot of one group, for rendering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupStatus<'a> {
    pub driver: &'a str,
    pub state: GroupState,
    pub replicas: usize,
    pub pids: Vec<u32>,
    pub policy: &'a str,
    pub heartbeat: Option<&'a str>,
    pub period_ms: u128,
    pub restarts: u64,
    pub repetition: u32,
    pub generation: u64,
    pub serving: ServingTimes,
    /// The standby's pid, if one waits.
    pub standby: Option<u32>,
    pub last_fault: Option<&'a Fault>,
    pub next_restart_at: Option<SystemTime>,
    /// The engine's counters; `None` for a group that runs the driver alone.
    pub engine: Option<EngineReport>,
    /// The replicas asked for, when the system cannot run them and the group runs
    /// the driver alone instead.
    pub unreplicated: Option<usize>,
}

/// What the engine of a replicated group said about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineReport {
    Counters(Box<EngineCounters>),
    /// No engine answered.
    Unknown,
}

/// The counters of the engine's `status` answer, by (the engine's key, the key
/// here); a status key does not contain a `-`.
const ENGINE_COUNTERS: [(&str, &str); 20] = [
    ("events", "events"),
    ("votes", "votes"),
    ("divergences", "divergences"),
    ("repairs", "repairs"),
    ("replacements", "replacements"),
    ("hangs", "hangs"),
    ("crashes", "crashes"),
    ("no-majority", "no_majority"),
    ("group-restarts", "group_restarts"),
    ("injected", "injected"),
    ("requests", "requests"),
    ("rounds", "rounds"),
    ("quiet", "quiet"),
    ("held-calls", "held_calls"),
    ("cause-reads", "cause_reads"),
    ("busy-ms", "busy_ms"),
    ("memory-sync-ms", "memory_sync_ms"),
    ("recovery-us", "recovery_us"),
    ("running-ms", "running_ms"),
    ("effects-ms", "effects_ms"),
];

/// A replica group's counters, as the engine's `status` command gives them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineCounters {
    /// In the order of [`ENGINE_COUNTERS`].
    counts: [u64; ENGINE_COUNTERS.len()],
    /// `None` for a place being refilled.
    replica_pids: Vec<Option<u32>>,
    last_fault: String,
    /// `ptrace` or `stub`.
    backend: String,
}

impl EngineCounters {
    /// Reads the `key: value` lines of the engine's answer to `status`; what
    /// the problem is when a counter is missing or not a number.
    pub fn parse(answer: &str) -> Result<Self, String> {
        let lines: Vec<(&str, &str)> = answer
            .lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(key, value)| (key.trim(), value.trim()))
            .collect();
        let value = |key: &str| {
            lines
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, value)| *value)
                .ok_or_else(|| format!("no {key:?} in the engine's status"))
        };
        let mut counts = [0; ENGINE_COUNTERS.len()];
        for (count, (key, _)) in counts.iter_mut().zip(ENGINE_COUNTERS) {
            let text = value(key)?;
            *count = text
                .parse()
                .map_err(|_| format!("{key}: {text:?} is not a count"))?;
        }
        let replica_pids = value("pids")?
            .split_whitespace()
            .map(|pid| match pid {
                "-" => Ok(None),
                pid => pid
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("pids: {pid:?} is not a pid")),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            counts,
            replica_pids,
            last_fault: value("last-fault")?.to_owned(),
            backend: value("backend")?.to_owned(),
        })
    }

    /// The counter shown as `key`.
    pub fn count(&self, key: &str) -> Option<u64> {
        ENGINE_COUNTERS
            .iter()
            .position(|(_, shown)| *shown == key)
            .map(|i| self.counts[i])
    }
}

impl fmt::Display for EngineReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, Audience::Trusted)
    }
}

impl EngineReport {
    /// The engine's lines, as `audience` may see them.
    fn write(&self, f: &mut fmt::Formatter<'_>, audience: Audience) -> fmt::Result {
        let trusted = audience == Audience::Trusted;
        match self {
            Self::Counters(counters) => {
                writeln!(f, "engine_backend={}", counters.backend)?;
                for ((_, key), count) in ENGINE_COUNTERS.iter().zip(counters.counts) {
                    writeln!(f, "{key}={count}")?;
                }
                if trusted {
                    let pids: Vec<String> = counters
                        .replica_pids
                        .iter()
                        .map(|pid| pid.map_or_else(|| "-".to_owned(), |pid| pid.to_string()))
                        .collect();
                    writeln!(f, "replica_pids={}", pids.join(","))?;
                    writeln!(f, "engine_last_fault={}", counters.last_fault)?;
                }
                Ok(())
            }
            Self::Unknown => {
                writeln!(f, "engine_backend=unknown")?;
                for (_, key) in ENGINE_COUNTERS {
                    writeln!(f, "{key}=unknown")?;
                }
                if trusted {
                    writeln!(f, "replica_pids=unknown")?;
                    writeln!(f, "engine_last_fault=unknown")?;
                }
                Ok(())
            }
        }
    }
}

impl GroupStatus<'_> {
    /// One line for the list of groups.
    pub fn summary(&self) -> String {
        self.summary_for(Audience::Trusted)
    }

    /// One line for the list of groups, as `audience` may see it.
    pub fn summary_for(&self, audience: Audience) -> String {
        let mut line = format!(
            "driver={} state={} replicas={}",
            self.driver, self.state, self.replicas
        );
        if audience == Audience::Trusted {
            line.push_str(&format!(" pids={}", Pids(&self.pids)));
        }
        line.push_str(&format!(" restarts={}", self.restarts));
        if let Some(engine) = &self.engine {
            for key in ["votes", "repairs"] {
                match engine {
                    EngineReport::Counters(counters) => {
                        let count = counters.count(key).expect("a counter's key");
                        line.push_str(&format!(" {key}={count}"));
                    }
                    EngineReport::Unknown => line.push_str(&format!(" {key}=unknown")),
                }
            }
        }
        line.push('\n');
        line
    }
}

impl fmt::Display for GroupStatus<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, Audience::Trusted)
    }
}

/// A duration in milliseconds with one decimal: restarts are tens of
/// milliseconds, and a goal of 50 ms needs more than whole ones.
pub struct Millis(pub Duration);

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.1}", self.0.as_secs_f64() * 1000.0)
    }
}

/// A group's status text as one audience sees it.
struct Shown<'a, 'b>(&'a GroupStatus<'b>, Audience);

impl fmt::Display for Shown<'_, '_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.write(f, self.1)
    }
}

impl GroupStatus<'_> {
    /// The status text, as `audience` may see it.
    pub fn text_for(&self, audience: Audience) -> String {
        Shown(self, audience).to_string()
    }

    fn write(&self, f: &mut fmt::Formatter<'_>, audience: Audience) -> fmt::Result {
        let trusted = audience == Audience::Trusted;
        writeln!(f, "driver={}", self.driver)?;
        writeln!(f, "state={}", self.state)?;
        writeln!(f, "replicas={}", self.replicas)?;
        if trusted {
            writeln!(f, "pids={}", Pids(&self.pids))?;
        }
        writeln!(f, "policy={}", self.policy)?;
        writeln!(f, "heartbeat={}", self.heartbeat.unwrap_or("off"))?;
        writeln!(f, "period_ms={}", self.period_ms)?;
        writeln!(f, "restarts={}", self.restarts)?;
        writeln!(f, "repetition={}", self.repetition)?;
        writeln!(f, "generation={}", self.generation)?;
        for (key, time) in [
            ("restart_to_serving_last_ms", self.serving.last()),
            ("restart_to_serving_mean_ms", self.serving.mean()),
        ] {
            match time {
                Some(time) => writeln!(f, "{key}={}", Millis(time))?,
                None => writeln!(f, "{key}=none")?,
            }
        }
        writeln!(f, "restart_to_serving_count={}", self.serving.count())?;
        if trusted {
            match self.standby {
                Some(pid) => writeln!(f, "standby_pid={pid}")?,
                None => writeln!(f, "standby_pid=none")?,
            }
        }
        match self.last_fault {
            Some(fault) => {
                writeln!(f, "last_fault={}", fault.reason.keyword())?;
                if trusted {
                    writeln!(f, "last_fault_detail={}", fault.reason)?;
                }
                writeln!(f, "last_fault_at={}", UnixTime(fault.at))?;
            }
            None => {
                writeln!(f, "last_fault=none")?;
                if trusted {
                    writeln!(f, "last_fault_detail=none")?;
                }
                writeln!(f, "last_fault_at=none")?;
            }
        }
        match self.next_restart_at {
            Some(at) => writeln!(f, "next_restart_at={}", UnixTime(at))?,
            None => writeln!(f, "next_restart_at=none")?,
        }
        if let Some(asked) = self.unreplicated {
            writeln!(
                f,
                "replication=unavailable: {asked} replicas asked; {}, so the driver runs alone",
                crate::platform::why_replication_is_unavailable()
            )?;
        }
        match &self.engine {
            Some(engine) => engine.write(f, audience),
            None => Ok(()),
        }
    }
}

struct Pids<'a>(&'a [u32]);

impl fmt::Display for Pids<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, pid) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{pid}")?;
        }
        Ok(())
    }
}

/// Seconds since the Unix epoch with milliseconds.
struct UnixTime(SystemTime);

impl fmt::Display for UnixTime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let since = self.0.duration_since(UNIX_EPOCH).unwrap_or_default();
        write!(f, "{}.{:03}", since.as_secs(), since.subsec_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fault::FaultReason;
    use std::time::Instant;

    fn at(millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(millis)
    }

    #[test]
    fn a_running_group_without_faults() {
        let status = GroupStatus {
            driver: "e1000",
            state: GroupState::Running,
            replicas: 1,
            pids: vec![4242],
            policy: "nic",
            heartbeat: Some("network.e1000:"),
            period_ms: 5000,
            restarts: 0,
            repetition: 0,
            generation: 1,
            serving: ServingTimes::default(),
            standby: None,
            last_fault: None,
            next_restart_at: None,
            engine: None,
            unreplicated: None,
        };
        assert_eq!(
            status.to_string(),
            "driver=e1000\nstate=running\nreplicas=1\npids=4242\npolicy=nic\nheartbeat=network.e1000:\n\
             period_ms=5000\nrestarts=0\nrepetition=0\ngeneration=1\n\
             restart_to_serving_last_ms=none\nrestart_to_serving_mean_ms=none\n\
             restart_to_serving_count=0\nstandby_pid=none\nlast_fault=none\nlast_fault_detail=none\n\
             last_fault_at=none\nnext_restart_at=none\n"
        );
        assert_eq!(
            status.summary(),
            "driver=e1000 state=running replicas=1 pids=4242 restarts=0\n"
        );
    }

    #[test]
    fn a_group_backing_off_after_faults() {
        let fault = Fault {
            reason: FaultReason::Signaled(9),
            at: at(1_767_225_600_125),
        };
        let status = GroupStatus {
            driver: "uart",
            state: GroupState::Backoff,
            replicas: 1,
            pids: vec![],
            policy: "uart",
            heartbeat: None,
            period_ms: 100,
            restarts: 3,
            repetition: 4,
            generation: 4,
            serving: {
                let start = Instant::now();
                let mut serving = ServingTimes::default();
                serving.fault(start);
                serving.serving(start + Duration::from_micros(12_340));
                serving.fault(start + Duration::from_secs(1));
                serving.serving(start + Duration::from_micros(1_020_060));
                serving
            },
            standby: Some(4250),
            last_fault: Some(&fault),
            next_restart_at: Some(at(1_767_225_600_525)),
            engine: None,
            unreplicated: None,
        };
        let text = status.to_string();
        for line in [
            "state=backoff",
            "pids=",
            "heartbeat=off",
            "restarts=3",
            "repetition=4",
            "generation=4",
            "restart_to_serving_last_ms=20.1",
            "restart_to_serving_mean_ms=16.2",
            "restart_to_serving_count=2",
            "standby_pid=4250",
            "last_fault=signal",
            "last_fault_detail=terminated by signal 9",
            "last_fault_at=1767225600.125",
            "next_restart_at=1767225600.525",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from\n{text}"
            );
        }
        assert!(text.lines().all(|l| l.split_once('=').is_some()), "{text}");
        assert_eq!(
            status.summary(),
            "driver=uart state=backoff replicas=1 pids= restarts=3\n"
        );
    }

    /// What the engine answers to `status`, after its `ok`.
    const ENGINE_ANSWER: &str = "replicas: 3\nbackend: ptrace\npids: 101 - 103\nevents: 120\nvotes: 118\n\
        divergences: 2\nrepairs: 1\nreplacements: 1\nhangs: 0\ncrashes: 1\nno-majority: 0\n\
        group-restarts: 0\ninjected: 2\nrequests: 40\nrounds: 80\nquiet: 20\nheld-calls: 5\ncause-reads: 6\nbusy-ms: 12\n\
        memory-sync-ms: 0\nrecovery-us: 3000\nrunning-ms: 7\neffects-ms: 3\nlast-fault: replica 1 at syscall(1): diverged: arg0: 0x64 vs 0x0";

    fn replicated(engine: EngineReport) -> GroupStatus<'static> {
        GroupStatus {
            driver: "testbed",
            state: GroupState::Running,
            replicas: 3,
            pids: vec![100],
            policy: "testbed",
            heartbeat: None,
            period_ms: 5000,
            restarts: 0,
            repetition: 0,
            generation: 1,
            serving: ServingTimes::default(),
            standby: None,
            last_fault: None,
            next_restart_at: None,
            engine: Some(engine),
            unreplicated: None,
        }
    }

    #[test]
    fn a_replicated_group_adds_the_engines_counters() {
        let counters = EngineCounters::parse(ENGINE_ANSWER).unwrap();
        assert_eq!(counters.count("votes"), Some(118));
        assert_eq!(counters.count("no_majority"), Some(0));
        assert_eq!(counters.count("no-majority"), None, "keys are the status's");
        let status = replicated(EngineReport::Counters(Box::new(counters)));
        let text = status.to_string();
        assert!(
            text.ends_with(
                "next_restart_at=none\nengine_backend=ptrace\nevents=120\nvotes=118\ndivergences=2\nrepairs=1\n\
                 replacements=1\nhangs=0\ncrashes=1\nno_majority=0\ngroup_restarts=0\ninjected=2\n\
                 requests=40\nrounds=80\nquiet=20\nheld_calls=5\ncause_reads=6\nbusy_ms=12\nmemory_sync_ms=0\nrecovery_us=3000\nrunning_ms=7\n\
                 effects_ms=3\nreplica_pids=101,-,103\n\
                 engine_last_fault=replica 1 at syscall(1): diverged: arg0: 0x64 vs 0x0\n"
            ),
            "{text}"
        );
        assert!(text.starts_with("driver=testbed\nstate=running\nreplicas=3\npids=100\n"));
        assert_eq!(
            status.summary(),
            "driver=testbed state=running replicas=3 pids=100 restarts=0 votes=118 repairs=1\n"
        );
    }

    #[test]
    fn an_engine_that_does_not_answer_leaves_its_counters_unknown() {
        let status = replicated(EngineReport::Unknown);
        let text = status.to_string();
        let engine_lines: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("engine_backend="))
            .collect();
        assert_eq!(engine_lines.len(), ENGINE_COUNTERS.len() + 3, "{text}");
        assert!(
            engine_lines.iter().all(|l| l.ends_with("=unknown")),
            "{text}"
        );
        assert_eq!(
            status.summary(),
            "driver=testbed state=running replicas=3 pids=100 restarts=0 votes=unknown repairs=unknown\n"
        );
    }

    #[test]
    fn answers_that_are_not_the_engines_status_are_refused() {
        let without = |key: &str| {
            ENGINE_ANSWER
                .lines()
                .filter(|l| !l.starts_with(key))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(
            EngineCounters::parse(&without("hangs")),
            Err("no \"hangs\" in the engine's status".into())
        );
        assert!(EngineCounters::parse(&without("last-fault")).is_err());
        assert!(EngineCounters::parse(&without("pids")).is_err());
        assert_eq!(
            EngineCounters::parse(&ENGINE_ANSWER.replace("votes: 118", "votes: many")),
            Err("votes: \"many\" is not a count".into())
        );
        assert_eq!(
            EngineCounters::parse(&ENGINE_ANSWER.replace("101 -", "101 x")),
            Err("pids: \"x\" is not a pid".into())
        );
        assert!(EngineCounters::parse("").is_err());
    }

    /// The parser reads what the engine writes, not a copy of its format.
    #[cfg(target_os = "linux")]
    #[test]
    fn the_engines_own_status_text_parses() {
        let stats = romain_engine::EngineStats {
            replicas: 2,
            backend: "stub".to_owned(),
            pids: vec![Some(7), None],
            events: 1,
            votes: 2,
            divergences: 3,
            repairs: 4,
            replacements: 5,
            hangs: 6,
            crashes: 7,
            no_majority: 8,
            restarts: 9,
            injected: 10,
            last_fault: None,
            requests: 11,
            rounds: 12,
            quiet: 13,
            held_calls: 14,
            cause_reads: 15,
            busy: std::time::Duration::from_millis(16),
            memory_sync: std::time::Duration::from_micros(17_999),
            recovery: std::time::Duration::from_micros(18),
            running: std::time::Duration::from_millis(19),
            effects: std::time::Duration::from_millis(20),
        };
        let counters = EngineCounters::parse(&stats.to_string()).unwrap();
        let counts: Vec<u64> = ENGINE_COUNTERS
            .iter()
            .map(|(_, key)| counters.count(key).unwrap())
            .collect();
        assert_eq!(counts, (1..=20).collect::<Vec<_>>());
        assert_eq!(counters.replica_pids, [Some(7), None]);
        assert_eq!(counters.last_fault, "none");
        assert_eq!(counters.backend, "stub");
    }

    #[test]
    fn the_public_sees_state_and_counters_but_no_pids_or_fault_details() {
        let fault = Fault {
            reason: FaultReason::Signaled(9),
            at: at(1_767_225_600_125),
        };
        let mut status = replicated(EngineReport::Counters(Box::new(
            EngineCounters::parse(ENGINE_ANSWER).unwrap(),
        )));
        status.last_fault = Some(&fault);
        let public = status.text_for(Audience::Public);
        for key in [
            "pids",
            "last_fault_detail",
            "replica_pids",
            "engine_last_fault",
        ] {
            assert!(
                !public.lines().any(|l| l.starts_with(&format!("{key}="))),
                "{key} shown:\n{public}"
            );
        }
        for line in [
            "driver=testbed",
            "state=running",
            "last_fault=signal",
            "last_fault_at=1767225600.125",
            "votes=118",
            "repairs=1",
        ] {
            assert!(
                public.lines().any(|l| l == line),
                "{line:?} missing:\n{public}"
            );
        }
        assert_eq!(status.text_for(Audience::Trusted), status.to_string());
        assert_eq!(
            status.summary_for(Audience::Public),
            "driver=testbed state=running replicas=3 restarts=0 votes=118 repairs=1\n"
        );
        let unknown = replicated(EngineReport::Unknown).text_for(Audience::Public);
        assert!(unknown.contains("\nvotes=unknown\n"), "{unknown}");
        assert!(!unknown.contains("replica_pids"), "{unknown}");
    }

    #[test]
    fn several_pids_and_the_other_states() {
        assert_eq!(Pids(&[1, 22, 333]).to_string(), "1,22,333");
        assert_eq!(GroupState::Stopping.to_string(), "stopping");
        assert_eq!(GroupState::Down.to_string(), "down");
        assert_eq!(UnixTime(at(5)).to_string(), "0.005");
    }
}
