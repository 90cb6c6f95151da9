//! Sending and receiving whole messages, with the descriptors and credentials
//! they carry.
//!
//! Every descriptor a message brings is owned from the moment the kernel installs
//! it, also when the control buffer was too small for all of them (the kernel then
//! installs those that fit, sets `MSG_CTRUNC` and drops the rest): a peer that
//! sends more than expected costs the receiver nothing.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::libc;
use nix::sys::socket::{
    connect, sendmsg, socket, AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, UnixAddr,
};

/// Most descriptors one received message may hand over; more are closed.
pub const MAX_RECEIVED_FDS: usize = 4;

/// The sender of a message, as the kernel vouches for it (`SCM_CREDENTIALS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credentials {
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
}

/// A received message: how many bytes, whether it did not fit, the descriptors it
/// carried (every one of them owned here) and, on a socket with `SO_PASSCRED`,
/// who sent it.
#[derive(Debug)]
pub struct Received {
    pub len: usize,
    pub truncated: bool,
    /// The message brought more descriptors than [`MAX_RECEIVED_FDS`]; the
    /// extra ones were closed.
    pub fds_truncated: bool,
    pub fds: Vec<OwnedFd>,
    pub sender: Option<Credentials>,
}

impl Received {
    /// The one descriptor a reply may carry; any other is a protocol error the
    /// caller detects by `fds.len()`.
    pub fn take_fd(&mut self) -> Option<OwnedFd> {
        self.fds.pop()
    }
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

/// Receives one message into `parts`. Descriptors arrive close-on-exec.
pub fn recv(fd: RawFd, parts: &mut [IoSliceMut<'_>], dont_wait: bool) -> io::Result<Received> {
    let mut flags = MsgFlags::MSG_CMSG_CLOEXEC;
    if dont_wait {
        flags |= MsgFlags::MSG_DONTWAIT;
    }
    receive_message(fd, parts, flags)
}

/// Room for one `SCM_CREDENTIALS` and one `SCM_RIGHTS` of [`MAX_RECEIVED_FDS`],
/// in 8-byte words so that the buffer is aligned as `cmsghdr` needs.
const CONTROL_WORDS: usize = (2 * size_of::<libc::cmsghdr>()
    + size_of::<libc::ucred>()
    + MAX_RECEIVED_FDS * size_of::<RawFd>())
.div_ceil(8)
    + 2;

/// `recvmsg` on `fd` with `flags`, taking ownership of every descriptor that
/// arrived, whatever else went wrong with the message.
pub fn receive_message(
    fd: RawFd,
    parts: &mut [IoSliceMut<'_>],
    flags: MsgFlags,
) -> io::Result<Received> {
    let mut control = [0u64; CONTROL_WORDS];
    // SAFETY: an all-zero msghdr is valid (no name, no iovecs, no control).
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = parts.as_mut_ptr().cast();
    header.msg_iovlen = parts.len() as _;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = size_of::<[u64; CONTROL_WORDS]>() as _;
    // SAFETY: the iovecs are `IoSliceMut`s (ABI-compatible with iovec) borrowed
    // mutably for the call; the control buffer is ours and aligned.
    let received = unsafe { libc::recvmsg(fd, &mut header, flags.bits()) };
    if received < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut message = Received {
        len: received as usize,
        truncated: header.msg_flags & libc::MSG_TRUNC != 0,
        fds_truncated: header.msg_flags & libc::MSG_CTRUNC != 0,
        fds: Vec::new(),
        sender: None,
    };
    // SAFETY: the kernel filled `msg_control` up to `msg_controllen` with whole
    // control messages, also when it truncated (then it only left some out).
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(&header) };
    while !cmsg.is_null() {
        // SAFETY: CMSG_FIRSTHDR/CMSG_NXTHDR only return headers inside the buffer.
        let (level, kind, len) =
            unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type, (*cmsg).cmsg_len) };
        // SAFETY: as above; the data follows the header.
        let data = unsafe { libc::CMSG_DATA(cmsg) };
        // SAFETY: CMSG_LEN(0) is the header's own length.
        let data_len = len.saturating_sub(unsafe { libc::CMSG_LEN(0) } as usize);
        match (level, kind) {
            (libc::SOL_SOCKET, libc::SCM_RIGHTS) => {
                for i in 0..data_len / size_of::<RawFd>() {
                    // SAFETY: the data holds `data_len` bytes of descriptors,
                    // possibly unaligned.
                    let raw = unsafe { data.cast::<RawFd>().add(i).read_unaligned() };
                    // SAFETY: the kernel just installed this descriptor for us;
                    // nothing else owns it.
                    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                    if message.fds.len() < MAX_RECEIVED_FDS {
                        message.fds.push(owned);
                    } else {
                        message.fds_truncated = true;
                    }
                }
            }
            (libc::SOL_SOCKET, libc::SCM_CREDENTIALS) if data_len >= size_of::<libc::ucred>() => {
                // SAFETY: a ucred's worth of bytes, possibly unaligned.
                let ucred = unsafe { data.cast::<libc::ucred>().read_unaligned() };
                message.sender = Some(Credentials {
                    pid: ucred.pid as u32,
                    uid: ucred.uid,
                    gid: ucred.gid,
                });
            }
            _ => {}
        }
        // SAFETY: `cmsg` is a header inside the buffer `header` describes.
        cmsg = unsafe { libc::CMSG_NXTHDR(&header, cmsg) };
    }
    Ok(message)
}

/// Asks the kernel to attach the sender's credentials to every message `fd`
/// receives; sockets accepted from a listener inherit it.
pub fn pass_credentials(fd: &OwnedFd) -> io::Result<()> {
    nix::sys::socket::setsockopt(fd, nix::sys::socket::sockopt::PassCred, &true)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::socketpair;

    fn pair() -> (OwnedFd, OwnedFd) {
        socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .unwrap()
    }

    fn open_fds() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    #[test]
    fn descriptors_beyond_the_limit_are_closed_not_leaked() {
        let (a, b) = pair();
        let null = std::fs::File::open("/dev/null").unwrap();
        let raws = [null.as_raw_fd(); 9];
        let before = open_fds();
        for _ in 0..50 {
            sendmsg::<()>(
                a.as_raw_fd(),
                &[IoSlice::new(b"x")],
                &[ControlMessage::ScmRights(&raws)],
                MsgFlags::empty(),
                None,
            )
            .unwrap();
            let mut buf = [0u8; 4];
            let received = recv(b.as_raw_fd(), &mut [IoSliceMut::new(&mut buf)], false).unwrap();
            assert_eq!(received.len, 1);
            assert!(
                received.fds_truncated,
                "nine descriptors do not fit in four"
            );
            assert!(received.fds.len() <= MAX_RECEIVED_FDS);
        }
        // Other tests of this process open and close descriptors meanwhile, so
        // the count is compared with a margin; a leak would be 4 or more per
        // message, 200 or more here.
        let after = open_fds();
        assert!(
            after < before + 32,
            "received descriptors were kept: {before} open before, {after} after"
        );
    }

    #[test]
    fn the_sender_is_named_when_credentials_are_passed() {
        let (a, b) = pair();
        pass_credentials(&b).unwrap();
        send(a.as_raw_fd(), &[IoSlice::new(b"hi")], None, false).unwrap();
        let mut buf = [0u8; 4];
        let received = recv(b.as_raw_fd(), &mut [IoSliceMut::new(&mut buf)], false).unwrap();
        let sender = received.sender.expect("credentials attached");
        assert_eq!(sender.pid, std::process::id());
        assert_eq!(sender.uid, nix::unistd::getuid().as_raw());
        assert!(received.fds.is_empty());
    }

    #[test]
    fn a_passed_descriptor_arrives_owned() {
        let (a, b) = pair();
        let null = std::fs::File::open("/dev/null").unwrap();
        send(
            a.as_raw_fd(),
            &[IoSlice::new(b"m")],
            Some(null.as_raw_fd()),
            false,
        )
        .unwrap();
        let mut buf = [0u8; 4];
        let mut received = recv(b.as_raw_fd(), &mut [IoSliceMut::new(&mut buf)], false).unwrap();
        assert!(!received.fds_truncated);
        assert!(received.take_fd().is_some());
        assert!(received.take_fd().is_none());
    }
}
