//! The benchmark's baseline: the cheapest possible request/response over the same
//! kind of socket, one thread per connection, no decoding.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::sys::socket::{
    accept, bind, listen, recv, send, socket, AddressFamily, Backlog, MsgFlags, SockFlag, SockType,
    UnixAddr,
};

pub fn serve(path: &Path) -> io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    bind(listener.as_raw_fd(), &UnixAddr::new(path)?)?;
    listen(&listener, Backlog::new(16).map_err(io::Error::from)?)?;
    log::info!("echo server at {}", path.display());
    loop {
        let raw = accept(listener.as_raw_fd())?;
        // SAFETY: accept returned a new descriptor that nothing else owns.
        let connection = unsafe { OwnedFd::from_raw_fd(raw) };
        std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while let Ok(n) = recv(connection.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                if n == 0
                    || send(connection.as_raw_fd(), &buf[..n], MsgFlags::MSG_NOSIGNAL).is_err()
                {
                    break;
                }
            }
        });
    }
}
