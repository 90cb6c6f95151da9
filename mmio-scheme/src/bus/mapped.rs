//! A memory BAR as a client of `mmio:` reaches it in direct mode: mapped from
//! the scheme, which lends it only where the policy grants `direct_bars`.
//!
//! The replication engine performs its replicas' register batches on one: the
//! batch is checked by the same [`Window`] the scheme checks it with, and
//! costs loads and stores instead of a round trip to the scheme.

use std::io;
use std::ptr::NonNull;

use scheme_runtime::{Handle, Mapping};

use super::{MappedRegion, RegionOwner, VolatileRegion, Window};

/// The client's mapping and the handle it came from: kept open for as long as
/// the mapping is used, so that `mmio:` accounts for it and keeps the
/// function's bus mastering.
struct ClientMapping {
    _mapping: Mapping,
    _handle: Handle,
}

impl RegionOwner for ClientMapping {}

/// All of the registers behind `bar`, an `mmio:` BAR handle, mapped into this
/// process, behind a window that writes only when `writable` (the handle was
/// opened for writing). Fails as the scheme refuses: `EACCES` where the
/// driver's rule does not grant the BAR in `direct_bars`.
pub fn mapped_window(bar: Handle, writable: bool) -> io::Result<Window> {
    let len = bar.fstat()?.st_size;
    let mapping = bar.mmap(
        0,
        usize::try_from(len).map_err(|_| io::Error::other("a BAR larger than memory"))?,
        writable,
    )?;
    let base = NonNull::new(mapping.as_ptr())
        .filter(|base| mapping.len() as u64 == len && (base.as_ptr() as usize).is_multiple_of(8))
        .ok_or_else(|| io::Error::other("mmio: mapped a BAR not as asked"))?;
    let owner = ClientMapping {
        _mapping: mapping,
        _handle: bar,
    };
    // SAFETY: `len` bytes at the page-aligned `base`, which `owner` keeps
    // mapped; a read-only mapping is only ever read, behind a read-only window.
    let bus = Box::new(unsafe { MappedRegion::new(VolatileRegion::new(base, len), owner) });
    Ok(match writable {
        true => Window::new(bus),
        false => Window::read_only(bus),
    })
}
