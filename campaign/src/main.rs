//! `romain-campaign`: a fault-injection campaign against the replicated UART
//! driver, reported as a table, a CSV with one row per fault and a plot.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use romain_campaign::report::{plot, write_csv};
use romain_campaign::{run_campaign, CampaignConfig, Outcome, Summary};

/// Inject seeded faults (register, stack, heap, data and code bit flips, kills,
/// stops, endless loops) into one replica at a time of the 16550 UART driver
/// under romain's replication engine, check every request byte for byte on a
/// software chip, and classify each fault.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Group sizes to run, each with --faults faults (1: a lone traced replica
    /// restarted when it dies, as restart-only supervision)
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    replicas: Vec<usize>,
    /// Faults per group size
    #[arg(long, default_value_t = 1000)]
    faults: usize,
    /// Seed of the fault sequence (the same seed replays the same faults)
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Milliseconds a replica may take to its next event before it counts as hung
    #[arg(long, default_value_t = 300)]
    watchdog_ms: u64,
    /// The uart16550 driver program (default: beside this program)
    #[arg(long)]
    driver: Option<PathBuf>,
    /// Where the CSV and the plot go
    #[arg(long, default_value = "target/campaign")]
    out: PathBuf,
}

fn main() -> ExitCode {
    scheme_runtime::logging::init();
    let args = Args::parse();
    if args.replicas.contains(&0) || args.faults == 0 {
        eprintln!("romain-campaign: group sizes and --faults must be at least 1");
        return ExitCode::FAILURE;
    }
    let driver = args.driver.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("uart16550")))
            .unwrap_or_else(|| PathBuf::from("uart16550"))
    });
    // Replicas start from another directory: the program is named absolutely.
    let driver = match std::fs::canonicalize(&driver) {
        Ok(driver) => driver,
        Err(e) => {
            eprintln!("romain-campaign: the driver {}: {e}", driver.display());
            return ExitCode::FAILURE;
        }
    };
    let config = CampaignConfig {
        driver,
        replicas: args.replicas.clone(),
        faults: args.faults,
        seed: args.seed,
        watchdog: Duration::from_millis(args.watchdog_ms),
        timeout: Duration::from_secs(10),
        progress: true,
    };
    let started = Instant::now();
    let records = match run_campaign(&config) {
        Ok(records) => records,
        Err(e) => {
            eprintln!("romain-campaign: {e}");
            return ExitCode::FAILURE;
        }
    };
    let summary = Summary::of(&records);
    print!("{}", summary.table());
    println!(
        "{} faults in {:.0} s",
        records.len(),
        started.elapsed().as_secs_f64()
    );
    if let Err(e) = std::fs::create_dir_all(&args.out) {
        eprintln!("romain-campaign: {}: {e}", args.out.display());
        return ExitCode::FAILURE;
    }
    let csv = args.out.join("faults.csv");
    match write_csv(&csv, &records) {
        Ok(()) => println!("CSV: {}", csv.display()),
        Err(e) => eprintln!("romain-campaign: {}: {e}", csv.display()),
    }
    let png = args.out.join("outcomes.png");
    match plot(&png, &summary) {
        Ok(()) => println!("plot: {}", png.display()),
        Err(e) => eprintln!("romain-campaign: no plot: {e}"),
    }
    let silent: u64 = args
        .replicas
        .iter()
        .filter(|&&n| n >= 2)
        .map(|&n| summary.count(n, Outcome::SilentCorruption))
        .sum();
    if silent > 0 {
        eprintln!("romain-campaign: {silent} silent corruptions with 2 or more replicas");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
