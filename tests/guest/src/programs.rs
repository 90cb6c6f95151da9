//! The workspace binaries that go into the guest, and building them as static
//! executables for the guest's target.

use std::env;
use std::path::PathBuf;
use std::process::Command;

use crate::Result;
use guest_harness::protocol::GUEST_POLICY_PATH;

/// One workspace binary copied into the guest's /bin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestProgram {
    pub package: &'static str,
    pub bin: &'static str,
    pub purpose: Purpose,
}

/// What /init does with a guest program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Started as root with these arguments before the other programs run, in every
    /// mode, as init starts a scheme daemon on Redox; it must still run at the end.
    Daemon(&'static [&'static str]),
    /// Run in a test run; prints result lines and one `guest:` summary.
    Test,
    /// Run in a benchmark run instead of the tests; prints `guest-bench` lines, result
    /// lines and one `guest:` summary.
    Bench,
    /// Run in a fault campaign instead of the tests; prints `romain-campaign` lines,
    /// result lines and one `guest:` summary.
    Campaign,
    /// Run in a restart benchmark (Herder's table) instead of the tests; prints
    /// `restart-bench` lines, result lines and one `guest:` summary.
    RestartBench,
    /// A driver the programs start and stop themselves (under the driver's uid, in the
    /// modes they test); /init only puts it into /bin.
    Driver,
    /// A helper the programs start and stop themselves (a service, a bridge); /init
    /// only puts it into /bin.
    Helper,
}

/// The daemons' arguments: both enforce the guest's policy.
const DAEMON_ARGS: &[&str] = &["--policy", GUEST_POLICY_PATH];
/// dma: also poisons freed buffers in quarantine and checks them, for the test
/// that a killed driver's device writes nothing into them once mmio: stopped it.
const DMA_ARGS: &[&str] = &["--policy", GUEST_POLICY_PATH, "--quarantine-poison"];

/// Add a line here to put another binary (a daemon, a driver, a test program) into the
/// guest; daemons start and test programs run in this order.
pub const GUEST_PROGRAMS: &[GuestProgram] = &[
    GuestProgram {
        package: "mmio-scheme",
        bin: "mmio",
        purpose: Purpose::Daemon(DAEMON_ARGS),
    },
    GuestProgram {
        package: "dma-scheme",
        bin: "dma",
        purpose: Purpose::Daemon(DMA_ARGS),
    },
    GuestProgram {
        package: "e1000",
        bin: "e1000",
        purpose: Purpose::Driver,
    },
    GuestProgram {
        package: "uart16550",
        bin: "uart16550",
        purpose: Purpose::Driver,
    },
    GuestProgram {
        package: "guest-net",
        bin: "tcp-echo",
        purpose: Purpose::Helper,
    },
    GuestProgram {
        package: "guest-net",
        bin: "tap-bridge",
        purpose: Purpose::Helper,
    },
    GuestProgram {
        package: "romain-scheme",
        bin: "romain",
        purpose: Purpose::Helper,
    },
    GuestProgram {
        package: "guest-harness",
        bin: "guest-mmio-dma",
        purpose: Purpose::Test,
    },
    GuestProgram {
        package: "guest-harness",
        bin: "guest-e1000",
        purpose: Purpose::Test,
    },
    GuestProgram {
        package: "guest-harness",
        bin: "guest-uart16550",
        purpose: Purpose::Test,
    },
    GuestProgram {
        package: "guest-harness",
        bin: "guest-tcp",
        purpose: Purpose::Test,
    },
    GuestProgram {
        package: "guest-harness",
        bin: "guest-bench",
        purpose: Purpose::Bench,
    },
    GuestProgram {
        package: "guest-harness",
        bin: "guest-tcp",
        purpose: Purpose::Bench,
    },
    GuestProgram {
        package: "guest-harness",
        bin: "guest-tcp",
        purpose: Purpose::Campaign,
    },
    GuestProgram {
        package: "guest-harness",
        bin: "guest-tcp",
        purpose: Purpose::RestartBench,
    },
];

/// The programs a run of `purpose` (tests, benchmarks, a campaign) needs: the daemons, the drivers
/// and helpers programs start, and its own.
pub fn for_run(programs: &[GuestProgram], purpose: Purpose) -> Vec<GuestProgram> {
    programs
        .iter()
        .filter(|program| program.purpose == purpose || !program.purpose.is_run())
        .copied()
        .collect()
}

impl Purpose {
    /// /init runs the program to its end (a test or benchmark program).
    pub fn is_run(&self) -> bool {
        matches!(
            self,
            Purpose::Test | Purpose::Bench | Purpose::Campaign | Purpose::RestartBench
        )
    }

    /// /init starts the program before the others, and it must outlive them.
    pub fn is_daemon(&self) -> bool {
        matches!(self, Purpose::Daemon(_))
    }
}

/// An explicit target keeps these static builds apart from the host builds' cache.
pub const GUEST_TARGET: &str = "x86_64-unknown-linux-gnu";
/// Static, because the guest has no C library. Without debug info, because the release
/// profile's would make each binary ~10x larger, and the initramfs slower to pack and boot.
const STATIC_RUSTFLAGS: &str = "-C target-feature=+crt-static -C strip=debuginfo";

/// Where the workspace and its build outputs are.
#[derive(Debug)]
pub struct Workspace {
    pub root: PathBuf,
    pub target_dir: PathBuf,
}

impl Workspace {
    /// Asks cargo, so CARGO_TARGET_DIR and cargo configuration are honoured.
    pub fn locate() -> Result<Workspace> {
        let output = Command::new(cargo())
            .args(["metadata", "--no-deps", "--format-version", "1"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(format!("cargo metadata failed: {stderr}").into());
        }
        let metadata: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        let path = |key: &str| -> Result<PathBuf> {
            let value = metadata[key].as_str();
            Ok(value
                .ok_or_else(|| format!("cargo metadata has no {key}"))?
                .into())
        };
        Ok(Workspace {
            root: path("workspace_root")?,
            target_dir: path("target_directory")?,
        })
    }
}

/// A built guest program.
#[derive(Debug, Clone)]
pub struct BuiltProgram {
    pub name: String,
    pub path: PathBuf,
    pub purpose: Purpose,
}

/// Builds `programs` statically in release mode and returns where they are.
pub fn build(workspace: &Workspace, programs: &[GuestProgram]) -> Result<Vec<BuiltProgram>> {
    let args = cargo_build_args(programs);
    log::info!(
        "building guest programs: RUSTFLAGS='{STATIC_RUSTFLAGS}' cargo {}",
        args.join(" ")
    );
    let status = Command::new(cargo())
        .args(&args)
        .current_dir(&workspace.root)
        .env("RUSTFLAGS", STATIC_RUSTFLAGS)
        // Would override RUSTFLAGS if an outer cargo had set it.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()?;
    if !status.success() {
        return Err(format!("building the guest programs failed: {status}").into());
    }
    let out_dir = workspace.target_dir.join(GUEST_TARGET).join("release");
    Ok(programs
        .iter()
        .map(|program| BuiltProgram {
            name: program.bin.to_string(),
            path: out_dir.join(program.bin),
            purpose: program.purpose,
        })
        .collect())
}

fn cargo_build_args(programs: &[GuestProgram]) -> Vec<String> {
    let mut args: Vec<String> = ["build", "--release", "--target", GUEST_TARGET]
        .map(String::from)
        .to_vec();
    for program in programs {
        args.extend(["-p", program.package, "--bin", program.bin].map(String::from));
    }
    args
}

/// The cargo that runs us (`cargo run` sets CARGO), else the one on PATH.
fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_selects_each_program_by_package_and_bin_for_the_guest_target() {
        let programs = for_run(GUEST_PROGRAMS, Purpose::Test);
        assert_eq!(
            cargo_build_args(&programs).join(" "),
            "build --release --target x86_64-unknown-linux-gnu \
             -p mmio-scheme --bin mmio -p dma-scheme --bin dma -p e1000 --bin e1000 \
             -p uart16550 --bin uart16550 -p guest-net --bin tcp-echo \
             -p guest-net --bin tap-bridge -p romain-scheme --bin romain \
             -p guest-harness --bin guest-mmio-dma \
             -p guest-harness --bin guest-e1000 -p guest-harness --bin guest-uart16550 \
             -p guest-harness --bin guest-tcp"
        );
    }

    #[test]
    fn each_run_gets_the_daemons_and_only_its_own_programs() {
        let names = |purpose| -> Vec<&str> {
            for_run(GUEST_PROGRAMS, purpose)
                .iter()
                .map(|program| program.bin)
                .collect()
        };
        assert_eq!(
            names(Purpose::Test),
            [
                "mmio",
                "dma",
                "e1000",
                "uart16550",
                "tcp-echo",
                "tap-bridge",
                "romain",
                "guest-mmio-dma",
                "guest-e1000",
                "guest-uart16550",
                "guest-tcp"
            ]
        );
        assert_eq!(
            names(Purpose::Bench),
            [
                "mmio",
                "dma",
                "e1000",
                "uart16550",
                "tcp-echo",
                "tap-bridge",
                "romain",
                "guest-bench",
                "guest-tcp"
            ]
        );
        // Both daemons enforce the guest's policy; dma: also poisons what it
        // quarantines, for the dead-driver DMA test.
        let daemon_args: Vec<(&str, &[&str])> = GUEST_PROGRAMS
            .iter()
            .filter_map(|program| match program.purpose {
                Purpose::Daemon(args) => Some((program.bin, args)),
                _ => None,
            })
            .collect();
        let policy: &[&str] = &["--policy", "/etc/guest/policy.toml"];
        let dma: &[&str] = &["--policy", "/etc/guest/policy.toml", "--quarantine-poison"];
        assert_eq!(daemon_args, [("mmio", policy), ("dma", dma)]);
    }
}
