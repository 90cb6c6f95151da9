//! The replicas' own scheme connections, held by the engine.
//!
//! A driver that is a client of other schemes (`mmio:`, `dma:`) opens them with
//! `scheme_runtime::Handle`, which on Linux is a `SOCK_SEQPACKET` connection per
//! handle. A replica's `socket` gives it a virtual descriptor that exists only here;
//! its `connect`, `sendmsg`, `recvmsg` and `close` on that descriptor are performed
//! once on the engine's real socket, with the message bytes voted like any event,
//! and every replica receives the same reply. So the connections outlive any one
//! replica, and a faulty replica's request never leaves. Passing descriptors (a
//! scheme's memory to map) is not relayed yet: the control data is dropped and the
//! receiver sees `MSG_CTRUNC`.

use std::collections::BTreeMap;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::sys::socket::{
    connect, recvmsg, sendmsg, socket, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr,
};

use crate::trap::Tracee;

/// The first virtual descriptor number: far above what a driver opens itself, so
/// a replica's own files never take one.
pub const FIRST_CONNECTION_FD: u64 = 512;
/// How many connections the replicas may hold at once.
pub const MAX_CONNECTIONS: u64 = 1024;

/// `struct msghdr` on x86-64: name, namelen (+pad), iov, iovlen, control,
/// controllen, flags (+pad).
const MSGHDR_LEN: usize = 56;
const MSGHDR_IOV: usize = 16;
const MSGHDR_IOVLEN: usize = 24;
const MSGHDR_CONTROLLEN: usize = 40;
const MSGHDR_FLAGS: usize = 48;
const IOVEC_LEN: usize = 16;
/// Most iovecs and bytes one message may have: a scheme message is at most one
/// header, metadata and a 64 KiB payload.
const MAX_IOVECS: u64 = 16;
const MAX_MESSAGE: u64 = 1 << 20;

/// Whether `fd` is one of the virtual descriptors.
pub fn is_connection(fd: u64) -> bool {
    (FIRST_CONNECTION_FD..FIRST_CONNECTION_FD + MAX_CONNECTIONS).contains(&fd)
}

/// A replica's `msghdr`, as far as the engine uses it.
pub struct MessageHeader {
    /// Where each iovec's bytes are, in order.
    pub iovecs: Vec<(u64, u64)>,
    pub controllen: u64,
}

impl MessageHeader {
    /// Reads the `msghdr` at `address` and its iovecs from a stopped replica; `None`
    /// when the memory is unreadable or the message is larger than any scheme's.
    pub fn read(tracee: &Tracee, address: u64) -> Option<Self> {
        let header = tracee.read_memory(address, MSGHDR_LEN).ok()?;
        let word = |at: usize| u64::from_ne_bytes(header[at..at + 8].try_into().expect("8"));
        let (iov, iovlen) = (word(MSGHDR_IOV), word(MSGHDR_IOVLEN));
        if iovlen > MAX_IOVECS {
            return None;
        }
        let table = tracee.read_memory(iov, iovlen as usize * IOVEC_LEN).ok()?;
        let iovecs: Vec<(u64, u64)> = table
            .chunks_exact(IOVEC_LEN)
            .map(|entry| {
                let base = u64::from_ne_bytes(entry[..8].try_into().expect("8"));
                let len = u64::from_ne_bytes(entry[8..].try_into().expect("8"));
                (base, len)
            })
            .collect();
        let total: u64 = iovecs.iter().map(|&(_, len)| len).sum();
        (total <= MAX_MESSAGE).then_some(MessageHeader {
            iovecs,
            controllen: word(MSGHDR_CONTROLLEN),
        })
    }

    /// The bytes a `sendmsg` hands out, gathered from the iovecs.
    pub fn gather(&self, tracee: &Tracee) -> Option<Vec<u8>> {
        let mut data = Vec::new();
        for &(base, len) in &self.iovecs {
            data.extend(tracee.read_memory(base, len as usize).ok()?);
        }
        Some(data)
    }
}

/// The engine's real sockets, by the virtual descriptor the replicas know them by.
#[derive(Default)]
pub struct Connections {
    sockets: BTreeMap<u64, OwnedFd>,
}

impl Connections {
    /// A new `SOCK_SEQPACKET` socket; the virtual descriptor, or a negated errno.
    pub fn open(&mut self) -> i64 {
        let Some(fd) = (FIRST_CONNECTION_FD..FIRST_CONNECTION_FD + MAX_CONNECTIONS)
            .find(|fd| !self.sockets.contains_key(fd))
        else {
            return -i64::from(Errno::EMFILE as i32);
        };
        match socket(
            AddressFamily::Unix,
            SockType::SeqPacket,
            SockFlag::SOCK_CLOEXEC,
            None,
        ) {
            Ok(socket) => {
                self.sockets.insert(fd, socket);
                fd as i64
            }
            Err(errno) => -(errno as i64),
        }
    }

    /// Connects to the `sockaddr_un` in `address` (as the replica wrote it).
    pub fn connect(&mut self, fd: u64, address: &[u8]) -> i64 {
        let Some(socket) = self.sockets.get(&fd) else {
            return -(Errno::EBADF as i64);
        };
        // sun_family, then the path up to its NUL.
        let path = address.get(2..).unwrap_or_default();
        let path = &path[..path.iter().position(|&b| b == 0).unwrap_or(path.len())];
        let result = UnixAddr::new(std::ffi::OsStr::from_bytes(path))
            .and_then(|address| connect(socket.as_raw_fd(), &address));
        errno_or(result.map(|()| 0))
    }

    /// Sends `data` as one message.
    pub fn send(&mut self, fd: u64, data: &[u8], flags: u64) -> i64 {
        let Some(socket) = self.sockets.get(&fd) else {
            return -(Errno::EBADF as i64);
        };
        let mut send_flags = MsgFlags::MSG_NOSIGNAL;
        if flags & MsgFlags::MSG_DONTWAIT.bits() as u64 != 0 {
            send_flags |= MsgFlags::MSG_DONTWAIT;
        }
        let result = sendmsg::<()>(
            socket.as_raw_fd(),
            &[IoSlice::new(data)],
            &[],
            send_flags,
            None,
        );
        errno_or(result.map(|sent| sent as i64))
    }

    /// Receives one message for a replica whose `msghdr` is `header` at `address`:
    /// the result and the stores that give every replica the same bytes.
    pub fn receive(
        &mut self,
        fd: u64,
        header: &MessageHeader,
        address: u64,
        flags: u64,
    ) -> (i64, Vec<(u64, Vec<u8>)>) {
        let Some(socket) = self.sockets.get(&fd) else {
            return (-(Errno::EBADF as i64), Vec::new());
        };
        let total: u64 = header.iovecs.iter().map(|&(_, len)| len).sum();
        let mut data = vec![0; total as usize];
        let mut receive_flags = MsgFlags::MSG_CMSG_CLOEXEC;
        if flags & MsgFlags::MSG_DONTWAIT.bits() as u64 != 0 {
            receive_flags |= MsgFlags::MSG_DONTWAIT;
        }
        // Room for descriptors, which are closed here: mapping a scheme's memory
        // in replicas is not relayed yet.
        let mut control = nix::cmsg_space!([std::os::fd::RawFd; 4]);
        let mut parts = [IoSliceMut::new(&mut data)];
        let received = recvmsg::<()>(
            socket.as_raw_fd(),
            &mut parts,
            Some(&mut control),
            receive_flags,
        )
        .map(|message| {
            let passed_descriptors = message.cmsgs().map_or(0, |cmsgs| {
                // Descriptors arrive open; owning them closes them.
                cmsgs
                    .filter_map(|cmsg| match cmsg {
                        nix::sys::socket::ControlMessageOwned::ScmRights(fds) => Some(fds),
                        _ => None,
                    })
                    .flatten()
                    // SAFETY: the kernel just installed these descriptors for us.
                    .map(|fd| drop(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) }))
                    .count()
            });
            (message.bytes, message.flags, passed_descriptors)
        });
        let (len, message_flags) = match received {
            Ok((len, mut flags, passed_descriptors)) => {
                if passed_descriptors > 0 {
                    flags |= MsgFlags::MSG_CTRUNC;
                }
                (len, flags)
            }
            Err(errno) => return (-(errno as i64), Vec::new()),
        };
        let mut stores = Vec::new();
        let mut rest = &data[..len];
        for &(base, iov_len) in &header.iovecs {
            let take = rest.len().min(iov_len as usize);
            if take > 0 {
                stores.push((base, rest[..take].to_vec()));
            }
            rest = &rest[take..];
        }
        stores.push((
            address + MSGHDR_CONTROLLEN as u64,
            0_u64.to_ne_bytes().to_vec(),
        ));
        stores.push((
            address + MSGHDR_FLAGS as u64,
            message_flags.bits().to_ne_bytes().to_vec(),
        ));
        (len as i64, stores)
    }

    pub fn close(&mut self, fd: u64) -> i64 {
        match self.sockets.remove(&fd) {
            Some(_) => 0,
            None => -(Errno::EBADF as i64),
        }
    }

    /// Closes every connection (the group starts afresh).
    pub fn clear(&mut self) {
        self.sockets.clear();
    }
}

fn errno_or(result: nix::Result<i64>) -> i64 {
    result.unwrap_or_else(|errno| -(errno as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_descriptors_are_a_fixed_range() {
        assert!(!is_connection(3));
        assert!(is_connection(FIRST_CONNECTION_FD));
        assert!(!is_connection(FIRST_CONNECTION_FD + MAX_CONNECTIONS));
    }

    #[test]
    fn unknown_descriptors_and_paths_fail_with_their_errno() {
        let mut connections = Connections::default();
        assert_eq!(connections.send(600, b"x", 0), -(Errno::EBADF as i64));
        assert_eq!(connections.close(600), -(Errno::EBADF as i64));
        let fd = connections.open();
        assert_eq!(fd, FIRST_CONNECTION_FD as i64);
        let mut address = 1_u16.to_ne_bytes().to_vec();
        address.extend(b"/nonexistent/socket\0");
        assert_eq!(
            connections.connect(fd as u64, &address),
            -(Errno::ENOENT as i64)
        );
        assert_eq!(connections.close(fd as u64), 0);
        assert_eq!(connections.open(), FIRST_CONNECTION_FD as i64, "reused");
    }
}
