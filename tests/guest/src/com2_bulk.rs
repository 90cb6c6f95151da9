//! The bulk exchange on COM2 through the uart16550 driver, once per way of running it
//! (direct, through `mmio:`, and replicated by the engine): the guest sends its run's marker line
//! through the driver, then the run's bytes; the host, on seeing the marker, answers
//! with as many bytes of its own, so both directions run at once. Each side knows what
//! the other must have sent and checks it byte for byte, reporting [`checksum`]s when
//! they differ.

/// Bytes each way in a run of the unreplicated driver.
pub const BULK_LEN: usize = 64 * 1024;
/// Bytes each way in a run of the replicated driver: every port access traps to the
/// engine, which under TCG makes the line a few KiB/s.
pub const REPLICATED_BULK_LEN: usize = 4 * 1024;

/// How the guest runs the driver for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setup {
    /// The driver alone, with `in`/`out` of its own (`--access direct`).
    Direct,
    /// The driver alone, through `mmio:` (`--access mmio`).
    Mmio,
    /// `romain replicate` runs the driver as `replicas` replicas. Direct access: the
    /// engine performs their port accesses through `mmio:`. Access through `mmio:` (`through_mmio`):
    /// the engine, running as the uart rule's uid, holds their `mmio:` connections
    /// and makes each voted call once. With `faults`, the guest injects faults into
    /// the replicas during the exchange.
    Replicated {
        replicas: usize,
        faults: bool,
        through_mmio: bool,
    },
}

/// One run of the exchange: how the driver runs, the line that starts it, and how
/// many bytes go each way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkRun {
    /// Names the run in result lines and the driver's scheme.
    pub name: &'static str,
    pub setup: Setup,
    pub marker: &'static str,
    pub len: usize,
}

const fn replicated(
    name: &'static str,
    replicas: usize,
    faults: bool,
    marker: &'static str,
) -> BulkRun {
    BulkRun {
        name,
        setup: Setup::Replicated {
            replicas,
            faults,
            through_mmio: false,
        },
        marker,
        len: REPLICATED_BULK_LEN,
    }
}

/// The runs, in the order the guest makes them.
pub const BULK_RUNS: [BulkRun; 7] = [
    BulkRun {
        name: "direct",
        setup: Setup::Direct,
        marker: "uart16550 direct: 64 KiB each way starts after this line\n",
        len: BULK_LEN,
    },
    BulkRun {
        name: "mmio",
        setup: Setup::Mmio,
        marker: "uart16550 mmio: 64 KiB each way starts after this line\n",
        len: BULK_LEN,
    },
    replicated(
        "replicated-1",
        1,
        false,
        "uart16550 replicated x1: 4 KiB each way starts after this line\n",
    ),
    replicated(
        "replicated-2",
        2,
        false,
        "uart16550 replicated x2: 4 KiB each way starts after this line\n",
    ),
    replicated(
        "replicated-3",
        3,
        false,
        "uart16550 replicated x3: 4 KiB each way starts after this line\n",
    ),
    replicated(
        "replicated-3-faults",
        3,
        true,
        "uart16550 replicated x3 under fault injection: 4 KiB each way starts after this line\n",
    ),
    BulkRun {
        name: "replicated-mmio-3",
        setup: Setup::Replicated {
            replicas: 3,
            faults: false,
            through_mmio: true,
        },
        marker: "uart16550 replicated x3, through mmio: 4 KiB each way starts after this line\n",
        len: REPLICATED_BULK_LEN,
    },
];

impl BulkRun {
    /// What the guest sends after the marker.
    pub fn guest_bytes(&self) -> Vec<u8> {
        pattern(checksum(self.marker.as_bytes()), self.len)
    }

    /// What the host answers.
    pub fn host_bytes(&self) -> Vec<u8> {
        pattern(!checksum(self.marker.as_bytes()), self.len)
    }
}

/// FNV-1a (64 bits): notices lost, repeated and swapped bytes.
pub fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `len` bytes of xorshift64 output: every byte value, no period a lost or repeated
/// byte could hide in.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 32) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_run_and_direction_has_its_own_bytes() {
        let streams: Vec<Vec<u8>> = BULK_RUNS
            .iter()
            .flat_map(|run| [run.guest_bytes(), run.host_bytes()])
            .collect();
        for (i, a) in streams.iter().enumerate() {
            assert_eq!(a.len(), BULK_RUNS[i / 2].len);
            assert!(streams[i + 1..].iter().all(|b| !b.starts_with(&a[..64])));
        }
        for run in BULK_RUNS {
            let mut seen = [false; 256];
            run.guest_bytes()
                .iter()
                .for_each(|&byte| seen[usize::from(byte)] = true);
            assert!(seen.iter().all(|&s| s), "every byte value crosses the line");
        }
        assert_eq!(
            BULK_RUNS[0].guest_bytes(),
            streams[0],
            "the same on both sides"
        );
    }

    #[test]
    fn runs_have_their_own_names_and_no_marker_holds_another() {
        for (i, run) in BULK_RUNS.iter().enumerate() {
            assert!(run.marker.ends_with('\n'));
            let size = format!(": {} KiB each way starts", run.len / 1024);
            assert!(run.marker.contains(&size), "{:?} says its size", run.marker);
            for other in &BULK_RUNS[i + 1..] {
                assert_ne!(run.name, other.name);
                assert!(!run.marker.contains(other.marker));
                assert!(!other.marker.contains(run.marker));
            }
        }
        let replicas: Vec<usize> = BULK_RUNS
            .iter()
            .filter_map(|run| match run.setup {
                Setup::Replicated { replicas, .. } => Some(replicas),
                _ => None,
            })
            .collect();
        assert_eq!(replicas, [1, 2, 3, 3, 3]);
    }

    #[test]
    fn checksum_notices_a_swap() {
        assert_eq!(checksum(b""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(checksum(b"ab"), checksum(b"ba"));
        assert_ne!(checksum(b"a"), checksum(b"aa"));
    }
}
