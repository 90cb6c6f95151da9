//! Linux: PCI functions through sysfs, legacy ports through `ioperm`.

mod io_bar;
mod memory_bar;
mod sysfs;
mod uio;

use std::io;
use std::path::PathBuf;

use driver_policy::{Bdf, DeviceId, PciFunction, PortRange};

use super::command::{
    BUS_MASTER as COMMAND_BUS_MASTER, IO_SPACE as COMMAND_IO_SPACE,
    MEMORY_SPACE as COMMAND_MEMORY_SPACE,
};
use super::Hardware;
use crate::bus::{PortBus, RegisterBus};
use crate::interrupt::InterruptLine;
use crate::region::Space;
use io_bar::SysfsIoBar;
use sysfs::{SysfsFunction, PCI_DEVICES};
use uio::UioLine;

/// The Linux machine this process runs on (needs root: sysfs `config` and
/// `resourceN` writes, binding a function to UIO, `ioperm`).
pub struct LinuxHardware {
    devices: PathBuf,
    /// Where the UIO devices are (`/dev`).
    dev: PathBuf,
}

impl Default for LinuxHardware {
    fn default() -> Self {
        Self {
            devices: PCI_DEVICES.into(),
            dev: "/dev".into(),
        }
    }
}

impl LinuxHardware {
    pub fn new() -> Self {
        Self::default()
    }

    /// PCI functions listed under `devices` instead of sysfs (for tests on a
    /// tree of ordinary files laid out as sysfs lays out a function's).
    pub fn at(devices: &std::path::Path) -> Self {
        Self {
            devices: devices.to_owned(),
            dev: devices.join("dev"),
        }
    }
}

impl Hardware for LinuxHardware {
    fn functions(&mut self) -> io::Result<Vec<PciFunction>> {
        let mut functions = Vec::new();
        for entry in std::fs::read_dir(&self.devices)? {
            // sysfs names each function's folder by its address; anything else
            // there is not a function.
            let Some(bdf) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            let id = SysfsFunction::open(&self.devices, bdf)?.device_id()?;
            functions.push(PciFunction { bdf, id });
        }
        functions.sort_by_key(|function| function.bdf);
        Ok(functions)
    }

    fn device_id(&mut self, bdf: Bdf) -> io::Result<DeviceId> {
        SysfsFunction::open(&self.devices, bdf)?.device_id()
    }

    fn open_bar(&mut self, bdf: Bdf, bar: u8) -> io::Result<Box<dyn RegisterBus>> {
        let function = SysfsFunction::open(&self.devices, bdf)?;
        let resource = function.bar(bar)?;
        let file = function.resource_file(bar)?;
        Ok(match resource.space {
            Space::Memory => {
                function.enable(COMMAND_MEMORY_SPACE)?;
                Box::new(memory_bar::map(file, resource.len)?)
            }
            Space::Port => {
                function.enable(COMMAND_IO_SPACE)?;
                Box::new(SysfsIoBar::new(file, resource.len))
            }
        })
    }

    fn open_ports(&mut self, range: PortRange) -> io::Result<Box<dyn RegisterBus>> {
        // SAFETY: ioperm changes only this thread's I/O permission bitmap.
        let granted = unsafe { nix::libc::ioperm(range.first().into(), range.count().into(), 1) };
        if granted != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: this thread now may use the range, and it is the thread that
        // serves the scheme; the policy gives each range to one driver.
        Ok(Box::new(unsafe { PortBus::new(range) }))
    }

    fn open_interrupt(&mut self, bdf: Bdf) -> io::Result<Box<dyn InterruptLine>> {
        let function = SysfsFunction::open(&self.devices, bdf)?;
        let uio = function.uio_device()?;
        Ok(Box::new(UioLine::open(
            &self.dev,
            &uio,
            &function.config_path(),
        )?))
    }

    fn stop_bus_master(&mut self, bdf: Bdf) -> io::Result<()> {
        // Decoding stays on: a later driver's register accesses need it, and
        // register accesses start no DMA.
        SysfsFunction::open(&self.devices, bdf)?.disable(COMMAND_BUS_MASTER)
    }

    fn start_bus_master(&mut self, bdf: Bdf) -> io::Result<()> {
        SysfsFunction::open(&self.devices, bdf)?.enable(COMMAND_BUS_MASTER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Window;
    use crate::wire::Width;
    use std::fs;
    use std::os::unix::fs::FileExt;
    use std::path::Path;

    const BDF: &str = "0000:00:03.0";

    /// A sysfs-like tree of ordinary files: BAR 0 memory (8 KiB), BAR 1 I/O
    /// (64 ports), BAR 2 absent; command register 0x0003 at first.
    fn fake_function(root: &Path) -> PathBuf {
        let dir = root.join(BDF);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("vendor"), "0x8086\n").unwrap();
        fs::write(dir.join("device"), "0x100e\n").unwrap();
        fs::write(
            dir.join("resource"),
            "0x00000000febc0000 0x00000000febc1fff 0x0000000000040200\n\
             0x000000000000c000 0x000000000000c03f 0x0000000000040101\n\
             0x0000000000000000 0x0000000000000000 0x0000000000000000\n",
        )
        .unwrap();
        let mut config = vec![0u8; 64];
        config[4] = 0x03;
        fs::write(dir.join("config"), config).unwrap();
        fs::write(dir.join("resource0"), vec![0u8; 8192]).unwrap();
        fs::write(dir.join("resource1"), vec![0u8; 64]).unwrap();
        dir
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("mmio-sysfs-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    fn command(dir: &Path) -> u16 {
        let config = fs::read(dir.join("config")).unwrap();
        u16::from_le_bytes([config[4], config[5]])
    }

    #[test]
    fn the_functions_are_listed_in_address_order_with_their_ids_and_other_entries_skipped() {
        let root = scratch("list");
        fake_function(&root);
        let second = root.join("0000:00:02.0");
        fs::create_dir_all(&second).unwrap();
        fs::write(second.join("vendor"), "0x1234\n").unwrap();
        fs::write(second.join("device"), "0x1111\n").unwrap();
        fs::create_dir_all(root.join("dev")).unwrap();
        let listed: Vec<String> = LinuxHardware::at(&root)
            .functions()
            .unwrap()
            .iter()
            .map(PciFunction::to_string)
            .collect();
        assert_eq!(listed, ["0000:00:02.0 1234:1111", "0000:00:03.0 8086:100e"]);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn memory_bar_is_mapped_and_enabled() {
        let root = scratch("memory");
        let dir = fake_function(&root);
        let mut hardware = LinuxHardware::at(&root);
        let bdf: Bdf = BDF.parse().unwrap();
        assert_eq!(
            hardware.device_id(bdf).unwrap(),
            DeviceId {
                vendor: 0x8086,
                device: 0x100e
            }
        );

        let mut window = Window::new(hardware.open_bar(bdf, 0).unwrap());
        assert_eq!(window.region(), crate::region::Region::memory(0x2000));
        assert_eq!(
            command(&dir),
            0x0003,
            "memory space on; bus mastering waits for the driver"
        );
        window.write(0x1ffc, Width::U32, 0xdead_beef).unwrap();
        assert_eq!(window.read(0x1ffe, Width::U16).unwrap(), 0xdead);
        let mut written = [0; 4];
        fs::File::open(dir.join("resource0"))
            .unwrap()
            .read_exact_at(&mut written, 0x1ffc)
            .unwrap();
        assert_eq!(
            u32::from_le_bytes(written),
            0xdead_beef,
            "the store reached the file"
        );

        let grant = window.bus().map_grant(0x1000).unwrap();
        assert_eq!(grant.offset, 0x1000);
        drop(window);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn io_bar_goes_through_the_resource_file() {
        let root = scratch("io");
        let dir = fake_function(&root);
        let mut hardware = LinuxHardware::at(&root);
        let mut window = Window::new(hardware.open_bar(BDF.parse().unwrap(), 1).unwrap());
        assert_eq!(window.region(), crate::region::Region::ports(64));
        assert_eq!(command(&dir), 0x0003);
        window.write(0x4, Width::U32, 0x0102_0304).unwrap();
        assert_eq!(window.read(0x4, Width::U8).unwrap(), 0x04);
        assert_eq!(fs::read(dir.join("resource1")).unwrap()[4..8], [4, 3, 2, 1]);
        assert!(window.bus().map_grant(0).is_err(), "ports cannot be mapped");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn bus_mastering_is_started_and_stopped_alone_and_an_open_leaves_it_off() {
        let root = scratch("stop");
        let dir = fake_function(&root);
        let mut hardware = LinuxHardware::at(&root);
        let bdf: Bdf = BDF.parse().unwrap();
        let window = hardware.open_bar(bdf, 0).unwrap();
        hardware.start_bus_master(bdf).unwrap();
        assert_eq!(command(&dir), 0x0003 | COMMAND_BUS_MASTER);

        hardware.stop_bus_master(bdf).unwrap();
        assert_eq!(
            command(&dir),
            0x0003,
            "bus mastering off, I/O and memory decoding left on"
        );
        drop(window);
        hardware.open_bar(bdf, 0).unwrap();
        assert_eq!(
            command(&dir),
            0x0003,
            "the next open leaves bus mastering off"
        );
        assert_eq!(
            hardware
                .stop_bus_master("00:04.0".parse().unwrap())
                .unwrap_err()
                .kind(),
            io::ErrorKind::NotFound
        );
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn direct_mode_hands_the_client_the_resource_file() {
        use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
        use redox_scheme::scheme::SchemeSync;
        use redox_scheme::OpenResult;
        use scheme_runtime::SchemeDaemon;

        let root = scratch("direct");
        fake_function(&root);
        let policy =
            "[driver.e1000]\nuid = 1001\ndevice = \"8086:100e\"\nbars = [0]\ndirect_bars = [0]\n\
             schemes = [\"mmio\"]\n";
        let mut scheme = crate::MmioScheme::new(policy.parse().unwrap(), LinuxHardware::at(&root));
        let ctx = scheme_runtime::caller_ctx(7, 1001, 1001);
        let scheme_root = scheme.scheme_root().unwrap();
        let Ok(OpenResult::ThisScheme { number: bar, .. }) = scheme.openat(
            scheme_root,
            "pci/0000:00:03.0/bar0",
            syscall::flag::O_RDWR,
            0,
            &ctx,
        ) else {
            panic!("open refused");
        };
        scheme
            .write(bar, &0xcafe_f00du32.to_le_bytes(), 0x1004, 0, &ctx)
            .unwrap();

        let grant = scheme.map_fd(bar, 0x1000, 0x1000, &ctx).unwrap();
        let length = std::num::NonZeroUsize::new(0x1000).unwrap();
        // SAFETY: a fresh read-only mapping of the granted file, as a client makes it.
        let mapping = unsafe {
            mmap(
                None,
                length,
                ProtFlags::PROT_READ,
                MapFlags::MAP_SHARED,
                &grant.fd,
                grant.offset as i64,
            )
        }
        .unwrap();
        // SAFETY: offset 4 of a mapped, readable page.
        let seen = unsafe { mapping.cast::<u32>().add(1).read_volatile() };
        assert_eq!(
            seen, 0xcafe_f00d,
            "the client sees the register the scheme wrote"
        );
        // SAFETY: unmapping the mapping made above; nothing refers to it.
        unsafe { munmap(mapping, 0x1000) }.unwrap();
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn missing_things_are_not_found() {
        let root = scratch("missing");
        fake_function(&root);
        let mut hardware = LinuxHardware::at(&root);
        let absent: Bdf = "00:04.0".parse().unwrap();
        let error = hardware.device_id(absent).unwrap_err();
        assert_eq!(
            (error.kind(), error.to_string()),
            (
                io::ErrorKind::NotFound,
                "no PCI function 0000:00:04.0".into()
            )
        );
        let error = hardware.open_bar(BDF.parse().unwrap(), 2).err().unwrap();
        assert_eq!(
            error.to_string(),
            "BAR 2 of 0000:00:03.0 is not implemented"
        );
        let error = hardware.open_bar(BDF.parse().unwrap(), 5).err().unwrap();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        fs::remove_dir_all(&root).unwrap();
    }
}
