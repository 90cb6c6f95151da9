//! Memory a daemon hands to its clients as a descriptor, which they cannot resize.

use std::io;
use std::os::fd::OwnedFd;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};
use nix::unistd::ftruncate;

/// A memfd of `len` bytes (created with `flags`, plus close-on-exec) that nobody
/// can resize: sealed against shrinking and growing, and against any further seal
/// (which also keeps a client from adding a write seal that would stop the
/// daemon's own writes). A client holding it can still punch holes into it;
/// memory a device sees needs its pages pinned too (`dma-scheme`'s `PagePin`).
pub fn sealed_memfd(name: &str, len: usize, flags: MFdFlags) -> io::Result<OwnedFd> {
    let fd = memfd_create(
        name,
        flags | MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )?;
    ftruncate(&fd, i64::try_from(len).map_err(io::Error::other)?)?;
    fcntl(
        &fd,
        FcntlArg::F_ADD_SEALS(
            SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL,
        ),
    )
    .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("sealing the memfd: {e}")))?;
    Ok(fd)
}
