//! Provisioning: runs `provision.sh`, which installs the Debian packages the guest needs
//! and unpacks the cloud kernel and its modules into a cache, then locates the results.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Result;

/// Kernel modules put into the guest, in the order /init loads them.
pub const KERNEL_MODULES: &[&str] = &["uio", "uio_pci_generic", "tun"];

/// A Debian kernel, named by its meta package, and the modules a guest loads from it.
#[derive(Debug, Clone, Copy)]
pub struct KernelSpec {
    pub meta_package: &'static str,
    pub modules: &'static [&'static str],
}

/// The test guest's kernel: small, and without a driver that would take the e1000.
pub const CLOUD_KERNEL: KernelSpec = KernelSpec {
    meta_package: "linux-image-cloud-amd64",
    modules: KERNEL_MODULES,
};
/// Debian's generic kernel, for the baseline: Linux's own e1000 driver as a module.
pub const GENERIC_KERNEL: KernelSpec = KernelSpec {
    meta_package: "linux-image-amd64",
    modules: &["e1000"],
};

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
    provision_kernel(script, cache, &CLOUD_KERNEL)
}

/// As [`provision`], for the kernel `spec` names, cached in `cache`.
pub fn provision_kernel(script: &Path, cache: &Path, spec: &KernelSpec) -> Result<Kernel> {
    log::info!(
        "provisioning: KERNEL_PACKAGE={} sh {} {}",
        spec.meta_package,
        script.display(),
        cache.display()
    );
    let status = Command::new("sh")
        .arg(script)
        .arg(cache)
        .args(spec.modules)
        .env("KERNEL_PACKAGE", spec.meta_package)
        .status()
        .map_err(|err| format!("cannot run {}: {err}", script.display()))?;
    if !status.success() {
        return Err(format!("{} failed: {status}", script.display()).into());
    }
    let release = fs::read_to_string(cache.join("kernel-release"))?
        .trim()
        .to_string();
    let modules = spec
        .modules
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
