//! A buffer mapped the way the host transport lets a client map it: the
//! descriptor `map_fd` grants, mapped shared and read-write.

use std::num::NonZeroUsize;
use std::ptr::NonNull;

use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use redox_scheme::CallerCtx;
use scheme_runtime::SchemeDaemon;

/// `len` bytes of buffer `id` as its client `ctx` maps them, unmapped when dropped.
pub struct ClientMapping {
    base: NonNull<u8>,
    len: usize,
}

impl ClientMapping {
    pub fn new<D: SchemeDaemon>(scheme: &mut D, id: usize, len: usize, ctx: &CallerCtx) -> Self {
        let grant = scheme.map_fd(id, 0, len, ctx).expect("map_fd");
        // SAFETY: a fresh shared mapping of the granted fd, unmapped in drop.
        let base = unsafe {
            mmap(
                None,
                NonZeroUsize::new(len).unwrap(),
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                &grant.fd,
                grant.offset as i64,
            )
        }
        .expect("mmap of the granted fd");
        Self {
            base: base.cast(),
            len,
        }
    }

    pub fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: `len` mapped read-write bytes that only this test touches.
        unsafe { std::slice::from_raw_parts_mut(self.base.as_ptr(), self.len) }
    }
}

impl Drop for ClientMapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`.
        unsafe { munmap(self.base.cast(), self.len) }.unwrap();
    }
}
