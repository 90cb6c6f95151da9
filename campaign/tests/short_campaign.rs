//! A short campaign, as `make test` runs it: a few hundred seeded faults into the
//! replicated UART driver at N = 2 and 3, every one classified, none of them
//! silent corruption, and the engine never giving up.

use std::path::PathBuf;
use std::time::Duration;

use romain_campaign::{run_campaign, CampaignConfig, Outcome, Summary};

/// The `uart16550` program, built beside this test by `cargo test --workspace`.
fn uart_driver() -> PathBuf {
    // Integration tests run from target/<profile>/deps; the workspace's binaries
    // sit one level up.
    let exe = std::env::current_exe().unwrap();
    let driver = exe.parent().unwrap().parent().unwrap().join("uart16550");
    assert!(
        driver.exists(),
        "{} is missing: build the workspace's binaries first (cargo test --workspace does)",
        driver.display()
    );
    driver
}

#[test]
fn a_short_campaign_finds_no_silent_corruption_with_two_or_three_replicas() {
    const FAULTS: usize = 120;
    let config = CampaignConfig {
        driver: uart_driver(),
        replicas: vec![2, 3],
        faults: FAULTS,
        seed: 11,
        watchdog: Duration::from_millis(300),
        timeout: Duration::from_secs(10),
        progress: false,
    };
    let records = run_campaign(&config).expect("the campaign runs");
    let summary = Summary::of(&records);
    eprintln!("{}", summary.table());
    assert_eq!(records.len(), 2 * FAULTS);
    for n in [2, 3] {
        let classified: u64 = Outcome::ALL.iter().map(|&o| summary.count(n, o)).sum();
        assert_eq!(classified, FAULTS as u64, "N = {n}");
        assert_eq!(summary.count(n, Outcome::SilentCorruption), 0, "N = {n}");
        assert_eq!(summary.count(n, Outcome::UnrecoveredHang), 0, "N = {n}");
    }
    assert_eq!(summary.count(3, Outcome::DaemonCrash), 0);
    // Three replicas repair or replace what two can only restart on.
    assert!(summary.count(3, Outcome::Repaired) > 0);
    assert!(summary.count(3, Outcome::Replaced) > 0);
    assert!(summary.count(2, Outcome::Restarted) > 0);
}
