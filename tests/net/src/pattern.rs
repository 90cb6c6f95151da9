//! The bytes a transfer or a round trip carries: a stream whose every position follows
//! from a seed, so both ends produce and check it in chunks of any size without
//! storing it, and a lost, repeated or reordered chunk changes what arrives.

/// The stream of bytes of one seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pattern {
    seed: u64,
}

impl Pattern {
    pub fn new(seed: u64) -> Self {
        Self { seed }
    }

    /// Fills `buf` with the stream's bytes from position `offset` on.
    pub fn fill(&self, offset: u64, buf: &mut [u8]) {
        let mut position = offset;
        let mut rest = buf;
        while !rest.is_empty() {
            let word = self.word(position / 8).to_le_bytes();
            let skip = (position % 8) as usize;
            let take = (8 - skip).min(rest.len());
            rest[..take].copy_from_slice(&word[skip..skip + take]);
            rest = &mut rest[take..];
            position += take as u64;
        }
    }

    /// The stream's 8-byte word `index`: SplitMix64's output function, which spreads
    /// neighbouring indexes over the whole range.
    fn word(&self, index: u64) -> u64 {
        let mut z = self
            .seed
            .wrapping_add(index.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// The CRC-32 (IEEE) of `len` bytes of `pattern`, as the receiving end computes it.
pub fn pattern_checksum(pattern: Pattern, len: u64) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    let mut chunk = vec![0; 64 << 10];
    let mut offset = 0;
    while offset < len {
        let n = (len - offset).min(chunk.len() as u64) as usize;
        pattern.fill(offset, &mut chunk[..n]);
        hasher.update(&chunk[..n]);
        offset += n as u64;
    }
    hasher.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_chunking_gives_the_same_stream() {
        let pattern = Pattern::new(7);
        let mut whole = [0; 100];
        pattern.fill(0, &mut whole);
        let mut pieces = [0; 100];
        let mut offset = 0;
        for len in [1, 7, 8, 3, 17, 64] {
            pattern.fill(offset as u64, &mut pieces[offset..offset + len]);
            offset += len;
        }
        assert_eq!(whole, pieces);
    }

    #[test]
    fn seeds_and_positions_differ() {
        let mut a = [0; 64];
        let mut b = [0; 64];
        Pattern::new(1).fill(0, &mut a);
        Pattern::new(2).fill(0, &mut b);
        assert_ne!(a, b);
        Pattern::new(1).fill(8, &mut b);
        assert_ne!(a, b, "the stream does not repeat after one word");
        assert_ne!(a[..8], a[8..16]);
    }

    #[test]
    fn checksum_is_the_crc_of_the_bytes() {
        let pattern = Pattern::new(3);
        let mut bytes = vec![0; 200_000];
        pattern.fill(0, &mut bytes);
        assert_eq!(
            pattern_checksum(pattern, 200_000),
            crc32fast::hash(&bytes),
            "over several chunks"
        );
        assert_eq!(pattern_checksum(pattern, 0), crc32fast::hash(b""));
        assert_ne!(
            pattern_checksum(pattern, 200_000),
            pattern_checksum(pattern, 199_999)
        );
    }
}
