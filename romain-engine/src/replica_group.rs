//! A replica group: N traced replicas of one driver run in lockstep from event to
//! event. At each event the engine waits for every replica (the watchdog bounds the
//! wait), votes on their states, repairs or replaces the minority, performs the effect
//! once and gives every replica the same result.
//!
//! The group talks to the world through two things only: the replica channel (scheme
//! requests in, replies out, see `scheme_runtime::replicated`) and a [`PortDevice`]
//! for port instructions. Between requests the replicas wait at their channel exchange.

use std::collections::BTreeSet;
use std::fmt;
use std::io::Write;
use std::ops::Range;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::libc::{self, user_regs_struct};
use nix::unistd::Pid;

use scheme_runtime::replicated::codec::{CauseRead, Hello};
use scheme_runtime::replicated::{codec, held};
use scheme_runtime::wire::Opcode;

use super::backend::ptrace::PtraceBackend;
use super::backend::stub::StubBackend;
use super::backend::{Backend, ReplicaOf};
use super::connections::{Connections, MessageHeader, SchemeAllowList};
use super::fault_injection::Injection;
use super::member::{Action, Arrival, Stopped};
use super::shared_memory::SharedMemory;
use super::stats::EngineStats;
use super::syscall_policy::SyscallClass;
use crate::trap::repair::PageVote;
use crate::trap::{MemoryAccess, MemoryDevice, PortDevice, ReplicaCommand, SpawnError, TrapError};
use crate::vote::{vote, Dissent, ReplicaIndex, ReplicaState, VoteOutcome};
use crate::BackendKind;

/// The descriptor number of the replica channel in every replica.
pub const CHANNEL_FD: i32 = 100;

/// How to start a group.
#[derive(Clone, Debug)]
pub struct GroupConfig {
    /// The driver, as every replica runs it.
    pub command: ReplicaCommand,
    pub replicas: usize,
    /// How long a replica may take to reach its next event.
    pub watchdog: Duration,
    /// Addresses where the replicas keep device memory unmapped: their loads and
    /// stores there fault and are performed once on [`Devices::memory`].
    pub device_window: Option<Range<u64>>,
    pub backend: BackendKind,
}

/// What the group's effects reach, each performed once.
pub struct Devices {
    pub ports: Box<dyn PortDevice + Send>,
    /// The device behind [`GroupConfig::device_window`], addressed by offset in it.
    pub memory: Option<DeviceWindow>,
}

pub struct DeviceWindow {
    pub window: Range<u64>,
    pub device: Box<dyn MemoryDevice + Send>,
}

/// Why the group cannot go on; the effect at hand did not reach the world.
#[derive(Debug)]
pub enum GroupFailure {
    /// The replicas disagree and no state has a strict majority.
    NoMajority(String),
    /// Every replica ended the same way: the driver itself ended, no fault to recover.
    DriverEnded(String),
    Spawn(SpawnError),
    Trace(TrapError),
}

impl fmt::Display for GroupFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupFailure::NoMajority(what) => write!(f, "no majority: {what}"),
            GroupFailure::DriverEnded(how) => write!(f, "the driver {how}"),
            GroupFailure::Spawn(error) => write!(f, "cannot start a replica: {error}"),
            GroupFailure::Trace(error) => write!(f, "tracing failed: {error}"),
        }
    }
}

impl std::error::Error for GroupFailure {}

impl From<TrapError> for GroupFailure {
    fn from(error: TrapError) -> Self {
        GroupFailure::Trace(error)
    }
}

impl From<Errno> for GroupFailure {
    fn from(errno: Errno) -> Self {
        GroupFailure::Trace(TrapError::Trace(errno))
    }
}

/// How the engine completes an event.
enum Completion {
    /// Every replica continues with these registers, after these memory stores.
    Continue {
        regs: Box<user_regs_struct>,
        stores: Vec<(u64, Vec<u8>)>,
    },
    /// Every replica runs the syscall itself.
    RunInEach,
    /// Every replica runs the syscall with these registers (other arguments).
    RunInEachAs(Box<user_regs_struct>),
    /// The replicas wait for the next request at their channel exchange,
    /// having written `reply` there.
    AwaitRequest { reply: Vec<u8> },
}

/// Where the group is between its exchanges with the daemon it serves.
enum Phase {
    /// The replicas run toward their next event, or were just started: the
    /// next exchange runs them until they wait for a request.
    Running,
    /// The replicas wait at their channel exchange in the voted state
    /// `stopped`, having written `reply` there, which the exchange that parked
    /// them hands out (`None` once it has).
    AwaitingRequest {
        stopped: Box<Stopped>,
        reply: Option<Vec<u8>>,
    },
    /// A failure found between exchanges (a scrub with no majority): the next
    /// exchange fails with it, and the group is restarted as at an event.
    Failed(GroupFailure),
}

/// Why [`ReplicaGroup::settle_memory`] settled nothing.
enum MemoryVerdict {
    /// Pages differ and no majority holds them alike (or too few replicas agree).
    NoMajority(String),
    /// Some replica's memory could not be read (it died meanwhile).
    Unreadable(String),
}

/// A group of replicas on backend `B` (by default the one its configuration
/// names).
pub struct ReplicaGroup<B: Backend = Box<dyn Backend>> {
    config: GroupConfig,
    backend: B,
    phase: Phase,
    injections: Vec<Injection>,
    /// The scheme connections the replicas opened.
    connections: Connections,
    /// The scheme memory they mapped.
    shared: SharedMemory,
    /// The replicas mapped shared memory at the last event.
    fresh_mapping: bool,
    /// The last message was a write or a call: the next round hands its work over.
    handing_over: bool,
    /// See [`Self::last_exchange_reached_out`].
    reached_out: bool,
    /// The call the replicas' hello asked the engine to make for them when
    /// their relayed line fires.
    cause_read: Option<CauseRead>,
    refused_logged: BTreeSet<i64>,
    log: Box<dyn Write + Send>,
    stats: EngineStats,
}

impl ReplicaGroup {
    /// Starts the replicas on the backend `config` names, stopped before their
    /// first instruction.
    pub fn start(config: GroupConfig) -> Result<Self, GroupFailure> {
        let command = config.command.clone();
        let window = config.device_window.clone();
        let backend: Box<dyn Backend> = match config.backend {
            BackendKind::Ptrace => Box::new(PtraceBackend::new(command, config.watchdog, window)),
            BackendKind::Stub => Box::new(
                StubBackend::new(command, config.watchdog, window).map_err(|error| {
                    GroupFailure::Trace(TrapError::Trace(Errno::from_raw(
                        error.raw_os_error().unwrap_or(libc::EIO),
                    )))
                })?,
            ),
        };
        Self::start_on(backend, config)
    }
}

impl<B: Backend> ReplicaGroup<B> {
    /// Starts the replicas on `backend`, stopped before their first instruction.
    pub fn start_on(backend: B, config: GroupConfig) -> Result<Self, GroupFailure> {
        let mut group = ReplicaGroup {
            backend,
            phase: Phase::Running,
            injections: Vec::new(),
            connections: Connections::default(),
            shared: SharedMemory::default(),
            fresh_mapping: false,
            handing_over: false,
            reached_out: false,
            cause_read: None,
            refused_logged: BTreeSet::new(),
            log: Box::new(std::io::stderr()),
            stats: EngineStats {
                replicas: config.replicas,
                backend: config.backend.to_string(),
                ..EngineStats::default()
            },
            config,
        };
        group.spawn_all()?;
        Ok(group)
    }

    /// Lets the replicas connect only to the schemes of `allowed` (those the
    /// driver's policy rule lists); any other `connect` fails with `EACCES` in
    /// every replica. Without this they may connect wherever the engine may.
    pub fn restrict_connections(&mut self, allowed: SchemeAllowList) {
        self.connections.restrict_to(allowed);
    }

    /// Sends what the replicas write to standard output and error to `log` instead of
    /// this process's standard error.
    pub fn set_log(&mut self, log: Box<dyn Write + Send>) {
        self.log = log;
    }

    #[cfg(test)]
    pub(crate) fn backend(&self) -> &B {
        &self.backend
    }

    /// Requests delivered so far.
    pub fn requests(&self) -> u64 {
        self.stats.requests
    }

    pub fn stats(&self) -> EngineStats {
        let mut stats = self.stats.clone();
        stats.pids = (0..self.backend.places())
            .map(|index| self.backend.pid(index).map(Pid::as_raw))
            .collect();
        stats
    }

    /// Queues a fault; it goes into the replica before the group next runs.
    pub fn inject(&mut self, injection: Injection) -> Result<(), String> {
        if injection.replica >= self.config.replicas {
            return Err(format!(
                "no replica {} (the group has {})",
                injection.replica, self.config.replicas
            ));
        }
        self.injections.push(injection);
        Ok(())
    }

    /// Delivers `request` (none: only run until the replicas wait for one) and runs the
    /// group until the replicas wait for the next; returns what they wrote back.
    pub fn exchange(
        &mut self,
        request: Option<&[u8]>,
        devices: &mut Devices,
    ) -> Result<Option<Vec<u8>>, GroupFailure> {
        let started = Instant::now();
        // Quiet events are events too, so never more than all of them.
        let reaching_before = self.stats.events.saturating_sub(self.stats.quiet);
        let made_for_them_before = self.stats.held_calls + self.stats.cause_reads;
        match request {
            Some(message) if codec::is_round(message) => self.stats.rounds += 1,
            Some(_) => self.stats.requests += 1,
            None => {}
        }
        let mut request = request;
        loop {
            match std::mem::replace(&mut self.phase, Phase::Running) {
                Phase::Running => {}
                Phase::Failed(failure) => return Err(failure),
                Phase::AwaitingRequest { stopped, reply } => match request.take() {
                    Some(message) => self.deliver(&stopped, message)?,
                    None => {
                        self.phase = Phase::AwaitingRequest {
                            stopped,
                            reply: None,
                        };
                        self.stats.busy += started.elapsed();
                        // The exchange that ends it is one event; any other
                        // but a quiet one reached out.
                        let reaching = self.stats.events.saturating_sub(self.stats.quiet);
                        self.reached_out = reaching.saturating_sub(reaching_before) > 1
                            || self.stats.held_calls + self.stats.cause_reads
                                > made_for_them_before;
                        return Ok(reply);
                    }
                },
            }
            self.apply_injections();
            let running = Instant::now();
            let arrivals = self.backend.advance()?;
            self.stats.running += running.elapsed();
            self.conclude(arrivals, devices)?;
        }
    }

    /// Whether the replicas made any event in the last exchange besides the
    /// exchange itself: a device access, a call to another scheme, a clock read.
    pub fn last_exchange_reached_out(&self) -> bool {
        self.reached_out
    }

    /// Compares the replicas' private memory while they wait for a request and gives
    /// every page the content a majority of replicas holds: flipped bits that no
    /// event has shown yet. Returns how many replicas were repaired. A difference no
    /// majority settles is counted as a divergence without majority, and the next
    /// exchange fails with it (the group restarts, as at an event).
    pub fn scrub(&mut self) -> Result<usize, String> {
        if !matches!(self.phase, Phase::AwaitingRequest { .. }) {
            return Err("the group is not waiting for a request".to_owned());
        }
        let live = self.live();
        match self.settle_memory(&live, "found by scrubbing", &[]) {
            Ok(repaired) => Ok(repaired),
            Err(MemoryVerdict::Unreadable(error)) => Err(error),
            Err(MemoryVerdict::NoMajority(report)) => {
                self.phase = Phase::Failed(GroupFailure::NoMajority(report.clone()));
                Err(format!(
                    "no majority: {report}; the group restarts at the next request"
                ))
            }
        }
    }

    /// Gives every page of private memory on which the replicas `among` differ the
    /// content a strict majority of the group holds, page by page; returns how many
    /// replicas were rewritten. This is what makes a replica fit to copy from: its
    /// event and registers were voted, its memory only here.
    ///
    /// With fewer replicas than a majority of the group, or a page no majority
    /// holds alike, nothing is copied: the verdict is a divergence without
    /// majority, counted, and the caller fails the group.
    ///
    /// The pages in `known_alike` are taken as equal without being read.
    fn settle_memory(
        &mut self,
        among: &[ReplicaIndex],
        found: &str,
        known_alike: &[Range<u64>],
    ) -> Result<usize, MemoryVerdict> {
        let needed = self.config.replicas / 2 + 1;
        let pages = self
            .backend
            .differing_pages(among, known_alike)
            .map_err(MemoryVerdict::Unreadable)?;
        if pages.is_empty() {
            return Ok(0);
        }
        let vote = if among.len() < needed {
            // Too few to out-vote anything: every differing page is unsettled.
            PageVote {
                rewritten: Vec::new(),
                unsettled: pages,
            }
        } else {
            self.backend
                .vote_pages(among, &pages)
                .map_err(MemoryVerdict::Unreadable)?
        };
        if let Some(&first) = vote.unsettled.first() {
            let report = format!(
                "replicas {among:?}: memory differs from page {first:#x} ({} pages) with no majority, {found}",
                vote.unsettled.len()
            );
            log::error!("no majority: {report}; nothing is copied");
            self.stats.no_majority += 1;
            self.stats.divergences += 1;
            self.stats.last_fault = Some(format!("no majority: {report}"));
            return Err(MemoryVerdict::NoMajority(report));
        }
        let repaired: BTreeSet<usize> = vote
            .rewritten
            .iter()
            .map(|&(position, _)| position)
            .collect();
        for &position in &repaired {
            let index = among[position];
            let first = vote
                .rewritten
                .iter()
                .find(|(p, _)| *p == position)
                .map_or(0, |&(_, page)| page);
            let fault = format!(
                "replica {index}: memory differs from the majority's from page {first:#x}, {found}"
            );
            log::warn!("{fault}; repaired");
            self.stats.last_fault = Some(fault);
            self.stats.divergences += 1;
            self.stats.repairs += 1;
        }
        Ok(repaired.len())
    }

    /// Kills every replica and starts the group afresh.
    pub fn restart(&mut self) -> Result<(), GroupFailure> {
        // Faults queued for the replicas that end here are not the new ones'.
        if !self.injections.is_empty() {
            log::warn!(
                "{} injected faults dropped: their replicas are gone",
                self.injections.len()
            );
            self.injections.clear();
        }
        self.phase = Phase::Running;
        self.backend.clear();
        self.connections.clear();
        self.shared = SharedMemory::default();
        self.stats.restarts += 1;
        self.spawn_all()
    }

    fn spawn_all(&mut self) -> Result<(), GroupFailure> {
        self.backend.spawn(self.config.replicas)
    }

    /// The places whose replica is alive.
    fn live(&self) -> Vec<ReplicaIndex> {
        (0..self.backend.places())
            .filter(|&index| self.backend.is_live(index))
            .collect()
    }

    /// Votes on the arrivals, repairs or replaces the minority and completes the event.
    fn conclude(
        &mut self,
        arrivals: Vec<Option<Arrival>>,
        devices: &mut Devices,
    ) -> Result<(), GroupFailure> {
        let states: Vec<Option<ReplicaState>> = arrivals
            .iter()
            .map(|arrival| match arrival {
                Some(Arrival::Event(stopped)) => Some(stopped.state()),
                _ => None,
            })
            .collect();
        if let Some(how) = unanimous_end(&arrivals) {
            return Err(GroupFailure::DriverEnded(how));
        }
        self.stats.events += 1;
        if self.live().len() > 1 {
            self.stats.votes += 1;
        }
        let (source, minority) = match vote(&states) {
            VoteOutcome::Unanimous { .. } => (states.iter().position(Option::is_some), Vec::new()),
            VoteOutcome::Majority {
                source, minority, ..
            } => (Some(source), minority),
            VoteOutcome::NoMajority {
                reference,
                dissenters,
            } => {
                self.stats.no_majority += 1;
                let mut text = String::new();
                for dissenter in &dissenters {
                    let what = self.describe(dissenter.replica, &dissenter.dissent, &arrivals);
                    text.push_str(&what);
                    text.push_str("; ");
                }
                let event = reference
                    .and_then(|index| states[index].as_ref())
                    .map_or_else(
                        || "no replica alive".to_owned(),
                        |state| state.event.to_string(),
                    );
                let report = format!("at {event}: {}", text.trim_end_matches("; "));
                log::error!("no majority {report}; the effect is withheld");
                self.stats.last_fault = Some(format!("no majority {report}"));
                return Err(GroupFailure::NoMajority(report));
            }
        };
        let source = source.expect("a vote with a winner has a live replica");
        let Some(Arrival::Event(reference)) = &arrivals[source] else {
            unreachable!("the vote's source arrived at the event");
        };
        let reference = reference.clone();
        self.backend.agreed_on(
            &reference.regs,
            matches!(reference.action, Action::Syscall(..)),
        );

        // A replica is repaired or replaced from `source`, whose event and registers
        // a majority voted but whose memory none has: the agreeing replicas' memory
        // is settled page by page first, and without a majority nothing is copied.
        // An empty place is in the minority too (the vote takes it as dead).
        let copies_needed = !minority.is_empty();
        let recovering = copies_needed.then(Instant::now);
        if copies_needed {
            let agreeing: Vec<ReplicaIndex> = (0..states.len())
                .filter(|&index| states[index].is_some())
                .filter(|&index| !minority.iter().any(|d| d.replica == index))
                .collect();
            let found = format!(
                "found before copying replica {source} at {}",
                reference.event
            );
            // Shared memory the replicas did not write since its last vote is
            // still what that vote left in all of them (the trust `push` puts
            // in soft-dirty bits); the periodic scrub reads it whole.
            let pids = self.pids_of(&agreeing);
            let settling = Instant::now();
            let agreed = self.shared.agreed_pages(&pids);
            let settled = self.settle_memory(&agreeing, &found, &agreed);
            log::debug!(
                "memory of replicas {agreeing:?} settled in {:.1} ms",
                settling.elapsed().as_secs_f64() * 1000.0
            );
            match settled {
                Ok(_) => {}
                Err(MemoryVerdict::NoMajority(report)) => {
                    return Err(GroupFailure::NoMajority(report))
                }
                Err(MemoryVerdict::Unreadable(error)) => {
                    return Err(GroupFailure::NoMajority(format!(
                        "the agreeing replicas' memory cannot be compared ({error}); nothing is copied"
                    )))
                }
            }
        }

        // Repair the minority before the effect: a replica that cannot be repaired is
        // dropped and replaced once the effect is complete.
        for dissenter in &minority {
            if arrivals[dissenter.replica].is_none() {
                // A place emptied at an earlier event (a repaired replica
                // dropped after a syscall each runs): no fault of this event,
                // and refilled below.
                continue;
            }
            let what = self.describe(dissenter.replica, &dissenter.dissent, &arrivals);
            log::warn!(
                "replica {} at {}: {what}",
                dissenter.replica,
                reference.event
            );
            self.stats.last_fault = Some(format!(
                "replica {} at {}: {what}",
                dissenter.replica, reference.event
            ));
            let repairable = match (&dissenter.dissent, &arrivals[dissenter.replica]) {
                (Dissent::Diverged(_), _) => {
                    self.stats.divergences += 1;
                    true
                }
                (Dissent::Dead, Some(Arrival::Hung)) => {
                    self.stats.hangs += 1;
                    true
                }
                (Dissent::Dead, _) => {
                    self.stats.crashes += 1;
                    false
                }
            };
            let repaired = repairable && self.repair(dissenter.replica, source);
            if !repaired {
                self.backend.discard(dissenter.replica);
            }
        }
        if let Some(started) = recovering {
            self.stats.recovery += started.elapsed();
        }

        let performing = Instant::now();
        let synced_before = self.stats.memory_sync;
        let completion = self.perform(&reference, source, devices)?;
        let synced = self.stats.memory_sync.saturating_sub(synced_before);
        self.stats.effects += performing.elapsed().saturating_sub(synced);
        match completion {
            Completion::Continue { regs, stores } => {
                if tells_of_a_device(&reference.action) {
                    // What the answer tells of (a cause a read cleared, say)
                    // the device wrote before it: the replicas see it too.
                    self.pull_shared_memory();
                }
                for index in self.live() {
                    self.backend.complete(index, &stores, &regs)?;
                }
                self.refill(source, &regs);
            }
            Completion::RunInEachAs(regs) => {
                for index in self.live() {
                    self.backend.complete(index, &[], &regs)?;
                }
                self.drop_repaired(&minority);
            }
            Completion::RunInEach => self.drop_repaired(&minority),
            Completion::AwaitRequest { reply } => {
                // The copies wait at the exchange with the others: delivering the
                // next request sets every replica's registers.
                self.refill(source, &reference.regs);
                self.phase = Phase::AwaitingRequest {
                    stopped: reference,
                    reply: Some(reply),
                };
            }
        }
        Ok(())
    }

    /// Fills every empty place, including those emptied at earlier events where no
    /// copy could be made (a syscall each replica runs), with a copy of `source`
    /// going on with `regs`.
    fn refill(&mut self, source: ReplicaIndex, regs: &user_regs_struct) {
        let vacant: Vec<ReplicaIndex> = (0..self.backend.places())
            .filter(|&index| !self.backend.is_live(index))
            .collect();
        for index in vacant {
            self.replace(index, source, regs);
        }
    }

    /// After a syscall each replica runs itself, a repaired replica may not be at
    /// that syscall: it is dropped and replaced at the next event.
    fn drop_repaired(&mut self, minority: &[crate::vote::Dissenter]) {
        for dissenter in minority {
            self.backend.discard(dissenter.replica);
        }
    }

    /// One line on how a dissenter differs, for the log and the status.
    fn describe(
        &self,
        replica: ReplicaIndex,
        dissent: &Dissent,
        arrivals: &[Option<Arrival>],
    ) -> String {
        match (dissent, &arrivals[replica]) {
            (Dissent::Diverged(differences), _) => {
                let shown: Vec<String> = differences
                    .iter()
                    .take(4)
                    .map(ToString::to_string)
                    .collect();
                format!("diverged: {}", shown.join(", "))
            }
            (Dissent::Dead, Some(Arrival::Hung)) => format!(
                "hung: no event within {} ms",
                self.config.watchdog.as_millis()
            ),
            (Dissent::Dead, Some(Arrival::Died(how))) => how.clone(),
            (Dissent::Dead, _) => "gone".to_owned(),
        }
    }

    /// Copies the memory and FP state of replica `source` into `faulty`; its registers
    /// are set with everyone's once the event completes. False when it cannot be done.
    fn repair(&mut self, faulty: ReplicaIndex, source: ReplicaIndex) -> bool {
        match self.backend.repair(faulty, source) {
            Ok(copied) => {
                log::info!("replica {faulty} repaired from replica {source}: {copied}");
                self.stats.repairs += 1;
                true
            }
            Err(why) => {
                log::warn!("replica {faulty}: {why}; replacing it");
                false
            }
        }
    }

    /// Fills place `index` with a copy of replica `source` going on with `regs`.
    fn replace(&mut self, index: ReplicaIndex, source: ReplicaIndex, regs: &user_regs_struct) {
        let started = Instant::now();
        let replaced = self.backend.replace(index, source, regs);
        self.stats.recovery += started.elapsed();
        match replaced {
            Ok(()) => {
                log::info!(
                    "replica {index} replaced by a copy of replica {source} (pid {}) in {:.1} ms",
                    self.backend.pid(index).map_or(0, Pid::as_raw),
                    started.elapsed().as_secs_f64() * 1000.0
                );
                self.stats.replacements += 1;
            }
            Err(error) => {
                // The source stopped half-way through forking: it cannot go on either.
                log::error!("replica {index} could not be replaced from replica {source}: {error}");
            }
        }
    }

    /// Performs the event once, as `reference` asks, and says how replicas go on.
    fn perform(
        &mut self,
        reference: &Stopped,
        source: ReplicaIndex,
        devices: &mut Devices,
    ) -> Result<Completion, GroupFailure> {
        if std::mem::take(&mut self.fresh_mapping) {
            // The replicas mapped their copy at the last event: it starts with
            // what the device sees.
            self.pull_shared_memory();
        }
        if reaches_a_device(&reference.action) {
            self.push_shared_memory();
        }
        let mut regs = reference.regs;
        let mut stores = Vec::new();
        match &reference.action {
            Action::Port(access) => {
                let outs_data = match &reference.event {
                    crate::vote::Event::PortStringOut { data, .. } => data.as_slice(),
                    _ => &[],
                };
                stores.extend(access.perform(devices.ports.as_mut(), &mut regs, outs_data));
            }
            Action::Memory { access, address } => {
                let Some(window) = devices.memory.as_mut() else {
                    unreachable!("a memory event needs a device window");
                };
                let offset = address - window.window.start;
                let value = match *access {
                    MemoryAccess::Load { width, .. } => window.device.read(offset, width),
                    MemoryAccess::Store { width, value, .. } => {
                        window.device.write(offset, width, value);
                        0
                    }
                };
                access.apply(&mut regs, value);
            }
            Action::TimeStamp { len, with_aux } => {
                // SAFETY: rdtsc has no memory effects; every x86-64 CPU has it.
                let tsc = unsafe { core::arch::x86_64::_rdtsc() };
                regs.rax = tsc & 0xffff_ffff;
                regs.rdx = tsc >> 32;
                if *with_aux {
                    regs.rcx = 0;
                }
                regs.rip += len;
            }
            Action::Syscall(syscall, class) => {
                let data = match &reference.event {
                    crate::vote::Event::Syscall { data, .. } => data.as_slice(),
                    _ => &[],
                };
                let result: i64 = match *class {
                    SyscallClass::ChannelExchange { .. } => {
                        let mut reply = data.to_vec();
                        if let Ok(hello) = Hello::decode(&reply) {
                            self.cause_read = hello.cause_read;
                        }
                        self.make_held_calls(&mut reply);
                        return Ok(Completion::AwaitRequest { reply });
                    }
                    SyscallClass::RunInEach => return Ok(Completion::RunInEach),
                    SyscallClass::Log { .. } => {
                        // The replicas' log lines are the driver's: best effort, like
                        // a write to a closed terminal.
                        self.stats.quiet += 1;
                        let _ = self.log.write_all(data);
                        data.len() as i64
                    }
                    SyscallClass::Random { buffer, len } => {
                        let mut bytes = vec![0; len.min(256) as usize];
                        // SAFETY: getrandom writes at most bytes.len() bytes into bytes.
                        let got =
                            unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
                        if got < 0 {
                            -(Errno::last() as i64)
                        } else {
                            bytes.truncate(got as usize);
                            stores.push((buffer, bytes));
                            got as i64
                        }
                    }
                    SyscallClass::Clock { clock, buffer } => {
                        self.stats.quiet += 1;
                        let mut now = libc::timespec {
                            tv_sec: 0,
                            tv_nsec: 0,
                        };
                        // SAFETY: clock_gettime writes one timespec into `now`.
                        if unsafe { libc::clock_gettime(clock as libc::clockid_t, &mut now) } != 0 {
                            -(Errno::last() as i64)
                        } else {
                            let mut bytes = now.tv_sec.to_ne_bytes().to_vec();
                            bytes.extend(now.tv_nsec.to_ne_bytes());
                            stores.push((buffer, bytes));
                            0
                        }
                    }
                    SyscallClass::Sleep { .. } => {
                        if data.len() == 16 {
                            let seconds = u64::from_ne_bytes(data[..8].try_into().expect("8"));
                            let nanos = u64::from_ne_bytes(data[8..].try_into().expect("8"));
                            let pause = Duration::from_secs(seconds.min(60))
                                + Duration::from_nanos(nanos.min(999_999_999));
                            std::thread::sleep(pause);
                            0
                        } else {
                            -(libc::EFAULT as i64)
                        }
                    }
                    SyscallClass::OpenConnection => self.connections.open(),
                    SyscallClass::Connect { fd, .. } => self.connections.connect(fd, data),
                    SyscallClass::SendMessage { fd, flags, .. } => {
                        self.connections.send(fd, data, flags)
                    }
                    SyscallClass::ConnectionExchange {
                        fd, buffer, len, ..
                    } => {
                        let (result, reply) = self.connections.exchange(fd, data, len);
                        if !reply.is_empty() {
                            stores.push((buffer, reply));
                        }
                        result
                    }
                    SyscallClass::ReceiveMessage { fd, header, flags } => {
                        let source = ReplicaOf {
                            backend: &self.backend,
                            index: source,
                        };
                        match MessageHeader::read(&source, header) {
                            Some(message) => {
                                let (result, received) = self.connections.receive(
                                    fd,
                                    &message,
                                    header,
                                    flags,
                                    &mut self.shared,
                                );
                                stores.extend(received);
                                if result == -i64::from(libc::EAGAIN) {
                                    self.stats.quiet += 1;
                                }
                                result
                            }
                            None => -i64::from(libc::EFAULT),
                        }
                    }
                    SyscallClass::CloseConnection { fd } => self.connections.close(fd),
                    SyscallClass::CloseObject { fd } => self.shared.close(fd),
                    SyscallClass::MapObject { fd, len, offset } => {
                        match self.shared.map(fd, len, offset) {
                            Ok(address) => {
                                let mut regs = reference.regs;
                                regs.rdi = address;
                                regs.rsi = len;
                                regs.rdx = (libc::PROT_READ | libc::PROT_WRITE) as u64;
                                regs.r10 = (libc::MAP_PRIVATE
                                    | libc::MAP_ANONYMOUS
                                    | libc::MAP_FIXED_NOREPLACE)
                                    as u64;
                                regs.r8 = u64::MAX;
                                regs.r9 = 0;
                                self.fresh_mapping = true;
                                return Ok(Completion::RunInEachAs(Box::new(regs)));
                            }
                            Err(errno) => errno,
                        }
                    }
                    SyscallClass::Fixed(value) => value,
                    SyscallClass::Refused(errno) => {
                        if self.refused_logged.insert(syscall.number) {
                            log::warn!(
                                "replicas asked for syscall {} {:x?}, which a replicated driver may not make: {}",
                                syscall.number,
                                syscall.args,
                                Errno::from_raw(errno)
                            );
                        }
                        -(errno as i64)
                    }
                };
                regs.orig_rax = u64::MAX;
                regs.rax = result as u64;
            }
        }
        Ok(Completion::Continue {
            regs: Box::new(regs),
            stores,
        })
    }

    /// Makes the calls the replicas held for `reply` (voted with it, so a
    /// majority's), in the order they held them, and leaves the reply as the
    /// daemon expects it. Their answers are the engine's to check: nobody
    /// waits for them.
    fn make_held_calls(&mut self, reply: &mut Vec<u8>) {
        let section = match held::split_held(reply) {
            Ok(section) => section,
            Err(malformed) => {
                log::error!("the replicas' reply: {malformed}; no held call is made");
                return;
            }
        };
        if section.is_empty() {
            return;
        }
        // The device must find what the replicas wrote before the calls.
        self.push_shared_memory();
        for call in held::records(&section) {
            let call = match call {
                Ok(call) => call,
                Err(malformed) => {
                    log::error!("the replicas' held calls: {malformed}; the rest are not made");
                    return;
                }
            };
            self.stats.held_calls += 1;
            let status = self
                .connections
                .make_held_call(u64::from(call.fd), call.request);
            if status < 0 {
                log::warn!(
                    "a held call on the replicas' descriptor {} failed: {}",
                    call.fd,
                    Errno::from_raw(-status as i32)
                );
            }
        }
    }

    /// Gives replicas waiting at their channel exchange the request, the same bytes each.
    fn deliver(&mut self, parked: &Stopped, message: &[u8]) -> Result<(), GroupFailure> {
        let Action::Syscall(_, SyscallClass::ChannelExchange { buffer, len, .. }) = parked.action
        else {
            unreachable!("the group parks only at a channel exchange");
        };
        // The device's writes reach the replicas at rounds (and after every
        // answer that tells of the device), and not at the round that follows a
        // write or a call without a round of its own: that one is run at once to
        // hand the daemon's work to the device (a frame to send), and its news
        // can wait for the next. Comparing a driver's DMA memory with the
        // device's is the costliest thing the engine does; a request sees the
        // memory as of the last pull, as if the device had written a little
        // later.
        let handing_over = std::mem::replace(
            &mut self.handing_over,
            matches!(
                codec::request_opcode(message),
                Some(Opcode::Write | Opcode::Call)
            ) && !codec::carries_round(message),
        );
        // The causes are read before the memory is brought in: a frame whose
        // cause the read cleared is then in the replicas' copy.
        let with_cause = self.read_causes(message);
        let message = with_cause.as_deref().unwrap_or(message);
        if codec::is_round(message) && !handing_over {
            self.pull_shared_memory();
        }
        let take = message.len().min(len as usize);
        let mut regs = parked.regs;
        regs.orig_rax = u64::MAX;
        regs.rax = take as u64;
        let stores = [(buffer, message[..take].to_vec())];
        for index in self.live() {
            self.backend.complete(index, &stores, &regs)?;
        }
        Ok(())
    }

    /// `message` with the answer to the replicas' cause read, made now, if it
    /// is a round that tells them their line fired and they named one; `None`
    /// to deliver it as it is (the replicas then read the causes themselves).
    fn read_causes(&mut self, message: &[u8]) -> Option<Vec<u8>> {
        let cause_read = self.cause_read.as_ref()?;
        if !codec::tells_line_fired(message) {
            return None;
        }
        let started = Instant::now();
        let (status, answer) = self
            .connections
            .make_call(u64::from(cause_read.fd), &cause_read.request);
        self.stats.effects += started.elapsed();
        if status < 0 {
            log::warn!(
                "the replicas' cause read failed ({}); they read the causes themselves",
                Errno::from_raw(-status as i32)
            );
            return None;
        }
        self.stats.cause_reads += 1;
        let mut message = message.to_vec();
        codec::attach_cause(&mut message, &answer).then_some(message)
    }

    /// Brings every replica what the device wrote into shared memory.
    fn pull_shared_memory(&mut self) {
        if !self.shared.is_empty() {
            let started = Instant::now();
            let pids = self.pids_of(&self.live());
            self.shared.pull(&pids);
            self.stats.memory_sync += started.elapsed();
        }
    }

    /// Brings the device the shared memory a majority of replicas wrote, and
    /// repairs replicas whose copy differs from it.
    fn push_shared_memory(&mut self) {
        if self.shared.is_empty() {
            return;
        }
        let live = self.live();
        let pids = self.pids_of(&live);
        let started = Instant::now();
        let repaired = self.shared.push(&pids);
        self.stats.memory_sync += started.elapsed();
        for position in repaired {
            let index = live[position];
            let fault = format!("replica {index}: shared memory differs from the majority's");
            log::warn!("{fault}; repaired");
            self.stats.last_fault = Some(fault);
            self.stats.divergences += 1;
            self.stats.repairs += 1;
        }
    }

    /// Puts queued faults into their replicas, all stopped between events.
    fn apply_injections(&mut self) {
        for injection in std::mem::take(&mut self.injections) {
            match self.backend.inject(injection.replica, &injection.fault) {
                Ok(()) => {
                    log::info!("injected: {injection}");
                    self.stats.injected += 1;
                }
                Err(error) => log::warn!("{injection} not injected: {error}"),
            }
        }
    }

    /// The processes of the live replicas of `among`, for keeping scheme memory
    /// in step.
    fn pids_of(&self, among: &[ReplicaIndex]) -> Vec<Pid> {
        among
            .iter()
            .filter_map(|&index| self.backend.pid(index))
            .collect()
    }
}

/// How every replica ended, if all ended the same way (an exit the driver chose, not a
/// fault in one replica).
fn unanimous_end(arrivals: &[Option<Arrival>]) -> Option<String> {
    let mut ends = arrivals.iter().map(|arrival| match arrival {
        Some(Arrival::Died(how)) if how.starts_with("exited") => Some(how),
        _ => None,
    });
    let first = ends.next()??;
    ends.all(|end| end == Some(first)).then(|| first.clone())
}

/// Whether the event's answer may tell the replicas of a device's state: a
/// register or port read, or a scheme's reply. Their copies of the device's
/// memory are brought up to date before they go on, or a driver that reads a
/// cause would look at memory older than the cause.
fn tells_of_a_device(action: &Action) -> bool {
    matches!(
        action,
        Action::Port(_)
            | Action::Memory {
                access: MemoryAccess::Load { .. },
                ..
            }
            | Action::Syscall(
                _,
                SyscallClass::ConnectionExchange { .. } | SyscallClass::ReceiveMessage { .. }
            )
    )
}

/// Whether completing `action` can show a device what is in shared memory: a
/// scheme call (to `mmio:`, say), a port or device-memory access.
fn reaches_a_device(action: &Action) -> bool {
    matches!(
        action,
        Action::Port(_)
            | Action::Memory { .. }
            | Action::Syscall(
                _,
                SyscallClass::SendMessage { .. } | SyscallClass::ConnectionExchange { .. }
            )
    )
}
