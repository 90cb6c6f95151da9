//! The benchmark's baseline run: the same guest booted with Debian's generic kernel,
//! whose own e1000 module drives the NIC as `eth0`, serving the same echo service to
//! the same load as the run over our driver. Only `guest-tcp` and the service go in:
//! no daemons, no driver of ours.

use std::path::Path;
use std::time::Duration;

use guest_harness::protocol::{TestLine, GUEST_SUMMARY_LABEL, GUEST_TEST_PREFIX};
use guest_net::load::{PathReport, Workload};
use guest_net::paths::NetPath;

use crate::programs::{self, GuestProgram, Purpose, Workspace};
use crate::provision::{self, BUSYBOX, GENERIC_KERNEL};
use crate::qemu::{self, Accel, BootConfig};
use crate::results::{self, host_check};
use crate::tcp_load::{self, TcpLoad};
use crate::{initramfs, Result};

/// The guest's programs: the service, and `guest-tcp`, told to configure `eth0`.
const PROGRAMS: &[GuestProgram] = &[
    GuestProgram {
        package: "guest-net",
        bin: "tcp-echo",
        purpose: Purpose::Helper,
    },
    GuestProgram {
        package: "guest-harness",
        bin: "guest-tcp",
        purpose: Purpose::Bench,
    },
];
const PATHS: [NetPath; 1] = [NetPath::LinuxE1000];

/// How the baseline guest runs; the rest is as in the run it accompanies.
pub struct Settings<'a> {
    pub workspace: &'a Workspace,
    pub timeout: Duration,
    pub memory_mib: u32,
    pub accel: Accel,
    pub kernel_params: &'a [String],
    pub keep: bool,
    pub workload: Workload,
}

/// What the baseline run found.
pub struct Baseline {
    /// The run's own checks (QEMU's ending, the guest's results) and the load's.
    pub checks: Vec<TestLine>,
    /// The measurements, for the table.
    pub reports: Vec<PathReport>,
    /// The measurements as lines.
    pub lines: Vec<String>,
}

pub fn run(settings: &Settings) -> Result<Baseline> {
    let guest_dir = settings.workspace.target_dir.join("guest");
    let script = settings.workspace.root.join("tests/guest/provision.sh");
    let kernel =
        provision::provision_kernel(&script, &guest_dir.join("kernel-generic"), &GENERIC_KERNEL)?;
    let programs = programs::build(settings.workspace, PROGRAMS)?;
    let run_dir = crate::prepare_run_dir(&guest_dir.join("baseline"), settings.keep)?;
    let initrd = run_dir.join("initramfs.cpio.gz");
    let contents = initramfs::Contents {
        busybox: Path::new(BUSYBOX),
        programs: &programs,
        modules: &kernel.modules,
        policy: initramfs::GUEST_POLICY,
    };
    initramfs::write(&contents, &initrd)?;

    let workload = settings.workload;
    let load = TcpLoad::start(move |_| workload, None)?;
    let config = BootConfig {
        serial: qemu::Serial::Harness,
        kernel: kernel.vmlinuz,
        initrd,
        memory_mib: settings.memory_mib,
        accel: settings.accel,
        kernel_params: [settings.kernel_params, &load.kernel_params(&PATHS)].concat(),
        forwarded_ports: vec![load.port()],
        forwarded_udp_ports: vec![],
        run_dir: run_dir.clone(),
    };
    log::info!(
        "baseline: booting kernel {} with Linux's e1000 driver",
        kernel.release
    );
    let boot = qemu::boot(&config, settings.timeout, Vec::new(), |line| {
        load.observe(line);
        if line.starts_with(GUEST_TEST_PREFIX) || line.starts_with(GUEST_SUMMARY_LABEL) {
            println!("{line}");
        }
    })?;
    let reports = load.finish();
    log::info!(
        "baseline: QEMU ran {:.2?}; artifacts in {}",
        boot.elapsed,
        run_dir.display()
    );

    let guest = results::parse_console(&boot.console);
    let mut checks = vec![
        host_check(
            "baseline-qemu-powered-off",
            results::check_ending(&boot.ending, &boot.console),
        ),
        host_check(
            "baseline-guest-summaries",
            results::check_summaries(&guest, 1),
        ),
        host_check("baseline-guest-tests-passed", all_passed(&guest.tests)),
    ];
    let (tcp_checks, lines) = tcp_load::checks(&reports, &PATHS);
    checks.extend(tcp_checks);
    Ok(Baseline {
        checks,
        reports,
        lines,
    })
}

/// The run's overall count covers the main guest's lines only, so the baseline
/// guest's failures become one check.
fn all_passed(tests: &[TestLine]) -> std::result::Result<(), String> {
    let failed: Vec<&str> = tests
        .iter()
        .filter(|test| !test.passed())
        .map(|test| test.name.as_str())
        .collect();
    match failed.as_slice() {
        [] => Ok(()),
        names => Err(format!("failed in the guest: {}", names.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_harness::protocol::Outcome;

    fn line(name: &str, outcome: Outcome) -> TestLine {
        TestLine {
            prefix: GUEST_TEST_PREFIX.into(),
            name: name.into(),
            outcome,
            elapsed: None,
        }
    }

    #[test]
    fn any_failed_guest_line_fails_the_baseline() {
        let ok = line("tcp-linux-e1000-eth0-configured", Outcome::Passed);
        assert_eq!(all_passed(std::slice::from_ref(&ok)), Ok(()));
        let failed = line(
            "tcp-linux-e1000-gateway-answers-ping",
            Outcome::Failed("x".into()),
        );
        assert_eq!(
            all_passed(&[ok, failed]),
            Err("failed in the guest: tcp-linux-e1000-gateway-answers-ping".into())
        );
    }
}
