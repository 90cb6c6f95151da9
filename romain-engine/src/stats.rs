//! What a replica group has been through, for `romain:` status and the logs.

use std::fmt;
use std::time::Duration;

/// Counters of one group since the engine started it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// How many replicas the group runs.
    pub replicas: usize,
    /// The mechanism that stops them at their events (`ptrace` or `stub`).
    pub backend: String,
    /// Each replica's process id; none while its place is empty.
    pub pids: Vec<Option<i32>>,
    /// Externalization events handled.
    pub events: u64,
    /// Events at which two or more replicas were compared.
    pub votes: u64,
    /// Replicas found in a state other than the majority's.
    pub divergences: u64,
    /// Replicas brought back to the majority's state (registers, FP state, memory).
    pub repairs: u64,
    /// Dead replicas replaced by a copy of a healthy one.
    pub replacements: u64,
    /// Replicas the watchdog caught.
    pub hangs: u64,
    /// Replicas that crashed or ended.
    pub crashes: u64,
    /// Events with no majority: the effect was withheld and the group restarted.
    pub no_majority: u64,
    /// Times the whole group was started again.
    pub restarts: u64,
    /// Faults injected on command.
    pub injected: u64,
    /// The latest fault, with the replica, the event and the differing values.
    pub last_fault: Option<String>,
    /// Client requests the replicas answered.
    pub requests: u64,
    /// Rounds the replicas ran (their daemon's per-round work).
    pub rounds: u64,
    /// Events that found nothing to do: a clock read, a log line, a receive
    /// that would block (a driver asking whether its interrupt fired). Each
    /// costs a meeting of the replicas all the same.
    pub quiet: u64,
    /// Calls the replicas held for their reply and the engine made with it,
    /// at no meeting of their own.
    pub held_calls: u64,
    /// Interrupt cause reads the engine made for the replicas as their line
    /// fired, at no event of their own.
    pub cause_reads: u64,
    /// Time spent running the group through requests and rounds, all included.
    pub busy: Duration,
    /// The part of `busy` spent keeping shared memory in step with the device.
    pub memory_sync: Duration,
    /// The part of `busy` spent recovering from faults: settling the agreeing
    /// replicas' memory before a copy, repairing and replacing replicas. What the
    /// group stalls per fault, by its own clock.
    pub recovery: Duration,
    /// The part of `busy` the replicas spent running to their next event,
    /// their stops and the reading of their registers included.
    pub running: Duration,
    /// The part of `busy` spent performing the events' effects once: device
    /// accesses, calls to other schemes, the replicas' own system calls.
    pub effects: Duration,
}

impl fmt::Display for EngineStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pids: Vec<String> = self
            .pids
            .iter()
            .map(|pid| pid.map_or_else(|| "-".to_owned(), |pid| pid.to_string()))
            .collect();
        writeln!(f, "replicas: {}", self.replicas)?;
        writeln!(f, "backend: {}", self.backend)?;
        writeln!(f, "pids: {}", pids.join(" "))?;
        writeln!(f, "events: {}", self.events)?;
        writeln!(f, "votes: {}", self.votes)?;
        writeln!(f, "divergences: {}", self.divergences)?;
        writeln!(f, "repairs: {}", self.repairs)?;
        writeln!(f, "replacements: {}", self.replacements)?;
        writeln!(f, "hangs: {}", self.hangs)?;
        writeln!(f, "crashes: {}", self.crashes)?;
        writeln!(f, "no-majority: {}", self.no_majority)?;
        writeln!(f, "group-restarts: {}", self.restarts)?;
        writeln!(f, "injected: {}", self.injected)?;
        writeln!(f, "requests: {}", self.requests)?;
        writeln!(f, "rounds: {}", self.rounds)?;
        writeln!(f, "quiet: {}", self.quiet)?;
        writeln!(f, "held-calls: {}", self.held_calls)?;
        writeln!(f, "cause-reads: {}", self.cause_reads)?;
        writeln!(f, "busy-ms: {}", self.busy.as_millis())?;
        writeln!(f, "memory-sync-ms: {}", self.memory_sync.as_millis())?;
        writeln!(f, "recovery-us: {}", self.recovery.as_micros())?;
        writeln!(f, "running-ms: {}", self.running.as_millis())?;
        writeln!(f, "effects-ms: {}", self.effects.as_millis())?;
        writeln!(
            f,
            "last-fault: {}",
            self.last_fault.as_deref().unwrap_or("none")
        )
    }
}
