//! Direct access: this process executes `in`/`out` on the UART's ports, with the
//! port rights the platform grants the serving thread (Linux `ioperm`, which needs
//! root; Redox the thread's I/O privilege, `Iopl`). The instructions and the rights
//! come from `mmio-scheme`'s port bus, so there is one copy of the assembly.

use std::io;

use driver_policy::PortRange;
use mmio_scheme::bus::{Window, WindowError};
use mmio_scheme::hardware::Hardware;
use mmio_scheme::wire::Width;
use mmio_scheme::SystemHardware;

use super::PortIo;

/// The UART's ports, reached with `in`/`out` by the thread that opened them.
pub struct DirectPorts {
    window: Window,
}

impl DirectPorts {
    /// Acquires the right to use `range` for the calling thread, which must be the
    /// thread that then uses the ports (the daemon serves from one thread).
    pub fn open(range: PortRange) -> io::Result<Self> {
        let bus = SystemHardware::new().open_ports(range).map_err(|error| {
            io::Error::new(
                error.kind(),
                format!("no port rights for {range} (direct access needs root): {error}"),
            )
        })?;
        Ok(Self {
            window: Window::new(bus),
        })
    }
}

impl PortIo for DirectPorts {
    fn read(&mut self, offset: u8) -> io::Result<u8> {
        let value = self
            .window
            .read(offset.into(), Width::U8)
            .map_err(window_error)?;
        // A one-byte access reads one byte.
        Ok(value as u8)
    }

    fn write(&mut self, offset: u8, value: u8) -> io::Result<()> {
        self.window
            .write(offset.into(), Width::U8, value.into())
            .map_err(window_error)
    }
}

/// The window refuses accesses outside the range before any instruction runs.
fn window_error(error: WindowError) -> io::Error {
    match error {
        WindowError::Io(error) => error,
        refused => io::Error::new(io::ErrorKind::InvalidInput, refused.to_string()),
    }
}
