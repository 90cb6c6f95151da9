//! A driver started ahead of need: its supervisor keeps it waiting, past the
//! process start and the driver's own set-up, until the driver it stands in for
//! dies, and then only tells it to go on. Under emulation a process start costs
//! more than everything a driver then does to serve again.
//!
//! The supervisor starts a standby with [`STANDBY_FD_ENV`] naming a descriptor
//! (the read end of a pipe). [`wait_if_standby`] blocks on it: one byte means
//! take over now, the end of the pipe (the supervisor dropped it, or died) means
//! leave. A driver calls it before it touches any device or scheme: a standby
//! must hold nothing its active twin uses.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::FromRawFd;

/// The environment variable that names a standby's descriptor.
pub const STANDBY_FD_ENV: &str = "ROMAIN_STANDBY_FD";

/// Returns at once in a process not started as a standby; in a standby, waits
/// until told to take over, and ends the process if told to leave.
pub fn wait_if_standby() {
    let Some(fd) = crate::descriptor_from_env(STANDBY_FD_ENV) else {
        return;
    };
    // SAFETY: the supervisor opened this descriptor for this process alone and
    // named it in the environment; nothing else here owns it.
    let mut signal = unsafe { File::from_raw_fd(fd) };
    log::info!("standing by");
    match wait_for_signal(&mut signal) {
        // The supervisor says so.
        Ok(true) => log::debug!("taking over"),
        Ok(false) => {
            log::info!("released without taking over");
            std::process::exit(0);
        }
        Err(e) => {
            log::error!("standby descriptor {fd}: {e}");
            std::process::exit(1);
        }
    }
}

/// One byte: true; the end of the pipe: false.
fn wait_for_signal(signal: &mut impl Read) -> io::Result<bool> {
    let mut byte = [0u8; 1];
    loop {
        match signal.read(&mut byte) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_byte_means_take_over_and_the_end_means_leave() {
        assert!(wait_for_signal(&mut &b"g"[..]).unwrap());
        assert!(!wait_for_signal(&mut &b""[..]).unwrap());
    }
}
