//! The supervisor end to end: `romain serve` in its own process and scheme
//! directory, `romain-testdriver` as the supervised driver, clients speaking the
//! real host transport; and replicated groups: `romain:testbed?replicas=3` runs
//! the replication engine with three replicas of the testbed scheme daemon, whose
//! scheme clients use through the engine while faults are injected through the
//! group's handle; and groups run as the registry's user (checked as root; the
//! refusal to switch users without root is checked either way).
#![cfg(target_os = "linux")]

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use scheme_runtime::SCHEME_DIR_ENV;
use syscall::error::{EINVAL, ENODEV, ENOENT, EOPNOTSUPP, ESRCH, ESTALE};
use syscall::flag::{O_RDONLY, O_RDWR};

#[path = "common/supervised.rs"]
mod supervised;

use supervised::{errno, fields, read_text, wait_for, Supervised, ROMAIN};

const TEST_DRIVER: &str = env!("CARGO_BIN_EXE_romain-testdriver");
/// The heartbeat period of `alive`.
const PERIOD: Duration = Duration::from_millis(200);
/// Scheduling slack on a loaded two-core machine.
const SLACK: Duration = Duration::from_millis(300);
/// Long enough for three traced replicas to start on a loaded machine.
const START_LIMIT: Duration = Duration::from_secs(30);
/// The user `asuser` and `asuser-testbed` run as: nobody's on a test machine.
const DRIVER_USER: u32 = 4321;

/// `alive` serves a scheme and answers heartbeats; `crashy` exits at once;
/// `testbed` is the testbed scheme (a driver that needs no device) for replication
/// (the engine's watchdog at 500 ms, a heartbeat through the engine); `alone`
/// serves it under another name, for a group of one; `asuser` and
/// `asuser-testbed` run as [`DRIVER_USER`].
fn registry(dir: &Path) -> String {
    let testbed = testbed_binary();
    format!(
        r#"
        [driver.alive]
        binary = "{TEST_DRIVER}"
        args = ["serve", "alive-scheme"]
        heartbeat = "alive-scheme:"
        period_ms = {period}
        missed_periods = 2
        recovery_script = "{script}"

        [driver.warm]
        binary = "{TEST_DRIVER}"
        args = ["serve", "warm-scheme"]
        heartbeat = "warm-scheme:"
        period_ms = {period}
        missed_periods = 2
        standby = true

        [driver.crashy]
        binary = "{TEST_DRIVER}"
        args = ["exit", "3"]
        period_ms = 100
        backoff_cap_periods = 4

        [driver.testbed]
        binary = "{testbed}"
        args = ["serve"]
        env = {{ RUST_LOG = "warn" }}
        heartbeat = "testbed:"
        period_ms = 500
        missed_periods = 6
        watchdog_ms = 500

        [driver.alone]
        binary = "{testbed}"
        args = ["serve", "--name", "alone"]

        [driver.asuser]
        binary = "{TEST_DRIVER}"
        args = ["serve", "asuser-scheme"]
        period_ms = 100
        backoff_cap_periods = 4
        uid = {DRIVER_USER}
        gid = {DRIVER_USER}

        [driver.asuser-testbed]
        binary = "{testbed}"
        args = ["serve", "--name", "asuser-testbed"]
        watchdog_ms = 500
        uid = {DRIVER_USER}
        gid = {DRIVER_USER}
"#,
        period = PERIOD.as_millis(),
        script = dir.join("recover.sh").display(),
        testbed = testbed.display(),
    )
}

/// The testbed scheme daemon, built with the workspace (not by this package).
fn testbed_binary() -> PathBuf {
    // Integration tests run from target/<profile>/deps; the workspace's binaries
    // sit one level up.
    let exe = std::env::current_exe().unwrap();
    let binary = exe.parent().unwrap().parent().unwrap().join("testbed");
    assert!(
        binary.exists(),
        "{} is missing: build the workspace's binaries first (cargo test --workspace does)",
        binary.display()
    );
    binary
}

/// What these tests ask of the daemon beyond the shared [`Supervised`].
trait Supervision {
    fn start() -> Self;
    /// Starts the daemon as `user` (uid and gid) if given, else as this process,
    /// with the recovery script the registry names: it appends its arguments to
    /// `recovery.log` and the restart-to-serving times it was given to
    /// `serving.log`.
    fn start_as(user: Option<u32>) -> Self;
    fn open_errno(&self, path: &str) -> i32;
    fn listing(&self) -> String;
    fn recovery_log(&self) -> String;
    /// The restart-to-serving times the recovery script was given, a line a run.
    fn serving_log(&self) -> String;
    /// Proves the daemon is alive and still answers.
    fn assert_serving(&mut self);
    /// An engine counter, once the engine reports it.
    fn counter(&self, driver: &str, key: &str) -> Option<u64>;
    fn replica_pids(&self, driver: &str) -> Vec<String>;
    /// Waits until the testbed scheme answers through the engine.
    fn wait_for_testbed(&self);
    /// Puts a message through a queue of the testbed scheme and asks it who
    /// this is: every request goes through every replica.
    fn assert_testbed_answers(&self, message: &str);
    /// Runs `romain ARGS` as a client of this daemon.
    fn cli(&self, args: &[&str], configure: impl FnOnce(&mut Command)) -> Output;
    /// Each `romain ARGS` fails and says its message.
    fn cli_refuses(&self, refused: &[(&[&str], &str)]);
}

impl Supervision for Supervised {
    fn start() -> Self {
        Self::start_as(None)
    }

    fn start_as(user: Option<u32>) -> Self {
        Supervised::serve(user, |dir| {
            let script = dir.join("recover.sh");
            fs::write(
                &script,
                format!(
                    "#!/bin/sh\necho \"$@\" >> {}\n\
                     echo \"last=${{ROMAIN_RESTART_TO_SERVING_LAST_MS:-unset}} \
                     mean=${{ROMAIN_RESTART_TO_SERVING_MEAN_MS:-unset}}\" >> {}\n",
                    dir.join("recovery.log").display(),
                    dir.join("serving.log").display()
                ),
            )
            .unwrap();
            fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
            registry(dir)
        })
    }

    fn open_errno(&self, path: &str) -> i32 {
        errno(self.open(path, O_RDONLY)).unwrap_or_else(|| panic!("{path}: no errno"))
    }

    fn listing(&self) -> String {
        read_text(&self.open("romain:", O_RDONLY).unwrap())
    }

    fn recovery_log(&self) -> String {
        fs::read_to_string(self.dir.join("recovery.log")).unwrap_or_default()
    }

    fn serving_log(&self) -> String {
        fs::read_to_string(self.dir.join("serving.log")).unwrap_or_default()
    }

    fn assert_serving(&mut self) {
        assert!(
            matches!(self.daemon.try_wait(), Ok(None)),
            "the daemon died"
        );
        assert_eq!(self.open_errno("romain:nosuch"), ENOENT);
        self.listing();
    }

    fn counter(&self, driver: &str, key: &str) -> Option<u64> {
        self.status(driver)[key].parse().ok()
    }

    fn replica_pids(&self, driver: &str) -> Vec<String> {
        self.status(driver)["replica_pids"]
            .split(',')
            .map(str::to_owned)
            .collect()
    }

    fn wait_for_testbed(&self) {
        wait_for("the testbed scheme", START_LIMIT, || {
            self.open("testbed:stats", O_RDONLY).ok()
        });
    }

    fn assert_testbed_answers(&self, message: &str) {
        let queue = self
            .open(&format!("testbed:queue/{message}"), O_RDWR)
            .unwrap();
        assert_eq!(queue.write(message.as_bytes()).unwrap(), message.len());
        let mut buf = [0u8; 64];
        let n = queue.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], message.as_bytes());
        let whoami = read_text(&self.open("testbed:whoami", O_RDONLY).unwrap());
        assert!(
            whoami.starts_with(&format!("pid={} ", std::process::id())),
            "the replicas see the caller: {whoami:?}"
        );
    }

    fn cli(&self, args: &[&str], configure: impl FnOnce(&mut Command)) -> Output {
        let mut command = Command::new(ROMAIN);
        command
            .args(args)
            .env(SCHEME_DIR_ENV, self.schemes())
            .env("RUST_LOG", "warn");
        configure(&mut command);
        command.stdin(Stdio::null()).output().unwrap()
    }

    fn cli_refuses(&self, refused: &[(&[&str], &str)]) {
        for (args, message) in refused {
            let output = self.cli(args, |_| {});
            assert!(
                !output.status.success() && said(&output).contains(message),
                "{args:?}: {}",
                said(&output)
            );
        }
    }
}

/// What a `romain` command printed on standard error.
fn said(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Whether `pid` still names a process (a zombie counts).
/// The nice value of `pid` (field 19 of `/proc/<pid>/stat`).
fn nice(pid: u32) -> i32 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after_name = stat.rsplit_once(") ").unwrap().1;
    after_name.split(' ').nth(16).unwrap().parse().unwrap()
}

fn exists(pid: u32) -> bool {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

/// Whether `pid` names a process that has not ended (a zombie has).
fn running(pid: &str) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat.rsplit(')').next().unwrap_or("").starts_with(" Z"))
}

/// Milliseconds of a `last_fault_at`/`next_restart_at` value.
fn unix_ms(value: &str) -> u64 {
    let (secs, millis) = value
        .split_once('.')
        .unwrap_or_else(|| panic!("not a time: {value:?}"));
    secs.parse::<u64>().unwrap() * 1000 + millis.parse::<u64>().unwrap()
}

/// The real, effective, saved and file-system user and group ids of `pid`, as its
/// `Uid:` and `Gid:` lines in /proc give them.
fn ids(pid: &str) -> (String, String) {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = |key: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} line for pid {pid}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    (line("Uid:"), line("Gid:"))
}

#[test]
fn a_killed_driver_comes_back_counted_and_a_healthy_one_is_left_alone() {
    let mut romain = Supervised::start();
    // The group outlives the handle that started it.
    romain
        .open("romain:alive?replicas=1", O_RDONLY)
        .unwrap()
        .close()
        .unwrap();
    let first = romain.wait_for_new_pid("alive", None, Duration::from_secs(3));
    let status = romain.status("alive");
    assert_eq!(
        (status["restarts"].as_str(), status["last_fault"].as_str()),
        ("0", "none")
    );
    assert_eq!(status["heartbeat"], "alive-scheme:");

    assert_eq!(romain.command("alive", "kill 0\n").unwrap(), 7);
    let second = romain.wait_for_new_pid("alive", Some(first), Duration::from_secs(3));
    assert!(!exists(first), "the killed process was reaped");
    let status = romain.status("alive");
    assert_eq!(status["restarts"], "1");
    assert_eq!(status["repetition"], "1");
    assert_eq!(status["last_fault"], "killed");
    assert_eq!(status["last_fault_detail"], "killed by command");
    assert_ne!(status["last_fault_at"], "none");
    assert_eq!(status["next_restart_at"], "none");
    wait_for("the recovery script", Duration::from_secs(3), || {
        (romain.recovery_log() == "alive killed 1\n").then_some(())
    });

    // Three heartbeat periods later the answering driver is still the same one.
    std::thread::sleep(PERIOD * 3);
    let status = romain.status("alive");
    assert_eq!(
        (status["pids"].as_str(), status["restarts"].as_str()),
        (second.to_string().as_str(), "1")
    );
    romain.assert_serving();
}

/// A restart-to-serving time in the status: a positive number of milliseconds.
fn serving_ms(value: &str) -> f64 {
    let ms: f64 = value
        .parse()
        .unwrap_or_else(|_| panic!("{value:?} is no time"));
    assert!(ms > 0.0, "{value}");
    ms
}

#[test]
fn a_killed_drivers_clients_get_estale_reopen_on_its_successor_and_the_restart_is_timed() {
    let romain = Supervised::start();
    romain.open("romain:alive", O_RDONLY).unwrap();
    let first = romain.wait_for_new_pid("alive", None, Duration::from_secs(3));
    let mut client = wait_for("the driver to serve", Duration::from_secs(3), || {
        romain.open("alive-scheme:client", O_RDONLY).ok()
    });
    let status = romain.status("alive");
    assert_eq!(status["generation"], "1");
    assert_eq!(status["restart_to_serving_last_ms"], "none");
    assert_eq!(status["restart_to_serving_count"], "0");
    // The driver answers (it has nothing to read without `remember`).
    let errno = |result: io::Result<usize>| result.unwrap_err().raw_os_error();
    assert_eq!(errno(client.read(&mut [0; 16])), Some(EINVAL));

    romain.command("alive", "kill 0").unwrap();
    romain.wait_for_new_pid("alive", Some(first), Duration::from_secs(3));
    assert_eq!(errno(client.read(&mut [0; 16])), Some(ESTALE));
    client.reopen(Duration::from_secs(3)).unwrap();
    assert_eq!(
        errno(client.read(&mut [0; 16])),
        Some(EINVAL),
        "the successor answers the reopened handle"
    );
    let status = wait_for("the restart to be timed", Duration::from_secs(3), || {
        let status = romain.status("alive");
        (status["restart_to_serving_count"] == "1").then_some(status)
    });
    assert_eq!(status["generation"], "2");
    let last = serving_ms(&status["restart_to_serving_last_ms"]);
    assert_eq!(serving_ms(&status["restart_to_serving_mean_ms"]), last);
    // The script of the first fault ran before any restart was timed.
    wait_for("the recovery script", Duration::from_secs(3), || {
        (romain.serving_log() == "last=unset mean=unset\n").then_some(())
    });

    let second = romain.wait_for_new_pid("alive", None, Duration::from_secs(3));
    romain.command("alive", "kill 0").unwrap();
    romain.wait_for_new_pid("alive", Some(second), Duration::from_secs(3));
    let status = wait_for("the second restart", Duration::from_secs(3), || {
        let status = romain.status("alive");
        (status["restart_to_serving_count"] == "2").then_some(status)
    });
    assert_eq!(status["generation"], "3");
    serving_ms(&status["restart_to_serving_last_ms"]);
    let mean = serving_ms(&status["restart_to_serving_mean_ms"]);
    assert!(mean >= last.min(serving_ms(&status["restart_to_serving_last_ms"])));
    // The second fault's script is told the first restart's time.
    wait_for("the second recovery script", Duration::from_secs(3), || {
        let log = romain.serving_log();
        let second = log.lines().nth(1)?;
        (second == format!("last={last:.1} mean={last:.1}")).then_some(())
    });
}

#[test]
fn a_standby_waits_takes_over_when_the_driver_dies_and_goes_with_the_group() {
    let romain = Supervised::start();
    romain.open("romain:warm", O_RDONLY).unwrap();
    let first = romain.wait_for_new_pid("warm", None, Duration::from_secs(3));
    let standby =
        |romain: &Supervised| -> Option<u32> { romain.status("warm")["standby_pid"].parse().ok() };
    let waiting = wait_for("a standby", Duration::from_secs(5), || standby(&romain));
    assert_ne!(waiting, first);
    assert!(exists(waiting), "the standby runs");
    let root = nix::unistd::geteuid().is_root();
    if root {
        assert_eq!(nice(waiting), 10, "a standby starts at a low priority");
    }
    // It holds nothing yet: the scheme is the first process's alone.
    let mut client = romain.open("warm-scheme:client", O_RDONLY).unwrap();

    romain.command("warm", "kill 0").unwrap();
    let second = romain.wait_for_new_pid("warm", Some(first), Duration::from_secs(3));
    assert_eq!(second, waiting, "the standby took over");
    assert_eq!(
        nice(second),
        0,
        "a driver that serves has the usual priority"
    );
    client.reopen(Duration::from_secs(3)).unwrap();
    let status = wait_for("the restart to be timed", Duration::from_secs(3), || {
        let status = romain.status("warm");
        (status["restart_to_serving_count"] == "1").then_some(status)
    });
    assert_eq!(status["generation"], "2");
    assert_eq!(status["restarts"], "1");
    let next = wait_for("the next standby", Duration::from_secs(5), || {
        standby(&romain)
    });
    assert!(next != first && next != second, "a fresh standby: {next}");

    romain.command("warm", "down").unwrap();
    wait_for("the group down", Duration::from_secs(3), || {
        (romain.status("warm")["state"] == "down").then_some(())
    });
    assert!(!exists(next), "the standby went with the group");
    assert_eq!(romain.status("warm")["standby_pid"], "none");
}

#[test]
fn a_driver_that_exits_at_once_is_backed_off() {
    let mut romain = Supervised::start();
    let start = Instant::now();
    romain.open("romain:crashy", O_RDONLY).unwrap();
    // The delay of each backoff, read from the status while it waits.
    let mut delays = BTreeMap::new();
    wait_for("five faults in a row", Duration::from_secs(5), || {
        let status = romain.status("crashy");
        if status["state"] == "backoff" {
            let delay = unix_ms(&status["next_restart_at"]) - unix_ms(&status["last_fault_at"]);
            delays.insert(status["repetition"].parse::<u32>().unwrap(), delay);
        }
        delays.contains_key(&5).then_some(())
    });
    let elapsed = start.elapsed();
    // Period 100 ms, cap 4 periods: 1, 2, 4, 4 periods after faults 2 to 5.
    for (repetition, expected) in [(2, 100), (3, 200), (4, 400), (5, 400)] {
        let delay = delays[&repetition];
        assert!(
            delay.abs_diff(expected) <= 15,
            "fault {repetition}: delay {delay} ms, want {expected}: {delays:?}"
        );
    }
    assert!(
        elapsed >= Duration::from_millis(700),
        "five faults within {elapsed:?}: no backoff"
    );
    let status = romain.status("crashy");
    assert_eq!(status["last_fault"], "exit");
    assert_eq!(status["last_fault_detail"], "exited with status 3");
    assert!(
        status["restarts"].parse::<u32>().unwrap() <= 5,
        "{status:?}"
    );
    romain.assert_serving();
}

#[test]
fn a_stopped_driver_is_caught_by_the_heartbeat() {
    let mut romain = Supervised::start();
    romain.open("romain:alive", O_RDONLY).unwrap();
    let hung = romain.wait_for_new_pid("alive", None, Duration::from_secs(3));
    std::thread::sleep(PERIOD);

    let stopped_at = Instant::now();
    romain.command("alive", "stop 0").unwrap();
    romain.wait_for_new_pid("alive", Some(hung), PERIOD * 2 + SLACK * 2);
    let detected = stopped_at.elapsed();
    assert!(
        detected <= PERIOD * 2 + SLACK,
        "replaced after {detected:?}"
    );
    assert!(
        detected >= PERIOD / 2,
        "replaced after {detected:?}, before any heartbeat could be missed"
    );
    assert!(!exists(hung), "the hung process was killed and reaped");
    let status = romain.status("alive");
    assert_eq!(status["last_fault"], "hang");
    assert_eq!(
        status["last_fault_detail"],
        "hung: no heartbeat reply for 2 periods"
    );
    assert_eq!(status["restarts"], "1");
    wait_for("the recovery script", Duration::from_secs(3), || {
        (romain.recovery_log() == "alive hang 1\n").then_some(())
    });
    romain.assert_serving();
}

#[test]
fn down_stops_the_group_for_good() {
    let mut romain = Supervised::start();
    let handle = romain.open("romain:alive", O_RDWR).unwrap();
    let pid = romain.wait_for_new_pid("alive", None, Duration::from_secs(3));
    handle.write(b"down").unwrap();
    wait_for("the group to go down", Duration::from_secs(3), || {
        (romain.status("alive")["state"] == "down").then_some(())
    });
    assert!(!exists(pid), "the process was killed and reaped");
    assert_eq!(
        errno(romain.open("alive-scheme:client", O_RDONLY)),
        Some(ENODEV),
        "a group that is down holds its scheme no more: an open fails at once"
    );

    std::thread::sleep(PERIOD * 3);
    let status = romain.status("alive");
    assert_eq!(
        (status["state"].as_str(), status["pids"].as_str()),
        ("down", "")
    );
    assert_eq!(
        (status["restarts"].as_str(), status["last_fault"].as_str()),
        ("0", "none")
    );
    assert_eq!(
        romain.listing(),
        "driver=alive state=down replicas=1 pids= restarts=0\n"
    );
    let errno = |result: io::Result<usize>| result.unwrap_err().raw_os_error();
    assert_eq!(errno(handle.write(b"kill 0")), Some(ESRCH));
    assert_eq!(errno(handle.write(b"restart")), Some(ESRCH));
    assert_eq!(handle.write(b"down").unwrap(), 4, "down again is no error");
    assert!(romain.recovery_log().is_empty(), "going down is no fault");

    // Opening it again starts a fresh group.
    romain.open("romain:alive", O_RDONLY).unwrap();
    let again = romain.wait_for_new_pid("alive", None, Duration::from_secs(3));
    assert_ne!(again, pid);
    assert_eq!(romain.status("alive")["restarts"], "0");

    // Up right after down, whether or not the old process is gone yet, runs it.
    romain.command("alive", "down").unwrap();
    romain.open("romain:alive", O_RDONLY).unwrap();
    romain.wait_for_new_pid("alive", Some(again), Duration::from_secs(3));
    romain.assert_serving();
}

#[test]
fn an_open_while_the_driver_is_down_waits_for_the_successor_instead_of_failing() {
    let romain = Supervised::start();
    romain.open("romain:alive", O_RDONLY).unwrap();
    let first = romain.wait_for_new_pid("alive", None, Duration::from_secs(3));
    // A second fault in a row waits a period before the restart.
    romain.command("alive", "kill 0").unwrap();
    let second = romain.wait_for_new_pid("alive", Some(first), Duration::from_secs(3));
    romain.command("alive", "kill 0").unwrap();
    wait_for("the backoff", Duration::from_secs(3), || {
        (romain.status("alive")["state"] == "backoff").then_some(())
    });
    assert!(!exists(second), "no process serves the scheme now");

    let client = romain
        .open("alive-scheme:client", O_RDONLY)
        .expect("the open waits for the successor");
    let third = romain.wait_for_new_pid("alive", Some(second), Duration::from_secs(3));
    assert_ne!(third, first);
    let errno = |result: io::Result<usize>| result.unwrap_err().raw_os_error();
    assert_eq!(
        errno(client.read(&mut [0; 16])),
        Some(EINVAL),
        "the successor answers the handle opened while none ran"
    );
    let name = romain.schemes().join("alive-scheme");
    assert!(name.exists(), "the name stays while the group is up");
}

#[test]
fn restart_replaces_the_process_without_a_fault() {
    let mut romain = Supervised::start();
    romain.open("romain:alive", O_RDONLY).unwrap();
    let pid = romain.wait_for_new_pid("alive", None, Duration::from_secs(3));
    romain.command("alive", "restart").unwrap();
    romain.wait_for_new_pid("alive", Some(pid), Duration::from_secs(3));
    let status = romain.status("alive");
    assert_eq!(
        (status["restarts"].as_str(), status["last_fault"].as_str()),
        ("1", "none")
    );
    romain.assert_serving();
}

#[test]
fn bad_opens_and_commands_are_refused_and_the_daemon_goes_on() {
    let mut romain = Supervised::start();
    assert_eq!(romain.open_errno("romain:nosuch"), ENOENT);
    assert_eq!(romain.open_errno("romain:nosuch?replicas=1"), ENOENT);
    for bad in [
        "alive?replicas=0",
        "alive?replicas=two",
        "alive?voters=3",
        "alive?",
        "?replicas=1",
    ] {
        assert_eq!(romain.open_errno(&format!("romain:{bad}")), EINVAL, "{bad}");
    }
    assert_eq!(romain.open_errno("romain:alive?attach"), ESRCH);
    assert!(romain.listing().is_empty(), "nothing was started");

    romain.open("romain:alive?replicas=1", O_RDONLY).unwrap();
    romain.wait_for_new_pid("alive", None, Duration::from_secs(3));
    assert_eq!(romain.open_errno("romain:alive?replicas=2"), EINVAL);
    assert_eq!(
        romain.open_errno("romain:alive?replicas=3"),
        EINVAL,
        "attaching with another N"
    );
    romain.open("romain:alive?replicas=1", O_RDONLY).unwrap();

    for bad in ["explode", "kill", "kill 1", "kill x", "stop 0 0", ""] {
        let error = romain.command("alive", bad).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(EINVAL), "{bad:?}");
    }
    // A group of one has no replication engine to inject faults with.
    for engine_only in ["hang 0", "flip 0 reg rax 1", "scrub"] {
        let error = romain.command("alive", engine_only).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(EOPNOTSUPP), "{engine_only:?}");
    }
    let root = romain.open("romain:", O_RDWR).unwrap();
    assert_eq!(
        root.write(b"down").unwrap_err().raw_os_error(),
        Some(EINVAL)
    );
    assert!(
        romain
            .log()
            .contains("bad command: unknown command \"explode\""),
        "{}",
        romain.log()
    );

    let status = romain.status("alive");
    assert_eq!(
        (status["state"].as_str(), status["restarts"].as_str()),
        ("running", "0")
    );
    romain.assert_serving();
}

#[test]
fn the_command_line() {
    let mut romain = Supervised::start();
    let text = |output: &Output| String::from_utf8_lossy(&output.stdout).into_owned();

    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["up", "--help"],
        &["status", "--help"],
        &["down", "--help"],
        &["inject", "--help"],
    ] {
        let output = romain.cli(args, |_| {});
        assert!(
            output.status.success() && text(&output).contains("Usage: romain"),
            "{args:?}"
        );
    }

    let up = romain.cli(&["up", "alive", "--replicas", "1"], |_| {});
    assert!(up.status.success(), "{}", said(&up));
    assert!(text(&up).starts_with("driver=alive\n"), "{}", text(&up));
    let status = romain.cli(&["status", "alive"], |_| {});
    assert!(
        fields(&text(&status))["state"] == "running",
        "{}",
        text(&status)
    );
    let listing = romain.cli(&["status"], |_| {});
    assert!(
        text(&listing).starts_with("driver=alive state=running replicas=1 pids="),
        "{}",
        text(&listing)
    );

    let refused = [
        (
            &["up", "alive", "--replicas", "3"][..],
            "alive: request refused as invalid",
        ),
        (&["up", "nosuch"], "no driver \"nosuch\" in the registry"),
        (&["status", "crashy"], "crashy is not running"),
        (&["down", "crashy"], "crashy is not running"),
        (&["up", "a/b"], "\"a/b\" is not a driver name"),
    ];
    romain.cli_refuses(&refused);
    if nix::unistd::geteuid().is_root() {
        let output = romain.cli(&["up", "crashy"], |command| {
            command.uid(4321);
        });
        assert!(
            said(&output).contains("only root or the supervisor's user"),
            "{}",
            said(&output)
        );
        assert_eq!(
            romain.open_errno("romain:crashy?attach"),
            ESRCH,
            "a stranger started nothing"
        );
    } else {
        eprintln!("not root: starting a group as another user is not checked");
    }

    let down = romain.cli(&["down", "alive"], |_| {});
    assert!(down.status.success(), "{}", said(&down));
    assert!(
        ["stopping", "down"].contains(&fields(&text(&down))["state"].as_str()),
        "{}",
        text(&down)
    );

    let bad_registry = Command::new(ROMAIN)
        .args(["serve", "--registry", "/nonexistent/drivers.toml"])
        .output()
        .unwrap();
    assert!(!bad_registry.status.success());
    assert!(said(&bad_registry).contains("cannot read registry /nonexistent/drivers.toml"));

    let no_daemon = Command::new(ROMAIN)
        .args(["status"])
        .env(SCHEME_DIR_ENV, romain.dir.join("no-schemes-here"))
        .output()
        .unwrap();
    assert!(
        said(&no_daemon).contains("is not served"),
        "{}",
        said(&no_daemon)
    );
    romain.assert_serving();
}

#[test]
fn a_replicated_group_serves_through_the_engine_and_takes_fault_injections() {
    let romain = Supervised::start();
    let group = romain.open("romain:testbed?replicas=3", O_RDWR).unwrap();
    romain.wait_for_testbed();
    romain.assert_testbed_answers("first");

    let status = romain.status("testbed");
    assert_eq!(status["state"], "running");
    assert_eq!(status["replicas"], "3");
    let engine_pid = status["pids"].clone();
    let replicas = romain.replica_pids("testbed");
    assert_eq!(replicas.len(), 3, "{status:?}");
    for pid in &replicas {
        assert!(
            pid.parse::<u32>().is_ok() && *pid != engine_pid,
            "{status:?}"
        );
        assert!(running(pid), "replica {pid} runs");
    }
    assert!(
        romain.counter("testbed", "events").unwrap() > 0,
        "{status:?}"
    );
    assert!(
        romain.counter("testbed", "votes").unwrap() > 0,
        "{status:?}"
    );
    assert_eq!(
        (
            status["injected"].as_str(),
            status["engine_last_fault"].as_str()
        ),
        ("0", "none")
    );
    let listing = read_text(&romain.open("romain:", O_RDONLY).unwrap());
    assert!(
        listing.starts_with(&format!(
            "driver=testbed state=running replicas=3 pids={engine_pid} restarts=0 votes="
        )),
        "{listing}"
    );

    // Attaching with another N is refused; without one, or with 3, it is not.
    let errno = romain
        .open("romain:testbed?replicas=2", O_RDONLY)
        .unwrap_err()
        .raw_os_error();
    assert_eq!(errno, Some(EINVAL));
    assert!(romain
        .log()
        .contains("the running group has 3 replicas, not 2"));
    romain.open("romain:testbed?replicas=3", O_RDONLY).unwrap();
    romain.open("romain:testbed", O_RDONLY).unwrap();

    // A flipped register is masked (or repaired) and counted.
    assert_eq!(group.write(b"flip 1 reg rax 3").unwrap(), 16);
    wait_for("the injection to count", START_LIMIT, || {
        (romain.counter("testbed", "injected")? == 1).then_some(())
    });
    romain.assert_testbed_answers("second");

    // The engine checks what it is asked, and says no.
    let refused = |command: &str| group.write(command.as_bytes()).unwrap_err().raw_os_error();
    assert_eq!(refused("flip 1 reg rzz 3"), Some(EINVAL));
    assert!(
        romain.log().contains("unknown register"),
        "{}",
        romain.log()
    );
    assert_eq!(refused("flip 1 reg rax 64"), Some(EINVAL));
    assert_eq!(refused("kill 3"), Some(EINVAL), "the group has 3 replicas");

    // A killed replica is replaced by a copy of a healthy one, inside the group:
    // the engine itself runs on.
    group.write(b"kill 1").unwrap();
    wait_for("the replacement", START_LIMIT, || {
        (romain.counter("testbed", "replacements")? >= 1).then_some(())
    });
    let after_kill = romain.replica_pids("testbed");
    assert_ne!(after_kill[1], replicas[1], "replica 1 is a new process");
    assert_eq!(
        (&after_kill[0], &after_kill[2]),
        (&replicas[0], &replicas[2])
    );
    romain.assert_testbed_answers("third");

    // A stopped replica is a hang for the engine's watchdog, then replaced.
    group.write(b"stop 2").unwrap();
    wait_for("the watchdog", START_LIMIT, || {
        (romain.counter("testbed", "hangs")? >= 1).then_some(())
    });
    group.write(b"scrub").unwrap();
    romain.assert_testbed_answers("fourth");

    let status = romain.status("testbed");
    assert_eq!(
        (
            status["state"].as_str(),
            status["pids"].as_str(),
            status["restarts"].as_str(),
            status["last_fault"].as_str(),
        ),
        ("running", engine_pid.as_str(), "0", "none"),
        "the engine masked every fault: {status:?}"
    );
    assert_eq!(status["injected"], "3");

    // Down ends the engine, and with it every replica.
    let replicas = romain.replica_pids("testbed");
    group.write(b"down").unwrap();
    wait_for("the group to go down", Duration::from_secs(10), || {
        (romain.status("testbed")["state"] == "down").then_some(())
    });
    let status = romain.status("testbed");
    assert_eq!(status["pids"], "");
    assert_eq!(status["replica_pids"], "unknown");
    wait_for("the replicas to end", Duration::from_secs(10), || {
        replicas.iter().all(|pid| !running(pid)).then_some(())
    });
    assert!(!running(&engine_pid));
}

#[test]
fn the_command_line_brings_replicated_groups_up_and_injects_faults() {
    let romain = Supervised::start();
    let text = |output: &Output| String::from_utf8_lossy(&output.stdout).into_owned();

    let up = romain.cli(&["up", "testbed", "--replicas", "3"], |_| {});
    assert!(up.status.success(), "{}", said(&up));
    assert!(
        text(&up).starts_with("driver=testbed\nstate=running\nreplicas=3\n"),
        "{}",
        text(&up)
    );
    romain.wait_for_testbed();

    let inject = romain.cli(
        &["inject", "testbed", "flip", "0", "reg", "rbx", "5"],
        |_| {},
    );
    assert!(inject.status.success(), "{}", said(&inject));
    assert!(
        text(&inject).contains("\nreplicas=3\n"),
        "{}",
        text(&inject)
    );
    wait_for("the injection to count", START_LIMIT, || {
        (romain.counter("testbed", "injected")? == 1).then_some(())
    });
    romain.assert_testbed_answers("cli");

    let up = romain.cli(&["up", "alone"], |_| {});
    assert!(up.status.success(), "{}", said(&up));
    assert!(
        !text(&up).contains("\nevents="),
        "a group of one has no engine"
    );
    let refused = [
        (
            &["inject", "testbed", "flip", "0", "reg", "rzz", "5"][..],
            "testbed: request refused as invalid",
        ),
        (
            &["inject", "testbed", "explode"],
            "unknown command \"explode\"",
        ),
        (
            &["inject", "testbed", "flip", "0"],
            "flip needs `reg <register> <bit>`",
        ),
        (&["inject", "alone", "hang", "0"], "need a replicated group"),
        (
            &["up", "testbed", "--replicas", "2"],
            "testbed: request refused as invalid",
        ),
    ];
    romain.cli_refuses(&refused);
    assert_eq!(
        romain
            .open("romain:alone?attach", O_RDWR)
            .unwrap()
            .write(b"scrub")
            .unwrap_err()
            .raw_os_error(),
        Some(EOPNOTSUPP)
    );

    let down = romain.cli(&["down", "testbed"], |_| {});
    assert!(down.status.success(), "{}", said(&down));
}

#[test]
fn groups_run_as_the_registry_user_and_only_root_can_switch() {
    let user = [DRIVER_USER.to_string().as_str(); 4].join(" ");
    let as_root = nix::unistd::geteuid().is_root();
    if as_root {
        let mut romain = Supervised::start();
        romain.open("romain:asuser", O_RDONLY).unwrap();
        let pid = romain.wait_for_new_pid("asuser", None, Duration::from_secs(3));
        assert_eq!(ids(&pid.to_string()), (user.clone(), user.clone()));

        // The engine runs as the user, and its replicas inherit it.
        romain
            .open("romain:asuser-testbed?replicas=3", O_RDONLY)
            .unwrap();
        let replicas = wait_for("the replicas", START_LIMIT, || {
            let pids = romain.status("asuser-testbed")["replica_pids"].clone();
            let pids: Vec<String> = pids.split(',').map(str::to_owned).collect();
            (pids.len() == 3 && pids.iter().all(|pid| running(pid))).then_some(pids)
        });
        let engine = romain.status("asuser-testbed")["pids"].clone();
        for pid in replicas.iter().chain([&engine]) {
            assert_eq!(ids(pid), (user.clone(), user.clone()), "pid {pid}");
        }
        assert_eq!(romain.status("asuser-testbed")["restarts"], "0");
        romain.assert_serving();
    } else {
        eprintln!("not root: running a group as another user is not checked, only its refusal");
    }

    // A supervisor that is not root (when this test is, the daemon runs as
    // another user) cannot start a group as another user: a failed start, counted
    // and backed off, that says why.
    let daemon_user = DRIVER_USER + 1;
    let mut romain = match as_root {
        true => Supervised::start_as(Some(daemon_user)),
        false => Supervised::start(),
    };
    let daemon_uid = match as_root {
        true => daemon_user,
        false => nix::unistd::geteuid().as_raw(),
    };
    romain.open("romain:asuser", O_RDONLY).unwrap();
    wait_for("three failed starts", Duration::from_secs(5), || {
        (romain.status("asuser")["repetition"].parse::<u32>().ok()? >= 3).then_some(())
    });
    let status = romain.status("asuser");
    assert_eq!(
        (status["state"].as_str(), status["last_fault"].as_str()),
        ("backoff", "spawn"),
        "{status:?}"
    );
    assert_ne!(status["restarts"], "0", "retried: {status:?}");
    let detail = &status["last_fault_detail"];
    for said in [
        format!("could not be started: {TEST_DRIVER}: cannot run as uid {DRIVER_USER}, gid {DRIVER_USER}: "),
        format!("only root may start a process as another user, and this supervisor runs as uid {daemon_uid}"),
    ] {
        assert!(detail.contains(&said), "{detail}");
    }
    assert!(
        romain.log().contains(&format!(
            "asuser: could not be started: {TEST_DRIVER}: cannot run as uid {DRIVER_USER}"
        )),
        "the log names the driver and the user"
    );
    romain.assert_serving();
}
