//! Why a driver process had to be replaced.

use std::fmt;
use std::process::ExitStatus;
use std::time::SystemTime;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FaultReason {
    /// The process exited by itself. On Redox a driver killed by a CPU exception
    /// also ends up here, with status 1.
    Exited(i32),
    Signaled(i32),
    /// No heartbeat reply for this many periods; the supervisor killed it.
    Hung {
        missed_periods: u32,
    },
    /// Killed by a `kill` command.
    Killed,
    /// The process could not be started at all.
    SpawnFailed(String),
}

impl FaultReason {
    pub fn from_exit(status: ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => Self::Exited(code),
            (None, Some(signal)) => Self::Signaled(signal),
            // wait() reports only exits and deaths by signal.
            (None, None) => Self::Exited(status.into_raw()),
        }
    }

    /// One word for scripts (the recovery script's `reason` argument, the
    /// status's `last_fault`).
    pub fn keyword(&self) -> &'static str {
        match self {
            Self::Exited(_) => "exit",
            Self::Signaled(_) => "signal",
            Self::Hung { .. } => "hang",
            Self::Killed => "killed",
            Self::SpawnFailed(_) => "spawn",
        }
    }
}

impl fmt::Display for FaultReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exited(code) => write!(f, "exited with status {code}"),
            Self::Signaled(signal) => write!(f, "terminated by signal {signal}"),
            Self::Hung { missed_periods } => {
                write!(f, "hung: no heartbeat reply for {missed_periods} periods")
            }
            Self::Killed => f.write_str("killed by command"),
            Self::SpawnFailed(error) => write!(f, "could not be started: {error}"),
        }
    }
}

/// A fault and when it was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub reason: FaultReason,
    pub at: SystemTime,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn exit_statuses() {
        // Raw wait statuses: exit code in the high byte, signal in the low bits.
        assert_eq!(
            FaultReason::from_exit(ExitStatus::from_raw(3 << 8)),
            FaultReason::Exited(3)
        );
        assert_eq!(
            FaultReason::from_exit(ExitStatus::from_raw(9)),
            FaultReason::Signaled(9)
        );
        assert_eq!(
            FaultReason::from_exit(ExitStatus::from_raw(0)),
            FaultReason::Exited(0)
        );
    }

    #[test]
    fn keywords_and_details() {
        let cases = [
            (FaultReason::Exited(3), "exit", "exited with status 3"),
            (
                FaultReason::Signaled(11),
                "signal",
                "terminated by signal 11",
            ),
            (
                FaultReason::Hung { missed_periods: 2 },
                "hang",
                "hung: no heartbeat reply for 2 periods",
            ),
            (FaultReason::Killed, "killed", "killed by command"),
            (
                FaultReason::SpawnFailed("No such file".into()),
                "spawn",
                "could not be started: No such file",
            ),
        ];
        for (reason, keyword, detail) in cases {
            assert_eq!(reason.keyword(), keyword);
            assert_eq!(reason.to_string(), detail);
        }
    }
}
