//! What the driver keeps in `romain:`'s state store: its statistics counters,
//! so that they continue across a restart by the supervisor instead of
//! starting from nought.
//!
//! The value under [`STATS_KEY`] is one line of `name=value` words: the
//! driver's own counters, then the NIC's as `nic.<register>`, e.g.
//! `rx_frames=3 rx_bytes=180 ... nic.gprc=3 ...`. A name left out reads as 0;
//! an unknown name or a value that is no number refuses the whole value (a
//! start then logs it and counts from nought).
//!
//! Each save is a scheme call (through the engine, for replicas), so the
//! counters are published at most once per [`PUBLISH_PERIOD`], the NIC's read
//! afresh just before (one register batch, as a `status` open does), and only
//! when they changed; and since reading the clock is a system call too (an event
//! for replicas), the clock is looked at only once every
//! [`ROUNDS_PER_CLOCK_READ`] rounds.

use std::fmt;
use std::time::{Duration, Instant};

use crate::stats::{DriverCounters, NicCounters};

/// The key the counters are kept under.
pub const STATS_KEY: &str = "stats";
/// The shortest time between two saves.
pub const PUBLISH_PERIOD: Duration = Duration::from_secs(1);
/// Rounds between two looks at the clock: some 64 ms when idle (a round per
/// millisecond tick), less under load.
pub const ROUNDS_PER_CLOCK_READ: u32 = 64;

/// Why a stored value was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoredError {
    NotText,
    NotNameValue(String),
    UnknownName(String),
    NotANumber(String),
}

impl fmt::Display for StoredError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotText => f.write_str("not UTF-8"),
            Self::NotNameValue(word) => write!(f, "{word:?} is not name=value"),
            Self::UnknownName(name) => write!(f, "unknown counter {name:?}"),
            Self::NotANumber(word) => write!(f, "{word:?}: not a number"),
        }
    }
}

impl std::error::Error for StoredError {}

/// The driver's counters by their stored names.
fn driver_fields(counters: &mut DriverCounters) -> [(&'static str, &mut u64); 7] {
    [
        ("rx_frames", &mut counters.rx_frames),
        ("rx_bytes", &mut counters.rx_bytes),
        ("rx_truncated", &mut counters.rx_truncated),
        ("tx_frames", &mut counters.tx_frames),
        ("tx_bytes", &mut counters.tx_bytes),
        ("tx_ring_full", &mut counters.tx_ring_full),
        ("tx_rejected", &mut counters.tx_rejected),
    ]
}

/// The stored form of the counters.
pub fn stored_form(driver: &DriverCounters, nic: &NicCounters) -> String {
    let mut driver = *driver;
    let mut words: Vec<String> = driver_fields(&mut driver)
        .into_iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    words.extend(
        nic.iter()
            .map(|(name, value)| format!("nic.{name}={value}")),
    );
    words.join(" ") + "\n"
}

/// The counters a stored value holds.
pub fn from_stored(value: &[u8]) -> Result<(DriverCounters, NicCounters), StoredError> {
    let text = std::str::from_utf8(value).map_err(|_| StoredError::NotText)?;
    let mut driver = DriverCounters::default();
    let mut nic = NicCounters::default();
    for word in text.split_whitespace() {
        let (name, value) = word
            .split_once('=')
            .ok_or_else(|| StoredError::NotNameValue(word.to_owned()))?;
        let value: u64 = value
            .parse()
            .map_err(|_| StoredError::NotANumber(word.to_owned()))?;
        let known = match name.strip_prefix("nic.") {
            Some(register) => nic.set(register, value),
            None => driver_fields(&mut driver)
                .into_iter()
                .find(|(field, _)| *field == name)
                .map(|(_, slot)| *slot = value)
                .is_some(),
        };
        if !known {
            return Err(StoredError::UnknownName(name.to_owned()));
        }
    }
    Ok((driver, nic))
}

/// When to publish: the rate limit and what was published last.
#[derive(Debug, Default)]
pub struct Pacing {
    rounds: u32,
    last: Option<Instant>,
    published: Option<String>,
}

impl Pacing {
    /// Whether this round may publish: every [`ROUNDS_PER_CLOCK_READ`]th
    /// round reads `clock`, and publishes if [`PUBLISH_PERIOD`] has passed
    /// since the last time it did.
    pub fn due(&mut self, clock: impl FnOnce() -> Instant) -> bool {
        self.rounds += 1;
        if self.rounds < ROUNDS_PER_CLOCK_READ {
            return false;
        }
        self.rounds = 0;
        let now = clock();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < PUBLISH_PERIOD)
        {
            return false;
        }
        self.last = Some(now);
        true
    }

    /// Whether `value` differs from what was published last; remembers it.
    pub fn changed(&mut self, value: &str) -> bool {
        if self.published.as_deref() == Some(value) {
            return false;
        }
        self.published = Some(value.to_owned());
        true
    }

    /// Forgets what was published (it was not kept after all).
    pub fn forget(&mut self) {
        self.published = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_read_back_as_they_were_stored() {
        let driver = DriverCounters {
            rx_frames: 3,
            rx_bytes: 180,
            rx_truncated: 1,
            tx_frames: 4,
            tx_bytes: 240,
            tx_ring_full: 5,
            tx_rejected: 6,
        };
        let mut nic = NicCounters::default();
        assert!(nic.set("gprc", 7) && nic.set("gorc", u64::MAX));
        let text = stored_form(&driver, &nic);
        assert!(text.starts_with("rx_frames=3 rx_bytes=180 "), "{text}");
        assert!(
            text.contains(" nic.gprc=7 ") && text.ends_with("\n"),
            "{text}"
        );
        assert_eq!(from_stored(text.as_bytes()), Ok((driver, nic)));
        assert_eq!(
            from_stored(b"tx_frames=2"),
            Ok((
                DriverCounters {
                    tx_frames: 2,
                    ..DriverCounters::default()
                },
                NicCounters::default()
            )),
            "names left out are 0"
        );
    }

    #[test]
    fn a_stored_value_that_does_not_parse_is_refused_whole() {
        for (value, error) in [
            (&b"\xff"[..], StoredError::NotText),
            (b"rx_frames", StoredError::NotNameValue("rx_frames".into())),
            (
                b"rx_frames=x",
                StoredError::NotANumber("rx_frames=x".into()),
            ),
            (
                b"rx_frames=-1",
                StoredError::NotANumber("rx_frames=-1".into()),
            ),
            (b"bogus=1", StoredError::UnknownName("bogus".into())),
            (b"nic.bogus=1", StoredError::UnknownName("nic.bogus".into())),
        ] {
            assert_eq!(from_stored(value), Err(error), "{value:?}");
        }
    }

    #[test]
    fn publishing_is_at_most_once_a_second_and_reads_the_clock_every_64th_round() {
        let start = Instant::now();
        let mut pacing = Pacing::default();
        let mut clock_reads = 0;
        let mut published = Vec::new();
        // 10,000 rounds, one every millisecond of made-up time.
        for round in 1..=10_000u64 {
            let now = start + Duration::from_millis(round);
            if pacing.due(|| {
                clock_reads += 1;
                now
            }) {
                published.push(round);
            }
        }
        assert_eq!(clock_reads, 10_000 / 64);
        assert!(
            published.len() >= 9 && published.len() <= 10,
            "{published:?}"
        );
        for pair in published.windows(2) {
            assert!(pair[1] - pair[0] >= 1000, "{published:?}");
        }
        assert!(pacing.changed("a") && !pacing.changed("a") && pacing.changed("b"));
    }
}
