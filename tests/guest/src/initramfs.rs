//! The guest's initramfs: a gzip-compressed newc cpio archive (written with the `cpio`
//! crate) holding busybox, `/init`, the guest programs, the kernel modules, the driver
//! policy, the lists `/init` works through and the `/dev/console` node it prints through.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use cpio::newc::{trailer, Builder, ModeFileType};
use flate2::write::GzEncoder;
use flate2::Compression;

use crate::programs::{BuiltProgram, Purpose};
use crate::Result;
use guest_harness::protocol::GUEST_POLICY_PATH;

const INIT_SCRIPT: &str = include_str!("../init.sh");
/// The driver policy the daemons enforce inside the guest.
pub const GUEST_POLICY: &str = include_str!("../guest-policy.toml");
/// Folders busybox installs its applet links into, plus the mount points /init uses.
const DIRECTORIES: &[&str] = &[
    "bin",
    "sbin",
    "usr",
    "usr/bin",
    "usr/sbin",
    "dev",
    "proc",
    "sys",
    "tmp",
    "etc",
    "etc/guest",
    "lib",
    "lib/modules",
];
const CONSOLE_MAJOR: u32 = 5;
const CONSOLE_MINOR: u32 = 1;

/// What goes into the archive besides the fixed layout.
pub struct Contents<'a> {
    pub busybox: &'a Path,
    /// Daemons and the programs /init runs, in order.
    pub programs: &'a [BuiltProgram],
    /// (module name, .ko file), in load order.
    pub modules: &'a [(String, PathBuf)],
    /// The driver policy, put at [`GUEST_POLICY_PATH`].
    pub policy: &'a str,
}

/// Writes the compressed archive to `out`.
pub fn write(contents: &Contents, out: &Path) -> Result<()> {
    let file = BufWriter::new(File::create(out)?);
    let mut archive = Archive::new(GzEncoder::new(file, Compression::fast()));
    for dir in DIRECTORIES {
        archive.directory(dir)?;
    }
    archive.char_device("dev/console", 0o600, CONSOLE_MAJOR, CONSOLE_MINOR)?;
    archive.file("init", 0o755, INIT_SCRIPT.as_bytes())?;
    archive.file("bin/busybox", 0o755, &read(contents.busybox)?)?;
    // /init's interpreter must exist before `busybox --install` makes the other links.
    archive.symlink("bin/sh", "busybox")?;
    for program in contents.programs {
        archive.file(
            &format!("bin/{}", program.name),
            0o755,
            &read(&program.path)?,
        )?;
    }
    for (name, path) in contents.modules {
        archive.file(&format!("lib/modules/{name}.ko"), 0o644, &read(path)?)?;
    }
    let module_list = lines(contents.modules.iter().map(|(name, _)| name.clone()));
    archive.file("etc/guest/modules", 0o644, module_list.as_bytes())?;
    // One daemon per line: its name, then its arguments (which hold no spaces).
    let daemons = contents.programs.iter().filter_map(|p| match p.purpose {
        Purpose::Daemon(args) => Some([&[p.name.as_str()], args].concat().join(" ")),
        Purpose::Test
        | Purpose::Bench
        | Purpose::Campaign
        | Purpose::RestartBench
        | Purpose::Driver
        | Purpose::Helper => None,
    });
    archive.file("etc/guest/daemons", 0o644, lines(daemons).as_bytes())?;
    let runs = contents.programs.iter().filter(|p| p.purpose.is_run());
    let run_list = lines(runs.map(|p| p.name.clone()));
    archive.file("etc/guest/programs", 0o644, run_list.as_bytes())?;
    let policy_path = GUEST_POLICY_PATH.trim_start_matches('/');
    archive.file(policy_path, 0o644, contents.policy.as_bytes())?;
    archive.finish()?.finish()?.flush()?;
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|err| format!("cannot read {}: {err}", path.display()).into())
}

fn lines(items: impl Iterator<Item = String>) -> String {
    items.map(|item| format!("{item}\n")).collect()
}

/// A newc archive being written; gives every entry its own inode number.
struct Archive<W: Write> {
    out: W,
    next_ino: u32,
}

impl<W: Write> Archive<W> {
    fn new(out: W) -> Self {
        Archive { out, next_ino: 1 }
    }

    fn directory(&mut self, name: &str) -> io::Result<()> {
        self.entry(name, ModeFileType::Directory, 0o755, b"", (0, 0))
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, ModeFileType::Regular, mode, data, (0, 0))
    }

    fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        self.entry(
            name,
            ModeFileType::Symlink,
            0o777,
            target.as_bytes(),
            (0, 0),
        )
    }

    fn char_device(&mut self, name: &str, mode: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(name, ModeFileType::Char, mode, b"", (major, minor))
    }

    fn entry(
        &mut self,
        name: &str,
        kind: ModeFileType,
        permissions: u32,
        data: &[u8],
        (rdev_major, rdev_minor): (u32, u32),
    ) -> io::Result<()> {
        let size = u32::try_from(data.len()).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, format!("{name} is over 4 GiB"))
        })?;
        let mut writer = Builder::new(name)
            .ino(self.next_ino)
            .mode(permissions)
            .set_mode_file_type(kind)
            .rdev_major(rdev_major)
            .rdev_minor(rdev_minor)
            .write(&mut self.out, size);
        self.next_ino += 1;
        writer.write_all(data)?;
        writer.finish()?;
        Ok(())
    }

    fn finish(self) -> io::Result<W> {
        trailer(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpio::newc::Reader;
    use flate2::read::GzDecoder;
    use std::io::Read;

    /// (name, mode, rdev major, rdev minor, contents) of every entry but the trailer.
    fn unpack(gzipped: &[u8]) -> Vec<(String, u32, u32, u32, Vec<u8>)> {
        let mut input = GzDecoder::new(gzipped);
        let mut entries = Vec::new();
        loop {
            let mut reader = Reader::new(&mut input).unwrap();
            let entry = reader.entry();
            if entry.is_trailer() {
                return entries;
            }
            let meta = (
                entry.name().to_string(),
                entry.mode(),
                entry.rdev_major(),
                entry.rdev_minor(),
            );
            let mut data = Vec::new();
            reader.read_to_end(&mut data).unwrap();
            entries.push((meta.0, meta.1, meta.2, meta.3, data));
            reader.finish().unwrap();
        }
    }

    #[test]
    fn archive_holds_layout_console_init_programs_and_module_lists() {
        let dir = tempfile::tempdir().unwrap();
        let busybox = dir.path().join("busybox");
        fs::write(&busybox, b"busybox binary").unwrap();
        let program = dir.path().join("guest-mmio-dma");
        fs::write(&program, b"odd length").unwrap();
        let module = dir.path().join("uio.ko");
        fs::write(&module, b"module").unwrap();
        let programs = [
            BuiltProgram {
                name: "mmio".into(),
                path: program.clone(),
                purpose: Purpose::Daemon(&["--policy", "/etc/guest/policy.toml"]),
            },
            BuiltProgram {
                name: "dma".into(),
                path: program.clone(),
                purpose: Purpose::Daemon(&["--quota", "4M"]),
            },
            BuiltProgram {
                name: "guest-mmio-dma".into(),
                path: program,
                purpose: Purpose::Test,
            },
        ];
        let modules = [("uio".to_string(), module)];
        let out = dir.path().join("initramfs.cpio.gz");
        let contents = Contents {
            busybox: &busybox,
            programs: &programs,
            modules: &modules,
            policy: GUEST_POLICY,
        };
        write(&contents, &out).unwrap();

        let entries = unpack(&fs::read(&out).unwrap());
        let find = |name: &str| {
            entries
                .iter()
                .find(|e| e.0 == name)
                .unwrap_or_else(|| panic!("{name} missing"))
        };
        assert_eq!(find("dev/console").1, 0o020600);
        assert_eq!((find("dev/console").2, find("dev/console").3), (5, 1));
        assert_eq!(find("bin").1, 0o040755);
        assert_eq!(find("bin/sh").1, 0o120777);
        assert_eq!(find("bin/sh").4, b"busybox");
        assert_eq!(find("init").1, 0o100755);
        assert!(find("init").4.starts_with(b"#!/bin/sh\n"));
        assert_eq!(find("bin/guest-mmio-dma").4, b"odd length");
        assert_eq!(find("bin/mmio").1, 0o100755);
        assert_eq!(find("lib/modules/uio.ko").4, b"module");
        assert_eq!(find("etc/guest/modules").4, b"uio\n");
        assert_eq!(
            find("etc/guest/daemons").4,
            b"mmio --policy /etc/guest/policy.toml\ndma --quota 4M\n"
        );
        assert_eq!(
            find("etc/guest/programs").4,
            b"guest-mmio-dma\n",
            "daemons are started, not run"
        );
        assert_eq!(find("etc/guest/policy.toml").4, GUEST_POLICY.as_bytes());
    }

    #[test]
    fn the_guest_policy_grants_what_the_guest_tests_expect() {
        use driver_policy::{Bdf, DeviceId, Policy, PortRange};
        use guest_harness::protocol::{E1000_DRIVER_LABEL, UART_DRIVER_LABEL};

        let policy: Policy = GUEST_POLICY.parse().unwrap();
        let e1000 = policy.driver(E1000_DRIVER_LABEL).unwrap();
        let e1000_id = DeviceId {
            vendor: 0x8086,
            device: 0x100e,
        };
        assert_eq!(e1000.uid(), 1001);
        assert_eq!(e1000.device(), Some(e1000_id));
        assert_eq!((e1000.bars(), e1000.direct_bars()), (&[0][..], &[0][..]));
        // Four 2 MiB huge pages: each ring's descriptors and its packet buffers.
        assert_eq!(e1000.dma_quota(), 8 << 20);
        let nic: Bdf = "00:02.0".parse().unwrap();
        assert!(e1000.check_bar(nic, 1).is_err(), "BAR 1 is not granted");

        let uart = policy.driver(UART_DRIVER_LABEL).unwrap();
        assert_eq!(uart.uid(), 1002);
        assert_eq!(uart.ports(), [PortRange::new(0x2f8, 0x2ff).unwrap()]);
        assert!(
            uart.check_bar(nic, 0).is_err(),
            "no device for the uart driver"
        );
        assert_eq!(policy.drivers().count(), 2, "every other uid is a stranger");
    }

    #[test]
    fn missing_input_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let contents = Contents {
            busybox: &dir.path().join("no-busybox"),
            programs: &[],
            modules: &[],
            policy: "",
        };
        let err = write(&contents, &dir.path().join("out.cpio.gz")).unwrap_err();
        assert!(err.to_string().contains("no-busybox"), "{err}");
    }
}
