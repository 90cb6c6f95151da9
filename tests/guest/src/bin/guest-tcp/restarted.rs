//! Our driver under `romain:` as a group of one (restart-only supervision) while
//! the host's load runs through it: every few seconds it is killed (once it is
//! stopped instead, so that it misses its heartbeat), and `romain:` starts a
//! successor, which takes over the NIC as the dead driver left it; `tap-bridge`
//! reopens the driver's scheme by itself. Nobody restarts anything by hand: the
//! host's transfers must still arrive whole.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use guest_harness::guest::report::{Report, StepResult};
use guest_harness::guest::romain::{Romain, RomainGroup, Supervision};
use guest_harness::protocol::GUEST_BENCH_PREFIX;
use guest_net::paths::{Access, NetPath};
use guest_net::relay::BridgeCounters;

use crate::our_driver::{registry_entry, serving, Driver, DRIVER_NAME, START_TIMEOUT};
use crate::service::{self, Settings};
use crate::Environment;

/// The path `romain:` probes: the driver's scheme.
const HEARTBEAT: &str = "/scheme/network.e1000";
/// Periods a replication engine may go without a heartbeat answer: it answers
/// between two requests it serves, and replacing a replica under emulation can
/// hold it up for more than a second.
const ENGINE_MISSED_PERIODS: u32 = 50;
/// How long the driver serves between two faults.
const FAULT_EVERY: Duration = Duration::from_secs(4);
/// Which fault (counted from 0) stops the driver instead of killing it.
const HANG_AT: usize = 2;
const POLL: Duration = Duration::from_millis(20);
/// How long a restart may take to show in the status once the load ended:
/// missed heartbeats, then a successor's start, with room to spare.
const RESTART_WAIT: Duration = Duration::from_secs(15);

/// The faults sent while the load ran.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    pub kills: u64,
    pub hangs: u64,
}

impl Faults {
    fn total(self) -> u64 {
        self.kills + self.hangs
    }
}

/// `romain:e1000` as a group of one, from a registry that watches it closely
/// (see [`Supervision::quick_restart`]), in direct access mode.
pub(crate) fn start_group(env: &Environment) -> StepResult<Driver> {
    let (romain, group) = start_supervised(env, Access::Direct, 1)?;
    Ok(Driver::Supervised { romain, group })
}

/// A fresh `romain serve` running `romain:e1000?replicas=<replicas>` in `access`
/// mode under [`Supervision::quick_restart`], once the driver serves.
pub(crate) fn start_supervised(
    env: &Environment,
    access: Access,
    replicas: usize,
) -> StepResult<(Romain, RomainGroup)> {
    let entry = registry_entry(env, access);
    let mut supervision = Supervision::quick_restart(HEARTBEAT);
    if replicas > 1 {
        supervision.missed_periods = ENGINE_MISSED_PERIODS;
    }
    let mut romain = Romain::start(&entry.supervised_registry(&supervision))?;
    let group = RomainGroup::up(DRIVER_NAME, replicas)?;
    romain.wait_until(START_TIMEOUT, serving)?;
    Ok((romain, group))
}

/// The shared steps while faults go to the group every [`FAULT_EVERY`]; then
/// whether `romain:` restarted it after each. Returns the faults sent, for the
/// bridge's check.
pub(crate) fn serve_under_kills(
    report: &mut Report,
    path: NetPath,
    settings: &Settings,
    up: Option<()>,
    group: Option<&RomainGroup>,
) -> Option<Faults> {
    let step = |name: &str| format!("tcp-{path}-{name}");
    let done = AtomicBool::new(false);
    let sent = thread::scope(|scope| {
        let faulter =
            group.map(|group| scope.spawn(|| send_faults(group, &done).map_err(|e| e.to_string())));
        service::run(report, path, settings, up);
        done.store(true, Ordering::Relaxed);
        faulter.map(|faulter| faulter.join())
    });
    let sent = report.run_after(&step("faults-sent"), sent, |joined| match joined {
        Ok(sent) => Ok(sent?),
        Err(_) => Err("the fault sender panicked".into()),
    });
    report.run_after(
        &step("driver-restarted-after-every-fault"),
        group.zip(sent),
        |(group, sent)| restarted_after_each(group, sent),
    );
    sent
}

/// Sends a fault every [`FAULT_EVERY`] until `done`, each once the driver
/// serves again after the last.
fn send_faults(group: &RomainGroup, done: &AtomicBool) -> StepResult<Faults> {
    let mut faults = Faults::default();
    let mut last = Instant::now();
    while !done.load(Ordering::Relaxed) {
        if last.elapsed() < FAULT_EVERY || !serving() {
            sleep(POLL);
            continue;
        }
        let index = faults.total() as usize;
        let command = if index == HANG_AT { "stop 0" } else { "kill 0" };
        group.command(command)?;
        match index == HANG_AT {
            true => faults.hangs += 1,
            false => faults.kills += 1,
        }
        last = Instant::now();
    }
    Ok(faults)
}

/// `romain:` restarted the driver once per fault, by itself, and timed each.
/// The last fault may have gone in as the load ended: a stopped driver is
/// restarted only once it has missed its heartbeats, so the count is waited
/// for, up to [`RESTART_WAIT`].
fn restarted_after_each(group: &RomainGroup, sent: Faults) -> StepResult<String> {
    let deadline = Instant::now() + RESTART_WAIT;
    let (status, restarts, timed) = loop {
        let status = group.status()?;
        let restarts = status.counter("restarts")?;
        let timed = status.counter("restart_to_serving_count")?;
        if (restarts >= sent.total() && timed >= sent.total()) || Instant::now() > deadline {
            break (status, restarts, timed);
        }
        sleep(POLL);
    };
    let mean = status.value("restart_to_serving_mean_ms")?.to_owned();
    println!(
        "{GUEST_BENCH_PREFIX} tcp e1000-restarted: {} kills and {} hang, {restarts} restarts, \
         restart-to-serving mean {mean} ms, last {} ms",
        sent.kills,
        sent.hangs,
        status.value("restart_to_serving_last_ms")?
    );
    if sent.total() == 0 {
        return Err("no fault was sent: the load ended too soon".into());
    }
    if restarts != sent.total() || timed != sent.total() {
        return Err(format!(
            "{} faults sent, but romain: restarted {restarts} times and timed {timed}",
            sent.total()
        )
        .into());
    }
    Ok(format!("{restarts} restarts, mean {mean} ms"))
}

/// The bridge reopened the driver's scheme once per restart.
pub(crate) fn bridge_reopened(counters: &BridgeCounters, sent: Faults) -> StepResult<()> {
    match counters.reopened == sent.total() {
        true => Ok(()),
        false => Err(format!(
            "{} restarts, but the bridge reopened the NIC {} times",
            sent.total(),
            counters.reopened
        )
        .into()),
    }
}
