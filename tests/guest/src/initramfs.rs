//! The guest's initramfs: a gzip-compressed newc cpio archive (written with the `cpio`
//! crate) holding busybox, `/init`, the guest programs, the kernel modules, the driver
//! policy, the lists `/init` works through and the `/dev/console` node it prints through.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use cpio::newc::{trailer, Builder, ModeFileType};
use flate2::write::GzEncoder;
use flate2::Compression;

use crate::programs::{BuiltProgram, Purpose};
use crate::Result;
use guest_harness::protocol::GUEST_POLICY_PATH;
use image_config::ImageFile;

const INIT_SCRIPT: &str = include_str!("../init.sh");
/// What both kinds of /init source first: file systems, modules, huge pages.
const PREPARE_SCRIPT: &str = include_str!("../prepare.sh");
/// /init of the `make run` guest, which boots the image's own init units.
const RUN_INIT_SCRIPT: &str = include_str!("../run-init.sh");
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

/// What the `make run` guest's archive holds besides the fixed layout.
pub struct ImageContents<'a> {
    pub busybox: &'a Path,
    /// Installed into /usr/bin, where the recipes install them on Redox.
    pub programs: &'a [BuiltProgram],
    /// (module name, .ko file), in load order.
    pub modules: &'a [(String, PathBuf)],
    /// The files `filesystem.toml` writes (the policy, the registry, the init
    /// units), each at its path.
    pub files: &'a [ImageFile],
    /// The guest's own files besides (the web page, the shell's profile):
    /// (absolute path, mode, contents).
    pub extra: &'a [(String, u32, Vec<u8>)],
}

/// Writes the compressed archive of the test guest to `out`.
pub fn write(contents: &Contents, out: &Path) -> Result<()> {
    let mut archive = base(INIT_SCRIPT, contents.busybox, contents.modules, out)?;
    for program in contents.programs {
        archive.file(
            &format!("bin/{}", program.name),
            0o755,
            &read(&program.path)?,
        )?;
    }
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

/// Writes the compressed archive of the `make run` guest to `out`.
pub fn write_image(contents: &ImageContents, out: &Path) -> Result<()> {
    let mut archive = base(RUN_INIT_SCRIPT, contents.busybox, contents.modules, out)?;
    for program in contents.programs {
        archive.file(
            &format!("usr/bin/{}", program.name),
            0o755,
            &read(&program.path)?,
        )?;
    }
    for file in contents.files {
        archive.file(
            file.path.trim_start_matches('/'),
            0o644,
            file.data.as_bytes(),
        )?;
    }
    for (path, mode, data) in contents.extra {
        archive.file(path.trim_start_matches('/'), *mode, data)?;
    }
    archive.finish()?.finish()?.flush()?;
    Ok(())
}

/// An archive at `out` with the fixed layout, `/init`, busybox, what /init
/// sources first, and the kernel modules with their list.
fn base(
    init: &str,
    busybox: &Path,
    modules: &[(String, PathBuf)],
    out: &Path,
) -> Result<Archive<GzEncoder<BufWriter<File>>>> {
    let file = BufWriter::new(File::create(out)?);
    let mut archive = Archive::new(GzEncoder::new(file, Compression::fast()));
    for dir in DIRECTORIES {
        archive.directory(dir)?;
    }
    archive.char_device("dev/console", 0o600, CONSOLE_MAJOR, CONSOLE_MINOR)?;
    archive.file("init", 0o755, init.as_bytes())?;
    archive.file("etc/guest/prepare.sh", 0o644, PREPARE_SCRIPT.as_bytes())?;
    archive.file("bin/busybox", 0o755, &read(busybox)?)?;
    // /init's interpreter must exist before `busybox --install` makes the other links.
    archive.symlink("bin/sh", "busybox")?;
    for (name, path) in modules {
        archive.file(&format!("lib/modules/{name}.ko"), 0o644, &read(path)?)?;
    }
    let module_list = lines(modules.iter().map(|(name, _)| name.clone()));
    archive.file("etc/guest/modules", 0o644, module_list.as_bytes())?;
    Ok(archive)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|err| format!("cannot read {}: {err}", path.display()).into())
}

fn lines(items: impl Iterator<Item = String>) -> String {
    items.map(|item| format!("{item}\n")).collect()
}

/// A newc archive being written; gives every entry its own inode number, and
/// every file the folders above it (the kernel unpacks into existing ones only).
struct Archive<W: Write> {
    out: W,
    next_ino: u32,
    directories: BTreeSet<String>,
}

impl<W: Write> Archive<W> {
    fn new(out: W) -> Self {
        Archive {
            out,
            next_ino: 1,
            directories: BTreeSet::new(),
        }
    }

    fn directory(&mut self, name: &str) -> io::Result<()> {
        if !self.directories.insert(name.to_owned()) {
            return Ok(());
        }
        self.entry(name, ModeFileType::Directory, 0o755, b"", (0, 0))
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) -> io::Result<()> {
        let folders: Vec<usize> = name.match_indices('/').map(|(at, _)| at).collect();
        for at in folders {
            self.directory(&name[..at])?;
        }
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
    fn the_image_archive_installs_programs_in_usr_bin_and_each_file_with_its_folders() {
        let dir = tempfile::tempdir().unwrap();
        let busybox = dir.path().join("busybox");
        fs::write(&busybox, b"busybox binary").unwrap();
        let programs = [BuiltProgram {
            name: "romain".into(),
            path: busybox.clone(),
            purpose: Purpose::Helper,
        }];
        let files = [ImageFile {
            path: "/usr/lib/init.d/02_romain.service".into(),
            data: "[unit]".into(),
            postinstall: false,
        }];
        let extra = [(
            "/www/cgi-bin/status".to_owned(),
            0o755,
            b"#!/bin/sh\n".to_vec(),
        )];
        let out = dir.path().join("image.cpio.gz");
        let contents = ImageContents {
            busybox: &busybox,
            programs: &programs,
            modules: &[],
            files: &files,
            extra: &extra,
        };
        write_image(&contents, &out).unwrap();
        let entries = unpack(&fs::read(&out).unwrap());
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        let position = |name: &str| {
            names
                .iter()
                .position(|n| *n == name)
                .unwrap_or_else(|| panic!("{name} missing from {names:?}"))
        };
        assert!(position("usr/lib") < position("usr/lib/init.d"));
        assert!(position("usr/lib/init.d") < position("usr/lib/init.d/02_romain.service"));
        assert!(position("www/cgi-bin") < position("www/cgi-bin/status"));
        assert_eq!(entries[position("www/cgi-bin/status")].1, 0o100755);
        assert_eq!(entries[position("usr/bin/romain")].4, b"busybox binary");
        assert!(entries[position("init")].4.starts_with(b"#!/bin/sh\n"));
        assert!(String::from_utf8_lossy(&entries[position("init")].4).contains("image-init"));
        assert_eq!(
            entries[position("etc/guest/prepare.sh")].4,
            PREPARE_SCRIPT.as_bytes()
        );
        let unique: BTreeSet<&str> = names.iter().copied().collect();
        assert_eq!(unique.len(), names.len(), "every entry once");
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
