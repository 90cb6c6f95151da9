//! Which pages of shared memory the replicas wrote: the kernel's soft-dirty bits.
//!
//! A replica's copy of shared memory is private memory, so the kernel marks each
//! page it writes in `/proc/<pid>/pagemap` until `/proc/<pid>/clear_refs` is
//! told to forget. Both files stay open per replica: they are asked at every
//! effect that may reach a device, and opening them costs more than the
//! question.

use std::collections::btree_map::{BTreeMap, Entry};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;

use nix::unistd::Pid;

use crate::trap::repair::PAGE_SIZE;

const SOFT_DIRTY: u64 = 1 << 55;
const PAGEMAP_ENTRY_LEN: usize = 8;

/// One replica's two files.
struct ProcFiles {
    pagemap: File,
    clear_refs: File,
}

impl ProcFiles {
    fn open(pid: Pid) -> io::Result<Self> {
        Ok(Self {
            pagemap: File::open(format!("/proc/{pid}/pagemap"))?,
            clear_refs: OpenOptions::new()
                .write(true)
                .open(format!("/proc/{pid}/clear_refs"))?,
        })
    }
}

#[derive(Default)]
pub struct DirtyPages {
    files: BTreeMap<i32, ProcFiles>,
}

impl DirtyPages {
    /// Which pages of `len` bytes at `address` any of `replicas` wrote since it
    /// was last told to [`forget`](Self::forget); `None` where that cannot be
    /// read, and every page must count as written.
    pub fn written(&mut self, replicas: &[Pid], address: u64, len: usize) -> Option<Vec<bool>> {
        // Replaced replicas leave; their files would pin nothing but a number.
        self.files
            .retain(|pid, _| replicas.contains(&Pid::from_raw(*pid)));
        let pages = len.div_ceil(PAGE_SIZE);
        let mut written = vec![false; pages];
        let mut entries = vec![0u8; pages * PAGEMAP_ENTRY_LEN];
        for &pid in replicas {
            let offset = address / PAGE_SIZE as u64 * PAGEMAP_ENTRY_LEN as u64;
            self.files_of(pid)
                .and_then(|files| files.pagemap.read_exact_at(&mut entries, offset))
                .ok()?;
            for (page, entry) in entries.chunks_exact(PAGEMAP_ENTRY_LEN).enumerate() {
                let entry = u64::from_ne_bytes(entry.try_into().expect("8 bytes"));
                written[page] |= entry & SOFT_DIRTY != 0;
            }
        }
        Some(written)
    }

    /// Clears `pid`'s soft-dirty bits, so that [`written`](Self::written) sees
    /// only later writes; false where the kernel keeps none. Clearing walks the
    /// replica's whole address space.
    pub fn forget(&mut self, pid: Pid) -> bool {
        let cleared = self
            .files_of(pid)
            .and_then(|files| files.clear_refs.write_all_at(b"4", 0));
        match cleared {
            Ok(()) => true,
            Err(error) => {
                log::debug!("soft-dirty bits of pid {pid} not cleared: {error}");
                false
            }
        }
    }

    fn files_of(&mut self, pid: Pid) -> io::Result<&ProcFiles> {
        match self.files.entry(pid.as_raw()) {
            Entry::Occupied(files) => Ok(files.into_mut()),
            Entry::Vacant(place) => Ok(place.insert(ProcFiles::open(pid)?)),
        }
    }
}

/// Whether this kernel keeps soft-dirty bits: some accept `clear_refs` without
/// them. Tried once, on a page of this process written after a clear.
pub fn soft_dirty_works() -> bool {
    static WORKS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WORKS.get_or_init(|| {
        let mut pages = DirtyPages::default();
        let mut page = vec![0u8; 2 * PAGE_SIZE];
        let address = (page.as_ptr() as usize).next_multiple_of(PAGE_SIZE);
        let offset = address - page.as_ptr() as usize;
        std::hint::black_box(&mut page)[offset] = 1;
        if !pages.forget(Pid::this()) {
            return false;
        }
        std::hint::black_box(&mut page)[offset] = 2;
        pages.written(&[Pid::this()], address as u64, PAGE_SIZE) == Some(vec![true])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_written_after_a_clear_is_seen_and_forgotten_again() {
        if !soft_dirty_works() {
            return;
        }
        let mut pages = DirtyPages::default();
        let mut memory = vec![0u8; 3 * PAGE_SIZE];
        let address = (memory.as_ptr() as usize).next_multiple_of(PAGE_SIZE);
        let first = address - memory.as_ptr() as usize;
        let me = [Pid::this()];
        assert!(pages.forget(me[0]));
        std::hint::black_box(&mut memory)[first + PAGE_SIZE] = 1;
        assert_eq!(
            pages.written(&me, address as u64, 2 * PAGE_SIZE),
            Some(vec![false, true])
        );
        assert!(pages.forget(me[0]), "the open files serve again");
        assert_eq!(
            pages.written(&me, address as u64, 2 * PAGE_SIZE),
            Some(vec![false, false])
        );
        assert_eq!(
            pages.written(&[Pid::from_raw(i32::MAX)], address as u64, PAGE_SIZE),
            None,
            "no such process"
        );
    }
}
