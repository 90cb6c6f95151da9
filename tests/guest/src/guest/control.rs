//! The control socket of `romain replicate`, as the `romain:` daemon holds it: one
//! command per message (`status`, or a fault to inject), one answer per message,
//! `ok ...` or `error ...`; and the engine's counters out of the `status` answer, or
//! out of a `romain:` group's status, which passes them on.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::socket::{
    recv, send, setsockopt, socketpair, sockopt, AddressFamily, MsgFlags, SockFlag, SockType,
};
use nix::sys::time::TimeVal;

use crate::guest::faults::FaultTarget;
use crate::guest::report::StepResult;

/// How long the engine may take to answer; it answers between two requests it
/// serves, which under TCG and fault injection can be a watchdog period apart.
const ANSWER_TIMEOUT_SECS: i64 = 10;
/// Longer than any answer, the status included.
const MAX_ANSWER_LEN: usize = 4096;

/// Our end of the control socket.
pub struct Control {
    socket: OwnedFd,
}

impl Control {
    /// A connected pair: ours, and the end to hand to `romain replicate`.
    pub fn pair() -> StepResult<(Control, OwnedFd)> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        let timeout = TimeVal::new(ANSWER_TIMEOUT_SECS, 0);
        setsockopt(&ours, sockopt::ReceiveTimeout, &timeout)?;
        Ok((Control { socket: ours }, theirs))
    }

    /// Sends `command` and returns the engine's answer, which must start with `ok`.
    pub fn command(&self, command: &str) -> StepResult<String> {
        let fd = self.socket.as_raw_fd();
        send(fd, command.as_bytes(), MsgFlags::MSG_NOSIGNAL)?;
        let mut answer = vec![0; MAX_ANSWER_LEN];
        let len = recv(fd, &mut answer, MsgFlags::empty())
            .map_err(|errno| format!("no answer to {command:?}: {errno}"))?;
        if len == 0 {
            return Err(format!("romain closed the control socket at {command:?}").into());
        }
        let answer = String::from_utf8_lossy(&answer[..len]).into_owned();
        match answer.starts_with("ok") {
            true => Ok(answer),
            false => Err(format!("{command:?} refused: {}", answer.trim_end()).into()),
        }
    }

    pub fn status(&self) -> StepResult<EngineStatus> {
        EngineStatus::parse(&self.command("status")?)
    }
}

impl FaultTarget for Control {
    fn inject(&self, fault: &str) -> StepResult<()> {
        self.command(fault).map(drop)
    }
}

/// Lets `command`'s process inherit `engine_end` (the end [`Control::pair`] hands
/// out) and returns the descriptor number to pass as its `--control-fd`. The command
/// owns that end, so this process's copy closes with the command and our end sees
/// the engine going away.
pub fn hand_over(command: &mut Command, engine_end: OwnedFd) -> RawFd {
    let number = engine_end.as_raw_fd();
    // SAFETY: between fork and exec only fcntl runs, which is async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            fcntl(&engine_end, FcntlArg::F_SETFD(FdFlag::empty()))?;
            Ok(())
        });
    }
    number
}

/// The `key: value` lines of the engine's `status` answer, or the `key=value` lines
/// of a `romain:` group's status, whose keys spell the engine's counters with `_`
/// for `-` (`no_majority`) and whose `pids` is the engine's. The engine's keys are
/// kept in the group's spelling, so both read alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineStatus(BTreeMap<String, String>);

impl EngineStatus {
    pub fn parse(answer: &str) -> StepResult<EngineStatus> {
        let mut lines = answer.lines();
        if lines.next() != Some("ok") {
            return Err(format!("not a status answer: {answer:?}").into());
        }
        let fields = lines
            .map(|line| {
                line.split_once(": ")
                    .map(|(key, value)| (key.replace('-', "_"), value.to_owned()))
                    .ok_or_else(|| format!("status line without a value: {line:?}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(EngineStatus(fields))
    }

    /// Reads a `romain:` group's status; its counters are `unknown` while no
    /// engine answers.
    pub fn from_group_status(text: &str) -> StepResult<EngineStatus> {
        let fields = text
            .lines()
            .map(|line| {
                line.split_once('=')
                    .map(|(key, value)| (key.to_owned(), value.to_owned()))
                    .ok_or_else(|| format!("status line without a value: {line:?}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(EngineStatus(fields))
    }

    pub fn value(&self, key: &str) -> StepResult<&str> {
        match self.0.get(key) {
            Some(value) => Ok(value),
            None => Err(format!("no {key} in the engine's status").into()),
        }
    }

    pub fn counter(&self, key: &str) -> StepResult<u64> {
        let value = self.value(key)?;
        Ok(value
            .parse()
            .map_err(|_| format!("status {key}: {value:?} is not a count"))?)
    }

    /// Each replica's pid, `None` for a place being refilled: a group's
    /// `replica_pids` (comma-separated), or the engine's own `pids`.
    pub fn replica_pids(&self) -> Vec<Option<u32>> {
        let pids = match self.0.get("replica_pids") {
            Some(pids) => pids.split(',').collect::<Vec<_>>(),
            None => self
                .0
                .get("pids")
                .map_or_else(Vec::new, |pids| pids.split_whitespace().collect()),
        };
        pids.into_iter().map(|pid| pid.parse().ok()).collect()
    }

    /// Fails unless every replica's place holds a process.
    pub fn every_place_filled(&self) -> StepResult<()> {
        let pids = self.value("pids")?;
        let places = pids.split_whitespace().count() as u64;
        if places != self.counter("replicas")? || pids.contains('-') {
            return Err(format!("a replica's place is empty: pids {pids}").into());
        }
        Ok(())
    }

    /// The counters, `key value` in the engine's order, for a report line.
    pub fn counters(&self, keys: &[&str]) -> String {
        let shown: Vec<String> = keys
            .iter()
            .map(|key| format!("{key} {}", self.value(key).unwrap_or("?")))
            .collect();
        shown.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_pids_come_from_a_group_or_from_the_engine_itself() {
        let group = EngineStatus::from_group_status("pids=9\nreplica_pids=4,-,6\n").unwrap();
        assert_eq!(group.replica_pids(), [Some(4), None, Some(6)]);
        let engine = EngineStatus::parse("ok\npids: 7 8\nreplicas: 2\n").unwrap();
        assert_eq!(engine.replica_pids(), [Some(7), Some(8)]);
        assert!(EngineStatus::parse("ok\n")
            .unwrap()
            .replica_pids()
            .is_empty());
    }

    const STATUS: &str = "ok\nreplicas: 3\npids: 41 42 57\nevents: 1200\nvotes: 1200\n\
                          divergences: 4\nrepairs: 5\nlast-fault: replica 1 at out 0x2f8: hung\n";

    #[test]
    fn status_answer_gives_counters_and_values() {
        let status = EngineStatus::parse(STATUS).unwrap();
        assert_eq!(status.counter("events").unwrap(), 1200);
        assert_eq!(
            status.value("last_fault").unwrap(),
            "replica 1 at out 0x2f8: hung"
        );
        assert!(status.every_place_filled().is_ok());
        assert_eq!(
            status.counters(&["repairs", "hangs"]),
            "repairs 5, hangs ?",
            "a missing counter shows as unknown"
        );
        assert!(status.counter("hangs").is_err());
        assert!(status.counter("last_fault").is_err());
    }

    #[test]
    fn a_romain_group_status_gives_the_engine_counters() {
        let text = "driver=e1000\nstate=running\npids=40\nlast_fault=none\nevents=1200\n\
                    no_majority=0\nreplica_pids=41,42,57\nengine_last_fault=replica 1: a=b\n";
        let status = EngineStatus::from_group_status(text).unwrap();
        assert_eq!(status.counter("events").unwrap(), 1200);
        assert_eq!(status.counter("no_majority").unwrap(), 0);
        assert_eq!(status.value("state").unwrap(), "running");
        assert_eq!(
            status.value("engine_last_fault").unwrap(),
            "replica 1: a=b",
            "a value may hold `=`"
        );
        assert!(EngineStatus::from_group_status("state running\n").is_err());
        let unknown = EngineStatus::from_group_status("events=unknown\n").unwrap();
        assert!(unknown.counter("events").is_err());
    }

    #[test]
    fn status_answer_must_say_ok_and_hold_key_value_lines() {
        assert!(EngineStatus::parse("error no group").is_err());
        assert!(EngineStatus::parse("ok\nreplicas 3\n").is_err());
        assert!(EngineStatus::parse("ok\n").is_ok());
    }

    #[test]
    fn an_empty_place_or_a_missing_replica_shows() {
        let emptied = STATUS.replace("pids: 41 42 57", "pids: 41 - 57");
        let status = EngineStatus::parse(&emptied).unwrap();
        assert!(status.every_place_filled().is_err());
        let short = STATUS.replace("pids: 41 42 57", "pids: 41 42");
        assert!(EngineStatus::parse(&short)
            .unwrap()
            .every_place_filled()
            .is_err());
    }

    #[test]
    fn commands_go_out_as_one_message_and_refusals_fail() {
        let (control, engine) = Control::pair().unwrap();
        let engine = std::thread::spawn(move || {
            let mut command = [0; 64];
            let mut seen = Vec::new();
            for answer in ["ok flip 1 reg rax 3", "error no replica 7"] {
                let len = recv(engine.as_raw_fd(), &mut command, MsgFlags::empty()).unwrap();
                seen.push(String::from_utf8_lossy(&command[..len]).into_owned());
                send(engine.as_raw_fd(), answer.as_bytes(), MsgFlags::empty()).unwrap();
            }
            seen
        });
        assert_eq!(
            control.command("flip 1 reg rax 3").unwrap(),
            "ok flip 1 reg rax 3"
        );
        let refused = control.command("kill 7").unwrap_err().to_string();
        assert!(refused.contains("no replica 7"), "{refused}");
        assert_eq!(engine.join().unwrap(), ["flip 1 reg rax 3", "kill 7"]);
        // The engine's end is gone: an answer can never come.
        assert!(control.command("status").is_err());
    }

    #[test]
    fn the_handed_over_end_survives_exec_and_only_there() {
        let (control, engine) = Control::pair().unwrap();
        let mut child = Command::new("sh");
        let number = hand_over(&mut child, engine);
        // The child answers one command on the inherited descriptor; without the
        // hand-over, close-on-exec would leave it nothing to write to.
        child.args(["-c", &format!("printf 'ok from child' >&{number}")]);
        assert!(child.status().unwrap().success());
        assert_eq!(control.command("status").unwrap(), "ok from child");
        drop(child);
        assert!(
            control.command("status").is_err(),
            "our copy of the engine's end closed with the command"
        );
    }
}
