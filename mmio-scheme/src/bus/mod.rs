//! Register buses (the backends that reach registers) and the checked window
//! through which the scheme uses them.
//!
//! A backend implements [`RegisterBus`]: raw reads and writes of a width at an
//! offset. Its access methods are `unsafe` because a backend may trust the
//! offset (a mapped BAR dereferences it); [`Window`] is their only caller and
//! checks every access against the bus's region first, and refuses every
//! write when it was opened read-only.

mod mapped;
mod soft;
mod volatile;
#[cfg(target_arch = "x86_64")]
mod x86_ports;

use std::fmt;
use std::io;

use scheme_runtime::MapGrant;

use crate::region::{Access, AccessError, Region};
use crate::wire::{self, OpKind, RegisterOp, Width, WireError};

pub use mapped::mapped_window;
pub use soft::SoftBank;
pub(crate) use volatile::{MappedRegion, RegionOwner, VolatileRegion};
#[cfg(target_arch = "x86_64")]
pub use x86_ports::PortBus;

/// A backend that reaches the registers of one region.
pub trait RegisterBus: Send {
    /// The registers this bus reaches.
    fn region(&self) -> Region;

    /// Reads the register at `access`, zero-extended.
    ///
    /// # Safety
    /// `access` passed `self.region().check(..)`.
    unsafe fn read(&mut self, access: Access) -> io::Result<u64>;

    /// Writes `value` (which fits the access width) to the register at `access`.
    ///
    /// # Safety
    /// `access` passed `self.region().check(..)`.
    unsafe fn write(&mut self, access: Access, value: u64) -> io::Result<()>;

    /// Linux direct mode: the file a client maps to reach the registers itself,
    /// and the offset in it of register `offset`.
    fn map_grant(&self, offset: u64) -> io::Result<MapGrant> {
        let _ = offset;
        Err(io::ErrorKind::Unsupported.into())
    }

    /// Redox direct mode: the address, in this process, of register `offset`,
    /// which `mmap_prep` lends to the client.
    fn mapped_address(&self, offset: u64) -> Option<usize> {
        let _ = offset;
        None
    }
}

/// Why a register request failed.
#[derive(Debug)]
pub enum WindowError {
    /// The payload is not a batch.
    Wire { index: usize, error: WireError },
    /// An access the region does not admit.
    Access { index: usize, error: AccessError },
    /// A single access of a size that is no access width.
    AccessSize(usize),
    /// A write through a read-only window (operation `index` of a batch).
    ReadOnly { index: usize },
    /// The backend failed (a real device error, EIO to the client).
    Io(io::Error),
}

impl fmt::Display for WindowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Wire { index, error } => write!(f, "operation {index}: {error}"),
            Self::Access { index, error } => write!(f, "operation {index}: {error}"),
            Self::AccessSize(len) => write!(f, "an access of {len} bytes (want 1, 2, 4 or 8)"),
            Self::ReadOnly { index } => {
                write!(f, "operation {index}: a write, and the handle is read-only")
            }
            Self::Io(error) => write!(f, "register access failed: {error}"),
        }
    }
}

impl std::error::Error for WindowError {}

impl WindowError {
    /// The errno a client gets for it: a device failure is EIO, a write
    /// through a read-only handle EBADF (as a read-only descriptor refuses a
    /// `write`), anything malformed or out of range EINVAL.
    pub fn errno(&self) -> i32 {
        match self {
            Self::Io(_) => syscall::error::EIO,
            Self::ReadOnly { .. } => syscall::error::EBADF,
            Self::Wire { .. } | Self::Access { .. } | Self::AccessSize(_) => syscall::error::EINVAL,
        }
    }
}

/// A register bus behind the range, alignment and width checks, and behind
/// the access mode its handle was opened with.
pub struct Window {
    bus: Box<dyn RegisterBus>,
    region: Region,
    writable: bool,
}

impl Window {
    /// A window that reads and writes.
    pub fn new(bus: Box<dyn RegisterBus>) -> Self {
        let region = bus.region();
        Self {
            bus,
            region,
            writable: true,
        }
    }

    /// A window that only reads: every write, alone or in a batch, fails with
    /// [`WindowError::ReadOnly`] before it reaches the bus.
    pub fn read_only(bus: Box<dyn RegisterBus>) -> Self {
        Self {
            writable: false,
            ..Self::new(bus)
        }
    }

    pub fn region(&self) -> Region {
        self.region
    }

    /// Whether writes go through (and so whether a writable mapping may be lent).
    pub fn is_writable(&self) -> bool {
        self.writable
    }

    pub fn bus(&self) -> &dyn RegisterBus {
        &*self.bus
    }

    pub fn read(&mut self, offset: u64, width: Width) -> Result<u64, WindowError> {
        let access = self.check(0, offset, width)?;
        // SAFETY: `access` was checked against this bus's region.
        unsafe { self.bus.read(access) }.map_err(WindowError::Io)
    }

    pub fn write(&mut self, offset: u64, width: Width, value: u64) -> Result<(), WindowError> {
        if !self.writable {
            return Err(WindowError::ReadOnly { index: 0 });
        }
        let access = self.check(0, offset, width)?;
        if value > width.max_value() {
            let error = WireError::ValueTooWide { width, value };
            return Err(WindowError::Wire { index: 0, error });
        }
        // SAFETY: `access` was checked against this bus's region.
        unsafe { self.bus.write(access, value) }.map_err(WindowError::Io)
    }

    /// One read whose width is the length of `buf` (1, 2, 4 or 8), the value
    /// stored little-endian: the meaning of `pread` on a register handle.
    pub fn read_into(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), WindowError> {
        let width = Width::from_bytes(buf.len()).ok_or(WindowError::AccessSize(buf.len()))?;
        let value = self.read(offset, width)?;
        buf.copy_from_slice(&value.to_le_bytes()[..buf.len()]);
        Ok(())
    }

    /// One write of the little-endian value in `buf`, whose length is the
    /// width: the meaning of `pwrite` on a register handle.
    pub fn write_from(&mut self, offset: u64, buf: &[u8]) -> Result<(), WindowError> {
        // As a read-only descriptor refuses any write, whatever its length.
        if !self.writable {
            return Err(WindowError::ReadOnly { index: 0 });
        }
        let width = Width::from_bytes(buf.len()).ok_or(WindowError::AccessSize(buf.len()))?;
        let mut value = [0; 8];
        value[..buf.len()].copy_from_slice(buf);
        self.write(offset, width, u64::from_le_bytes(value))
    }

    /// Runs a batch (see [`wire`]): every operation is decoded and checked
    /// before the first one runs, so a bad operation leaves the device
    /// untouched. Read values are stored in place. Returns the number of
    /// operations performed.
    pub fn run_batch(&mut self, payload: &mut [u8]) -> Result<usize, WindowError> {
        let records =
            wire::records_mut(payload).map_err(|error| WindowError::Wire { index: 0, error })?;
        for (index, record) in records.iter().enumerate() {
            self.decode_checked(index, record)?;
        }
        for (index, record) in records.iter_mut().enumerate() {
            let (op, access) = self.decode_checked(index, record)?;
            match op.kind {
                OpKind::Read => {
                    // SAFETY: `access` was checked against this bus's region.
                    let value = unsafe { self.bus.read(access) }.map_err(WindowError::Io)?;
                    wire::set_value(record, value)
                }
                OpKind::Write => {
                    // SAFETY: `access` was checked against this bus's region.
                    unsafe { self.bus.write(access, op.value) }.map_err(WindowError::Io)?
                }
            }
        }
        Ok(records.len())
    }

    fn decode_checked(
        &self,
        index: usize,
        record: &[u8; wire::OP_SIZE],
    ) -> Result<(RegisterOp, Access), WindowError> {
        let op = RegisterOp::decode(record).map_err(|error| WindowError::Wire { index, error })?;
        if op.kind == OpKind::Write && !self.writable {
            return Err(WindowError::ReadOnly { index });
        }
        Ok((op, self.check(index, op.offset, op.width)?))
    }

    fn check(&self, index: usize, offset: u64, width: Width) -> Result<Access, WindowError> {
        self.region
            .check(offset, width)
            .map_err(|error| WindowError::Access { index, error })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Batch;

    fn window(bank: &SoftBank) -> Window {
        Window::new(Box::new(bank.clone()))
    }

    #[test]
    fn single_accesses() {
        let bank = SoftBank::memory(0x100);
        let mut window = window(&bank);
        window.write(0x10, Width::U32, 0x8008_0783).unwrap();
        assert_eq!(window.read(0x10, Width::U32).unwrap(), 0x8008_0783);
        assert_eq!(window.read(0x12, Width::U16).unwrap(), 0x8008);
        assert_eq!(bank.peek(0x10, Width::U8), 0x83);
        assert!(matches!(
            window.read(0x100, Width::U8),
            Err(WindowError::Access { index: 0, .. })
        ));
        assert!(matches!(
            window.write(0x11, Width::U32, 0),
            Err(WindowError::Access { .. })
        ));
        assert!(matches!(
            window.write(0, Width::U8, 0x100),
            Err(WindowError::Wire { .. })
        ));
        assert_eq!(bank.log().len(), 3, "refused accesses never reach the bus");
    }

    #[test]
    fn byte_buffer_accesses_take_their_width_from_the_length() {
        let bank = SoftBank::memory(0x10);
        let mut window = window(&bank);
        window.write_from(0x4, &[0x83, 0x07, 0x08, 0x80]).unwrap();
        let mut two = [0; 2];
        window.read_into(0x6, &mut two).unwrap();
        assert_eq!(two, [0x08, 0x80]);
        let mut eight = [0; 8];
        window.read_into(0x0, &mut eight).unwrap();
        assert_eq!(u64::from_le_bytes(eight), 0x8008_0783_0000_0000);
        for len in [0, 3, 5, 16] {
            assert!(
                matches!(window.read_into(0, &mut vec![0; len]), Err(WindowError::AccessSize(l)) if l == len)
            );
            assert!(matches!(
                window.write_from(0, &vec![0; len]),
                Err(WindowError::AccessSize(_))
            ));
        }
        assert_eq!(
            WindowError::AccessSize(3).to_string(),
            "an access of 3 bytes (want 1, 2, 4 or 8)"
        );
        assert!(matches!(
            window.read_into(0xe, &mut [0; 4]),
            Err(WindowError::Access { .. })
        ));
        assert_eq!(bank.log().len(), 3);
    }

    #[test]
    fn batch_runs_in_order_and_returns_reads_in_place() {
        let bank = SoftBank::memory(0x100);
        bank.poke(0x8, Width::U32, 0x8008_0783);
        bank.poke(0xc, Width::U32, 0x1234);
        let mut window = window(&bank);
        let mut batch = Batch::new();
        let status = batch.read(0x8, Width::U32).unwrap();
        batch.write(0x0, Width::U32, 0x0400_0000).unwrap();
        let ctrl = batch.read(0x0, Width::U32).unwrap();
        let wide = batch.read(0x8, Width::U64).unwrap();
        assert_eq!(window.run_batch(batch.payload_mut()).unwrap(), 4);
        assert_eq!(batch.value(status), Some(0x8008_0783));
        assert_eq!(batch.value(ctrl), Some(0x0400_0000));
        assert_eq!(batch.value(wide), Some(0x1234_8008_0783));
        assert_eq!(
            bank.log(),
            vec![
                RegisterOp {
                    value: 0x8008_0783,
                    ..RegisterOp::read(0x8, Width::U32)
                },
                RegisterOp::write(0x0, Width::U32, 0x0400_0000),
                RegisterOp {
                    value: 0x0400_0000,
                    ..RegisterOp::read(0x0, Width::U32)
                },
                RegisterOp {
                    value: 0x1234_8008_0783,
                    ..RegisterOp::read(0x8, Width::U64)
                },
            ]
        );
    }

    #[test]
    fn a_bad_operation_stops_the_whole_batch_before_it_starts() {
        let bank = SoftBank::memory(0x100);
        let mut window = window(&bank);
        let mut batch = Batch::new();
        for i in 0..17 {
            batch.write(i * 4, Width::U32, 0xffff_ffff).unwrap();
        }
        batch.read(0x100, Width::U32).unwrap();
        let error = window.run_batch(batch.payload_mut()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "operation 17: 4-byte access at 0x100 is outside the region of 0x100 bytes"
        );
        assert!(bank.log().is_empty(), "no operation ran");
        assert_eq!(bank.peek(0, Width::U64), 0);

        let mut garbled = Batch::new();
        garbled.read(0, Width::U8).unwrap();
        garbled.read(1, Width::U8).unwrap();
        garbled.payload_mut()[16 + 7] = 9;
        assert!(matches!(
            window.run_batch(garbled.payload_mut()),
            Err(WindowError::Wire {
                index: 1,
                error: WireError::UnknownKind(9)
            })
        ));
        assert!(matches!(
            window.run_batch(&mut [0; 20]),
            Err(WindowError::Wire {
                error: WireError::Length(20),
                ..
            })
        ));
        assert!(bank.log().is_empty());
    }

    #[test]
    fn port_windows_refuse_8_byte_operations() {
        let ports = SoftBank::port_space();
        let mut window = Window::new(Box::new(ports.slice(0x2f8, 8)));
        let mut batch = Batch::new();
        batch.write(0, Width::U8, 0x41).unwrap();
        batch.read(0, Width::U64).unwrap();
        assert!(matches!(
            window.run_batch(batch.payload_mut()),
            Err(WindowError::Access { index: 1, .. })
        ));
        assert_eq!(ports.peek(0x2f8, Width::U8), 0);
        window.write(0, Width::U8, 0x41).unwrap();
        assert_eq!(ports.peek(0x2f8, Width::U8), 0x41);
    }

    #[test]
    fn a_read_only_window_reads_and_refuses_every_write_before_the_bus() {
        let bank = SoftBank::memory(0x100);
        bank.poke(0x10, Width::U32, 7);
        let mut window = Window::read_only(Box::new(bank.clone()));
        assert!(!window.is_writable());
        assert_eq!(window.read(0x10, Width::U32).unwrap(), 7);
        assert!(matches!(
            window.write(0x10, Width::U32, 1),
            Err(WindowError::ReadOnly { index: 0 })
        ));
        assert!(matches!(
            window.write_from(0x10, &[0; 3]),
            Err(WindowError::ReadOnly { index: 0 })
        ));
        let mut batch = Batch::new();
        batch.read(0x10, Width::U32).unwrap();
        batch.write(0x14, Width::U32, 1).unwrap();
        assert!(matches!(
            window.run_batch(batch.payload_mut()),
            Err(WindowError::ReadOnly { index: 1 })
        ));
        assert_eq!(bank.log().len(), 1, "only the single read reached the bus");
        assert!(Window::new(Box::new(bank)).is_writable());
    }
}
