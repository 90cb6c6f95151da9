//! The state store: named values per driver that outlive the driver's restarts
//! (MINIX 3's data store).
//!
//! A driver publishes state under a key (`romain:store/<driver>/<key>`) and reads
//! it back when it starts again. The values live in the supervisor's memory: they
//! survive any number of restarts of the driver, not a restart of `romain` itself.
//!
//! The rules (the scheme enforces the first; this module the rest):
//!
//! - only the driver's own user may open its store: the registry's `uid` for the
//!   driver, or, without one, the supervisor's own (the driver then runs as the
//!   supervisor); anyone else gets `EACCES`, root included unless root is that
//!   user; a driver not in the registry is `ENOENT`;
//! - a key is 1 to 64 characters of `a-z`, `0-9`, `.`, `_` and `-`, and not `.`
//!   or `..` (which path handling may fold away): anything else is `EINVAL`;
//! - opening read-only reads a value (`ENOENT` while the key is unset); opening
//!   with write access sets it, and `O_CREAT` lets the first write create the
//!   key (`O_EXCL` as well: `EEXIST` if it is set);
//! - each write replaces the whole value at once, whatever its offset: one write
//!   is one value, so a writer that dies leaves the old value or the new one,
//!   never half of either; reads give the value from the handle's offset;
//! - a value holds at most [`MAX_VALUE_LEN`] bytes (`EFBIG`), a driver at most
//!   [`MAX_KEYS`] keys and [`MAX_DRIVER_BYTES`] bytes of values (`ENOSPC`).
//!
//! A key springs into being with its first write, not at open, so a driver that
//! dies between opening and writing leaves no empty value behind to be taken
//! for its state.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use syscall::error::{EEXIST, EFBIG, EINVAL, ENOENT, ENOSPC};

/// The largest value: one page, enough for any driver's settings or counters.
pub const MAX_VALUE_LEN: usize = 4096;
/// Keys per driver.
pub const MAX_KEYS: usize = 64;
/// Bytes of values per driver.
pub const MAX_DRIVER_BYTES: usize = 64 * 1024;
/// Characters of a key.
pub const MAX_KEY_LEN: usize = 64;

/// A key as the store accepts it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key(String);

impl Key {
    pub fn parse(text: &str) -> Result<Self, StoreError> {
        let plain = text
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'));
        if plain && (1..=MAX_KEY_LEN).contains(&text.len()) && !matches!(text, "." | "..") {
            Ok(Self(text.to_owned()))
        } else {
            Err(StoreError::BadKey)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why the store refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreError {
    BadKey,
    NotSet,
    AlreadySet,
    ValueTooLong { len: usize },
    TooManyKeys,
    DriverFull { needed: usize },
}

impl StoreError {
    pub fn errno(&self) -> i32 {
        match self {
            Self::BadKey => EINVAL,
            Self::NotSet => ENOENT,
            Self::AlreadySet => EEXIST,
            Self::ValueTooLong { .. } => EFBIG,
            Self::TooManyKeys | Self::DriverFull { .. } => ENOSPC,
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadKey => write!(
                f,
                "a key is 1 to {MAX_KEY_LEN} characters of a-z, 0-9, '.', '_' and '-'"
            ),
            Self::NotSet => f.write_str("no value under that key"),
            Self::AlreadySet => f.write_str("the key is set and O_EXCL was given"),
            Self::ValueTooLong { len } => {
                write!(f, "a value of {len} bytes: at most {MAX_VALUE_LEN}")
            }
            Self::TooManyKeys => write!(f, "the driver has {MAX_KEYS} keys already"),
            Self::DriverFull { needed } => write!(
                f,
                "the driver's values would take {needed} bytes: at most {MAX_DRIVER_BYTES}"
            ),
        }
    }
}

impl std::error::Error for StoreError {}

/// One driver's values. Values are shared with the handles that read them, so
/// a reader going through a value in pieces keeps the one it started on.
#[derive(Debug, Default)]
struct DriverValues {
    values: BTreeMap<Key, Arc<[u8]>>,
    bytes: usize,
}

/// Every driver's values, by driver name.
#[derive(Debug, Default)]
pub struct Store {
    drivers: BTreeMap<String, DriverValues>,
}

impl Store {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, driver: &str, key: &Key) -> Option<Arc<[u8]>> {
        self.drivers.get(driver)?.values.get(key).cloned()
    }

    /// Whether a writer may open `key`: `create` (O_CREAT) lets it create the
    /// key, which must then fit among the driver's keys; `exclusive` (O_EXCL)
    /// wants it unset. Checked again at each write, since other handles write
    /// in between.
    pub fn check_writer(
        &self,
        driver: &str,
        key: &Key,
        create: bool,
        exclusive: bool,
    ) -> Result<(), StoreError> {
        let values = self.drivers.get(driver);
        let set = values.is_some_and(|v| v.values.contains_key(key));
        match (set, create) {
            (true, _) if create && exclusive => Err(StoreError::AlreadySet),
            (true, _) => Ok(()),
            (false, false) => Err(StoreError::NotSet),
            (false, true) => match values {
                Some(v) if v.values.len() >= MAX_KEYS => Err(StoreError::TooManyKeys),
                _ => Ok(()),
            },
        }
    }

    /// Replaces `key`'s value with `value`, creating the key if `create`; on
    /// any error nothing changes.
    pub fn set(
        &mut self,
        driver: &str,
        key: &Key,
        value: &[u8],
        create: bool,
    ) -> Result<(), StoreError> {
        if value.len() > MAX_VALUE_LEN {
            return Err(StoreError::ValueTooLong { len: value.len() });
        }
        let (count, bytes, old) = match self.drivers.get(driver) {
            Some(v) => (
                v.values.len(),
                v.bytes,
                v.values.get(key).map(|old| old.len()),
            ),
            None => (0, 0, None),
        };
        match old {
            None if !create => return Err(StoreError::NotSet),
            None if count >= MAX_KEYS => return Err(StoreError::TooManyKeys),
            _ => {}
        }
        let needed = bytes - old.unwrap_or(0) + value.len();
        if needed > MAX_DRIVER_BYTES {
            return Err(StoreError::DriverFull { needed });
        }
        let values = self.drivers.entry(driver.to_owned()).or_default();
        values.values.insert(key.clone(), Arc::from(value));
        values.bytes = needed;
        Ok(())
    }

    /// Keys and bytes of values `driver` holds.
    pub fn usage(&self, driver: &str) -> (usize, usize) {
        self.drivers
            .get(driver)
            .map_or((0, 0), |v| (v.values.len(), v.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> Key {
        Key::parse(text).unwrap()
    }

    #[test]
    fn keys_are_short_plain_names() {
        for good in [
            "a",
            "settings",
            "stats.v1",
            "rx_frames",
            "a-b",
            "0",
            &"k".repeat(64),
        ] {
            assert_eq!(Key::parse(good).map(|k| k.to_string()), Ok(good.to_owned()));
        }
        for bad in [
            "",
            ".",
            "..",
            "Settings",
            "a/b",
            "a b",
            "a\nb",
            "ä",
            "a?b",
            &"k".repeat(65),
        ] {
            assert_eq!(Key::parse(bad), Err(StoreError::BadKey), "{bad:?}");
            assert_eq!(StoreError::BadKey.errno(), EINVAL);
        }
    }

    #[test]
    fn a_write_replaces_the_whole_value_and_readers_keep_the_one_they_took() {
        let mut store = Store::new();
        let k = key("settings");
        assert_eq!(store.get("uart", &k), None);
        assert_eq!(
            store.set("uart", &k, b"x", false),
            Err(StoreError::NotSet),
            "without O_CREAT a key is not created"
        );
        store.set("uart", &k, b"baud=9600", true).unwrap();
        let taken = store.get("uart", &k).unwrap();
        store.set("uart", &k, b"b", false).unwrap();
        assert_eq!(&*taken, b"baud=9600");
        assert_eq!(&*store.get("uart", &k).unwrap(), b"b");
        assert_eq!(store.usage("uart"), (1, 1));
        assert_eq!(store.get("e1000", &k), None, "drivers do not share keys");
    }

    #[test]
    fn a_value_over_4096_bytes_is_refused_with_efbig_and_changes_nothing() {
        let mut store = Store::new();
        let k = key("big");
        store.set("d", &k, &[1; MAX_VALUE_LEN], true).unwrap();
        let error = store
            .set("d", &k, &[2; MAX_VALUE_LEN + 1], true)
            .unwrap_err();
        assert_eq!(error, StoreError::ValueTooLong { len: 4097 });
        assert_eq!(error.errno(), EFBIG);
        assert_eq!(&*store.get("d", &k).unwrap(), &[1; MAX_VALUE_LEN][..]);
    }

    #[test]
    fn the_65th_key_is_refused_with_enospc_but_existing_keys_stay_writable() {
        let mut store = Store::new();
        for i in 0..MAX_KEYS {
            store.set("d", &key(&format!("k{i}")), b"v", true).unwrap();
        }
        let extra = key("extra");
        assert_eq!(
            store.check_writer("d", &extra, true, false),
            Err(StoreError::TooManyKeys)
        );
        let error = store.set("d", &extra, b"v", true).unwrap_err();
        assert_eq!(
            (error.clone(), error.errno()),
            (StoreError::TooManyKeys, ENOSPC)
        );
        assert_eq!(store.check_writer("d", &key("k0"), true, false), Ok(()));
        store.set("d", &key("k0"), b"again", true).unwrap();
        assert_eq!(store.usage("d"), (MAX_KEYS, MAX_KEYS - 1 + 5));
        store.set("other", &extra, b"v", true).unwrap();
    }

    #[test]
    fn more_than_64_kib_of_values_is_refused_with_enospc_counting_replacements() {
        let mut store = Store::new();
        let full = [0u8; MAX_VALUE_LEN];
        for i in 0..MAX_DRIVER_BYTES / MAX_VALUE_LEN {
            store.set("d", &key(&format!("k{i}")), &full, true).unwrap();
        }
        assert_eq!(store.usage("d"), (16, MAX_DRIVER_BYTES));
        let error = store.set("d", &key("one-more"), b"x", true).unwrap_err();
        assert_eq!(
            error,
            StoreError::DriverFull {
                needed: MAX_DRIVER_BYTES + 1
            }
        );
        assert_eq!(error.errno(), ENOSPC);
        // Replacing a value counts only the difference.
        store.set("d", &key("k0"), &full, false).unwrap();
        store.set("d", &key("k0"), b"small", false).unwrap();
        store.set("d", &key("one-more"), b"x", true).unwrap();
        assert_eq!(store.usage("d"), (17, MAX_DRIVER_BYTES - MAX_VALUE_LEN + 6));
    }

    #[test]
    fn exclusive_creation_wants_an_unset_key() {
        let mut store = Store::new();
        let k = key("once");
        assert_eq!(
            store.check_writer("d", &k, false, false),
            Err(StoreError::NotSet)
        );
        assert_eq!(store.check_writer("d", &k, true, true), Ok(()));
        store.set("d", &k, b"", true).unwrap();
        assert_eq!(
            store.get("d", &k).as_deref(),
            Some(&b""[..]),
            "an empty value is a value"
        );
        let error = store.check_writer("d", &k, true, true).unwrap_err();
        assert_eq!(
            (error.clone(), error.errno()),
            (StoreError::AlreadySet, EEXIST)
        );
        assert_eq!(store.check_writer("d", &k, false, false), Ok(()));
    }
}
