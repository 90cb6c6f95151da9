//! One driver process of a group: started from its registry entry, watched, and
//! killed on purpose.

use std::io;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::time::Instant;

use crate::fault::FaultReason;
use crate::heartbeat::{Heartbeat, ProbeReply};
use crate::platform;
use crate::registry::DriverSpec;

/// Names one process for its whole life, unlike a pid, which the system reuses;
/// heartbeat replies carry it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReplicaId(u64);

impl ReplicaId {
    fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// Why the supervisor killed a replica, so that its death is not taken for a
/// fault of its own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KillCause {
    Fault(FaultReason),
    /// A `restart` command: replace it, no fault.
    Restart,
    /// A `down` command: do not replace it.
    Down,
}

#[derive(Debug)]
pub struct Replica {
    id: ReplicaId,
    child: Child,
    started: Instant,
    kill_cause: Option<KillCause>,
    heartbeat: Option<Heartbeat>,
}

impl Replica {
    /// Starts replica `index` of `spec`'s driver. Besides the registry's
    /// environment the driver gets `ROMAIN_DRIVER`, `ROMAIN_POLICY` (its policy
    /// label) and `ROMAIN_REPLICA`.
    pub fn spawn(spec: &DriverSpec, index: usize, now: Instant) -> io::Result<Self> {
        let mut command = Command::new(&spec.binary);
        command
            .args(&spec.args)
            .envs(&spec.env)
            .env("ROMAIN_DRIVER", &spec.name)
            .env("ROMAIN_POLICY", &spec.policy)
            .env("ROMAIN_REPLICA", index.to_string())
            .stdin(Stdio::null());
        #[cfg(target_os = "linux")]
        platform::die_with_supervisor(&mut command);
        let child = command.spawn()?;
        let heartbeat = spec
            .heartbeat
            .as_deref()
            .map(|path| Heartbeat::new(path, spec.period, spec.missed_periods, now));
        Ok(Self {
            id: ReplicaId::next(),
            child,
            started: now,
            kill_cause: None,
            heartbeat,
        })
    }

    pub fn id(&self) -> ReplicaId {
        self.id
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    /// The exit status once the process has ended; never waits.
    pub fn try_reap(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Sends SIGKILL and remembers why. `Down` is final: no later cause
    /// replaces it.
    pub fn kill(&mut self, cause: KillCause) {
        if self.kill_cause != Some(KillCause::Down) {
            self.kill_cause = Some(cause);
        }
        if let Err(e) = self.child.kill() {
            log::error!("cannot kill pid {}: {e}", self.pid());
        }
    }

    /// Cancels a pending `down`: the process is replaced when it ends.
    pub fn revive(&mut self) {
        if self.kill_cause == Some(KillCause::Down) {
            self.kill_cause = Some(KillCause::Restart);
        }
    }

    /// Sends SIGSTOP, which makes it look hung.
    pub fn stop(&self) -> io::Result<()> {
        platform::stop(self.pid())
    }

    pub fn is_going_down(&self) -> bool {
        self.kill_cause == Some(KillCause::Down)
    }

    pub fn take_kill_cause(&mut self) -> Option<KillCause> {
        self.kill_cause.take()
    }

    /// Runs the heartbeat; the periods without an answer once the replica
    /// counts as hung. A replica being killed is not probed.
    pub fn check_heartbeat(&mut self, now: Instant, probes: &Sender<ProbeReply>) -> Option<u32> {
        if self.kill_cause.is_some() {
            return None;
        }
        self.heartbeat.as_mut()?.poll(self.id, now, probes)
    }

    pub fn record_probe(&mut self, reply: &ProbeReply) {
        if let Some(heartbeat) = &mut self.heartbeat {
            heartbeat.record(reply.answered, reply.at);
        }
    }
}
