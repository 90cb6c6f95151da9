//! A supervised group: one driver's process, restarted when it fails.
//!
//! The process is the driver itself for a group of one replica, and the
//! replication engine (`romain replicate`, see [`Program`]) for a group of two
//! or more: the engine runs the replicas, masks or repairs their faults and
//! replaces the dead ones; the group supervises the engine like any driver. The
//! group is polled every round: it reaps its process without waiting, runs the
//! heartbeat, and restarts on the backoff schedule.
//!
//! From its first start until it is down, the group holds the scheme of its
//! heartbeat path and hands it to each process: a client that opens during a
//! restart waits for the successor rather than failing (see
//! [`scheme_runtime::SchemeListener`]).

use std::fmt;
use std::io;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant, SystemTime};

use syscall::error::{EINVAL, EIO, EOPNOTSUPP, ESRCH, ETIMEDOUT};

use crate::backoff::{restart_delay, stable_after};
use crate::command::Command;
use crate::fault::{Fault, FaultReason};
use crate::heartbeat::ProbeReply;
use crate::platform::{self, HeldScheme};
use crate::process::{EngineError, GroupProcess, KillCause, Program, ENGINE_WAIT};
use crate::recovery::RecoveryScript;
use crate::registry::DriverSpec;
use crate::serving_time::ServingTimes;
use crate::status::{EngineCounters, EngineReport, GroupState, GroupStatus, Millis};

#[derive(Debug)]
enum State {
    Up(GroupProcess),
    Backoff { due: Instant },
    Down,
}

#[derive(Debug)]
pub struct Group {
    spec: DriverSpec,
    program: Program,
    /// The replicas it was opened with (see [`Group::asked_replicas`]).
    asked: usize,
    state: State,
    restarts: u64,
    repetition: u32,
    last_fault: Option<Fault>,
    recovery: RecoveryScript,
    /// Processes started since the group was opened, counted from 1.
    generation: u64,
    serving: ServingTimes,
    /// A driver alone with `standby` in its registry entry: the next process,
    /// started and waiting to take over.
    standby: Option<GroupProcess>,
    /// No standby is started before this (one that died waits a period).
    standby_after: Instant,
    /// The scheme the heartbeat probes, bound here and handed to every process
    /// the group starts, from the group's first start until it is down.
    scheme: Option<HeldScheme>,
}

/// A command the group cannot carry out.
#[derive(Debug)]
pub enum ControlError {
    NoSuchReplica {
        index: usize,
        replicas: usize,
    },
    /// No process to act on in this state.
    NoProcess(GroupState),
    Signal(io::Error),
    /// Only the replication engine does this, and the group runs the driver
    /// alone.
    NotReplicated,
    Engine(EngineError),
}

impl ControlError {
    pub fn errno(&self) -> i32 {
        match self {
            Self::NoSuchReplica { .. } | Self::Engine(EngineError::Refused(_)) => EINVAL,
            Self::NoProcess(_) => ESRCH,
            Self::Signal(_) | Self::Engine(EngineError::Socket(_)) => EIO,
            Self::NotReplicated => EOPNOTSUPP,
            Self::Engine(EngineError::Silent(_)) => ETIMEDOUT,
        }
    }
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoSuchReplica { index, replicas } => {
                write!(f, "no replica {index}: the group runs {replicas}")
            }
            Self::NoProcess(state) => write!(f, "no process to act on while the group is {state}"),
            Self::Signal(e) => write!(f, "cannot signal the process: {e}"),
            Self::NotReplicated => f.write_str(
                "the group runs the driver alone; only a replicated group (replicas=2 or more) \
                 takes this",
            ),
            Self::Engine(e) => e.fmt(f),
        }
    }
}

impl Group {
    /// Starts a group of `spec`'s driver run as `program`.
    pub fn start(spec: DriverSpec, program: Program, now: Instant) -> Self {
        let mut group = Self {
            spec,
            asked: program.replicas(),
            program,
            state: State::Down,
            restarts: 0,
            repetition: 0,
            last_fault: None,
            recovery: RecoveryScript::default(),
            generation: 0,
            serving: ServingTimes::default(),
            standby: None,
            standby_after: now,
            scheme: None,
        };
        group.launch(now);
        group
    }

    /// Brings a group that is down, or going down, back up, as `program`. A
    /// group that comes back from down starts afresh, its counters cleared; one
    /// going down is replaced once its process has ended.
    pub fn up(&mut self, program: Program, now: Instant) {
        match &mut self.state {
            State::Down => {
                self.program = program;
                self.restarts = 0;
                self.repetition = 0;
                self.last_fault = None;
                self.serving.forget_fault();
                self.launch(now);
            }
            State::Up(replica) => {
                self.program = program;
                replica.revive();
            }
            State::Backoff { .. } => {}
        }
    }

    pub fn replicas(&self) -> usize {
        self.program.replicas()
    }

    /// The replicas the group was opened with: more than it runs where replication
    /// is unavailable.
    pub fn asked_replicas(&self) -> usize {
        self.asked.max(self.replicas())
    }

    pub fn set_asked_replicas(&mut self, asked: usize) {
        self.asked = asked;
    }

    fn is_replicated(&self) -> bool {
        matches!(self.program, Program::Engine { .. })
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
            replicas: self.replicas(),
            pids: match &self.state {
                State::Up(replica) => vec![replica.pid()],
                _ => Vec::new(),
            },
            policy: &self.spec.policy,
            heartbeat: self.spec.heartbeat.as_deref(),
            period_ms: self.spec.period.as_millis(),
            restarts: self.restarts,
            repetition: self.repetition,
            generation: self.generation,
            serving: self.serving,
            standby: self.standby.as_ref().map(GroupProcess::pid),
            last_fault: self.last_fault.as_ref(),
            next_restart_at,
            engine: self.is_replicated().then(|| self.engine_report()),
            unreplicated: (self.asked > self.replicas()).then_some(self.asked),
        }
    }

    /// Asks the engine for its counters; unknown when none runs, one going down
    /// included, or it cannot say.
    fn engine_report(&self) -> EngineReport {
        let engine = match &self.state {
            State::Up(replica) if !replica.is_going_down() => replica.engine(),
            _ => None,
        };
        let Some(engine) = engine else {
            return EngineReport::Unknown;
        };
        let counters = engine
            .ask("status", ENGINE_WAIT)
            .map_err(|e| e.to_string())
            .and_then(|answer| EngineCounters::parse(&answer));
        match counters {
            Ok(counters) => EngineReport::Counters(Box::new(counters)),
            Err(problem) => {
                log::warn!("{}: no engine counters: {problem}", self.spec.name);
                EngineReport::Unknown
            }
        }
    }

    /// One round of supervision: reap, check the heartbeat, restart when due,
    /// keep a standby.
    pub fn poll(&mut self, now: Instant, probes: &Sender<ProbeReply>) {
        self.recovery.reap();
        self.poll_replica(now, probes);
        if let State::Backoff { due } = self.state {
            if now >= due {
                self.restarts += 1;
                self.launch(now);
            }
        }
        self.keep_standby(now);
    }

    /// Reaps a standby that ended, and starts one once the driver serves, if
    /// the registry asks for one. Not while the driver starts: under emulation
    /// the two would share one processor.
    fn keep_standby(&mut self, now: Instant) {
        if !self.spec.standby || self.is_replicated() {
            if let Some(standby) = self.standby.take() {
                standby.discard();
            }
            return;
        }
        if let Some(standby) = &mut self.standby {
            match standby.try_reap() {
                Ok(None) => return,
                Ok(Some(status)) => log::warn!(
                    "{}: standby pid {} ended ({status}); another in {} ms",
                    self.spec.name,
                    standby.pid(),
                    self.spec.period.as_millis()
                ),
                Err(e) => log::error!("{}: cannot wait for the standby: {e}", self.spec.name),
            }
            self.standby = None;
            self.standby_after = now + self.spec.period;
            return;
        }
        let serving = matches!(&self.state, State::Up(active) if !active.is_going_down() && active.has_served());
        if !serving || now < self.standby_after {
            return;
        }
        match GroupProcess::spawn_standby(&self.spec, self.scheme.as_ref(), now) {
            Ok(standby) => {
                log::info!("{}: standby pid {} waits", self.spec.name, standby.pid());
                self.standby = Some(standby);
            }
            Err(e) => {
                log::warn!("{}: cannot start a standby: {e}", self.spec.name);
                self.standby_after = now + self.spec.period;
            }
        }
    }

    /// Has the standby take over, if there is one that still waits; whether it
    /// did.
    fn take_over_with_standby(&mut self, now: Instant) -> bool {
        let Some(mut standby) = self.standby.take() else {
            return false;
        };
        match standby.take_over(&self.spec, now) {
            Ok(()) => {
                self.generation += 1;
                log::info!(
                    "{}: standby pid {} takes over",
                    self.spec.name,
                    standby.pid()
                );
                self.state = State::Up(standby);
                true
            }
            Err(e) => {
                log::warn!(
                    "{}: standby pid {} cannot take over ({e}); starting afresh",
                    self.spec.name,
                    standby.pid()
                );
                standby.discard();
                false
            }
        }
    }

    /// Hands a heartbeat reply to the replica it is for; whether it was this
    /// group's.
    pub fn record_probe(&mut self, reply: &ProbeReply) -> bool {
        match &mut self.state {
            State::Up(replica) if replica.id() == reply.replica => {
                if let Some(serving_since) = replica.record_probe(reply) {
                    if let Some(took) = self.serving.serving(serving_since) {
                        log::info!(
                            "{}: pid {} serves, {} ms after the fault ({} ms after its start)",
                            self.spec.name,
                            replica.pid(),
                            Millis(took),
                            Millis(serving_since.saturating_duration_since(replica.started()))
                        );
                    }
                }
                true
            }
            _ => false,
        }
    }

    pub fn command(&mut self, command: &Command, now: Instant) -> Result<(), ControlError> {
        if let Some(index) = command.replica().filter(|&i| i >= self.replicas()) {
            return Err(ControlError::NoSuchReplica {
                index,
                replicas: self.replicas(),
            });
        }
        if command.is_for_the_engine() && self.is_replicated() {
            return self.tell_engine(command);
        }
        match command {
            Command::Hang(_) | Command::Flip { .. } | Command::Scrub => {
                Err(ControlError::NotReplicated)
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
                if let Some(standby) = self.standby.take() {
                    standby.discard();
                }
                match &mut self.state {
                    State::Up(replica) => replica.kill(KillCause::Down),
                    State::Backoff { .. } => {
                        log::info!("{}: down", self.spec.name);
                        self.go_down();
                    }
                    State::Down => {}
                }
                Ok(())
            }
        }
    }

    /// Has the engine carry out `command`; its answer decides.
    fn tell_engine(&mut self, command: &Command) -> Result<(), ControlError> {
        let engine = self
            .live_replica()?
            .engine()
            .ok_or(ControlError::NotReplicated)?;
        let answer = engine
            .ask(&command.to_string(), ENGINE_WAIT)
            .map_err(ControlError::Engine)?;
        log::info!("{}: {command}: the engine says {answer}", self.spec.name);
        Ok(())
    }

    fn live_replica(&mut self) -> Result<&mut GroupProcess, ControlError> {
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
        // Clients lost the driver when it was told to die (a hang) or now, when
        // it was found dead.
        let stopped_serving = replica.killed_at().unwrap_or(now);
        let cause = replica.take_kill_cause();
        if cause != Some(KillCause::Down) {
            self.serving.fault(stopped_serving);
        }
        match cause {
            Some(KillCause::Down) => {
                log::info!("{}: pid {pid} ended; down", self.spec.name);
                self.go_down();
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
            self.recovery.run(
                script,
                &spec.name,
                reason.keyword(),
                self.repetition,
                &self.serving,
            );
        }
        self.last_fault = Some(Fault {
            reason,
            at: SystemTime::now(),
        });
        self.state = State::Backoff { due: now + delay };
    }

    /// Down for good: clients that open the scheme now fail at once instead of
    /// waiting for a successor.
    fn go_down(&mut self) {
        self.state = State::Down;
        self.scheme = None;
    }

    /// Binds the scheme the heartbeat probes, if the group does not hold it
    /// yet. Without it (another process serves the name, or the platform
    /// cannot hand it over) each process binds the name itself, as any
    /// unsupervised driver does.
    fn hold_scheme(&mut self) {
        if self.scheme.is_some() {
            return;
        }
        let Some(path) = self.spec.heartbeat.as_deref() else {
            return;
        };
        let Ok(scheme) = scheme_runtime::SchemePath::parse(path) else {
            return;
        };
        match platform::hold_scheme(scheme.scheme) {
            Ok(None) => {}
            Ok(Some(held)) => {
                log::info!(
                    "{}: holds scheme {} across restarts",
                    self.spec.name,
                    scheme.scheme
                );
                self.scheme = Some(held);
            }
            Err(e) => log::warn!(
                "{}: cannot hold scheme {} ({e}); the driver binds it itself",
                self.spec.name,
                scheme.scheme
            ),
        }
    }

    /// Starts the process, or has the standby take over; a failure to start is
    /// a fault like any other.
    fn launch(&mut self, now: Instant) {
        if !self.is_replicated() && self.take_over_with_standby(now) {
            return;
        }
        self.hold_scheme();
        match GroupProcess::spawn(&self.spec, &self.program, self.scheme.as_ref(), now) {
            Ok(replica) => {
                self.generation += 1;
                log::info!(
                    "{}: started pid {} ({} replicas)",
                    self.spec.name,
                    replica.pid(),
                    self.replicas()
                );
                self.state = State::Up(replica);
            }
            Err(e) => {
                let binary = match &self.program {
                    Program::Driver => &self.spec.binary,
                    Program::Engine { binary, .. } => binary,
                };
                let reason = FaultReason::SpawnFailed(format!("{}: {e}", binary.display()));
                self.fault(None, reason, Duration::ZERO, now);
            }
        }
    }
}
