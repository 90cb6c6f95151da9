//! The bounds of a register region and the check every access passes.

use std::fmt;

use crate::wire::Width;

/// The address space a region lives in; it decides the access widths.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    /// A memory BAR: 1, 2, 4 or 8 bytes per access.
    Memory,
    /// I/O ports (a port range or an I/O BAR): `in`/`out` move 1, 2 or 4 bytes.
    Port,
}

impl fmt::Display for Space {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Memory => "memory",
            Self::Port => "port",
        })
    }
}

/// A contiguous run of registers: offsets `0..len` in one address space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub space: Space,
    pub len: u64,
}

/// An access that passed [`Region::check`]; only a check makes one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    offset: u64,
    width: Width,
}

impl Access {
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn width(&self) -> Width {
        self.width
    }
}

/// Why an access is refused (EINVAL to the client).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessError {
    OutOfRange { offset: u64, width: Width, len: u64 },
    Misaligned { offset: u64, width: Width },
    UnsupportedWidth { width: Width, space: Space },
}

impl fmt::Display for AccessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfRange { offset, width, len } => {
                write!(
                    f,
                    "{width} access at {offset:#x} is outside the region of {len:#x} bytes"
                )
            }
            Self::Misaligned { offset, width } => {
                write!(f, "{width} access at {offset:#x} is misaligned")
            }
            Self::UnsupportedWidth { width, space } => {
                write!(f, "{space} registers have no {width} access")
            }
        }
    }
}

impl std::error::Error for AccessError {}

impl Region {
    pub fn memory(len: u64) -> Self {
        Self {
            space: Space::Memory,
            len,
        }
    }

    pub fn ports(len: u64) -> Self {
        Self {
            space: Space::Port,
            len,
        }
    }

    pub fn supports(&self, width: Width) -> bool {
        self.space == Space::Memory || width != Width::U64
    }

    /// Admits an access of `width` at `offset` if the region supports the width,
    /// the offset is a multiple of it and every byte lies inside the region.
    pub fn check(&self, offset: u64, width: Width) -> Result<Access, AccessError> {
        if !self.supports(width) {
            return Err(AccessError::UnsupportedWidth {
                width,
                space: self.space,
            });
        }
        if !offset.is_multiple_of(width.bytes() as u64) {
            return Err(AccessError::Misaligned { offset, width });
        }
        match offset.checked_add(width.bytes() as u64) {
            Some(end) if end <= self.len => Ok(Access { offset, width }),
            _ => Err(AccessError::OutOfRange {
                offset,
                width,
                len: self.len,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn admits_aligned_accesses_inside() {
        let bar = Region::memory(0x20000);
        for width in Width::ALL {
            let last = 0x20000 - width.bytes() as u64;
            assert_eq!(
                bar.check(last, width).map(|a| (a.offset(), a.width())),
                Ok((last, width))
            );
            assert!(bar.check(0, width).is_ok());
        }
    }

    #[test]
    fn refuses_out_of_range() {
        let bar = Region::memory(0x20000);
        assert_eq!(
            bar.check(0x20000, Width::U32),
            Err(AccessError::OutOfRange {
                offset: 0x20000,
                width: Width::U32,
                len: 0x20000
            })
        );
        assert!(bar.check(0x1fffc, Width::U64).is_err(), "straddles the end");
        assert!(
            bar.check(u64::MAX - 7, Width::U64).is_err(),
            "offset + width overflows"
        );
        assert!(Region::memory(0).check(0, Width::U8).is_err());
        assert_eq!(
            bar.check(0x20000, Width::U32).unwrap_err().to_string(),
            "4-byte access at 0x20000 is outside the region of 0x20000 bytes"
        );
    }

    #[test]
    fn refuses_misaligned() {
        let bar = Region::memory(0x100);
        assert_eq!(
            bar.check(2, Width::U32),
            Err(AccessError::Misaligned {
                offset: 2,
                width: Width::U32
            })
        );
        assert!(bar.check(1, Width::U16).is_err());
        assert!(bar.check(4, Width::U64).is_err());
        assert!(bar.check(3, Width::U8).is_ok());
        assert_eq!(
            bar.check(6, Width::U32).unwrap_err().to_string(),
            "4-byte access at 0x6 is misaligned"
        );
    }

    #[test]
    fn ports_have_no_8_byte_access() {
        let com2 = Region::ports(8);
        assert_eq!(
            com2.check(0, Width::U64),
            Err(AccessError::UnsupportedWidth {
                width: Width::U64,
                space: Space::Port
            })
        );
        assert_eq!(
            com2.check(0, Width::U64).unwrap_err().to_string(),
            "port registers have no 8-byte access"
        );
        assert!(com2.check(4, Width::U32).is_ok());
        assert!(com2.check(7, Width::U8).is_ok());
        assert!(com2.check(8, Width::U8).is_err());
    }

    proptest! {
        #[test]
        fn admitted_accesses_are_inside_and_aligned(len: u64, offset: u64, width in prop::sample::select(Width::ALL.to_vec())) {
            if let Ok(access) = Region::memory(len).check(offset, width) {
                let bytes = width.bytes() as u64;
                prop_assert!(access.offset() % bytes == 0);
                prop_assert!(access.offset() < len && len - access.offset() >= bytes);
            }
        }
    }
}
