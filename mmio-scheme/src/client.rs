//! The client side: opening what `mmio:` serves, by [`Target`] rather than by
//! hand-built paths, with errors that name the path; and the list a driver
//! finds its device in.

use std::io;

use driver_policy::PciFunction;
use scheme_runtime::{read_text, Handle};
use syscall::flag::O_RDONLY;

use crate::open_path::{OpenRequest, Target};

/// Where `mmio:` is reached.
pub const SCHEME_ROOT: &str = "/scheme/mmio";

/// The path of `target`, opened for driver `label` when the caller is the
/// supervisor acting for it (`/scheme/mmio/pci/0000:00:03.0/bar0?label=e1000`).
pub fn path(target: Target, label: Option<&str>) -> String {
    format!("{SCHEME_ROOT}/{}", OpenRequest { target, label })
}

/// Opens `target` with `flags` (the registers of a BAR or a port range, an
/// interrupt, a text); an error names the path, for a person to read. It keeps
/// the errno only as its kind: code that tells errors apart by errno opens
/// [`path`] with `Handle::open` itself.
pub fn open(target: Target, label: Option<&str>, flags: usize) -> io::Result<Handle> {
    let path = path(target, label);
    Handle::open(&path, flags)
        .map_err(|error| io::Error::new(error.kind(), format!("opening {path}: {error}")))
}

/// The PCI functions the caller's policy rule grants, in address order: how a
/// driver whose rule names its device by id (`device = "8086:100e"`) finds the
/// device's address, as Redox's pcid matches drivers to devices by id.
pub fn granted_functions() -> io::Result<Vec<PciFunction>> {
    let text = read_text(&open(Target::Functions, None, O_RDONLY)?)?;
    text.lines()
        .map(|line| {
            line.parse().map_err(|error| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{SCHEME_ROOT}/pci: {error}"),
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::open_path::RegisterTarget;

    #[test]
    fn paths_carry_the_target_and_the_label() {
        let bar0 = Target::Registers(RegisterTarget::Bar {
            bdf: "00:03.0".parse().unwrap(),
            bar: 0,
        });
        assert_eq!(path(bar0, None), "/scheme/mmio/pci/0000:00:03.0/bar0");
        assert_eq!(
            path(bar0, Some("e1000")),
            "/scheme/mmio/pci/0000:00:03.0/bar0?label=e1000"
        );
        assert_eq!(path(Target::Functions, None), "/scheme/mmio/pci");
    }
}
