//! The bulk exchange on COM2 through the uart16550 driver, once per access mode: the
//! guest sends its run's marker line through the driver, then [`BULK_LEN`] bytes; the
//! host, on seeing the marker, answers with [`BULK_LEN`] bytes of its own, so both
//! directions run at once. Each side knows what the other must have sent and checks
//! it byte for byte, reporting [`checksum`]s when they differ.

/// Bytes each way in one run.
pub const BULK_LEN: usize = 64 * 1024;

/// One run of the exchange: the driver's access mode and the line that starts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkRun {
    /// The driver's `--access` value.
    pub access: &'static str,
    pub marker: &'static str,
}

/// The runs, in the order the guest makes them.
pub const BULK_RUNS: [BulkRun; 2] = [
    BulkRun {
        access: "direct",
        marker: "uart16550 direct: 64 KiB each way starts after this line\n",
    },
    BulkRun {
        access: "split",
        marker: "uart16550 split: 64 KiB each way starts after this line\n",
    },
];

impl BulkRun {
    /// What the guest sends after the marker.
    pub fn guest_bytes(&self) -> Vec<u8> {
        pattern(checksum(self.marker.as_bytes()))
    }

    /// What the host answers.
    pub fn host_bytes(&self) -> Vec<u8> {
        pattern(!checksum(self.marker.as_bytes()))
    }
}

/// FNV-1a (64 bits): notices lost, repeated and swapped bytes.
pub fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// [`BULK_LEN`] bytes of xorshift64 output: every byte value, no period a lost or
/// repeated byte could hide in.
fn pattern(seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    (0..BULK_LEN)
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
        let [direct, split] = BULK_RUNS;
        let streams = [
            direct.guest_bytes(),
            direct.host_bytes(),
            split.guest_bytes(),
            split.host_bytes(),
        ];
        for (i, a) in streams.iter().enumerate() {
            assert_eq!(a.len(), BULK_LEN);
            assert!(streams[i + 1..].iter().all(|b| a != b));
        }
        let mut seen = [false; 256];
        streams[0]
            .iter()
            .for_each(|&byte| seen[usize::from(byte)] = true);
        assert!(seen.iter().all(|&s| s), "every byte value crosses the line");
        assert_eq!(direct.guest_bytes(), streams[0], "the same on both sides");
    }

    #[test]
    fn checksum_notices_a_swap() {
        assert_eq!(checksum(b""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(checksum(b"ab"), checksum(b"ba"));
        assert_ne!(checksum(b"a"), checksum(b"aa"));
    }
}
