//! Provisioning: runs `provision.sh`, which installs the Debian packages the guest needs
//! and unpacks the cloud kernel and its modules into a cache, then locates the results.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Result;

/// Kernel modules put into the guest, in the order /init loads them.
pub const KERNEL_MODULES: &[&str] = &["uio", "uio_pci_generic", "tun"];
/// Statically linked busybox from the `busybox-static` package.
pub const BUSYBOX: &str = "/bin/busybox";
pub const QEMU: &str = "qemu-system-x86_64";

/// The guest kernel and the modules unpacked next to it.
#[derive(Debug)]
pub struct Kernel {
    pub vmlinuz: PathBuf,
    pub release: String,
    /// (module name, .ko file), in load order.
    pub modules: Vec<(String, PathBuf)>,
}

/// Makes sure packages and kernel are there; does nothing but check on a provisioned machine.
pub fn provision(script: &Path, cache: &Path) -> Result<Kernel> {
    log::info!("provisioning: sh {} {}", script.display(), cache.display());
    let status = Command::new("sh")
        .arg(script)
        .arg(cache)
        .args(KERNEL_MODULES)
        .status()
        .map_err(|err| format!("cannot run {}: {err}", script.display()))?;
    if !status.success() {
        return Err(format!("{} failed: {status}", script.display()).into());
    }
    let release = fs::read_to_string(cache.join("kernel-release"))?
        .trim()
        .to_string();
    let modules = KERNEL_MODULES
        .iter()
        .map(|name| {
            (
                name.to_string(),
                cache.join("modules").join(format!("{name}.ko")),
            )
        })
        .collect();
    Ok(Kernel {
        vmlinuz: cache.join("vmlinuz"),
        release,
        modules,
    })
}
