//! The line protocol between in-guest test programs and the host harness, and the
//! constants both sides must agree on.
//!
//! A test program prints one line per test and closes with a summary:
//!
//! ```text
//! guest-test e1000-status ... ok (0.061 ms)
//! guest-test com2-scratch ... FAILED (0.004 ms): read 0x00, wrote 0x5a
//! guest: 1 passed, 1 failed
//! ```

use std::fmt;
use std::time::Duration;

/// Prefix of a result line printed inside the guest.
pub const GUEST_TEST_PREFIX: &str = "guest-test";
/// Prefix of a result line of a check the harness makes from the host's view.
pub const HOST_CHECK_PREFIX: &str = "host-check";
/// Label of the summary line each in-guest test program closes with.
pub const GUEST_SUMMARY_LABEL: &str = "guest";
/// Prefix of the line `/init` prints per daemon at the end of the run:
/// `guest-daemon mmio ... ok` if it still runs, `... FAILED: <why>` if it died.
pub const GUEST_DAEMON_PREFIX: &str = "guest-daemon";
/// Prefix of a line of a benchmark's report; the harness shows the rest of the line.
pub const GUEST_BENCH_PREFIX: &str = "guest-bench";
/// A guest program asks the host for a receive flood on the e1000 (UDP through
/// QEMU's user network) with this console line, and ends it with the next.
pub const FLOOD_START_LINE: &str = "guest-flood start";
pub const FLOOD_STOP_LINE: &str = "guest-flood stop";

/// Kernel parameter (an environment variable of `/init` and its children) carrying the
/// MAC address given to QEMU's e1000, so the guest checks it without a second copy.
pub const GUEST_MAC_VAR: &str = "GUEST_MAC";
/// Where the guest's driver policy lies; the daemons and the test programs read it.
pub const GUEST_POLICY_PATH: &str = "/etc/guest/policy.toml";
/// The guest policy's rule for the e1000 driver.
pub const E1000_DRIVER_LABEL: &str = "e1000";
/// The guest policy's rule for the COM2 (16550 UART) driver.
pub const UART_DRIVER_LABEL: &str = "uart";

/// The line the guest's uart driver writes to COM2; the host looks for it in QEMU's
/// COM2 output.
pub const COM2_GUEST_LINE: &str = "uart driver: hello host, this line went through mmio:\n";
/// The line the host writes back to COM2 once it has seen [`COM2_GUEST_LINE`].
pub const COM2_HOST_LINE: &str = "host: hello guest, this is the host on COM2\n";

/// EtherType of the test frame the guest transmits (IEEE 802 local experimental).
pub const TEST_FRAME_ETHERTYPE: u16 = 0x88b5;
/// Payload that identifies the test frame in the capture.
pub const TEST_FRAME_PAYLOAD: &[u8] =
    b"e1000 driver: one frame from a dma: buffer, sent through mmio:";
/// Shorter frames are padded to this length (without the frame check sequence).
const MIN_FRAME_LEN: usize = 60;

/// The exact frame the guest transmits and the host expects in the capture: a broadcast
/// from `mac` with the test EtherType and payload, zero-padded to the Ethernet minimum.
pub fn test_frame(mac: [u8; 6]) -> Vec<u8> {
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&mac);
    frame.extend_from_slice(&TEST_FRAME_ETHERTYPE.to_be_bytes());
    frame.extend_from_slice(TEST_FRAME_PAYLOAD);
    frame.resize(frame.len().max(MIN_FRAME_LEN), 0);
    frame
}

/// Parses a MAC address written as six colon-separated hex bytes.
pub fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let invalid = || format!("{text:?} is not a MAC address like 52:54:00:12:34:56");
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut mac {
        let part = parts.next().filter(|p| p.len() == 2).ok_or_else(invalid)?;
        *byte = u8::from_str_radix(part, 16).map_err(|_| invalid())?;
    }
    match parts.next() {
        None => Ok(mac),
        Some(_) => Err(invalid()),
    }
}

/// How a single test ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed(String),
}

/// One result line: `<prefix> <name> ... ok (<ms> ms)` or `... FAILED (<ms> ms): <reason>`.
#[derive(Debug, Clone, PartialEq)]
pub struct TestLine {
    pub prefix: String,
    pub name: String,
    pub outcome: Outcome,
    /// Absent when the line reports something that was not timed (a run-level check).
    pub elapsed: Option<Duration>,
}

impl TestLine {
    pub fn passed(&self) -> bool {
        self.outcome == Outcome::Passed
    }

    /// Parses a result line with the given prefix; `None` if the line is not one.
    pub fn parse(prefix: &str, line: &str) -> Option<TestLine> {
        let rest = line.trim_end().strip_prefix(prefix)?.strip_prefix(' ')?;
        let (name, verdict) = rest.split_once(" ... ")?;
        if name.is_empty() || name.contains(char::is_whitespace) {
            return None;
        }
        let (outcome_word, rest) = match verdict.split_once([' ', ':']) {
            Some((word, _)) => (word, &verdict[word.len()..]),
            None => (verdict, ""),
        };
        let (elapsed, rest) = match rest.strip_prefix(" (") {
            Some(timed) => {
                let (millis, rest) = timed.split_once(" ms)")?;
                let millis: f64 = millis.parse().ok()?;
                (Some(Duration::from_secs_f64(millis / 1000.0)), rest)
            }
            None => (None, rest),
        };
        let outcome = match outcome_word {
            "ok" if rest.is_empty() => Outcome::Passed,
            "FAILED" => Outcome::Failed(rest.strip_prefix(": ").unwrap_or(rest).to_string()),
            _ => return None,
        };
        Some(TestLine {
            prefix: prefix.to_string(),
            name: name.to_string(),
            outcome,
            elapsed,
        })
    }
}

impl fmt::Display for TestLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ... ", self.prefix, self.name)?;
        let word = if self.passed() { "ok" } else { "FAILED" };
        f.write_str(word)?;
        if let Some(elapsed) = self.elapsed {
            write!(f, " ({:.3} ms)", elapsed.as_secs_f64() * 1000.0)?;
        }
        match &self.outcome {
            Outcome::Passed => Ok(()),
            Outcome::Failed(reason) => write!(f, ": {reason}"),
        }
    }
}

/// A closing line: `<label>: <passed> passed, <failed> failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
}

impl Summary {
    pub fn format(&self, label: &str) -> String {
        format!("{label}: {} passed, {} failed", self.passed, self.failed)
    }

    /// Parses a summary line with the given label; `None` if the line is not one.
    pub fn parse(label: &str, line: &str) -> Option<Summary> {
        let counts = line.trim_end().strip_prefix(label)?.strip_prefix(": ")?;
        let (passed, failed) = counts.split_once(", ")?;
        Some(Summary {
            passed: passed.strip_suffix(" passed")?.parse().ok()?,
            failed: failed.strip_suffix(" failed")?.parse().ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(outcome: Outcome, elapsed: Option<Duration>) -> TestLine {
        TestLine {
            prefix: GUEST_TEST_PREFIX.into(),
            name: "e1000-status".into(),
            outcome,
            elapsed,
        }
    }

    #[test]
    fn passed_line_round_trips_with_milliseconds() {
        let passed = line(Outcome::Passed, Some(Duration::from_micros(61)));
        let text = passed.to_string();
        assert_eq!(text, "guest-test e1000-status ... ok (0.061 ms)");
        assert_eq!(TestLine::parse(GUEST_TEST_PREFIX, &text), Some(passed));
    }

    #[test]
    fn failed_line_keeps_a_reason_with_colons_and_parentheses() {
        let failed = line(
            Outcome::Failed("STATUS (0x8) = 0x0: link down".into()),
            Some(Duration::from_millis(2)),
        );
        let text = failed.to_string();
        assert_eq!(
            text,
            "guest-test e1000-status ... FAILED (2.000 ms): STATUS (0x8) = 0x0: link down"
        );
        assert_eq!(TestLine::parse(GUEST_TEST_PREFIX, &text), Some(failed));
    }

    #[test]
    fn untimed_lines_round_trip() {
        for outcome in [Outcome::Passed, Outcome::Failed("no summary".into())] {
            let untimed = line(outcome, None);
            let parsed = TestLine::parse(GUEST_TEST_PREFIX, &untimed.to_string());
            assert_eq!(parsed, Some(untimed));
        }
    }

    #[test]
    fn console_carriage_returns_are_ignored() {
        let parsed = TestLine::parse(GUEST_TEST_PREFIX, "guest-test a ... ok (1.000 ms)\r");
        assert!(parsed.is_some_and(|l| l.passed() && l.name == "a"));
    }

    #[test]
    fn other_lines_are_not_result_lines() {
        for text in [
            "[    0.000000] Linux version 6.1.0",
            "guest-test",
            "guest-test ... ok",
            "guest-test a ... maybe",
            "guest-test a ... ok trailing words",
            "guest-test a ... ok (soon ms)",
            "guest-testx a ... ok",
            "host-check a ... ok",
        ] {
            assert_eq!(TestLine::parse(GUEST_TEST_PREFIX, text), None, "{text}");
        }
    }

    #[test]
    fn mac_addresses_parse_and_malformed_ones_are_errors() {
        assert_eq!(
            parse_mac("52:54:00:12:34:5f"),
            Ok([0x52, 0x54, 0x00, 0x12, 0x34, 0x5f])
        );
        for bad in [
            "",
            "52:54:00:12:34",
            "52:54:00:12:34:56:78",
            "52:54:00:12:34:5g",
            "5:54:00:12:34:56",
        ] {
            let err = parse_mac(bad).unwrap_err();
            assert!(err.contains("not a MAC address"), "{bad}: {err}");
        }
    }

    #[test]
    fn test_frame_is_a_broadcast_from_the_mac_with_the_test_payload() {
        let mac = [0x52, 0x54, 0, 0x12, 0x34, 0x56];
        let frame = test_frame(mac);
        assert_eq!(frame[..6], [0xff; 6]);
        assert_eq!(frame[6..12], mac);
        assert_eq!(frame[12..14], [0x88, 0xb5]);
        assert!(frame[14..].starts_with(TEST_FRAME_PAYLOAD));
        assert!(frame.len() >= MIN_FRAME_LEN);
        assert!(frame[14 + TEST_FRAME_PAYLOAD.len()..]
            .iter()
            .all(|&b| b == 0));
    }

    #[test]
    fn summary_round_trips_and_rejects_other_lines() {
        let summary = Summary {
            passed: 9,
            failed: 1,
        };
        let text = summary.format(GUEST_SUMMARY_LABEL);
        assert_eq!(text, "guest: 9 passed, 1 failed");
        assert_eq!(Summary::parse(GUEST_SUMMARY_LABEL, &text), Some(summary));
        for other in [
            "guest: 9 passed",
            "guest: nine passed, 1 failed",
            "harness: 9 passed, 1 failed",
            "guest: running tests",
        ] {
            assert_eq!(Summary::parse(GUEST_SUMMARY_LABEL, other), None, "{other}");
        }
    }
}
