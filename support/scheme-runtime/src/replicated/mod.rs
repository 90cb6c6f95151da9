//! Serving a scheme through replicas.
//!
//! The supervisor runs a driver as N replicas and serves the driver's scheme to
//! clients itself: a [`Forwarder`] is the scheme it serves, and it turns every
//! call into one message on the replica channel ([`codec`]). Each replica runs
//! [`serve_replica`] on its end of the channel: one `read` per message, the
//! daemon's own `SchemeSync` code, one `write` per reply. The supervisor gives
//! every replica the same message and votes on the replies, which is why the
//! replica loop does nothing else per message that the kernel would see.
//! Clients hold the forwarder's handle numbers, not the replicas': when the
//! supervisor starts the replicas afresh, the handles opened before fail with
//! `ESTALE` instead of reaching what the fresh replicas numbered alike
//! ([`ReplicaLink::generation`]).
//!
//! A daemon does not call [`serve_replica`] itself: [`crate::serve`] does, when
//! the process was started with [`REPLICA_CHANNEL_ENV`] naming its channel.

pub mod codec;
mod forwarder;
pub mod held;
mod pacing;
mod relayed_line;
mod replica;

#[cfg(test)]
mod test_scheme;

use std::ffi::OsStr;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

pub use codec::Hello;
pub use forwarder::{Forwarder, ReplicaLink, QUIET_ROUND};
pub use relayed_line::RelayedLine;
pub use replica::serve_replica;

use crate::SchemeDaemon;

/// The environment variable that makes a daemon a replica: the number of the
/// inherited descriptor it serves the supervisor on.
pub const REPLICA_CHANNEL_ENV: &str = "SCHEME_REPLICA_CHANNEL";

/// Whether this process was started as a replica: it then serves its engine,
/// which decides when rounds run, and touches devices only through it.
pub fn runs_as_replica() -> bool {
    std::env::var_os(REPLICA_CHANNEL_ENV).is_some_and(|value| !value.is_empty())
}

/// Serves `daemon` as a replica when the process was started as one, and then
/// returns how serving ended; `None` when it was not, and the caller serves the
/// scheme itself.
pub(crate) fn serve_if_replica<D: SchemeDaemon>(
    name: &str,
    daemon: &mut D,
    tick: Option<Duration>,
) -> Option<io::Result<()>> {
    let value = std::env::var_os(REPLICA_CHANNEL_ENV).filter(|value| !value.is_empty())?;
    Some(
        install_stub()
            .and_then(|()| channel_fd(&value))
            .and_then(|channel| serve_replica(channel, name, daemon, tick)),
    )
}

/// Hands the replica over to its stub when the engine asked for one
/// ([`romain_stub::STUB_ENV`]): its events are then posted to the engine from
/// a signal handler instead of stopping it for a tracer.
fn install_stub() -> io::Result<()> {
    if std::env::var_os(romain_stub::STUB_ENV).is_some_and(|value| !value.is_empty()) {
        return romain_stub::install().map_err(|error| {
            io::Error::new(error.kind(), format!("cannot install the stub: {error}"))
        });
    }
    Ok(())
}

fn channel_fd(value: &OsStr) -> io::Result<OwnedFd> {
    let fd = value
        .to_str()
        .and_then(|text| text.parse::<RawFd>().ok())
        .filter(|fd| *fd >= 0)
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{REPLICA_CHANNEL_ENV}={value:?} is not a descriptor number"),
            )
        })?;
    // SAFETY: whoever started this process as a replica handed it this
    // descriptor, through the environment, for this one use: nothing else in the
    // process owns it. One that is not open fails the first write (the hello).
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::{AsRawFd, IntoRawFd};

    #[test]
    fn channel_is_a_descriptor_number() {
        for bad in ["", "three", "-1", "3.0", "99999999999"] {
            let error = channel_fd(OsStr::new(bad)).unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
        }
        let (ours, _peer) = std::os::unix::net::UnixDatagram::pair().unwrap();
        let raw = ours.into_raw_fd();
        let channel = channel_fd(OsStr::new(&raw.to_string())).unwrap();
        assert_eq!(channel.as_raw_fd(), raw);
    }
}
