//! Using `romain:` from another process: what the `romain` command line does,
//! for scripts, tests and other crates.

use std::io;
use std::num::NonZeroUsize;

use scheme_runtime::{read_text, Handle};
use syscall::error::{EACCES, EINVAL, ENODEV, ENOENT, EOPNOTSUPP, ESRCH, ETIMEDOUT};
use syscall::flag::{O_RDONLY, O_RDWR};

use crate::command::Command;
use crate::registry::is_driver_name;
use crate::SCHEME_NAME;

/// The path of `driver`'s group with an optional query (`replicas=3`, `attach`).
pub fn group_path(driver: &str, query: Option<&str>) -> io::Result<String> {
    if !is_driver_name(driver) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{driver:?} is not a driver name"),
        ));
    }
    Ok(match query {
        Some(query) => format!("/scheme/{SCHEME_NAME}/{driver}?{query}"),
        None => format!("/scheme/{SCHEME_NAME}/{driver}"),
    })
}

/// Starts `driver`'s group (or attaches to it) and returns its status. The
/// group keeps running after this returns.
pub fn up(driver: &str, replicas: Option<NonZeroUsize>) -> io::Result<String> {
    let query = replicas.map(|n| format!("replicas={n}"));
    let handle = Handle::open(&group_path(driver, query.as_deref())?, O_RDONLY)?;
    read_text(&handle)
}

/// The status of `driver`'s group, or the list of groups; starts nothing.
pub fn status(driver: Option<&str>) -> io::Result<String> {
    let path = match driver {
        Some(driver) => group_path(driver, Some("attach"))?,
        None => format!("/scheme/{SCHEME_NAME}"),
    };
    read_text(&Handle::open(&path, O_RDONLY)?)
}

/// Sends `command` to `driver`'s running group and returns the status after it.
pub fn send(driver: &str, command: &Command) -> io::Result<String> {
    let handle = Handle::open(&group_path(driver, Some("attach"))?, O_RDWR)?;
    handle.write(command.to_string().as_bytes())?;
    read_text(&handle)
}

/// What an error from `romain:` means, in words, for `driver`.
pub fn explain(error: &io::Error, driver: &str) -> String {
    match error.raw_os_error() {
        Some(ENOENT) => format!("no driver {driver:?} in the registry"),
        Some(ESRCH) => format!("{driver} is not running"),
        Some(EOPNOTSUPP) => format!(
            "{driver}: not supported: fault injection and scrubbing need a replicated group \
             (--replicas 2 or more), and replication needs process tracing (Linux)"
        ),
        Some(ETIMEDOUT) => format!(
            "{driver}: the replication engine did not answer in time; it may still carry the command out"
        ),
        Some(ENODEV) => format!("{SCHEME_NAME}: is not served (is `romain serve` running?)"),
        Some(EACCES) => {
            format!("{driver}: only root or the supervisor's user may start or command groups")
        }
        Some(EINVAL) => {
            format!("{driver}: request refused as invalid (the supervisor's log says why)")
        }
        _ => format!("{driver}: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(group_path("e1000", None).unwrap(), "/scheme/romain/e1000");
        assert_eq!(
            group_path("e1000", Some("replicas=3")).unwrap(),
            "/scheme/romain/e1000?replicas=3"
        );
        for bad in ["", "e1000?replicas=3", "a/b", ".."] {
            assert_eq!(
                group_path(bad, None).unwrap_err().kind(),
                io::ErrorKind::InvalidInput,
                "{bad}"
            );
        }
    }

    #[test]
    fn explanations() {
        let said = |errno| explain(&io::Error::from_raw_os_error(errno), "e1000");
        assert_eq!(said(ENOENT), "no driver \"e1000\" in the registry");
        assert_eq!(said(ESRCH), "e1000 is not running");
        assert!(said(EOPNOTSUPP).contains("need a replicated group"));
        assert!(said(ETIMEDOUT).contains("did not answer in time"));
        assert!(said(ENODEV).contains("romain serve"));
        assert!(said(EACCES).contains("only root"));
        assert!(said(EINVAL).contains("refused"));
        assert!(said(syscall::error::EIO).starts_with("e1000: "));
    }
}
