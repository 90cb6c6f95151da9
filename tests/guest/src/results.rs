//! Judging a run: the guest's result lines and summaries found on the console, the
//! checks made from the host's view (QEMU's ending, the daemons' survival, COM2 output,
//! the capture), and the overall summary.

use guest_harness::com2_bulk::{checksum, BulkRun};
use guest_harness::protocol::{
    Outcome, Summary, TestLine, COM2_GUEST_LINE, GUEST_DAEMON_PREFIX, GUEST_SUMMARY_LABEL,
    GUEST_TEST_PREFIX, HOST_CHECK_PREFIX, TEST_FRAME_ETHERTYPE,
};

use crate::pcap;
use crate::qemu::Ending;

/// Label of the harness's own closing line.
pub const HARNESS_SUMMARY_LABEL: &str = "harness";

/// What the guest programs and /init reported on the console.
#[derive(Debug, Default)]
pub struct GuestOutput {
    pub tests: Vec<TestLine>,
    pub summaries: Vec<Summary>,
    /// /init's end-of-run line per daemon.
    pub daemons: Vec<TestLine>,
}

pub fn parse_console(console: &str) -> GuestOutput {
    let mut output = GuestOutput::default();
    for line in console.lines() {
        if let Some(test) = TestLine::parse(GUEST_TEST_PREFIX, line) {
            output.tests.push(test);
        } else if let Some(summary) = Summary::parse(GUEST_SUMMARY_LABEL, line) {
            output.summaries.push(summary);
        } else if let Some(daemon) = TestLine::parse(GUEST_DAEMON_PREFIX, line) {
            output.daemons.push(daemon);
        }
    }
    output
}

/// A result line for a check made on the host.
pub fn host_check(name: &str, result: Result<(), String>) -> TestLine {
    TestLine {
        prefix: HOST_CHECK_PREFIX.into(),
        name: name.into(),
        outcome: match result {
            Ok(()) => Outcome::Passed,
            Err(reason) => Outcome::Failed(reason),
        },
        elapsed: None,
    }
}

/// QEMU ended by itself, successfully, and the kernel did not panic on the way.
pub fn check_ending(ending: &Ending, console: &str) -> Result<(), String> {
    match ending {
        Ending::TimedOut(after) => Err(format!("timed out after {after:?}; QEMU was killed")),
        Ending::Exited(status) if !status.success() => Err(format!("QEMU exited with {status}")),
        Ending::Exited(_) => match console.lines().find(|line| line.contains("Kernel panic")) {
            Some(panic) => Err(format!("the guest kernel panicked: {}", panic.trim())),
            None => Ok(()),
        },
    }
}

/// Every test program closed with a summary, and the summaries agree with the lines.
pub fn check_summaries(guest: &GuestOutput, test_programs: usize) -> Result<(), String> {
    if guest.summaries.len() != test_programs {
        return Err(format!(
            "expected {test_programs} `{GUEST_SUMMARY_LABEL}:` summary line(s), one per test program, found {}",
            guest.summaries.len()
        ));
    }
    let claimed = guest
        .summaries
        .iter()
        .fold((0, 0), |(p, f), s| (p + s.passed, f + s.failed));
    let passed = guest.tests.iter().filter(|test| test.passed()).count();
    let seen = (passed, guest.tests.len() - passed);
    if claimed != seen {
        return Err(format!(
            "summaries count {} passed, {} failed, but the console has {} ok and {} FAILED lines",
            claimed.0, claimed.1, seen.0, seen.1
        ));
    }
    Ok(())
}

/// Every daemon in `daemons` was still running when the programs had ended.
pub fn check_daemons(guest: &GuestOutput, daemons: &[&str]) -> Result<(), String> {
    for daemon in daemons {
        let line = guest.daemons.iter().find(|line| line.name == *daemon);
        match line.map(|line| &line.outcome) {
            Some(Outcome::Passed) => {}
            Some(Outcome::Failed(reason)) => return Err(format!("daemon {daemon}: {reason}")),
            None => {
                return Err(format!(
                    "no `{GUEST_DAEMON_PREFIX} {daemon}` line: /init did not reach its end"
                ))
            }
        }
    }
    Ok(())
}

/// The line the guest wrote to COM2's transmit register reached QEMU's COM2 output.
pub fn check_com2(com2: &[u8]) -> Result<(), String> {
    let expected = COM2_GUEST_LINE.as_bytes();
    if com2
        .windows(expected.len())
        .any(|window| window == expected)
    {
        Ok(())
    } else {
        Err(format!(
            "COM2 output lacks {COM2_GUEST_LINE:?}; it holds {:?}",
            String::from_utf8_lossy(com2)
        ))
    }
}

/// The guest's bytes of bulk run `run` follow its marker on COM2, all of them, in order.
pub fn check_com2_bulk(com2: &[u8], run: &BulkRun) -> Result<(), String> {
    let marker = run.marker.as_bytes();
    let start = com2
        .windows(marker.len())
        .position(|window| window == marker)
        .ok_or_else(|| format!("COM2 output lacks the marker {:?}", run.marker))?
        + marker.len();
    let got = &com2[start..com2.len().min(start + run.len)];
    let expected = run.guest_bytes();
    if got == expected {
        return Ok(());
    }
    let first_difference = got.iter().zip(&expected).position(|(a, b)| a != b);
    Err(format!(
        "{} of {} bytes after the marker, checksum {:#018x}, expected {:#018x}; \
         first difference at byte {}",
        got.len(),
        run.len,
        checksum(got),
        checksum(&expected),
        first_difference.unwrap_or(got.len())
    ))
}

/// The capture holds exactly `expected`, the guest's test frame.
pub fn check_capture(capture: &[u8], expected: &[u8]) -> Result<(), String> {
    let frames = pcap::frames(capture)?;
    if frames.contains(&expected) {
        return Ok(());
    }
    let ethertype = TEST_FRAME_ETHERTYPE.to_be_bytes();
    let similar = frames
        .iter()
        .find(|frame| frame.get(12..14) == Some(&ethertype[..]));
    Err(match similar {
        Some(frame) => format!(
            "none of the {} captured frames is the guest's test frame; one with its \
             EtherType holds {frame:02x?}, expected {expected:02x?}",
            frames.len()
        ),
        None => format!(
            "none of the {} captured frames is the guest's test frame",
            frames.len()
        ),
    })
}

/// Counts the guest's and the host's result lines together.
pub fn overall(guest_tests: &[TestLine], host_checks: &[TestLine]) -> Summary {
    let all = guest_tests.iter().chain(host_checks);
    let passed = all.clone().filter(|line| line.passed()).count();
    Summary {
        passed,
        failed: all.count() - passed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pcap::tests::capture;
    use crate::qemu::GUEST_MAC;
    use guest_harness::protocol::{parse_mac, test_frame, TEST_FRAME_PAYLOAD};
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;
    use std::time::Duration;

    const PASSING_CONSOLE: &str = "\
[    0.000000] Linux version 6.1.0-56-cloud-amd64
guest: running guest-mmio-dma
[2026-11-21T05:40:00Z INFO  guest_mmio_dma::e1000_driver] STATUS 0x80080783
guest-test e1000-find ... ok (0.120 ms)
guest-test e1000-status-link-up ... ok (0.050 ms)
guest: 2 passed, 0 failed
guest-daemon mmio ... ok
guest-daemon dma ... FAILED: exited during the run
reboot: Power down
";

    fn exited(code: i32) -> Ending {
        Ending::Exited(ExitStatus::from_raw(code << 8))
    }

    #[test]
    fn passing_console_yields_its_lines_and_a_consistent_summary() {
        let guest = parse_console(PASSING_CONSOLE);
        assert_eq!(guest.tests.len(), 2);
        assert_eq!(
            guest.summaries,
            vec![Summary {
                passed: 2,
                failed: 0
            }]
        );
        assert_eq!(check_summaries(&guest, 1), Ok(()));
        assert_eq!(check_ending(&exited(0), PASSING_CONSOLE), Ok(()));
        let checks = [host_check("qemu-powered-off", Ok(()))];
        assert_eq!(
            overall(&guest.tests, &checks),
            Summary {
                passed: 3,
                failed: 0
            }
        );
    }

    #[test]
    fn a_failed_line_fails_the_run() {
        let console = PASSING_CONSOLE
            .replace(
                "link-up ... ok (0.050 ms)",
                "link-up ... FAILED (0.050 ms): link down",
            )
            .replace("2 passed, 0 failed", "1 passed, 1 failed");
        let guest = parse_console(&console);
        assert_eq!(check_summaries(&guest, 1), Ok(()));
        assert_eq!(guest.tests[1].outcome, Outcome::Failed("link down".into()));
        assert_eq!(
            overall(&guest.tests, &[]),
            Summary {
                passed: 1,
                failed: 1
            }
        );
    }

    #[test]
    fn a_missing_summary_is_a_failure() {
        let console = PASSING_CONSOLE.replace("guest: 2 passed, 0 failed\n", "");
        let err = check_summaries(&parse_console(&console), 1).unwrap_err();
        assert!(err.contains("found 0"), "{err}");
        let err = check_summaries(&parse_console(PASSING_CONSOLE), 2).unwrap_err();
        assert!(err.contains("expected 2"), "{err}");
    }

    #[test]
    fn a_summary_that_disagrees_with_the_lines_is_a_failure() {
        let console = PASSING_CONSOLE.replace("2 passed, 0 failed", "3 passed, 0 failed");
        let err = check_summaries(&parse_console(&console), 1).unwrap_err();
        assert!(err.contains("has 2 ok and 0 FAILED"), "{err}");
    }

    #[test]
    fn timeout_bad_exit_and_kernel_panic_are_failures() {
        let err = check_ending(&Ending::TimedOut(Duration::from_secs(90)), "").unwrap_err();
        assert!(err.contains("timed out after 90s"), "{err}");
        assert!(check_ending(&exited(1), PASSING_CONSOLE)
            .unwrap_err()
            .contains("exited"));
        let panicked = "[ 1.0] Kernel panic - not syncing: Attempted to kill init!\n";
        let err = check_ending(&exited(0), panicked).unwrap_err();
        assert!(err.contains("Attempted to kill init"), "{err}");
    }

    #[test]
    fn com2_check_finds_the_guest_line_among_other_bytes() {
        let output = format!("\x00noise{COM2_GUEST_LINE}more");
        assert_eq!(check_com2(output.as_bytes()), Ok(()));
        assert!(check_com2(b"uart driver: hello")
            .unwrap_err()
            .contains("lacks"));
    }

    #[test]
    fn com2_bulk_check_wants_every_byte_after_the_marker() {
        let run = guest_harness::com2_bulk::BULK_RUNS[0];
        let mut com2 = format!("{COM2_GUEST_LINE}{}", run.marker).into_bytes();
        com2.extend(run.guest_bytes());
        com2.extend_from_slice(b"later output");
        assert_eq!(check_com2_bulk(&com2, &run), Ok(()));

        let without_later_output = &com2[..com2.len() - b"later output".len()];
        assert_eq!(check_com2_bulk(without_later_output, &run), Ok(()));
        let start = COM2_GUEST_LINE.len() + run.marker.len();
        let mut lost = com2[..start + 1000].to_vec();
        lost.extend_from_slice(&com2[start + 1001..start + run.len]);
        let err = check_com2_bulk(&lost, &run).unwrap_err();
        assert!(
            err.contains("65535 of 65536 bytes") && err.contains("first difference at byte 1000"),
            "{err}"
        );
        assert!(check_com2_bulk(&com2[..start - 1], &run)
            .unwrap_err()
            .contains("lacks the marker"));
        let other = guest_harness::com2_bulk::BULK_RUNS[1];
        assert!(check_com2_bulk(&com2, &other).is_err());
    }

    #[test]
    fn com2_bulk_check_wants_the_run_s_own_length() {
        let short = guest_harness::com2_bulk::BULK_RUNS
            .into_iter()
            .find(|run| run.len < guest_harness::com2_bulk::BULK_LEN)
            .expect("a replicated run moves fewer bytes");
        let mut com2 = short.marker.as_bytes().to_vec();
        com2.extend(short.guest_bytes());
        com2.extend(short.host_bytes());
        assert_eq!(
            check_com2_bulk(&com2, &short),
            Ok(()),
            "later bytes are not its"
        );
        let cut = &com2[..short.marker.len() + short.len - 1];
        let err = check_com2_bulk(cut, &short).unwrap_err();
        assert!(
            err.starts_with(&format!("{} of {} bytes", short.len - 1, short.len)),
            "{err}"
        );
    }

    #[test]
    fn daemon_check_wants_an_ok_line_for_every_daemon() {
        let guest = parse_console(PASSING_CONSOLE);
        assert_eq!(guest.daemons.len(), 2);
        assert_eq!(check_daemons(&guest, &["mmio"]), Ok(()));
        assert_eq!(
            check_daemons(&guest, &["mmio", "dma"]),
            Err("daemon dma: exited during the run".into())
        );
        let err = check_daemons(&guest, &["romain"]).unwrap_err();
        assert!(err.contains("no `guest-daemon romain` line"), "{err}");
    }

    #[test]
    fn capture_check_wants_the_exact_test_frame() {
        let mac = parse_mac(GUEST_MAC).unwrap();
        let good = test_frame(mac);
        let mut other_mac = good.clone();
        other_mac[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        let mut arp = good.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        let mut longer = good.clone();
        longer.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(check_capture(&capture(&[&arp, &good]), &good), Ok(()));
        let err = check_capture(&capture(&[&arp, &other_mac, b"short"]), &good).unwrap_err();
        assert!(
            err.contains("none of the 3") && err.contains("holds"),
            "{err}"
        );
        let err = check_capture(&capture(&[&longer]), &good).unwrap_err();
        assert!(
            err.contains("none of the 1"),
            "a frame with extra bytes is not it: {err}"
        );
        let mut payload_only = vec![0; 14];
        payload_only.extend_from_slice(TEST_FRAME_PAYLOAD);
        let err = check_capture(&capture(&[&payload_only]), &good).unwrap_err();
        assert!(!err.contains("holds"), "{err}");
        assert!(check_capture(b"", &good).unwrap_err().contains("too short"));
    }
}
