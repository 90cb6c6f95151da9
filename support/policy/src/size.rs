//! Byte sizes written for people: `4096`, `512K`, `4M`, `1G` (binary units).

use crate::ValueError;

/// Parses a byte count with an optional `K`, `M` or `G` suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, ValueError> {
    let bad = || {
        ValueError::new(
            s,
            "is not a size (want a number of bytes, or with K, M or G)",
        )
    };
    let (digits, shift) = match s.as_bytes().last() {
        Some(b'K' | b'k') => (&s[..s.len() - 1], 10),
        Some(b'M' | b'm') => (&s[..s.len() - 1], 20),
        Some(b'G' | b'g') => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let count: u64 = digits.parse().map_err(|_| bad())?;
    count
        .checked_mul(1 << shift)
        .ok_or_else(|| ValueError::new(s, "is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(parse_size("0").unwrap(), 0);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("512K").unwrap(), 512 << 10);
        assert_eq!(parse_size("4M").unwrap(), 4 << 20);
        assert_eq!(parse_size("2g").unwrap(), 2 << 30);
    }

    #[test]
    fn rejects() {
        for bad in ["", "M", "4 M", "4MB", "-4M", "+4", "4.5M", "0x10"] {
            assert_eq!(
                parse_size(bad).unwrap_err().to_string(),
                format!("`{bad}` is not a size (want a number of bytes, or with K, M or G)")
            );
        }
        assert_eq!(
            parse_size("17179869184G").unwrap_err().to_string(),
            "`17179869184G` is too large"
        );
    }
}
