//! Texts a scheme serves (a status, a path, a list): handing them out through
//! `read` and `fpath`, and reading them whole as a client.

use std::io;

use crate::Handle;

/// Reads the whole text behind `handle`, from offset 0 to its end, as a
/// client of a status or a list does.
pub fn read_text(handle: &Handle) -> io::Result<String> {
    let mut text = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = handle.read_at(&mut chunk, text.len() as u64)?;
        if n == 0 {
            break;
        }
        text.extend_from_slice(&chunk[..n]);
    }
    String::from_utf8(text).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Copies what of `bytes` lies at `offset` into `buf` and returns how many bytes
/// that was: 0 at or past the end, as a read at end of file.
pub fn copy_at_offset(bytes: &[u8], offset: u64, buf: &mut [u8]) -> usize {
    let rest = usize::try_from(offset)
        .ok()
        .and_then(|start| bytes.get(start..))
        .unwrap_or_default();
    let n = rest.len().min(buf.len());
    buf[..n].copy_from_slice(&rest[..n]);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_what_lies_at_the_offset() {
        let mut buf = [0u8; 4];
        assert_eq!(copy_at_offset(b"status", 0, &mut buf), 4);
        assert_eq!(&buf, b"stat");
        assert_eq!(copy_at_offset(b"status", 4, &mut buf), 2);
        assert_eq!(&buf[..2], b"us");
        assert_eq!(copy_at_offset(b"status", 6, &mut buf), 0);
        assert_eq!(copy_at_offset(b"status", u64::MAX, &mut buf), 0);
        assert_eq!(copy_at_offset(b"status", 1, &mut []), 0);
    }
}
