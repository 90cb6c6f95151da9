//! The host's side of the fault campaign against the replicated e1000 driver in
//! the guest (`guest-tcp`'s campaign, `campaign_lines` has the console lines):
//! the TCP load that runs while faults go in, every echo checked byte for byte and
//! counted against the fault announced last, and the classification of each fault
//! from what the load saw and what the guest reported.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use guest_harness::campaign_lines::{
    parse_done_line, parse_fault_line, parse_service_label, GroupFate, TrialLine,
};
use guest_net::load::{Client, RoundTripVerdict};
use guest_net::protocol::parse_serving_line;
use indicatif::{ProgressBar, ProgressStyle};
use romain_campaign::report::{plot, write_csv};
use romain_campaign::{classify, Delivery, Observation, Outcome, Summary, TrialRecord};

use crate::results::host_check;
use crate::tcp_load::free_port;
use guest_harness::protocol::TestLine;

/// Kernel parameters that turn `guest-tcp` into the campaign.
const PORT_VAR: &str = "GUEST_TCP_PORT";
const FAULTS_VAR: &str = "GUEST_CAMPAIGN_FAULTS";
const REPLICAS_VAR: &str = "GUEST_CAMPAIGN_REPLICAS";
const SEED_VAR: &str = "GUEST_CAMPAIGN_SEED";
const WATCHDOG_VAR: &str = "GUEST_TCP_REPLICA_WATCHDOG_MS";
/// The load's messages: the TCP tests' round trips.
const MESSAGE_LEN: usize = 64;
/// The service is up when announced; a dropped SYN costs QEMU's user network a few
/// seconds.
const STARTUP: Duration = Duration::from_secs(20);
/// A round trip that takes this long has failed: longer than the guest's stall
/// timeout, so a fault that stops the load is seen stalled there first.
const IO_TIMEOUT: Duration = Duration::from_secs(25);

/// What the campaign runs.
#[derive(Debug, Clone)]
pub struct CampaignPlan {
    pub faults: usize,
    pub replicas: Vec<usize>,
    pub seed: u64,
    /// How long a replica may take to its next event before it counts as hung.
    pub watchdog_ms: u32,
}

/// What the host's load saw while one fault was the last announced.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LoadTally {
    pub exact: u64,
    pub wrong: u64,
    pub failed: u64,
}

/// Tallies per (group size, fault index).
type Tallies = BTreeMap<(usize, usize), LoadTally>;

/// The load of the group size being run: its stop flag and its thread.
struct RunningLoad {
    replicas: usize,
    stop: Arc<AtomicBool>,
    worker: JoinHandle<()>,
}

/// The campaign's TCP load, fed the guest's console lines as they come.
pub struct CampaignLoad {
    port: u16,
    /// The fault announced last: `replicas << 32 | index`, or `u64::MAX` before any.
    current: Arc<AtomicU64>,
    tallies: Arc<Mutex<Tallies>>,
    running: Mutex<Option<RunningLoad>>,
    /// Loads of group sizes done, ending (the guest ends its service itself).
    ended: Mutex<Vec<JoinHandle<()>>>,
    progress: ProgressBar,
}

impl CampaignLoad {
    pub fn start(plan: &CampaignPlan) -> std::io::Result<CampaignLoad> {
        let total = (plan.faults * plan.replicas.len()) as u64;
        let progress = ProgressBar::new(total);
        progress.set_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} faults, ETA {eta}")
                .map_err(std::io::Error::other)?
                .progress_chars("=> "),
        );
        progress.set_message("booting");
        Ok(CampaignLoad {
            port: free_port()?,
            current: Arc::new(AtomicU64::new(u64::MAX)),
            tallies: Arc::default(),
            running: Mutex::new(None),
            ended: Mutex::default(),
            progress,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kernel parameters that start the campaign in the guest.
    pub fn kernel_params(&self, plan: &CampaignPlan) -> Vec<String> {
        let sizes: Vec<String> = plan.replicas.iter().map(usize::to_string).collect();
        vec![
            format!("{PORT_VAR}={}", self.port),
            format!("{FAULTS_VAR}={}", plan.faults),
            format!("{REPLICAS_VAR}={}", sizes.join(",")),
            format!("{SEED_VAR}={}", plan.seed),
            format!("{WATCHDOG_VAR}={}", plan.watchdog_ms),
        ]
    }

    /// Looks at one console line: an announced service starts the load, an
    /// announced fault becomes the one the load counts against, `done` stops it.
    pub fn observe(&self, line: &str) {
        if let Some((replicas, index)) = parse_fault_line(line) {
            self.current
                .store((replicas as u64) << 32 | index as u64, Ordering::Relaxed);
            self.progress.inc(1);
        } else if let Some(replicas) = parse_done_line(line) {
            self.stop_load(replicas);
        } else if let Some((label, _)) = parse_serving_line(line) {
            if let Some(replicas) = parse_service_label(label) {
                self.start_load(replicas, label);
            }
        }
    }

    fn start_load(&self, replicas: usize, label: &str) {
        self.progress.set_message(format!("N = {replicas}"));
        let client = Client {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)),
            label: label.to_owned(),
            startup: STARTUP,
            io_timeout: IO_TIMEOUT,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (current, tallies, stopped) = (
            Arc::clone(&self.current),
            Arc::clone(&self.tallies),
            Arc::clone(&stop),
        );
        let worker = thread::spawn(move || {
            client.round_trips_until(MESSAGE_LEN, &stopped, |verdict| {
                let tag = current.load(Ordering::Relaxed);
                if tag == u64::MAX {
                    return;
                }
                let key = ((tag >> 32) as usize, (tag & 0xffff_ffff) as usize);
                let mut tallies = tallies.lock().unwrap_or_else(PoisonError::into_inner);
                let tally = tallies.entry(key).or_default();
                match verdict {
                    RoundTripVerdict::Exact => tally.exact += 1,
                    RoundTripVerdict::Wrong => tally.wrong += 1,
                    RoundTripVerdict::Failed => tally.failed += 1,
                }
            });
        });
        let previous = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(RunningLoad {
                replicas,
                stop,
                worker,
            });
        if let Some(previous) = previous {
            log::warn!("N = {} had not said done", previous.replicas);
            self.end(previous);
        }
    }

    fn stop_load(&self, replicas: usize) {
        self.current.store(u64::MAX, Ordering::Relaxed);
        let mut running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
        if running
            .as_ref()
            .is_some_and(|load| load.replicas == replicas)
        {
            if let Some(load) = running.take() {
                self.end(load);
            }
        }
    }

    fn end(&self, load: RunningLoad) {
        load.stop.store(true, Ordering::Relaxed);
        self.ended
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(load.worker);
    }

    /// Stops the load (the guest has ended by now) and returns what it saw.
    pub fn finish(self) -> Tallies {
        self.progress.finish_and_clear();
        let running = self
            .running
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(load) = running {
            self.end(load);
        }
        let ended = self
            .ended
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner);
        for worker in ended {
            if worker.join().is_err() {
                log::error!("the campaign's load thread panicked");
            }
        }
        std::mem::take(&mut self.tallies.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// One record per trial line of the console, each fault classified from what the
/// guest and the host's load saw; an error names a trial line that does not parse.
pub fn records(console: &str, tallies: &Tallies) -> Result<Vec<TrialRecord>, String> {
    console
        .lines()
        .filter_map(TrialLine::parse)
        .map(|trial| trial.map(|trial| record(&trial, tallies)))
        .collect()
}

fn record(trial: &TrialLine, tallies: &Tallies) -> TrialRecord {
    let load = tallies
        .get(&(trial.replicas, trial.index))
        .copied()
        .unwrap_or_default();
    let delivery = if load.wrong > 0 {
        Delivery::Wrong
    } else if load.failed > 0 {
        Delivery::Failed
    } else if !trial.served {
        Delivery::TimedOut
    } else {
        Delivery::Exact
    };
    let observation = Observation {
        delivery,
        before: trial.before.engine,
        after: trial.after.engine,
        engine_crashed: trial.fate == GroupFate::EngineRestarted,
        supervisor_restarted: trial.fate == GroupFate::LoneReplicaRestarted,
    };
    TrialRecord {
        index: trial.index,
        replicas: trial.replicas,
        kind: trial.kind,
        replica: trial.replica,
        command: trial.command.clone(),
        outcome: classify(&observation),
        micros: trial.micros,
    }
}

/// Classifies every fault, prints the table, writes `faults.csv` and
/// `outcomes.png` into `out`, and returns the host checks: every fault reported,
/// and no silent corruption with 2 or more replicas, nor an engine crash with 3.
pub fn report(plan: &CampaignPlan, console: &str, tallies: &Tallies, out: &Path) -> Vec<TestLine> {
    let records = match records(console, tallies) {
        Ok(records) => records,
        Err(why) => return vec![host_check("campaign-trials-readable", Err(why))],
    };
    let summary = Summary::of(&records);
    println!(
        "romain:e1000 under the host's TCP load\n{}",
        summary.table()
    );
    for &replicas in &plan.replicas {
        let load = tallies.iter().filter(|((n, _), _)| *n == replicas).fold(
            LoadTally::default(),
            |sum, (_, t)| LoadTally {
                exact: sum.exact + t.exact,
                wrong: sum.wrong + t.wrong,
                failed: sum.failed + t.failed,
            },
        );
        println!(
            "N = {replicas}: the host's load checked {} round trips: {} exact, {} wrong, {} failed",
            load.exact + load.wrong + load.failed,
            load.exact,
            load.wrong,
            load.failed
        );
    }
    let written = std::fs::create_dir_all(out)
        .and_then(|()| write_csv(&out.join("faults.csv"), &records))
        .map_err(|e| format!("{}: {e}", out.display()));
    match &written {
        Ok(()) => println!("CSV: {}", out.join("faults.csv").display()),
        Err(why) => log::error!("{why}"),
    }
    match plot(&out.join("outcomes.png"), &summary) {
        Ok(()) => println!("plot: {}", out.join("outcomes.png").display()),
        Err(e) => log::error!("no plot: {e}"),
    }
    let expected = plan.faults * plan.replicas.len();
    let never = |replicas: usize, outcome: Outcome| {
        let count = summary.count(replicas, outcome);
        match count {
            0 => Ok(()),
            _ => Err(format!(
                "{count} faults at N = {replicas} ended as {outcome}"
            )),
        }
    };
    let sizes = |least: usize| plan.replicas.iter().copied().filter(move |&n| n >= least);
    vec![
        host_check("campaign-csv-written", written),
        host_check(
            "campaign-every-fault-reported",
            match records.len() {
                n if n == expected => Ok(()),
                n => Err(format!("{n} of {expected} faults reported")),
            },
        ),
        host_check(
            "campaign-no-silent-corruption-with-2-or-more-replicas",
            sizes(2).try_for_each(|n| never(n, Outcome::SilentCorruption)),
        ),
        host_check(
            "campaign-no-engine-crash-with-3-replicas",
            sizes(3).try_for_each(|n| never(n, Outcome::DaemonCrash)),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_harness::campaign_lines::TrialCounters;
    use romain_campaign::outcome::Counters;
    use romain_campaign::FaultKind;

    fn trial(served: bool, fate: GroupFate, after: Counters) -> String {
        TrialLine {
            replicas: 3,
            index: 7,
            kind: FaultKind::Heap,
            replica: 2,
            served,
            fate,
            micros: 1000,
            before: TrialCounters::default(),
            after: TrialCounters {
                engine: after,
                engine_restarts: 0,
            },
            command: "flip 2 mem 0x1000 1".into(),
        }
        .to_string()
    }

    fn outcome(console: &str, load: LoadTally) -> Outcome {
        let tallies = Tallies::from([((3, 7), load)]);
        let read = records(console, &tallies).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].command, "flip 2 mem 0x1000 1");
        read[0].outcome
    }

    const CLEAN: LoadTally = LoadTally {
        exact: 4,
        wrong: 0,
        failed: 0,
    };

    #[test]
    fn a_wrong_echo_is_silent_corruption_whatever_the_engine_did() {
        let repaired = Counters {
            repairs: 1,
            ..Counters::default()
        };
        let wrong = LoadTally { wrong: 1, ..CLEAN };
        let console = trial(true, GroupFate::Serving, repaired);
        assert_eq!(outcome(&console, wrong), Outcome::SilentCorruption);
        assert_eq!(outcome(&console, CLEAN), Outcome::Repaired);
    }

    #[test]
    fn a_failed_round_trip_is_a_client_error_and_a_stalled_load_a_hang() {
        let quiet = Counters::default();
        let failed = LoadTally { failed: 1, ..CLEAN };
        let served = trial(true, GroupFate::Serving, quiet);
        assert_eq!(outcome(&served, failed), Outcome::ClientError);
        assert_eq!(outcome(&served, CLEAN), Outcome::Masked);
        let stalled = trial(false, GroupFate::Serving, quiet);
        assert_eq!(outcome(&stalled, CLEAN), Outcome::UnrecoveredHang);
    }

    #[test]
    fn restarts_tell_an_engine_crash_from_restart_only_supervision() {
        let quiet = Counters::default();
        let crashed = trial(true, GroupFate::EngineRestarted, quiet);
        assert_eq!(outcome(&crashed, CLEAN), Outcome::DaemonCrash);
        let lone = trial(true, GroupFate::LoneReplicaRestarted, quiet);
        assert_eq!(outcome(&lone, CLEAN), Outcome::Restarted);
    }

    #[test]
    fn a_fault_the_load_never_saw_counts_as_clean_and_console_noise_is_skipped() {
        let console = format!(
            "guest-test x ... ok\n{}\nromain-campaign fault x3 8\n",
            trial(true, GroupFate::Serving, Counters::default())
        );
        let read = records(&console, &Tallies::new()).unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].outcome, Outcome::Masked);
        let broken = records("romain-campaign trial x3 7 heap", &Tallies::new());
        assert!(broken.is_err());
    }
}
