//! I/O port ranges, written `0x2f8-0x2ff` (both ends inclusive, hex).

use std::fmt;
use std::str::FromStr;

use crate::ValueError;

/// An inclusive range of x86 I/O ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    /// The range `first..=last`; `None` if it runs backwards.
    pub fn new(first: u16, last: u16) -> Option<Self> {
        (first <= last).then_some(Self { first, last })
    }

    pub fn first(&self) -> u16 {
        self.first
    }

    pub fn last(&self) -> u16 {
        self.last
    }

    /// Number of ports in the range (1..=65536).
    pub fn count(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }

    pub fn contains(&self, other: &PortRange) -> bool {
        self.first <= other.first && other.last <= self.last
    }

    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

impl FromStr for PortRange {
    type Err = ValueError;

    fn from_str(s: &str) -> Result<Self, ValueError> {
        let bad = || ValueError::new(s, "is not a port range (want 0xFIRST-0xLAST, hex)");
        let (first, last) = s.split_once('-').ok_or_else(bad)?;
        let (first, last) = (
            hex_port(first).ok_or_else(bad)?,
            hex_port(last).ok_or_else(bad)?,
        );
        Self::new(first, last)
            .ok_or_else(|| ValueError::new(s, "runs backwards (first port after last)"))
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}-{:#x}", self.first, self.last)
    }
}

fn hex_port(s: &str) -> Option<u16> {
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X"))?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(digits, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let com2: PortRange = "0x2f8-0x2FF".parse().unwrap();
        assert_eq!((com2.first(), com2.last(), com2.count()), (0x2f8, 0x2ff, 8));
        assert_eq!(com2.to_string(), "0x2f8-0x2ff");
        let one: PortRange = "0x80-0x80".parse().unwrap();
        assert_eq!(one.count(), 1);
        assert_eq!("0x0-0xffff".parse::<PortRange>().unwrap().count(), 65536);
    }

    #[test]
    fn rejects() {
        assert_eq!(
            "0x2ff-0x2f8".parse::<PortRange>().unwrap_err().to_string(),
            "`0x2ff-0x2f8` runs backwards (first port after last)"
        );
        for bad in [
            "0x2f8",
            "2f8-2ff",
            "0x2f8-",
            "0x-0x1",
            "0x10000-0x10001",
            "0x2f8-0x2ff-0x300",
            "-0x1-0x2",
            "0x+1-0x2",
        ] {
            assert_eq!(
                bad.parse::<PortRange>().unwrap_err().to_string(),
                format!("`{bad}` is not a port range (want 0xFIRST-0xLAST, hex)")
            );
        }
    }

    #[test]
    fn containment_and_overlap() {
        let r = |s: &str| s.parse::<PortRange>().unwrap();
        assert!(r("0x2f8-0x2ff").contains(&r("0x2f8-0x2f8")));
        assert!(r("0x2f8-0x2ff").contains(&r("0x2f8-0x2ff")));
        assert!(!r("0x2f8-0x2ff").contains(&r("0x2f8-0x300")));
        assert!(r("0x2f8-0x2ff").overlaps(&r("0x2ff-0x300")));
        assert!(!r("0x2f8-0x2ff").overlaps(&r("0x300-0x307")));
        assert!(!r("0x2f8-0x2ff").overlaps(&r("0x2f0-0x2f7")));
    }
}
