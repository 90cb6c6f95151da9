//! The client side: allocate a buffer, map it, learn its bus address.

use std::io;
use std::num::NonZeroU64;

use scheme_runtime::{Handle, Mapping};
use syscall::flag::O_RDWR;

use crate::info::{BufferInfo, KeepState, INFO_CALL};
use crate::request::{AllocRequest, KeepName};
use crate::{BufferFlags, Direction, SCHEME_NAME};

const PAGE_SIZE: usize = 4096;

/// A DMA buffer from the `dma:` scheme, mapped read-write into this process.
/// Dropping it unmaps and closes it; the daemon frees it when nothing holds it.
pub struct DmaBuffer {
    // Unmapped before the handle closes.
    mapping: Mapping,
    info: BufferInfo,
    handle: Handle,
}

impl DmaBuffer {
    /// Allocates at least `size` bytes with `flags` and maps the first `size`,
    /// rounded up to whole pages. The daemon hands out larger granules (a huge
    /// page); leaving their unused tail unmapped keeps it out of everything that
    /// walks the mapping, such as a replication engine keeping copies in step.
    pub fn alloc(size: usize, flags: BufferFlags) -> io::Result<Self> {
        Self::open(size, flags, Direction::Both, None)
    }

    /// As [`alloc`](Self::alloc), for a buffer kept under `name` when this
    /// handle closes or this process dies, so that a successor of the same
    /// uid (a restarted driver) can take it over with the device still using
    /// it (see [`crate::keep`]). `direction` says which way its bytes go
    /// ([`Direction`]). If such a buffer of the same size, flags and direction
    /// is waiting, this is it, contents and bus address as left, and
    /// [`adopted`](Self::adopted) says so; otherwise it is fresh and zeroed.
    ///
    /// A name is 1 to 32 characters of `a-z`, `0-9`, `.`, `_` and `-`
    /// (`InvalidInput` otherwise). A buffer of that name this uid holds open
    /// already makes this fail with `EEXIST`.
    pub fn alloc_kept(
        size: usize,
        flags: BufferFlags,
        direction: Direction,
        name: &str,
    ) -> io::Result<Self> {
        let name =
            KeepName::new(name).map_err(|bad| io::Error::new(io::ErrorKind::InvalidInput, bad))?;
        Self::open(size, flags, direction, Some(name))
    }

    fn open(
        size: usize,
        flags: BufferFlags,
        direction: Direction,
        keep: Option<KeepName>,
    ) -> io::Result<Self> {
        let size = NonZeroU64::new(size as u64).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "a DMA buffer has at least one byte",
            )
        })?;
        let handle = Handle::open(
            &format!(
                "/scheme/{SCHEME_NAME}/{}",
                AllocRequest {
                    size,
                    flags,
                    direction,
                    keep
                }
            ),
            O_RDWR,
        )?;
        let mut reply = [0; BufferInfo::LEN];
        handle.call(&mut reply, &[INFO_CALL])?;
        let info = BufferInfo::from_bytes(&reply).ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidData, "dma: malformed buffer info")
        })?;
        let granted = usize::try_from(info.size)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "dma: buffer size"))?;
        let len = (size.get() as usize).next_multiple_of(PAGE_SIZE);
        if len > granted {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("dma: granted {granted} bytes for a {size}-byte request"),
            ));
        }
        let mapping = handle.mmap(0, len, true)?;
        Ok(Self {
            mapping,
            info,
            handle,
        })
    }

    /// The bus address, size, flags and keep state the daemon reported.
    pub fn info(&self) -> BufferInfo {
        self.info
    }

    /// Whether this kept buffer was taken over from a predecessor: its contents
    /// are what that one left (and its device may be using them), not zeroes.
    pub fn adopted(&self) -> bool {
        self.info.keep == KeepState::Adopted
    }

    /// The device's address of byte 0 (`None` from the host test backend only).
    pub fn bus_addr(&self) -> Option<u64> {
        self.info.bus_addr
    }

    /// This process's mapping of byte 0. The device writes behind the compiler's
    /// back: access it with volatile reads and writes and fences.
    pub fn as_ptr(&self) -> *mut u8 {
        self.mapping.as_ptr()
    }

    pub fn len(&self) -> usize {
        self.mapping.len()
    }

    pub fn is_empty(&self) -> bool {
        self.mapping.is_empty()
    }

    /// The scheme handle, e.g. for `fpath`.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}
