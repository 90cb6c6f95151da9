//! x86 port I/O (`in`/`out`) over a port range, for legacy devices such as a
//! 16550 UART. How the thread gets the right to use the ports is the
//! platform's business (Linux `ioperm`, Redox `Iopl`); this bus only moves data.

use std::arch::asm;
use std::io;

use driver_policy::PortRange;

use super::RegisterBus;
use crate::region::{Access, Region};
use crate::wire::Width;

/// The ports of one range; offset 0 is the first port.
#[derive(Debug)]
pub struct PortBus {
    range: PortRange,
}

impl PortBus {
    /// # Safety
    /// The calling thread, and every thread that will use this bus, may
    /// execute `in`/`out` on every port of `range`; and nothing else drives
    /// those ports.
    pub unsafe fn new(range: PortRange) -> Self {
        Self { range }
    }

    fn port(&self, access: Access) -> u16 {
        // The offset is below the range's length, so the port fits in 16 bits.
        self.range.first() + access.offset() as u16
    }
}

impl RegisterBus for PortBus {
    fn region(&self) -> Region {
        Region::ports(self.range.count().into())
    }

    unsafe fn read(&mut self, access: Access) -> io::Result<u64> {
        let port = self.port(access);
        // SAFETY: the caller of `new` granted this thread the ports of the range,
        // and the access is inside it.
        unsafe {
            Ok(match access.width() {
                Width::U8 => inb(port).into(),
                Width::U16 => inw(port).into(),
                Width::U32 => inl(port).into(),
                Width::U64 => return Err(io::ErrorKind::InvalidInput.into()),
            })
        }
    }

    unsafe fn write(&mut self, access: Access, value: u64) -> io::Result<()> {
        let port = self.port(access);
        // SAFETY: as in `read`; the value fits the width (checked by the window).
        unsafe {
            match access.width() {
                Width::U8 => outb(port, value as u8),
                Width::U16 => outw(port, value as u16),
                Width::U32 => outl(port, value as u32),
                Width::U64 => return Err(io::ErrorKind::InvalidInput.into()),
            }
        }
        Ok(())
    }
}

unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: the caller holds the port right; `in` touches no memory.
    unsafe { asm!("in al, dx", out("al") value, in("dx") port, options(nostack, preserves_flags)) };
    value
}

unsafe fn inw(port: u16) -> u16 {
    let value: u16;
    // SAFETY: as in `inb`.
    unsafe { asm!("in ax, dx", out("ax") value, in("dx") port, options(nostack, preserves_flags)) };
    value
}

unsafe fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: as in `inb`.
    unsafe {
        asm!("in eax, dx", out("eax") value, in("dx") port, options(nostack, preserves_flags))
    };
    value
}

unsafe fn outb(port: u16, value: u8) {
    // SAFETY: the caller holds the port right; `out` touches no memory.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nostack, preserves_flags)) };
}

unsafe fn outw(port: u16, value: u16) {
    // SAFETY: as in `outb`.
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") value, options(nostack, preserves_flags)) };
}

unsafe fn outl(port: u16, value: u32) {
    // SAFETY: as in `outb`.
    unsafe {
        asm!("out dx, eax", in("dx") port, in("eax") value, options(nostack, preserves_flags))
    };
}
