//! A driver's side of `romain:`'s state store: values kept under a key that
//! outlive the driver's restarts (MINIX 3's data store).
//!
//! The supervisor tells a driver its name in [`DRIVER_ENV`] when it starts it;
//! the driver's values are then `romain:store/<name>/<key>`, which only the
//! driver's own user may open. [`StateStore::load`] gives a value (`None` while
//! the key is unset) and [`StateStore::save`] replaces one with a single write,
//! so a driver that dies while saving leaves the old value or the new, never
//! half. Keys are 1 to 64 characters of `a-z0-9._-`; a value is at most
//! [`MAX_VALUE_LEN`] bytes.
//!
//! A driver run by hand has no [`DRIVER_ENV`], so no store: loading finds
//! nothing and saving keeps nothing, said once in the log at debug level. A
//! store that refuses (a replica whose policy rule does not list `romain`, a
//! supervisor that is gone) is an error from `load` and `save`; drivers that
//! only want to carry on use [`StateStore::restore`] and
//! [`StateStore::publish`], which log the first failure and go on. A refusal
//! (`EACCES`: the policy or the store does not let this driver keep values)
//! stands for the process's life: the store is not asked again, since every
//! attempt of a replicated driver costs its group events, and a policy does
//! not change under a running driver.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};

use syscall::error::{Error, EACCES, ENOENT};
use syscall::flag::{O_CREAT, O_RDONLY, O_WRONLY};

use crate::Handle;

/// The variable in which the supervisor names the driver it starts.
pub const DRIVER_ENV: &str = "ROMAIN_DRIVER";
/// The largest value the store keeps.
pub const MAX_VALUE_LEN: usize = 4096;
/// The scheme that keeps the values.
const SCHEME: &str = "romain";

/// The store of one driver, or none.
#[derive(Debug)]
pub struct StateStore {
    driver: Option<String>,
    /// A private scheme directory (tests) instead of the usual one.
    #[cfg(target_os = "linux")]
    dir: Option<std::path::PathBuf>,
    said_absent: AtomicBool,
    said_failed: AtomicBool,
    /// The store refused this driver once: it is not asked again.
    refused: AtomicBool,
}

impl StateStore {
    /// The store of the driver [`DRIVER_ENV`] names; none without it.
    pub fn from_env() -> Self {
        let driver = std::env::var(DRIVER_ENV)
            .ok()
            .filter(|name| !name.is_empty());
        Self::new(driver)
    }

    /// The store of `driver`.
    pub fn for_driver(driver: &str) -> Self {
        Self::new(Some(driver.to_owned()))
    }

    /// No store: loads find nothing, saves keep nothing.
    pub fn absent() -> Self {
        Self::new(None)
    }

    /// The store of `driver` among the schemes served in `dir`.
    #[cfg(target_os = "linux")]
    pub fn for_driver_in(driver: &str, dir: &std::path::Path) -> Self {
        Self {
            dir: Some(dir.to_owned()),
            ..Self::for_driver(driver)
        }
    }

    fn new(driver: Option<String>) -> Self {
        Self {
            driver,
            #[cfg(target_os = "linux")]
            dir: None,
            said_absent: AtomicBool::new(false),
            said_failed: AtomicBool::new(false),
            refused: AtomicBool::new(false),
        }
    }

    /// The driver whose store this is, if there is one.
    pub fn driver(&self) -> Option<&str> {
        self.driver.as_deref()
    }

    /// Whether saving may keep anything: there is a store, and it has not
    /// refused this driver.
    pub fn keeps_values(&self) -> bool {
        self.driver.is_some() && !self.refused.load(Ordering::Relaxed)
    }

    /// The value under `key`; `None` while it is unset, or without a store.
    pub fn load(&self, key: &str) -> io::Result<Option<Vec<u8>>> {
        let Some(path) = self.path(key) else {
            return Ok(None);
        };
        let handle = match self.open(&path, O_RDONLY) {
            Ok(handle) => handle,
            Err(error) if error.raw_os_error() == Some(ENOENT) => return Ok(None),
            Err(error) => return Err(error),
        };
        // One byte more than a value may hold: reading to the end takes a
        // read that returns nothing, and a store that broke its bound is
        // caught rather than followed.
        let mut value = vec![0u8; MAX_VALUE_LEN + 1];
        let mut len = 0;
        loop {
            let n = handle.read_at(&mut value[len..], len as u64)?;
            if n == 0 {
                break;
            }
            len += n;
            if len == value.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{path}: longer than {MAX_VALUE_LEN} bytes"),
                ));
            }
        }
        value.truncate(len);
        Ok(Some(value))
    }

    /// Replaces the value under `key` with `value`, in one write; without a
    /// store, does nothing.
    pub fn save(&self, key: &str, value: &[u8]) -> io::Result<()> {
        let Some(path) = self.path(key) else {
            return Ok(());
        };
        let handle = self.open(&path, O_WRONLY | O_CREAT)?;
        let written = handle.write_at(value, 0)?;
        if written != value.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("{path}: {written} of {} bytes taken", value.len()),
            ));
        }
        handle.close()
    }

    /// As [`load`](Self::load), for a driver that goes on without its state:
    /// a failure is logged (the first as a warning, later ones at debug
    /// level) and reads as nothing stored.
    pub fn restore(&self, key: &str) -> Option<Vec<u8>> {
        self.load(key)
            .map_err(|error| self.failed("reading", key, &error))
            .ok()
            .flatten()
    }

    /// As [`save`](Self::save), for a driver that goes on without the store:
    /// a failure is logged as [`restore`](Self::restore) logs it. Whether the
    /// value was kept.
    pub fn publish(&self, key: &str, value: &[u8]) -> bool {
        match self.save(key, value) {
            Ok(()) => self.driver.is_some(),
            Err(error) => {
                self.failed("saving", key, &error);
                false
            }
        }
    }

    /// `romain:store/<driver>/<key>`; `None` (said once) without a store.
    fn path(&self, key: &str) -> Option<String> {
        match &self.driver {
            Some(driver) => Some(format!("{SCHEME}:store/{driver}/{key}")),
            None => {
                if !self.said_absent.swap(true, Ordering::Relaxed) {
                    log::debug!("no {DRIVER_ENV} (not started by romain): no state store; state is not kept");
                }
                None
            }
        }
    }

    fn failed(&self, doing: &str, key: &str, error: &io::Error) {
        if self.said_failed.swap(true, Ordering::Relaxed) {
            log::debug!("state store: {doing} {key}: {error}");
        } else {
            log::warn!("state store: {doing} {key}: {error}; going on without it (said once)");
        }
    }

    fn open(&self, path: &str, flags: usize) -> io::Result<Handle> {
        if self.refused.load(Ordering::Relaxed) {
            return Err(crate::io_error(Error::new(EACCES)));
        }
        #[cfg(target_os = "linux")]
        let opened = match &self.dir {
            Some(dir) => Handle::open_in(dir, path, flags),
            None => Handle::open(path, flags),
        };
        #[cfg(not(target_os = "linux"))]
        let opened = Handle::open(path, flags);
        if opened
            .as_ref()
            .is_err_and(|error| error.raw_os_error() == Some(EACCES))
        {
            self.refused.store(true, Ordering::Relaxed);
        }
        opened
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_driver_name_loads_find_nothing_and_saves_keep_nothing() {
        let store = StateStore::absent();
        assert_eq!(store.driver(), None);
        assert_eq!(store.load("settings").unwrap(), None);
        store.save("settings", b"baud=9600").unwrap();
        assert_eq!(store.restore("settings"), None);
        assert!(!store.publish("settings", b"x"), "nothing was kept");
        assert!(store.said_absent.load(Ordering::Relaxed));
        assert!(
            !store.said_failed.load(Ordering::Relaxed),
            "absence is no failure"
        );
    }

    #[test]
    fn paths_name_the_driver_and_the_key() {
        let store = StateStore::for_driver("uart");
        assert_eq!(
            store.path("settings").as_deref(),
            Some("romain:store/uart/settings")
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_store_that_refused_the_driver_once_is_not_asked_again() {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        use std::sync::atomic::AtomicUsize;
        use std::sync::Arc;

        use nix::sys::socket::{
            accept, bind, listen, recv, send, socket, AddressFamily, Backlog, MsgFlags, SockFlag,
            SockType, UnixAddr,
        };

        use crate::wire::ResponseHeader;

        let dir = std::env::temp_dir().join(format!("state-store-refusing-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let listener = socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap();
        bind(
            listener.as_raw_fd(),
            &UnixAddr::new(&dir.join(SCHEME)).unwrap(),
        )
        .unwrap();
        listen(&listener, Backlog::new(4).unwrap()).unwrap();
        // A store that refuses every open, counting them.
        let opens = Arc::new(AtomicUsize::new(0));
        let counted = opens.clone();
        std::thread::spawn(move || loop {
            // SAFETY: accept just returned this descriptor, owned from here on.
            let peer = unsafe { OwnedFd::from_raw_fd(accept(listener.as_raw_fd()).unwrap()) };
            let mut request = [0; 256];
            recv(peer.as_raw_fd(), &mut request, MsgFlags::empty()).unwrap();
            counted.fetch_add(1, Ordering::SeqCst);
            let reply = ResponseHeader::reply(Err(Error::new(EACCES))).encode();
            send(peer.as_raw_fd(), &reply, MsgFlags::empty()).unwrap();
        });

        let store = StateStore::for_driver_in("e1000", &dir);
        assert!(store.keeps_values());
        assert!(!store.publish("stats", b"rx=1"));
        assert!(!store.keeps_values());
        assert!(!store.publish("stats", b"rx=2"));
        assert_eq!(store.restore("stats"), None);
        assert_eq!(
            store.save("stats", b"rx=3").unwrap_err().raw_os_error(),
            Some(EACCES)
        );
        assert_eq!(opens.load(Ordering::SeqCst), 1, "asked once");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_store_that_is_not_served_is_an_error_logged_once_and_the_driver_goes_on() {
        let dir = std::env::temp_dir().join(format!("state-store-test-{}", std::process::id()));
        let store = StateStore::for_driver_in("uart", &dir);
        let error = store.load("settings").unwrap_err();
        assert_eq!(error.raw_os_error(), Some(syscall::error::ENODEV));
        assert!(store.save("settings", b"x").is_err());
        assert_eq!(store.restore("settings"), None);
        assert!(store.said_failed.load(Ordering::Relaxed));
        assert!(!store.publish("settings", b"x"));
    }
}
