//! What a client learns about its buffer, and how (the one documented place).
//!
//! A buffer handle answers `call` with metadata `[INFO_CALL]` and a payload of at
//! least [`BufferInfo::LEN`] bytes: the scheme fills the first `LEN` bytes with
//! four little-endian `u64`s and returns `LEN`:
//!
//! | bytes  | field      | meaning                                                   |
//! |--------|------------|-----------------------------------------------------------|
//! | 0..8   | `bus_addr` | the address the device uses for byte 0 (0: none, see below) |
//! | 8..16  | `size`     | bytes in the buffer (the request rounded up); map this many |
//! | 16..24 | `flags`    | [`BufferFlags`] bits                                       |
//! | 24..32 | `keep`     | [`KeepState`]: 0 not kept; 1 kept, fresh (zeroed) memory; 2 kept and adopted from a predecessor (its contents are what that one left) |
//!
//! The buffer is physically contiguous, so byte `i` is at `bus_addr + i` for the
//! device. `bus_addr` 0 means the buffer has no bus address: only the host test
//! backend, which is never device-visible, gives that (physical page 0 is never a
//! DMA buffer on x86). `fstat` also reports `size` as `st_size`.
//!
//! `keep` tells a driver that asked for a kept buffer (`keep=<name>`, see
//! [`crate::keep`]) whether it takes over a device its predecessor left
//! running (2: the memory, and so the rings the device is using, are that
//! predecessor's) or starts from nothing (1).

use crate::BufferFlags;

/// The `call` metadata word that asks a buffer handle for its [`BufferInfo`].
pub const INFO_CALL: u64 = 1;

/// A buffer as the device and the client see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BufferInfo {
    /// The device's address of byte 0; `None` for memory no device can see.
    pub bus_addr: Option<u64>,
    pub size: u64,
    pub flags: BufferFlags,
    pub keep: KeepState,
}

/// Whether a buffer is kept for a successor, and whether it was itself adopted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeepState {
    /// Freed (quarantined) when its last handle closes.
    #[default]
    NotKept,
    /// Kept, and new: zeroed memory no one has used.
    Fresh,
    /// Kept, and taken over from a predecessor that left it: not zeroed.
    Adopted,
}

impl KeepState {
    /// The value in the info's fourth word.
    pub fn to_word(self) -> u64 {
        match self {
            Self::NotKept => 0,
            Self::Fresh => 1,
            Self::Adopted => 2,
        }
    }

    /// The state a word encodes; `None` for a value this version does not know.
    pub fn from_word(word: u64) -> Option<Self> {
        match word {
            0 => Some(Self::NotKept),
            1 => Some(Self::Fresh),
            2 => Some(Self::Adopted),
            _ => None,
        }
    }
}

impl BufferInfo {
    /// Bytes of the encoded form.
    pub const LEN: usize = 32;

    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut bytes = [0; Self::LEN];
        bytes[0..8].copy_from_slice(&self.bus_addr.unwrap_or(0).to_le_bytes());
        bytes[8..16].copy_from_slice(&self.size.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.flags.bits().to_le_bytes());
        bytes[24..32].copy_from_slice(&self.keep.to_word().to_le_bytes());
        bytes
    }

    /// Decodes the first [`Self::LEN`] bytes; `None` if there are fewer, a flag
    /// bit is unknown or the keep state is.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let word = |i: usize| -> Option<u64> {
            Some(u64::from_le_bytes(
                bytes.get(i * 8..i * 8 + 8)?.try_into().ok()?,
            ))
        };
        Some(Self {
            bus_addr: Some(word(0)?).filter(|&addr| addr != 0),
            size: word(1)?,
            flags: BufferFlags::from_bits(word(2)?)?,
            keep: KeepState::from_word(word(3)?)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let info = BufferInfo {
            bus_addr: Some(0x1234_5000),
            size: 8192,
            flags: BufferFlags::SHARED,
            keep: KeepState::NotKept,
        };
        let bytes = info.to_bytes();
        assert_eq!(bytes.len(), 32);
        assert_eq!(&bytes[0..8], &0x1234_5000u64.to_le_bytes());
        assert_eq!(&bytes[24..32], &[0; 8]);
        assert_eq!(BufferInfo::from_bytes(&bytes), Some(info));

        let no_bus = BufferInfo {
            bus_addr: None,
            size: 4096,
            flags: BufferFlags::empty(),
            keep: KeepState::NotKept,
        };
        assert_eq!(&no_bus.to_bytes()[0..8], &[0; 8]);
        assert_eq!(BufferInfo::from_bytes(&no_bus.to_bytes()), Some(no_bus));
    }

    #[test]
    fn the_keep_state_is_the_fourth_word() {
        for (keep, word) in [
            (KeepState::NotKept, 0u64),
            (KeepState::Fresh, 1),
            (KeepState::Adopted, 2),
        ] {
            let info = BufferInfo {
                bus_addr: Some(0x20_0000),
                size: 4096,
                flags: BufferFlags::SHARED,
                keep,
            };
            let bytes = info.to_bytes();
            assert_eq!(&bytes[24..32], &word.to_le_bytes());
            assert_eq!(BufferInfo::from_bytes(&bytes), Some(info));
        }
    }

    #[test]
    fn rejects_short_unknown_flags_and_unknown_keep_states() {
        let bytes = BufferInfo {
            bus_addr: Some(0x1000),
            size: 4096,
            flags: BufferFlags::SHARED,
            keep: KeepState::Fresh,
        }
        .to_bytes();
        assert_eq!(BufferInfo::from_bytes(&bytes[..BufferInfo::LEN - 1]), None);
        assert_eq!(BufferInfo::from_bytes(&bytes[..24]), None, "the old length");
        let mut unknown = bytes;
        unknown[16] = 0x80;
        assert_eq!(BufferInfo::from_bytes(&unknown), None);
        for word in [3u64, 1 << 32, u64::MAX] {
            let mut unknown = bytes;
            unknown[24..32].copy_from_slice(&word.to_le_bytes());
            assert_eq!(BufferInfo::from_bytes(&unknown), None, "keep {word}");
        }
    }
}
