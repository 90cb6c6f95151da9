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
//! last_fault=signal          exit | signal | hang | killed | spawn | none
//! last_fault_detail=terminated by signal 9
//! last_fault_at=1767225600.125   Unix time, milliseconds; `none` without a fault
//! next_restart_at=none       Unix time of the pending restart while in backoff
//! ```
//!
//! Keys are only ever added (the replication engine will add its counters), so
//! readers should look keys up rather than count lines. The scheme root lists
//! one [`GroupStatus::summary`] line per group.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::fault::Fault;

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
    pub last_fault: Option<&'a Fault>,
    pub next_restart_at: Option<SystemTime>,
}

impl GroupStatus<'_> {
    /// One line for the list of groups.
    pub fn summary(&self) -> String {
        format!(
            "driver={} state={} replicas={} pids={} restarts={}\n",
            self.driver,
            self.state,
            self.replicas,
            Pids(&self.pids),
            self.restarts
        )
    }
}

impl fmt::Display for GroupStatus<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "driver={}", self.driver)?;
        writeln!(f, "state={}", self.state)?;
        writeln!(f, "replicas={}", self.replicas)?;
        writeln!(f, "pids={}", Pids(&self.pids))?;
        writeln!(f, "policy={}", self.policy)?;
        writeln!(f, "heartbeat={}", self.heartbeat.unwrap_or("off"))?;
        writeln!(f, "period_ms={}", self.period_ms)?;
        writeln!(f, "restarts={}", self.restarts)?;
        writeln!(f, "repetition={}", self.repetition)?;
        match self.last_fault {
            Some(fault) => {
                writeln!(f, "last_fault={}", fault.reason.keyword())?;
                writeln!(f, "last_fault_detail={}", fault.reason)?;
                writeln!(f, "last_fault_at={}", UnixTime(fault.at))?;
            }
            None => {
                writeln!(f, "last_fault=none")?;
                writeln!(f, "last_fault_detail=none")?;
                writeln!(f, "last_fault_at=none")?;
            }
        }
        match self.next_restart_at {
            Some(at) => writeln!(f, "next_restart_at={}", UnixTime(at)),
            None => writeln!(f, "next_restart_at=none"),
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
    use std::time::Duration;

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
            last_fault: None,
            next_restart_at: None,
        };
        assert_eq!(
            status.to_string(),
            "driver=e1000\nstate=running\nreplicas=1\npids=4242\npolicy=nic\nheartbeat=network.e1000:\n\
             period_ms=5000\nrestarts=0\nrepetition=0\nlast_fault=none\nlast_fault_detail=none\n\
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
            last_fault: Some(&fault),
            next_restart_at: Some(at(1_767_225_600_525)),
        };
        let text = status.to_string();
        for line in [
            "state=backoff",
            "pids=",
            "heartbeat=off",
            "restarts=3",
            "repetition=4",
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

    #[test]
    fn several_pids_and_the_other_states() {
        assert_eq!(Pids(&[1, 22, 333]).to_string(), "1,22,333");
        assert_eq!(GroupState::Stopping.to_string(), "stopping");
        assert_eq!(GroupState::Down.to_string(), "down");
        assert_eq!(UnixTime(at(5)).to_string(), "0.005");
    }
}
