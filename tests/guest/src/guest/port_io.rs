//! Legacy x86 port I/O from user space: `ioperm` grants a port range to this thread,
//! and every access is checked against that range.

use std::io;

/// A port range this thread may access; the grant is dropped with it.
#[derive(Debug)]
pub struct PortRange {
    base: u16,
    len: u16,
}

impl PortRange {
    /// Asks the kernel for `len` ports from `base` (needs CAP_SYS_RAWIO).
    pub fn request(base: u16, len: u16) -> io::Result<PortRange> {
        set_permission(base, len, true)?;
        Ok(PortRange { base, len })
    }

    pub fn read8(&self, offset: u16) -> io::Result<u8> {
        let port = self.port(offset)?;
        let value: u8;
        // SAFETY: the port lies inside the range ioperm granted; `in` touches nothing else.
        unsafe {
            std::arch::asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags));
        }
        Ok(value)
    }

    pub fn write8(&self, offset: u16, value: u8) -> io::Result<()> {
        let port = self.port(offset)?;
        // SAFETY: as in read8.
        unsafe {
            std::arch::asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags));
        }
        Ok(())
    }

    fn port(&self, offset: u16) -> io::Result<u16> {
        if offset < self.len {
            Ok(self.base + offset)
        } else {
            Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "port offset {offset:#x} is outside {:#x}+{:#x}",
                    self.base, self.len
                ),
            ))
        }
    }
}

impl Drop for PortRange {
    fn drop(&mut self) {
        if let Err(err) = set_permission(self.base, self.len, false) {
            log::warn!(
                "dropping the port grant {:#x}+{:#x} failed: {err}",
                self.base,
                self.len
            );
        }
    }
}

fn set_permission(base: u16, len: u16, on: bool) -> io::Result<()> {
    // SAFETY: ioperm only changes this thread's I/O permission bitmap.
    let rc = unsafe { libc::ioperm(base.into(), len.into(), on.into()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
