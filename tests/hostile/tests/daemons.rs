//! Every daemon against 10,000 hostile requests of every class from another
//! uid, over its real socket: afterwards it holds the descriptors it held before,
//! its memory is within 1 MiB of where it was, it has logged less than 1 MB,
//! and a well-behaved client was answered within 100 ms throughout.

use std::path::Path;
use std::time::Duration;

use hostile_clients::target::{Prober, Target};
use hostile_clients::Daemon;

const EXE: &str = env!("CARGO_BIN_EXE_hostile-target");
/// Requests of each class, as the acceptance asks.
const COUNT: usize = 10_000;
const MAX_LOG_BYTES: u64 = 1 << 20;
const MAX_GROWTH_KIB: u64 = 1024;
const MAX_PROBE_WAIT: Duration = Duration::from_millis(100);

fn holds_against_every_class(daemon: Daemon) {
    let mut target = Target::start(Path::new(EXE), daemon).expect("the daemon starts");
    // One short round of every class first, so that what the daemon keeps for
    // reuse (buffers, tables) has grown to its working size before the baseline.
    let warm_up = target.attack(700, &[]).expect("the attacker runs");
    assert!(
        warm_up.status.success(),
        "{daemon:?} warm-up: {}",
        String::from_utf8_lossy(&warm_up.stderr)
    );
    let fds = target.settle_fds(0, Duration::from_millis(300)).unwrap();
    let rss = target.rss_kib().unwrap();

    let prober = Prober::start(&target);
    let attack = target.attack(COUNT, &[]).expect("the attacker runs");
    let probes = prober.stop();

    let printed = String::from_utf8_lossy(&attack.stdout);
    eprintln!("{daemon:?}:\n{printed}probes: {probes:?}");
    assert!(
        attack.status.success(),
        "{daemon:?}: the attack found a defect: {}",
        String::from_utf8_lossy(&attack.stderr)
    );
    assert!(target.is_alive(), "{daemon:?} died");
    let fds_after = target.settle_fds(fds, Duration::from_secs(5)).unwrap();
    assert!(
        fds_after <= fds,
        "{daemon:?} holds {fds_after} descriptors, {fds} before the attack"
    );
    let grown = target.rss_kib().unwrap().saturating_sub(rss);
    assert!(
        grown <= MAX_GROWTH_KIB,
        "{daemon:?} grew by {grown} KiB of resident memory"
    );
    let logged = target.log_bytes().unwrap();
    assert!(
        logged < MAX_LOG_BYTES,
        "{daemon:?} logged {logged} bytes; it ends:\n{}",
        tail(&target.log_text(), 2000)
    );
    assert_eq!(
        probes.failures, 0,
        "{daemon:?} failed the well-behaved client: {:?}",
        probes.first_failure
    );
    assert!(
        probes.probes > 10,
        "{daemon:?} was hardly probed: {probes:?}"
    );
    assert!(
        probes.slowest <= MAX_PROBE_WAIT,
        "{daemon:?} kept the well-behaved client waiting {:?}",
        probes.slowest
    );
}

fn tail(text: &str, bytes: usize) -> &str {
    let mut start = text.len().saturating_sub(bytes);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

#[test]
fn the_testbed_holds_against_every_class_of_hostile_client() {
    holds_against_every_class(Daemon::Testbed);
}

#[test]
fn dma_holds_against_every_class_of_hostile_client() {
    holds_against_every_class(Daemon::Dma);
}

#[test]
fn mmio_holds_against_every_class_of_hostile_client() {
    holds_against_every_class(Daemon::Mmio);
}

#[test]
fn romain_holds_against_every_class_of_hostile_client() {
    holds_against_every_class(Daemon::Romain);
}

#[test]
fn the_uart_driver_holds_against_every_class_of_hostile_client() {
    holds_against_every_class(Daemon::Uart);
}

#[test]
fn the_e1000_driver_holds_against_every_class_of_hostile_client() {
    holds_against_every_class(Daemon::E1000);
}
