//! Many pieces of another process's memory read or written in one call.
//!
//! Keeping the replicas' copies of shared memory in step touches a few
//! scattered pieces of each replica at every synchronisation point (the
//! descriptors a driver wrote, the frames a device stored). Under emulation a
//! system call costs tens of microseconds, so the pieces go in one
//! `process_vm_readv`/`process_vm_writev` per replica, not one per piece.
//!
//! The kernel transfers whole pieces or stops (it never splits one), so a
//! piece it could not reach (unmapped) is found from the count it returns and
//! skipped, and the call goes on with the rest.

use std::io::{IoSlice, IoSliceMut};

use nix::errno::Errno;
use nix::sys::uio::{process_vm_readv, process_vm_writev, RemoteIoVec};
use nix::unistd::Pid;

/// The most pieces one call takes (the kernel's `UIO_MAXIOV`).
const MAX_PIECES: usize = 1024;

/// One piece: `len` bytes at `address` in the other process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Piece {
    pub address: u64,
    pub len: usize,
}

/// Reads `pieces` of `pid`'s memory: each piece's bytes, or `None` where it
/// could not be read. An error of the call itself (the process is gone, no
/// permission) leaves every piece from there unread.
pub fn read_pieces(pid: Pid, pieces: &[Piece]) -> Vec<Option<Vec<u8>>> {
    let mut read: Vec<Option<Vec<u8>>> = Vec::with_capacity(pieces.len());
    let mut buffers: Vec<Vec<u8>> = pieces.iter().map(|piece| vec![0; piece.len]).collect();
    let mut next = 0;
    while next < pieces.len() {
        let end = (next + MAX_PIECES).min(pieces.len());
        let remote = remote_iovecs(&pieces[next..end]);
        let mut local: Vec<IoSliceMut> = buffers[next..end]
            .iter_mut()
            .map(|buffer| IoSliceMut::new(buffer))
            .collect();
        let moved = process_vm_readv(pid, &mut local, &remote);
        let done = whole_pieces(&pieces[next..end], moved);
        read.extend(
            buffers[next..next + done]
                .iter_mut()
                .map(|buffer| Some(std::mem::take(buffer))),
        );
        next += done;
        if next < end {
            // This piece stopped the call: skip it, go on with the rest.
            read.push(None);
            next += 1;
        }
    }
    read
}

/// Writes each of `bytes` at the address of the piece beside it in `pid`;
/// says which pieces could not be written.
pub fn write_pieces(pid: Pid, writes: &[(u64, &[u8])]) -> Vec<u64> {
    let mut failed = Vec::new();
    let mut next = 0;
    while next < writes.len() {
        let end = (next + MAX_PIECES).min(writes.len());
        let pieces: Vec<Piece> = writes[next..end]
            .iter()
            .map(|&(address, bytes)| Piece {
                address,
                len: bytes.len(),
            })
            .collect();
        let remote = remote_iovecs(&pieces);
        let local: Vec<IoSlice> = writes[next..end]
            .iter()
            .map(|&(_, bytes)| IoSlice::new(bytes))
            .collect();
        let moved = process_vm_writev(pid, &local, &remote);
        next += whole_pieces(&pieces, moved);
        if next < end {
            failed.push(writes[next].0);
            next += 1;
        }
    }
    failed
}

fn remote_iovecs(pieces: &[Piece]) -> Vec<RemoteIoVec> {
    pieces
        .iter()
        .map(|piece| RemoteIoVec {
            base: piece.address as usize,
            len: piece.len,
        })
        .collect()
}

/// How many of `pieces`, from the first, a call that moved `moved` took whole.
fn whole_pieces(pieces: &[Piece], moved: Result<usize, Errno>) -> usize {
    let mut left = moved.unwrap_or(0);
    let mut whole = 0;
    for piece in pieces {
        if piece.len > left {
            break;
        }
        left -= piece.len;
        whole += 1;
    }
    whole
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};
    use std::num::NonZeroUsize;

    const PAGE: usize = 4096;

    /// Three pages of this process, the middle one unmapped.
    struct Holed {
        base: std::ptr::NonNull<std::ffi::c_void>,
    }

    impl Holed {
        fn new() -> Self {
            // SAFETY: a fresh private mapping, the middle page unmapped at once;
            // only this test reaches it.
            let base = unsafe {
                let base = mmap_anonymous(
                    None,
                    NonZeroUsize::new(3 * PAGE).unwrap(),
                    ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                    MapFlags::MAP_PRIVATE,
                )
                .unwrap();
                munmap(base.byte_add(PAGE), PAGE).unwrap();
                base
            };
            Self { base }
        }

        fn page(&self, index: usize) -> u64 {
            self.base.as_ptr() as u64 + (index * PAGE) as u64
        }

        fn byte(&self, index: usize) -> u8 {
            // SAFETY: a mapped page of this mapping.
            unsafe { *(self.page(index) as *const u8) }
        }
    }

    impl Drop for Holed {
        fn drop(&mut self) {
            for index in [0, 2] {
                // SAFETY: the pages mapped in `new`.
                let _ = unsafe { munmap(self.base.byte_add(index * PAGE), PAGE) };
            }
        }
    }

    #[test]
    fn pieces_are_written_and_read_back_and_one_unmapped_costs_only_itself() {
        let memory = Holed::new();
        let me = Pid::this();
        let [first, hole, last] = [0, 1, 2].map(|index| memory.page(index));
        let failed = write_pieces(me, &[(first, b"ab"), (hole, b"cd"), (last + 7, b"ef")]);
        assert_eq!(failed, [hole]);
        assert_eq!(
            (memory.byte(0), memory.byte(2)),
            (b'a', 0),
            "the last went to +7"
        );
        let pieces = [first, hole, last + 7].map(|address| Piece { address, len: 2 });
        let read = read_pieces(me, &pieces);
        assert_eq!(
            read,
            [Some(b"ab".to_vec()), None, Some(b"ef".to_vec())],
            "the piece after the hole is read too"
        );
        let bytes = [first, hole, last + 7].map(|address| Piece { address, len: 1 });
        assert_eq!(
            read_pieces(me, &bytes),
            [Some(b"a".to_vec()), None, Some(b"e".to_vec())],
            "one byte a piece"
        );
    }

    #[test]
    fn more_pieces_than_one_call_takes_are_all_moved() {
        let memory = Holed::new();
        let me = Pid::this();
        let count = MAX_PIECES + 5;
        let bytes: Vec<[u8; 1]> = (0..count).map(|n| [n as u8]).collect();
        let writes: Vec<(u64, &[u8])> = (0..count)
            .map(|n| (memory.page(0) + n as u64, &bytes[n][..]))
            .collect();
        assert!(write_pieces(me, &writes).is_empty());
        let pieces: Vec<Piece> = (0..count)
            .map(|n| Piece {
                address: memory.page(0) + n as u64,
                len: 1,
            })
            .collect();
        let read = read_pieces(me, &pieces);
        assert_eq!(read.len(), count);
        assert!(read
            .iter()
            .enumerate()
            .all(|(n, piece)| piece.as_deref() == Some(&[n as u8][..])));
    }

    #[test]
    fn a_process_that_is_gone_gives_nothing() {
        let gone = Pid::from_raw(i32::MAX);
        let piece = Piece {
            address: 0x1000,
            len: 8,
        };
        assert_eq!(read_pieces(gone, &[piece, piece]), [None, None]);
        assert_eq!(write_pieces(gone, &[(0x1000, b"x")]), [0x1000]);
    }
}
