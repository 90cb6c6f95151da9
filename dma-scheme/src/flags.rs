//! Buffer flags: their bits (in [`crate::BufferInfo`]) and their names (in
//! paths); and a buffer's direction (`dir=`).

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

/// Which way a buffer's bytes go between its driver and the device, as the
/// client asked in `dir=` (`both` unless it said).
///
/// A replication engine keeps its replicas' copies of device memory in step
/// with the device by it: memory only the driver writes (`to-device`, packets
/// to send) is never read back; memory only the device writes (`from-device`,
/// received packets) is read back only when the device also wrote to some
/// `both` memory since the last look, because a device writes the data before
/// the descriptor that hands it over. `both` (the descriptor rings) is read
/// back at every look.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Direction {
    #[default]
    Both,
    ToDevice,
    FromDevice,
}

impl Direction {
    const ALL: [Direction; 3] = [Self::Both, Self::ToDevice, Self::FromDevice];

    /// The direction called `name` in `dir=`, if there is one.
    pub fn named(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|direction| direction.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Both => "both",
            Self::ToDevice => "to-device",
            Self::FromDevice => "from-device",
        }
    }

    /// The name a buffer's memory object is created with on Linux:
    /// `<prefix>.<direction>`. A process that holds only the descriptor (a
    /// replication engine) reads it back as the link `/proc/self/fd/<n>`,
    /// `/memfd:<name> (deleted)`, with [`Direction::of_object`].
    pub fn object_name(self, prefix: &str) -> String {
        format!("{prefix}.{}", self.name())
    }

    /// The direction an object's link (or name) tells, as
    /// [`object_name`](Self::object_name) made it; `both` for any other object.
    pub fn of_object(link: &str) -> Self {
        let name = link.strip_suffix(" (deleted)").unwrap_or(link);
        name.rsplit_once('.')
            .and_then(|(_, direction)| Self::named(direction))
            .unwrap_or_default()
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_direction_survives_its_name_and_its_object_name() {
        for direction in Direction::ALL {
            assert_eq!(Direction::named(direction.name()), Some(direction));
            let link = format!("/memfd:{} (deleted)", direction.object_name("dma-hugetlb"));
            assert_eq!(Direction::of_object(&link), direction, "{link}");
        }
        assert_eq!(Direction::named("From-Device"), None);
        assert_eq!(Direction::named(""), None);
        assert_eq!(
            Direction::of_object("/memfd:dma-hugetlb.to-device (deleted)"),
            Direction::ToDevice
        );
        // Objects that are not a dma: buffer's are read back at every look.
        for other in [
            "/memfd:testbed-shared (deleted)",
            "/dev/zero",
            "/memfd:x.tx (deleted)",
        ] {
            assert_eq!(Direction::of_object(other), Direction::Both, "{other}");
        }
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(BufferFlags::named("shared"), Some(BufferFlags::SHARED));
        assert_eq!(BufferFlags::named("Shared"), None);
        assert_eq!(BufferFlags::named(""), None);
        assert_eq!(BufferFlags::SHARED.to_string(), "shared");
        assert_eq!(BufferFlags::empty().to_string(), "");
    }
}
