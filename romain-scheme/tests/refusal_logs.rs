//! What `romain:` logs when it refuses a path or a command a client chose:
//! one short line per refusal, however long what the client sent.
//!
//! The logger is global to the process, so this file holds one test and
//! captures every record, at every level.

use redox_scheme::scheme::SchemeSync;
use redox_scheme::OpenResult;
use romain_scheme::{RomainScheme, Supervisor};
use scheme_runtime::caller_ctx;
use syscall::error::{EINVAL, ENOENT};

/// Longest line a refusal may log: the message and a clipped path or command,
/// with room to spare.
const MAX_LINE: usize = 512;
const OWNER: u32 = 1000;

/// Checks that what was logged since the last call is one short line.
fn one_short_line(what: &str) {
    let lines = scheme_runtime::logging::take_captured();
    assert_eq!(
        lines.len(),
        1,
        "one line per refusal of {what}: {lines:.300?}"
    );
    let line = &lines[0];
    assert!(
        line.len() <= MAX_LINE,
        "{} bytes for {what}: {line:.300}",
        line.len()
    );
    assert!(line.contains(" bytes)"), "says what it clipped: {line}");
    assert!(!line.contains('\n'), "{line}");
}

#[test]
fn a_refused_path_or_command_of_64_kib_logs_one_short_line() {
    scheme_runtime::logging::capture();
    let registry = "[driver.absent]\nbinary = \"/nonexistent/driver\"\n"
        .parse()
        .unwrap();
    let mut scheme = RomainScheme::new(
        Supervisor::new(registry, Some("/nonexistent/romain".into())),
        OWNER,
    );
    let root = scheme.scheme_root().unwrap();
    let owner = caller_ctx(7, OWNER, OWNER);
    let long = "x".repeat(64 * 1024);

    for (path, expected) in [
        (long.clone(), ENOENT),
        (format!("absent?{long}"), EINVAL),
        (format!("absent?replicas={long}"), EINVAL),
        (format!("absent?attach&a\n{long}"), EINVAL),
    ] {
        scheme_runtime::logging::take_captured();
        let refused = scheme.openat(root, &path, 0, 0, &owner).unwrap_err();
        assert_eq!(refused.errno, expected, "{path:.80}");
        one_short_line(&format!("{path:.80}"));
    }

    let Ok(OpenResult::ThisScheme { number: group, .. }) =
        scheme.openat(root, "absent?replicas=1", 0, 0, &owner)
    else {
        panic!("the group did not open");
    };
    scheme_runtime::logging::take_captured();
    let command = format!("{long} 1");
    let refused = scheme
        .write(group, command.as_bytes(), 0, 0, &owner)
        .unwrap_err();
    assert_eq!(refused.errno, EINVAL);
    one_short_line("a command");
}
