//! Running a campaign: one group per size, one fault and one request at a time.

use std::io;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::fault::FaultPlan;
use crate::outcome::{classify, Observation};
use crate::report::TrialRecord;
use crate::uart::UartTarget;

/// What to run.
#[derive(Clone, Debug)]
pub struct CampaignConfig {
    /// The `uart16550` program.
    pub driver: PathBuf,
    /// Group sizes, each its own run.
    pub replicas: Vec<usize>,
    /// Faults per group size.
    pub faults: usize,
    pub seed: u64,
    /// How long a replica may take to its next event before it counts as hung.
    pub watchdog: Duration,
    /// How long a request may take before it counts as an unrecovered hang.
    pub timeout: Duration,
    /// Show a progress bar with an ETA on standard error.
    pub progress: bool,
}

/// Runs the campaign and returns one record per fault.
pub fn run_campaign(config: &CampaignConfig) -> io::Result<Vec<TrialRecord>> {
    let total = config.faults * config.replicas.len();
    let bar = if config.progress {
        ProgressBar::new(total as u64)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} faults, ETA {eta}")
            .map_err(io::Error::other)?
            .progress_chars("=> "),
    );
    let mut records = Vec::with_capacity(total);
    for &replicas in &config.replicas {
        bar.set_message(format!("N = {replicas}"));
        let mut target = UartTarget::start(&config.driver, replicas, config.watchdog)?;
        let mut plan = FaultPlan::new(config.seed ^ (replicas as u64) << 32);
        for index in 0..config.faults {
            records.push(trial(&mut target, &mut plan, config, replicas, index)?);
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(records)
}

fn trial(
    target: &mut UartTarget,
    plan: &mut FaultPlan,
    config: &CampaignConfig,
    replicas: usize,
    index: usize,
) -> io::Result<TrialRecord> {
    let started = Instant::now();
    let before = target.counters();
    let fault = plan.next(replicas, |replica| target.regions(replica));
    // A refused injection (a replica place being refilled) is still a fault
    // that did nothing: it is classified like any other.
    let _ = target.command(&fault.command);
    let message = format!("N{replicas} fault {index:06} {:>12}\r\n", fault.kind);
    let delivery = target.request(message.as_bytes(), config.timeout);
    if replicas > 1 {
        // Memory a request did not read is compared now, so a flip is found
        // (and its class known) before the next fault.
        let _ = target.command("scrub");
    }
    let serving = target.is_serving();
    let after = if serving { target.counters() } else { before };
    let observation = Observation {
        delivery,
        before,
        after,
        // A lone replica's death ends its group by design; at N >= 2 the engine
        // stopping is the engine failing.
        engine_crashed: !serving && replicas > 1,
        supervisor_restarted: !serving && replicas == 1,
    };
    if !serving {
        target.restart()?;
    }
    Ok(TrialRecord {
        index,
        replicas,
        kind: fault.kind,
        replica: fault.replica,
        command: fault.command,
        outcome: classify(&observation),
        micros: started.elapsed().as_micros(),
    })
}
