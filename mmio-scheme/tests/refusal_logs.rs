//! What the scheme logs when it refuses a request whose path a client chose:
//! one short line per refusal, however long the path.
//!
//! The logger is global to the process, so this file holds one test and
//! captures every record, at every level.

use driver_policy::{Bdf, DeviceId, Policy};
use mmio_scheme::bus::SoftBank;
use mmio_scheme::scheme::MmioScheme;
use mmio_scheme::SoftMachine;
use redox_scheme::scheme::SchemeSync;
use scheme_runtime::caller_ctx;
use syscall::error::{EACCES, EINVAL, ENOENT};
use syscall::flag::O_RDWR;

/// Longest line a refusal may log: the message, a clipped path and a clipped
/// denial, with room to spare.
const MAX_LINE: usize = 512;

#[test]
fn a_refused_path_of_64_kib_logs_one_short_line() {
    scheme_runtime::logging::capture();
    let policy: Policy = "[driver.e1000]\nuid = 1001\ndevice = \"8086:100e\"\nbars = [0]\n\
                          schemes = [\"mmio\"]\n"
        .parse()
        .unwrap();
    let mut hardware = SoftMachine::new();
    let bdf: Bdf = "00:03.0".parse().unwrap();
    let e1000 = DeviceId {
        vendor: 0x8086,
        device: 0x100e,
    };
    hardware.add_bar(bdf, e1000, 0, SoftBank::memory(0x1000));
    let mut scheme = MmioScheme::new(policy, hardware);
    let root = scheme.scheme_root().unwrap();

    let long = "x".repeat(64 * 1024);
    let cases = [
        (format!("pci/{long}/bar0"), 1001, ENOENT),
        (format!("pci/00:03.0/bar0?{long}=1"), 1001, EINVAL),
        (format!("pci/00:03.0/bar0?label={long}"), 0, EACCES),
        (format!("pci/00:03.0/bar0?label={long}"), 1001, EACCES),
        (format!("pci/00:03.0/bar0?label=a\n{long}"), 0, EACCES),
    ];
    for (path, uid, expected) in cases {
        scheme_runtime::logging::take_captured();
        let refused = scheme
            .openat(root, &path, O_RDWR, 0, &caller_ctx(9, uid, uid))
            .unwrap_err();
        assert_eq!(refused.errno, expected, "{path:.80}");
        let lines = scheme_runtime::logging::take_captured();
        assert_eq!(
            lines.len(),
            1,
            "one line per refusal of {path:.80}: {lines:.300?}"
        );
        let line = &lines[0];
        assert!(
            line.len() <= MAX_LINE,
            "{} bytes for {path:.80}: {line:.300}",
            line.len()
        );
        assert!(line.contains(" bytes)"), "says what it clipped: {line}");
        assert!(!line.contains('\n'), "{line}");
    }
}
