//! `image-init` starts init units as Redox's init does: by name, a scheme
//! daemon waited for until it serves, a oneshot until it ends, a failure
//! reported without stopping the units after it.

use std::fs;
use std::process::Command;

fn unit(cmd: &str, args: &[&str], kind: &str) -> String {
    format!("[unit]\ndescription = \"{cmd}\"\n[service]\ncmd = \"{cmd}\"\nargs = {args:?}\ntype = {kind}\n")
}

#[test]
fn units_start_in_name_order_schemes_are_waited_for_and_a_failure_does_not_stop_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let (units, logs, schemes) = (
        dir.path().join("units"),
        dir.path().join("logs"),
        dir.path().join("schemes"),
    );
    for d in [&units, &logs, &schemes] {
        fs::create_dir(d).unwrap();
    }
    let order = dir.path().join("order");
    let note = |word: &str| format!("echo {word} >>{}", order.display());
    // The daemon takes a while to serve: the oneshot after it must wait.
    let daemon = format!(
        "{}; sleep 0.3; : >\"$SCHEME_DIR/demo\"; exec sleep 5",
        note("daemon")
    );
    fs::write(
        units.join("01_daemon.service"),
        unit("sh", &["-c", &daemon], "{ scheme = \"demo\" }"),
    )
    .unwrap();
    let after = format!("test -e \"$SCHEME_DIR/demo\" && {}", note("after"));
    fs::write(
        units.join("02_after.service"),
        unit("sh", &["-c", &after], "\"oneshot\""),
    )
    .unwrap();
    fs::write(
        units.join("03_fails.service"),
        unit("false", &[], "\"oneshot\""),
    )
    .unwrap();
    fs::write(
        units.join("04_last.service"),
        unit("sh", &["-c", &note("last")], "\"oneshot\""),
    )
    .unwrap();
    fs::write(units.join("README"), "not a unit").unwrap();

    let output = Command::new(env!("CARGO_BIN_EXE_image-init"))
        .args([
            "--units",
            units.to_str().unwrap(),
            "--logs",
            logs.to_str().unwrap(),
        ])
        .env("SCHEME_DIR", &schemes)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        !output.status.success(),
        "a failed unit fails the run: {said}"
    );
    assert_eq!(
        fs::read_to_string(&order).unwrap(),
        "daemon\nafter\nlast\n",
        "{said}"
    );
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines.len(), 4, "{said}");
    assert!(
        lines[0].starts_with("image-init: 01_daemon.service: sh: pid ")
            && lines[0].ends_with("serves demo:"),
        "{said}"
    );
    assert_eq!(lines[1], "image-init: 02_after.service: sh: done");
    assert!(
        lines[2].starts_with("image-init: 03_fails.service: false: FAILED: exit status: 1"),
        "{said}"
    );
    assert!(logs.join("04_last.service.log").exists());
}

#[test]
fn a_daemon_that_ends_before_serving_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let units = dir.path().join("units");
    fs::create_dir(&units).unwrap();
    fs::write(
        units.join("01_gone.service"),
        unit("true", &[], "{ scheme = \"never\" }"),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_image-init"))
        .args([
            "--units",
            units.to_str().unwrap(),
            "--logs",
            dir.path().to_str().unwrap(),
        ])
        .env("SCHEME_DIR", dir.path())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success());
    assert!(
        said.contains("FAILED: true ended (exit status: 0) before serving never:"),
        "{said}"
    );
}
