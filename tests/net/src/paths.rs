//! The network paths the echo service is measured on: our e1000 driver in each of
//! its register access modes under the guest's stack (through the TAP bridge), the
//! same driver replicated by the replication engine (under fault injection, for the
//! tests; as 1, 2 and 3 replicas without faults, for the benchmark), on each of the
//! engine's backends, each way our driver alone may wait for its NIC (for the
//! benchmark), and Linux's in-kernel e1000 driver as the baseline.

use std::fmt;
use std::str::FromStr;

pub use romain_engine::BackendKind;

/// How our driver reaches the NIC's registers (its `--access` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// BAR 0 mapped into the driver through mmio:'s direct mode.
    Direct,
    /// Every batch of register accesses a request to mmio:.
    Mmio,
}

impl Access {
    pub fn name(self) -> &'static str {
        match self {
            Access::Direct => "direct",
            Access::Mmio => "mmio",
        }
    }
}

/// How our driver alone learns that its NIC has work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waiting {
    /// Sleeps on the NIC's interrupt, and after one polls every tick while
    /// frames move, until [`BUSY_POLL_US`] pass without one: the driver's
    /// default.
    BusyPolling,
    /// Sleeps on the NIC's interrupt and takes every burst by it
    /// (`--busy-poll-us 0`).
    Notified,
    /// Polls every tick and never sleeps on the interrupt (`--interrupt off`).
    Polled,
}

impl Waiting {
    /// Every way, the default first.
    pub const ALL: [Waiting; 3] = [Waiting::BusyPolling, Waiting::Notified, Waiting::Polled];

    /// The driver's options for this way of waiting.
    pub fn driver_args(self) -> &'static [&'static str] {
        match self {
            Waiting::BusyPolling => &[],
            Waiting::Notified => &["--busy-poll-us", "0"],
            Waiting::Polled => &["--interrupt", "off"],
        }
    }
}

/// How long the driver polls after the last frame before it sleeps on its
/// interrupt again (its `--busy-poll-us` default).
pub const BUSY_POLL_US: u64 = e1000::interrupt::DEFAULT_BUSY_POLL_US;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetPath {
    /// Our driver, serving `network.e1000` to the TAP bridge.
    OurE1000(Access, Waiting),
    /// Our driver as a group of [`REPLICAS`] replicas that `romain:` starts and
    /// supervises on the engine's backend, in [`REPLICATED_ACCESS`] mode, serving
    /// the bridge the same way, with a fault injected into a random replica every
    /// second: the tests' path.
    ReplicatedE1000(BackendKind),
    /// Our driver alone in direct mode as a group of one under `romain:`, which
    /// restarts it: killed every few seconds (once hung instead) while it serves,
    /// its successor taking over the NIC and the bridge reopening it: the tests'
    /// path for restart-only supervision.
    RestartedE1000,
    /// Our driver as this many replicas under the replication engine on its
    /// backend, in [`REPLICATED_ACCESS`] mode, without faults: what each replica
    /// costs, for the benchmark.
    ReplicaCountE1000(ReplicaCount, BackendKind),
    /// Linux's e1000 module driving `eth0`.
    LinuxE1000,
}

/// How often our driver polls its NIC when no request arrives (its `--tick-us`):
/// a frame that arrives while the stack waits is noticed within one tick. Ten
/// times its default, because every tick of waiting is round-trip time here; going
/// down to 20 us gained 3% on the round trip under TCG.
pub const DRIVER_TICK_US: u32 = 100;

/// Replicas of the replicated driver: the fewest that outvote one faulty replica.
pub const REPLICAS: usize = 3;
/// The replicated driver's access mode: the engine refuses the replicas a mapping of
/// the NIC's BAR, so it cannot run in direct mode.
pub const REPLICATED_ACCESS: Access = Access::Mmio;

/// How many replicas a benchmark path runs: 1, 2 or 3, the counts Bailleu's
/// Table 4.1 compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaCount(usize);

impl ReplicaCount {
    /// Every count, fewest first.
    pub const ALL: [ReplicaCount; 3] = [ReplicaCount(1), ReplicaCount(2), ReplicaCount(3)];

    pub fn get(self) -> usize {
        self.0
    }
}

/// Our driver in both access modes, replicated under faults and restarted under
/// kills, in the order a test run measures them.
pub const OUR_DRIVER_PATHS: [NetPath; 4] = [
    NetPath::OurE1000(Access::Direct, Waiting::BusyPolling),
    NetPath::OurE1000(Access::Mmio, Waiting::BusyPolling),
    NetPath::ReplicatedE1000(BackendKind::Ptrace),
    NetPath::RestartedE1000,
];

/// The replicated driver under faults on the stub backend, which Redox can run.
pub const STUB_REPLICATED_PATH: NetPath = NetPath::ReplicatedE1000(BackendKind::Stub);

/// Our driver as 1, 2 and 3 replicas without faults, in the order a benchmark run
/// measures them (after both access modes).
pub const REPLICA_COUNT_PATHS: [NetPath; 3] = [
    NetPath::ReplicaCountE1000(ReplicaCount::ALL[0], BackendKind::Ptrace),
    NetPath::ReplicaCountE1000(ReplicaCount::ALL[1], BackendKind::Ptrace),
    NetPath::ReplicaCountE1000(ReplicaCount::ALL[2], BackendKind::Ptrace),
];

/// Three replicas without faults on the stub backend: the benchmark's row
/// beside the ptrace backend's.
pub const STUB_REPLICA_COUNT_PATH: NetPath =
    NetPath::ReplicaCountE1000(ReplicaCount::ALL[2], BackendKind::Stub);

/// Our driver alone in direct mode, each way of waiting for its NIC, the
/// default first: the benchmark's notification-against-polling table.
pub const WAITING_PATHS: [NetPath; 3] = [
    NetPath::OurE1000(Access::Direct, Waiting::ALL[0]),
    NetPath::OurE1000(Access::Direct, Waiting::ALL[1]),
    NetPath::OurE1000(Access::Direct, Waiting::ALL[2]),
];

/// Every path there is, for parsing labels.
const ALL_PATHS: [NetPath; 14] = [
    OUR_DRIVER_PATHS[0],
    OUR_DRIVER_PATHS[1],
    OUR_DRIVER_PATHS[2],
    OUR_DRIVER_PATHS[3],
    REPLICA_COUNT_PATHS[0],
    REPLICA_COUNT_PATHS[1],
    REPLICA_COUNT_PATHS[2],
    NetPath::LinuxE1000,
    WAITING_PATHS[1],
    WAITING_PATHS[2],
    NetPath::OurE1000(Access::Mmio, Waiting::Notified),
    NetPath::OurE1000(Access::Mmio, Waiting::Polled),
    STUB_REPLICATED_PATH,
    STUB_REPLICA_COUNT_PATH,
];

impl NetPath {
    /// The one-word name the service's banner and the console lines carry.
    pub fn label(self) -> &'static str {
        match self {
            NetPath::OurE1000(Access::Direct, Waiting::BusyPolling) => "e1000-direct",
            NetPath::OurE1000(Access::Direct, Waiting::Notified) => "e1000-direct-notified",
            NetPath::OurE1000(Access::Direct, Waiting::Polled) => "e1000-direct-polled",
            NetPath::OurE1000(Access::Mmio, Waiting::BusyPolling) => "e1000-mmio",
            NetPath::OurE1000(Access::Mmio, Waiting::Notified) => "e1000-mmio-notified",
            NetPath::OurE1000(Access::Mmio, Waiting::Polled) => "e1000-mmio-polled",
            NetPath::ReplicatedE1000(BackendKind::Ptrace) => "e1000-replicated",
            NetPath::ReplicatedE1000(BackendKind::Stub) => "e1000-replicated-stub",
            NetPath::RestartedE1000 => "e1000-restarted",
            NetPath::ReplicaCountE1000(count, BackendKind::Ptrace) => [
                "e1000-replicated-1",
                "e1000-replicated-2",
                "e1000-replicated-3",
            ][count.0 - 1],
            NetPath::ReplicaCountE1000(count, BackendKind::Stub) => [
                "e1000-replicated-1-stub",
                "e1000-replicated-2-stub",
                "e1000-replicated-3-stub",
            ][count.0 - 1],
            NetPath::LinuxE1000 => "linux-e1000",
        }
    }

    /// What the path is, for tables.
    pub fn description(self) -> &'static str {
        match self {
            NetPath::OurE1000(Access::Direct, Waiting::BusyPolling) => {
                "our e1000, BAR mapped (direct)"
            }
            NetPath::OurE1000(Access::Direct, Waiting::Notified) => {
                "our e1000, direct, irq per burst"
            }
            NetPath::OurE1000(Access::Direct, Waiting::Polled) => "our e1000, direct, polled",
            NetPath::OurE1000(Access::Mmio, Waiting::BusyPolling) => "our e1000, through mmio:",
            NetPath::OurE1000(Access::Mmio, Waiting::Notified) => "our e1000, mmio:, irq per burst",
            NetPath::OurE1000(Access::Mmio, Waiting::Polled) => "our e1000, mmio:, polled",
            NetPath::ReplicatedE1000(BackendKind::Ptrace) => "our e1000 x3 under romain, mmio:",
            NetPath::ReplicatedE1000(BackendKind::Stub) => "our e1000 x3 under romain, stub",
            NetPath::RestartedE1000 => "our e1000 under romain, killed",
            NetPath::ReplicaCountE1000(count, BackendKind::Ptrace) => [
                "our e1000, 1 replica (engine)",
                "our e1000, 2 replicas (engine)",
                "our e1000, 3 replicas (engine)",
            ][count.0 - 1],
            NetPath::ReplicaCountE1000(count, BackendKind::Stub) => [
                "our e1000, 1 replica (stub engine)",
                "our e1000, 2 replicas (stub engine)",
                "our e1000, 3 replicas (stub engine)",
            ][count.0 - 1],
            NetPath::LinuxE1000 => "Linux in-kernel e1000",
        }
    }
}

impl fmt::Display for NetPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl FromStr for NetPath {
    type Err = String;

    fn from_str(label: &str) -> Result<Self, String> {
        ALL_PATHS
            .into_iter()
            .find(|path| path.label() == label)
            .ok_or_else(|| {
                let labels: Vec<&str> = ALL_PATHS.iter().map(|path| path.label()).collect();
                format!("{label:?} is not a network path: {}", labels.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::check_label;

    #[test]
    fn labels_round_trip_and_are_one_word() {
        for path in ALL_PATHS {
            assert_eq!(path.label().parse(), Ok(path));
            assert_eq!(check_label(path.label()), Ok(()));
        }
        assert_eq!(
            OUR_DRIVER_PATHS.map(|p| p.to_string()),
            [
                "e1000-direct",
                "e1000-mmio",
                "e1000-replicated",
                "e1000-restarted"
            ]
        );
        assert_eq!(
            REPLICA_COUNT_PATHS.map(|p| p.to_string()),
            [
                "e1000-replicated-1",
                "e1000-replicated-2",
                "e1000-replicated-3"
            ]
        );
        let labels: std::collections::BTreeSet<&str> =
            ALL_PATHS.iter().map(|p| p.label()).collect();
        assert_eq!(labels.len(), ALL_PATHS.len(), "labels are distinct");
        let err = "e1000-replicated-4".parse::<NetPath>().unwrap_err();
        assert!(err.contains("not a network path"), "{err}");
        assert!(
            err.ends_with("e1000-mmio-polled, e1000-replicated-stub, e1000-replicated-3-stub"),
            "{err}"
        );
        assert_eq!(
            WAITING_PATHS.map(|p| p.to_string()),
            [
                "e1000-direct",
                "e1000-direct-notified",
                "e1000-direct-polled"
            ]
        );
    }
}
