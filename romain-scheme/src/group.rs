//! A supervised group: one driver's processes, restarted when they fail.
//!
//! Until the replication engine exists a group runs one process (replica 0).
//! The group is polled every round: it reaps its process without waiting, runs
//! the heartbeat, and restarts on the backoff schedule.

use std::fmt;
use std::io;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant, SystemTime};

use syscall::error::{EINVAL, EIO, ESRCH};

use crate::backoff::{restart_delay, stable_after};
use crate::command::Command;
use crate::fault::{Fault, FaultReason};
use crate::heartbeat::ProbeReply;
use crate::recovery::RecoveryScript;
use crate::registry::DriverSpec;
use crate::replica::{KillCause, Replica};
use crate::status::{GroupState, GroupStatus};

/// How many processes a group runs today.
const REPLICAS: usize = 1;

#[derive(Debug)]
enum State {
    Up(Replica),
    Backoff { due: Instant },
    Down,
}

#[derive(Debug)]
pub struct Group {
    spec: DriverSpec,
    state: State,
    restarts: u64,
    repetition: u32,
    last_fault: Option<Fault>,
    recovery: RecoveryScript,
}

/// A command the group cannot carry out.
#[derive(Debug)]
pub enum ControlError {
    NoSuchReplica {
        index: usize,
    },
    /// No process to act on in this state.
    NoProcess(GroupState),
    Signal(io::Error),
}

impl ControlError {
    pub fn errno(&self) -> i32 {
        match self {
            Self::NoSuchReplica { .. } => EINVAL,
            Self::NoProcess(_) => ESRCH,
            Self::Signal(_) => EIO,
        }
    }
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchReplica { index } => {
                write!(f, "no replica {index}: the group runs {REPLICAS}")
            }
            Self::NoProcess(state) => write!(f, "no process to act on while the group is {state}"),
            Self::Signal(e) => write!(f, "cannot signal the process: {e}"),
        }
    }
}

impl Group {
    /// Starts a group of `spec`'s driver.
    pub fn start(spec: DriverSpec, now: Instant) -> Self {
        let mut group = Self {
            spec,
            state: State::Down,
            restarts: 0,
            repetition: 0,
            last_fault: None,
            recovery: RecoveryScript::default(),
        };
        group.launch(now);
        group
    }

    /// Brings a group that is down, or going down, back up. A group that comes
    /// back from down starts afresh, its counters cleared.
    pub fn up(&mut self, now: Instant) {
        match &mut self.state {
            State::Down => {
                self.restarts = 0;
                self.repetition = 0;
                self.last_fault = None;
                self.launch(now);
            }
            State::Up(replica) => replica.revive(),
            State::Backoff { .. } => {}
        }
    }

    pub fn replicas(&self) -> usize {
        REPLICAS
    }

    pub fn state(&self) -> GroupState {
        match &self.state {
            State::Up(replica) if replica.is_going_down() => GroupState::Stopping,
            State::Up(_) => GroupState::Running,
            State::Backoff { .. } => GroupState::Backoff,
            State::Down => GroupState::Down,
        }
    }

    pub fn status(&self) -> GroupStatus<'_> {
        let next_restart_at = match self.state {
            State::Backoff { due } => {
                Some(SystemTime::now() + due.saturating_duration_since(Instant::now()))
            }
            _ => None,
        };
        GroupStatus {
            driver: &self.spec.name,
            state: self.state(),
            replicas: REPLICAS,
            pids: match &self.state {
                State::Up(replica) => vec![replica.pid()],
                _ => Vec::new(),
            },
            policy: &self.spec.policy,
            heartbeat: self.spec.heartbeat.as_deref(),
            period_ms: self.spec.period.as_millis(),
            restarts: self.restarts,
            repetition: self.repetition,
            last_fault: self.last_fault.as_ref(),
            next_restart_at,
        }
    }

    /// One round of supervision: reap, check the heartbeat, restart when due.
    pub fn poll(&mut self, now: Instant, probes: &Sender<ProbeReply>) {
        self.recovery.reap();
        self.poll_replica(now, probes);
        if let State::Backoff { due } = self.state {
            if now >= due {
                self.restarts += 1;
                self.launch(now);
            }
        }
    }

    /// Hands a heartbeat reply to the replica it is for; whether it was this
    /// group's.
    pub fn record_probe(&mut self, reply: &ProbeReply) -> bool {
        match &mut self.state {
            State::Up(replica) if replica.id() == reply.replica => {
                replica.record_probe(reply);
                true
            }
            _ => false,
        }
    }

    pub fn command(&mut self, command: Command, now: Instant) -> Result<(), ControlError> {
        match command {
            Command::Kill(index) | Command::Stop(index) if index >= REPLICAS => {
                Err(ControlError::NoSuchReplica { index })
            }
            Command::Kill(_) => {
                self.live_replica()?
                    .kill(KillCause::Fault(FaultReason::Killed));
                Ok(())
            }
            Command::Stop(_) => self.live_replica()?.stop().map_err(ControlError::Signal),
            Command::Restart => match &mut self.state {
                State::Up(replica) if !replica.is_going_down() => {
                    replica.kill(KillCause::Restart);
                    Ok(())
                }
                State::Backoff { due } => {
                    *due = now;
                    Ok(())
                }
                _ => Err(ControlError::NoProcess(self.state())),
            },
            Command::Down => {
                match &mut self.state {
                    State::Up(replica) => replica.kill(KillCause::Down),
                    State::Backoff { .. } => {
                        log::info!("{}: down", self.spec.name);
                        self.state = State::Down;
                    }
                    State::Down => {}
                }
                Ok(())
            }
        }
    }

    fn live_replica(&mut self) -> Result<&mut Replica, ControlError> {
        let state = self.state();
        match &mut self.state {
            State::Up(replica) if !replica.is_going_down() => Ok(replica),
            _ => Err(ControlError::NoProcess(state)),
        }
    }

    fn poll_replica(&mut self, now: Instant, probes: &Sender<ProbeReply>) {
        let State::Up(replica) = &mut self.state else {
            return;
        };
        let status = match replica.try_reap() {
            Ok(Some(status)) => status,
            Ok(None) => {
                if let Some(missed_periods) = replica.check_heartbeat(now, probes) {
                    log::warn!(
                        "{}: pid {} gives no heartbeat reply for {missed_periods} periods; killing it",
                        self.spec.name,
                        replica.pid()
                    );
                    replica.kill(KillCause::Fault(FaultReason::Hung { missed_periods }));
                }
                return;
            }
            Err(e) => {
                log::error!(
                    "{}: cannot wait for pid {}: {e}",
                    self.spec.name,
                    replica.pid()
                );
                return;
            }
        };
        let pid = replica.pid();
        let ran_for = now.saturating_duration_since(replica.started());
        match replica.take_kill_cause() {
            Some(KillCause::Down) => {
                log::info!("{}: pid {pid} ended; down", self.spec.name);
                self.state = State::Down;
            }
            Some(KillCause::Restart) => {
                log::info!("{}: pid {pid} ended; restarting on command", self.spec.name);
                self.state = State::Backoff { due: now };
            }
            Some(KillCause::Fault(reason)) => self.fault(Some(pid), reason, ran_for, now),
            None => self.fault(Some(pid), FaultReason::from_exit(status), ran_for, now),
        }
    }

    /// Records a fault and schedules the restart.
    fn fault(&mut self, pid: Option<u32>, reason: FaultReason, ran_for: Duration, now: Instant) {
        let spec = &self.spec;
        if ran_for >= stable_after(spec.period, spec.backoff_cap_periods) {
            self.repetition = 0;
        }
        self.repetition = self.repetition.saturating_add(1);
        let delay = restart_delay(self.repetition, spec.period, spec.backoff_cap_periods);
        let process = pid.map_or_else(String::new, |pid| format!("pid {pid} "));
        log::warn!(
            "{}: {process}{reason}; restart in {} ms (fault {} in a row)",
            spec.name,
            delay.as_millis(),
            self.repetition
        );
        if let Some(script) = &spec.recovery_script {
            self.recovery
                .run(script, &spec.name, reason.keyword(), self.repetition);
        }
        self.last_fault = Some(Fault {
            reason,
            at: SystemTime::now(),
        });
        self.state = State::Backoff { due: now + delay };
    }

    /// Starts the process; a failure to start is a fault like any other.
    fn launch(&mut self, now: Instant) {
        match Replica::spawn(&self.spec, 0, now) {
            Ok(replica) => {
                log::info!("{}: started pid {}", self.spec.name, replica.pid());
                self.state = State::Up(replica);
            }
            Err(e) => {
                let reason =
                    FaultReason::SpawnFailed(format!("{}: {e}", self.spec.binary.display()));
                self.fault(None, reason, Duration::ZERO, now);
            }
        }
    }
}
