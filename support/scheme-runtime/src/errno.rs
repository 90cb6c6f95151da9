//! Redox error numbers on the client side.

use std::io;

use syscall::error::{EDEADLOCK, EWOULDBLOCK};

/// Converts a Redox error into a `std::io::Error`.
///
/// Redox numbers its errors like Linux except where Linux has aliases: Redox's
/// `EWOULDBLOCK` (41) and `EDEADLOCK` (58) are Linux's `EAGAIN` (11) and `EDEADLK`
/// (35). On Linux those two are translated so that `ErrorKind` and messages come
/// out right; on Redox the number is kept as it is.
pub fn io_error(error: syscall::error::Error) -> io::Error {
    io::Error::from_raw_os_error(native_errno(error.errno))
}

fn native_errno(redox_errno: i32) -> i32 {
    if cfg!(target_os = "linux") {
        match redox_errno {
            EWOULDBLOCK => 11,
            EDEADLOCK => 35,
            other => other,
        }
    } else {
        redox_errno
    }
}

/// The description of a Redox errno, for logs and messages.
pub fn errno_name(errno: i32) -> &'static str {
    usize::try_from(errno)
        .ok()
        .and_then(|i| syscall::error::STR_ERROR.get(i))
        .copied()
        .unwrap_or("Unknown error")
}

#[cfg(test)]
mod tests {
    use super::*;
    use syscall::error::{Error, EACCES, EINVAL};

    #[test]
    fn keeps_errno_and_kind() {
        let e = io_error(Error::new(EACCES));
        assert_eq!(e.raw_os_error(), Some(EACCES));
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert_eq!(errno_name(EINVAL), "Invalid argument");
        assert_eq!(errno_name(100_000), "Unknown error");
        assert_eq!(errno_name(-3), "Unknown error");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn would_block_is_linux_eagain() {
        let e = io_error(Error::new(EWOULDBLOCK));
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    }
}
