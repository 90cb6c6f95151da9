//! A fault campaign against our e1000 driver under the host's TCP load: for each
//! group size the driver runs as `romain:e1000?replicas=N` (at N = 1, as a lone
//! replica under `romain replicate`, restarted by this program when it dies:
//! restart-only supervision), the guest's stack reaches it through `tap-bridge`,
//! and the echo service runs in this program, so it knows how many round trips the
//! host's load has had echoed. Then one seeded fault at a time goes into a random
//! replica; its window lasts until the load has gone on for a few round trips (or
//! stalls), the engine scrubs the replicas' memory, and one console line says what
//! the guest saw ([`TrialLine`]). The host checks every echo byte for byte and
//! classifies each fault from both sides.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use guest_harness::campaign_lines::{
    done_line, fault_line, service_label, GroupFate, TrialCounters, TrialLine,
};
use guest_harness::guest::control::EngineStatus;
use guest_harness::guest::faults::FaultTarget;
use guest_harness::guest::report::{Report, StepResult};
use guest_net::child::Child;
use guest_net::echo::EchoService;
use guest_net::load::Client;
use guest_net::paths::{BackendKind, NetPath, ReplicaCount};
use guest_net::protocol::serving_line;
use romain_campaign::fault::Regions;
use romain_campaign::outcome::Counters;
use romain_campaign::{FaultKind, FaultPlan};

use crate::our_driver::{start_bridge, start_driver, stop_driver, Driver};
use crate::service::{gateway_answers, Settings};
use crate::Environment;

/// The e1000 driver's fault mix: every kind, DMA copies included. Kills, stops
/// and endless loops each cost a replacement (a stop or a loop a watchdog period
/// first), so they come half as often as each kind of bit flip, which Romain's and
/// FAIL*'s campaigns are made of.
const KINDS: [FaultKind; 15] = [
    FaultKind::Register,
    FaultKind::Register,
    FaultKind::Stack,
    FaultKind::Stack,
    FaultKind::Heap,
    FaultKind::Heap,
    FaultKind::Data,
    FaultKind::Data,
    FaultKind::Dma,
    FaultKind::Dma,
    FaultKind::Code,
    FaultKind::Code,
    FaultKind::Kill,
    FaultKind::Stop,
    FaultKind::Hang,
];
/// The program whose maps tell a replica's data and code.
const DRIVER_FILE: &str = "e1000";
/// A fault's window ends once the host's load has had this many more bytes echoed:
/// four of its 64-byte round trips.
const WINDOW_BYTES: u64 = 4 * 64;
/// A window in which the load does not go on for this long has stalled: longer than
/// a watchdog period, a replacement and TCP's retransmission after them.
const STALL_TIMEOUT: Duration = Duration::from_secs(20);
/// How often a window looks at the echo count.
const POLL: Duration = Duration::from_millis(2);
/// Every this many polls (50 ms) a window also looks whether the lone replica's
/// engine or the bridge ended.
const SERVING_CHECK_POLLS: u32 = 25;
/// The host's load starts once the service is announced.
const LOAD_START_TIMEOUT: Duration = Duration::from_secs(60);
/// The service's deadline on one read or write: a connection the host gave up on
/// ends this long after at the latest.
const SERVICE_IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Ending the service waits for the host's last connection to end.
const QUIT_TIMEOUT: Duration = Duration::from_secs(2 * SERVICE_IO_TIMEOUT.as_secs());

/// What the campaign runs.
pub struct Plan {
    pub faults: usize,
    /// Group sizes, 1 to 3, in order.
    pub replicas: Vec<usize>,
    pub seed: u64,
}

/// Runs the campaign at each group size, a step each.
pub fn run(report: &mut Report, env: Option<&Environment>, plan: &Plan, settings: &Settings) {
    for &replicas in &plan.replicas {
        report.run_after(&format!("campaign-x{replicas}-ran"), env, |env| {
            campaign(env, plan, replicas, settings)
        });
    }
}

fn campaign(
    env: &Environment,
    plan: &Plan,
    replicas: usize,
    settings: &Settings,
) -> StepResult<String> {
    let count = replicas
        .checked_sub(1)
        .and_then(|at| ReplicaCount::ALL.get(at))
        .ok_or_else(|| format!("a group of {replicas}: the campaign runs 1 to 3 replicas"))?;
    let mut target = Target::start(env, NetPath::ReplicaCountE1000(*count, BackendKind::Ptrace))?;
    let label = service_label(replicas);
    let address = SocketAddr::from((Ipv4Addr::UNSPECIFIED, settings.port));
    let service = Arc::new(EchoService::bind(address, &label, SERVICE_IO_TIMEOUT)?);
    // Not a scoped thread: a service no `quit` reaches must not hold this
    // program; it is left behind, and the step says why.
    let serving = thread::spawn({
        let service = Arc::clone(&service);
        move || service.serve()
    });
    let outcome = (|| -> StepResult<String> {
        println!("{}", serving_line(&label, settings.port));
        let started = Instant::now();
        while service.echoed_so_far() == 0 {
            if started.elapsed() > LOAD_START_TIMEOUT {
                return Err(
                    format!("the host's load did not start in {LOAD_START_TIMEOUT:?}").into(),
                );
            }
            sleep(POLL);
        }
        let mut faults = FaultPlan::with_kinds(plan.seed ^ (replicas as u64) << 32, &KINDS);
        let mut snapshot = target.snapshot()?;
        let mut stalled = 0;
        for index in 0..plan.faults {
            let (trial, after) = target.trial(&service, &mut faults, replicas, index, snapshot)?;
            println!("{trial}");
            stalled += usize::from(!trial.served);
            snapshot = after;
        }
        println!("{}", done_line(replicas));
        Ok(format!("{} faults, {stalled} windows stalled", plan.faults))
    })();
    // The service is ended from here, over loopback: the host stops its load on
    // `done`, and the path through the driver may be down after the last fault.
    // The host's last connection ends first (its close arrives, or the service's
    // deadline passes).
    let local = Client {
        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, settings.port)),
        label: label.clone(),
        startup: QUIT_TIMEOUT,
        io_timeout: QUIT_TIMEOUT,
    };
    let ended = local
        .quit()
        .map_err(|why| format!("the echo service did not end: {why}"))
        .and_then(|()| match serving.join() {
            Ok(served) => served.map_err(|e| format!("the echo service failed: {e}")),
            Err(_) => Err("the echo service panicked".to_owned()),
        });
    target.stop()?;
    let summary = outcome?;
    Ok(format!("{summary}; echo service: {}", ended?))
}

/// The engine's counters and the replicas' pids at one moment.
#[derive(Clone, Debug, Default)]
struct Snapshot {
    counters: TrialCounters,
    pids: Vec<Option<u32>>,
}

impl Snapshot {
    fn of(status: &EngineStatus) -> StepResult<Snapshot> {
        let count = |key: &str| status.counter(key);
        Ok(Snapshot {
            counters: TrialCounters {
                engine: Counters {
                    divergences: count("divergences")?,
                    repairs: count("repairs")?,
                    replacements: count("replacements")?,
                    no_majority: count("no_majority")?,
                    restarts: count("group_restarts")?,
                },
                // Only a `romain:` group has a supervisor that restarts the engine.
                engine_restarts: count("restarts").unwrap_or(0),
            },
            pids: status.replica_pids(),
        })
    }

    /// Where replica `index`'s memory lies, by kind (empty once it is gone).
    fn regions(&self, index: usize) -> Regions {
        self.pids
            .get(index)
            .copied()
            .flatten()
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/maps")).ok())
            .map(|maps| Regions::parse(&maps, DRIVER_FILE))
            .unwrap_or_default()
    }
}

/// The replicated driver and the bridge that puts the guest's stack on it.
struct Target<'a> {
    env: &'a Environment,
    path: NetPath,
    driver: Driver,
    bridge: Child,
    /// This program started the lone replica's engine again during the window.
    lone_replica_restarted: bool,
}

impl<'a> Target<'a> {
    fn start(env: &'a Environment, path: NetPath) -> StepResult<Target<'a>> {
        let driver = start_driver(env, path)?;
        let bridge = start_bridge()?;
        gateway_answers()?;
        Ok(Target {
            env,
            path,
            driver,
            bridge,
            lone_replica_restarted: false,
        })
    }

    fn snapshot(&self) -> StepResult<Snapshot> {
        Snapshot::of(&self.driver.engine_status()?)
    }

    fn inject(&self, command: &str) -> StepResult<()> {
        match &self.driver {
            Driver::Supervised { group, .. } => group.inject(command),
            Driver::Traced { control, .. } => control.inject(command),
            Driver::Alone(_) => Err("the driver runs alone, without the engine".into()),
        }
    }

    /// One fault and its window; `before` is the state the last window left.
    fn trial(
        &mut self,
        service: &EchoService,
        faults: &mut FaultPlan,
        replicas: usize,
        index: usize,
        before: Snapshot,
    ) -> StepResult<(TrialLine, Snapshot)> {
        let fault = faults.next(replicas, |replica| before.regions(replica));
        println!("{}", fault_line(replicas, index));
        let started = Instant::now();
        let echoed = service.echoed_so_far();
        // A refused injection (a replica's place being refilled) is still a fault
        // that did nothing: it is classified like any other.
        let _ = self.inject(&fault.command);
        let mut served = true;
        let mut polls = 0u32;
        while service.echoed_so_far() < echoed + WINDOW_BYTES {
            if started.elapsed() > STALL_TIMEOUT {
                served = false;
                break;
            }
            polls += 1;
            if polls.is_multiple_of(SERVING_CHECK_POLLS) {
                self.keep_serving()?;
            }
            sleep(POLL);
        }
        if replicas > 1 {
            // Memory the load did not read is compared now, so a flip is found
            // (and its class known) before the next fault.
            let _ = self.inject("scrub");
        }
        let micros = started.elapsed().as_micros();
        self.keep_serving()?;
        let (fate, after) = self.fate(&before)?;
        let trial = TrialLine {
            replicas,
            index,
            kind: fault.kind,
            replica: fault.replica,
            served,
            fate,
            micros,
            before: before.counters,
            after: after.counters,
            command: fault.command,
        };
        Ok((trial, after))
    }

    /// Starts the lone replica's engine again if it ended (it ends with its
    /// replica, as romain's restart-only supervision would then restart it). The
    /// bridge reopens the driver's scheme by itself after any restart; it must
    /// never end.
    fn keep_serving(&mut self) -> StepResult<()> {
        let lone_replica_died = match &mut self.driver {
            Driver::Traced { engine, .. } => engine.has_ended()?,
            _ => false,
        };
        if lone_replica_died {
            log::info!("the lone replica died: starting it again");
            let _ = stop_driver(&mut self.driver);
            self.driver = start_driver(self.env, self.path)?;
            self.lone_replica_restarted = true;
        }
        if self.bridge.has_ended()? {
            return Err("tap-bridge ended: it did not reopen the driver's scheme".into());
        }
        Ok(())
    }

    /// What became of the group during the window that just ended.
    fn fate(&mut self, before: &Snapshot) -> StepResult<(GroupFate, Snapshot)> {
        let after = self.snapshot()?;
        let fate = if std::mem::take(&mut self.lone_replica_restarted) {
            GroupFate::LoneReplicaRestarted
        } else if after.counters.engine_restarts > before.counters.engine_restarts {
            GroupFate::EngineRestarted
        } else {
            GroupFate::Serving
        };
        Ok((fate, after))
    }

    fn stop(mut self) -> StepResult<()> {
        let _ = self.bridge.terminate(Duration::from_secs(5));
        stop_driver(&mut self.driver)
    }
}
