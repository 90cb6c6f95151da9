//! A Linux TAP device: an Ethernet interface of the guest's own network stack whose
//! "wire" is a file descriptor. A read returns one frame the stack sent, a write hands
//! the stack one frame as if it had arrived. The device lives as long as the
//! descriptor.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;

use nix::libc;

use crate::relay::{FrameSink, FrameSource};

/// The clone device every TUN/TAP interface is created through.
pub const CLONE_DEVICE: &str = "/dev/net/tun";

nix::ioctl_write_ptr_bad!(tun_set_iff, libc::TUNSETIFF, libc::ifreq);
// TUNSETCARRIER, _IOW('T', 226, int): the interface's carrier on or off.
nix::ioctl_write_ptr!(tun_set_carrier, b'T', 226, libc::c_int);

#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
}

impl Tap {
    /// Creates interface `name` (down, without an address) in non-blocking mode,
    /// frames without the packet-information prefix.
    pub fn create(name: &str) -> io::Result<Tap> {
        let mut request = interface_request(name)?;
        // Both flags fit the request's 16-bit field.
        request.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(CLONE_DEVICE)
            .map_err(|e| io::Error::new(e.kind(), format!("opening {CLONE_DEVICE}: {e}")))?;
        // SAFETY: the request is a fully initialised `ifreq` that outlives the call,
        // and TUNSETIFF only reads and writes within it.
        unsafe { tun_set_iff(file.as_raw_fd(), &request) }.map_err(|e| {
            let kind = io::Error::from(e).kind();
            io::Error::new(kind, format!("creating TAP device {name}: {e}"))
        })?;
        Ok(Tap {
            file,
            name: name.to_owned(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Turns the interface's carrier on or off, as the NIC's link is up or
    /// down: the stack then sees the link come and go.
    pub fn set_carrier(&self, up: bool) -> io::Result<()> {
        let on = libc::c_int::from(up);
        // SAFETY: TUNSETCARRIER reads one int, which outlives the call.
        unsafe { tun_set_carrier(self.file.as_raw_fd(), &on) }
            .map(drop)
            .map_err(|e| {
                io::Error::new(
                    io::Error::from(e).kind(),
                    format!("setting {}'s carrier: {e}", self.name),
                )
            })
    }
}

/// An `ifreq` naming `name`, checked against the kernel's limits.
fn interface_request(name: &str) -> io::Result<libc::ifreq> {
    // SAFETY: `ifreq` is plain data (bytes and integers), for which zero is valid.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    let valid = !name.is_empty()
        && name.len() < request.ifr_name.len()
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
    if !valid {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{name:?} is not an interface name (1 to {} printable characters, no '/' or ':')",
                request.ifr_name.len() - 1
            ),
        ));
    }
    for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *slot = byte as libc::c_char;
    }
    Ok(request)
}

impl FrameSource for Tap {
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        match self.file.read(buf) {
            Ok(n) => Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl FrameSink for Tap {
    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        let n = self.file.write(frame)?;
        if n == frame.len() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "{} took {n} of a {}-byte frame",
                self.name,
                frame.len()
            )))
        }
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_fit_the_kernels_field() {
        let request = interface_request("tap0").unwrap();
        let name: Vec<u8> = request.ifr_name[..5].iter().map(|&c| c as u8).collect();
        assert_eq!(name, b"tap0\0");
        assert!(interface_request(&"t".repeat(15)).is_ok());
        for bad in ["", "a/b", "tap 0", "eth0:1", &"t".repeat(16)] {
            let err = interface_request(bad).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{bad:?}");
            assert!(err.to_string().contains("not an interface name"), "{err}");
        }
    }
}
