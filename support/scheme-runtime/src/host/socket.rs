//! Sending and receiving whole messages, with an optional file descriptor.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::cmsg_space;
use nix::sys::socket::{
    connect, recvmsg, sendmsg, socket, AddressFamily, ControlMessage, ControlMessageOwned,
    MsgFlags, SockFlag, SockType, UnixAddr,
};

/// A received message: how many bytes, whether it did not fit, and the file
/// descriptor it carried, if any.
pub struct Received {
    pub len: usize,
    pub truncated: bool,
    pub fd: Option<OwnedFd>,
}

pub fn seqpacket_socket() -> io::Result<OwnedFd> {
    Ok(socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

pub fn connect_to(path: &Path) -> io::Result<OwnedFd> {
    let fd = seqpacket_socket()?;
    connect(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    Ok(fd)
}

/// Sends one message made of `parts`, never raising SIGPIPE: a peer that went
/// away is an error for the caller to handle, not a signal that kills a daemon.
pub fn send(
    fd: RawFd,
    parts: &[IoSlice<'_>],
    pass_fd: Option<RawFd>,
    dont_wait: bool,
) -> io::Result<()> {
    let fds = pass_fd.map(|raw| [raw]);
    let rights = fds.as_ref().map(|fds| ControlMessage::ScmRights(fds));
    let cmsgs = rights.as_slice();
    let mut flags = MsgFlags::MSG_NOSIGNAL;
    if dont_wait {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    sendmsg::<()>(fd, parts, cmsgs, flags, None)?;
    Ok(())
}

/// Receives one message into `parts`. Descriptors arrive close-on-exec; any
/// beyond the first are closed.
pub fn recv(fd: RawFd, parts: &mut [IoSliceMut<'_>], dont_wait: bool) -> io::Result<Received> {
    let mut cmsg_buffer = cmsg_space!([RawFd; 4]);
    let mut flags = MsgFlags::MSG_CMSG_CLOEXEC;
    if dont_wait {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    let message = recvmsg::<()>(fd, parts, Some(&mut cmsg_buffer), flags)?;
    let mut passed = None;
    for cmsg in message.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raws) = cmsg {
            for raw in raws {
                // SAFETY: the kernel just installed this descriptor for us; we own it.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                passed.get_or_insert(owned);
            }
        }
    }
    Ok(Received {
        len: message.bytes,
        truncated: message.flags.contains(MsgFlags::MSG_TRUNC),
        fd: passed,
    })
}
