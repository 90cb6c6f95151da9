//! Memory of a scheme handle mapped into this process.

use std::ptr::NonNull;

/// A shared mapping made by `Handle::mmap`; unmapped on drop.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain shared memory owned by this value.
unsafe impl Send for Mapping {}

impl Mapping {
    /// # Safety
    /// `ptr` and `len` must be exactly what a successful mmap returned, and nothing
    /// else may unmap that range.
    pub(crate) unsafe fn new(ptr: NonNull<u8>, len: usize) -> Self {
        Self { ptr, len }
    }

    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are what mmap returned (see `new`), unmapped only here.
        #[cfg(target_os = "linux")]
        let result =
            unsafe { nix::sys::mman::munmap(self.ptr.cast(), self.len) }.map_err(|e| e.to_string());
        #[cfg(target_os = "redox")]
        let result = unsafe { libredox::call::munmap(self.ptr.as_ptr().cast(), self.len) }
            .map_err(|e| e.to_string());
        if let Err(e) = result {
            log::warn!("munmap of a scheme mapping failed: {e}");
        }
    }
}
