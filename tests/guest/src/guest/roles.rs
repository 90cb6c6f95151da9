//! Parts of a test program that must run as another user (a driver's uid, or one the
//! policy does not know): the program runs itself again as `<program> role <name>`
//! under that uid and gid, and the child's result lines join the parent's report.

use std::io::{self, BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::guest::report::{Report, StepResult};
use crate::protocol::{TestLine, GUEST_TEST_PREFIX};

/// The subcommand a program that has roles runs a role with.
pub const ROLE_SUBCOMMAND: &str = "role";

/// Starts this program's role `role` as `uid` (also its gid, with no supplementary
/// groups), its standard output piped to the caller.
pub fn spawn(role: &str, uid: u32) -> io::Result<Child> {
    Command::new(std::env::current_exe()?)
        .args([ROLE_SUBCOMMAND, role])
        .uid(uid)
        .gid(uid)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
}

/// Runs role `role` as `uid` to its end. Its result lines go into `report` as they
/// come, its other output is passed on, and a last line `role-<role>-completed` says
/// whether it ran and exited successfully (a role that crashes fails that line).
pub fn run(report: &mut Report, role: &str, uid: u32) {
    let started = Instant::now();
    let completed = run_child(role, uid, |line| report.adopt(line));
    report.conclude(&format!("role-{role}-completed"), started, completed);
}

fn run_child(role: &str, uid: u32, mut adopt: impl FnMut(TestLine)) -> StepResult<()> {
    let mut child = spawn(role, uid)?;
    let output = child
        .stdout
        .take()
        .ok_or("the role's output is not piped")?;
    for line in BufReader::new(output).lines() {
        let line = line?;
        match TestLine::parse(GUEST_TEST_PREFIX, &line) {
            Some(result) => adopt(result),
            None => println!("{line}"),
        }
    }
    let status = child.wait()?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("role {role} (uid {uid}) ended with {status}").into())
    }
}
