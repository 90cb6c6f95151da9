//! Redox DMA memory: physically contiguous frames from the kernel's `memory` scheme.
//!
//! `/scheme/memory/zeroed@wb?phys_contiguous` can only be mapped private, so the
//! daemon maps it itself and lends those pages to clients through the scheme's
//! `mmap_prep`; a client's `MAP_SHARED` mapping then refers to the same frames.
//! `/scheme/memory/translation` turns the daemon's virtual addresses into physical
//! ones. Both need uid 0. Write-back memory is right for x86, whose DMA is
//! cache-coherent.

use std::io;
use std::ptr;

use libredox::call::MmapArgs;
use libredox::{flag, Fd};
use syscall::{CallFlags, PAGE_SIZE};

use super::{check_contiguous, not_contiguous, round_up_within, DmaBackend, DmaMemory};
use crate::Direction;

/// The kernel hands out at most 2^10 contiguous frames (its buddy allocator's
/// largest order), and rounds every contiguous allocation up to a power of two.
const MAX_BUFFER_SIZE: usize = PAGE_SIZE << 10;

/// Buffers of a power-of-two number of contiguous frames.
pub struct RedoxMemoryBackend {
    translation: Fd,
}

impl RedoxMemoryBackend {
    pub fn new() -> io::Result<Self> {
        let translation =
            Fd::open("/scheme/memory/translation", flag::O_CLOEXEC, 0).map_err(|e| {
                io::Error::new(
                    io::Error::from(e).kind(),
                    format!("opening the memory translation handle: {e}"),
                )
            })?;
        Ok(Self { translation })
    }

    fn physical_address(&self, virt: usize) -> io::Result<u64> {
        let mut word = virt.to_ne_bytes();
        self.translation
            .call_rw(&mut word, CallFlags::empty(), &[])?;
        Ok(usize::from_ne_bytes(word) as u64)
    }
}

impl DmaBackend for RedoxMemoryBackend {
    type Memory = RedoxMemory;

    fn name(&self) -> &'static str {
        "redox-memory"
    }

    fn buffer_size(&self, requested: u64) -> Option<usize> {
        // Whole pages, then a power of two of them: never past the maximum, itself one.
        round_up_within(requested, PAGE_SIZE, MAX_BUFFER_SIZE).map(usize::next_power_of_two)
    }

    fn max_buffer_size(&self) -> usize {
        MAX_BUFFER_SIZE
    }

    fn allocate(&mut self, size: usize, _direction: Direction) -> io::Result<RedoxMemory> {
        let frames = Fd::open(
            "/scheme/memory/zeroed@wb?phys_contiguous",
            flag::O_CLOEXEC,
            0,
        )?;
        // SAFETY: a new private mapping placed by the kernel; nothing else refers to it.
        let base = unsafe {
            libredox::call::mmap(MmapArgs {
                addr: ptr::null_mut(),
                length: size,
                prot: flag::PROT_READ | flag::PROT_WRITE,
                flags: flag::MAP_PRIVATE,
                fd: frames.raw(),
                offset: 0,
            })?
        };
        let mut memory = RedoxMemory {
            base: base.cast(),
            len: size,
            bus_addr: 0,
        };
        let addresses = (0..size / PAGE_SIZE)
            .map(|page| self.physical_address(memory.base as usize + page * PAGE_SIZE))
            .collect::<io::Result<Vec<u64>>>()?;
        check_contiguous(&addresses, PAGE_SIZE as u64)
            .map_err(|at| not_contiguous("memory scheme", at))?;
        memory.bus_addr = addresses[0];
        Ok(memory)
    }
}

/// Contiguous frames mapped private into the daemon, lent to the client by `mmap_prep`.
pub struct RedoxMemory {
    base: *mut u8,
    len: usize,
    bus_addr: u64,
}

impl DmaMemory for RedoxMemory {
    fn as_ptr(&self) -> *mut u8 {
        self.base
    }

    fn size(&self) -> usize {
        self.len
    }

    fn bus_addr(&self) -> Option<u64> {
        Some(self.bus_addr)
    }
}

impl Drop for RedoxMemory {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `allocate`, of `len` bytes, unmapped once. A
        // client mapping still holds its own reference to the frames.
        if let Err(e) = unsafe { libredox::call::munmap(self.base.cast(), self.len) } {
            log::error!("unmapping a {}-byte buffer: {e}", self.len);
        }
    }
}
