//! An I/O BAR reached through its sysfs `resourceN` file: Linux performs an
//! `in`/`out` of the read or write size at the port the file offset names.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::bus::RegisterBus;
use crate::region::{Access, Region};

/// The ports of an I/O BAR.
pub struct SysfsIoBar {
    file: File,
    len: u64,
}

impl SysfsIoBar {
    pub fn new(file: File, len: u64) -> Self {
        Self { file, len }
    }
}

impl RegisterBus for SysfsIoBar {
    fn region(&self) -> Region {
        Region::ports(self.len)
    }

    unsafe fn read(&mut self, access: Access) -> io::Result<u64> {
        let mut value = [0; 8];
        self.file
            .read_exact_at(&mut value[..access.width().bytes()], access.offset())?;
        Ok(u64::from_le_bytes(value))
    }

    unsafe fn write(&mut self, access: Access, value: u64) -> io::Result<()> {
        self.file.write_all_at(
            &value.to_le_bytes()[..access.width().bytes()],
            access.offset(),
        )
    }
}
