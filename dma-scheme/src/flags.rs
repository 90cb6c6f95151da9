//! Buffer flags: their bits (in [`crate::BufferInfo`]) and their names (in paths).

use std::fmt;

bitflags::bitflags! {
    /// What a buffer is for, as the client asked in `flags=`.
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct BufferFlags: u64 {
        /// Device-visible and not replicated: the replication engine keeps these
        /// pages unmapped in replicas and mediates every access to them, because a
        /// device reads and writes them behind the replicas' backs.
        const SHARED = 1 << 0;
    }
}

/// Flag names as they appear in `flags=` and in `fpath`.
const NAMES: [(&str, BufferFlags); 1] = [("shared", BufferFlags::SHARED)];

impl BufferFlags {
    /// The flag called `name`, if there is one.
    pub fn named(name: &str) -> Option<Self> {
        NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|&(_, flag)| flag)
    }
}

/// Comma-separated names, as `flags=` takes them (empty for no flags).
impl fmt::Display for BufferFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names = NAMES
            .iter()
            .filter(|(_, flag)| self.contains(*flag))
            .map(|(n, _)| *n);
        if let Some(first) = names.next() {
            f.write_str(first)?;
            for name in names {
                write!(f, ",{name}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(BufferFlags::named("shared"), Some(BufferFlags::SHARED));
        assert_eq!(BufferFlags::named("Shared"), None);
        assert_eq!(BufferFlags::named(""), None);
        assert_eq!(BufferFlags::SHARED.to_string(), "shared");
        assert_eq!(BufferFlags::empty().to_string(), "");
    }
}
