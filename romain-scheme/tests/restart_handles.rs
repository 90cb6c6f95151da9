//! Handles across a restart of the replica group.
//!
//! When the engine starts a group afresh (no majority, a crash it cannot
//! repair), the new replicas know none of the handles clients hold, and they
//! number new handles from the start again. A handle opened before the restart
//! must then fail with `ESTALE` on every operation, never reach the resource a
//! handle opened after it got; closing it must close nothing of anyone else's;
//! and a request parked on it when the group restarted fails once with `ESTALE`.
//!
//! The driver is the testbed scheme (named byte queues; no device), run as two
//! replicas: killing one leaves no majority, which restarts the group.
#![cfg(target_os = "linux")]

use std::io;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use romain_engine::trap::{PortDevice, ReplicaCommand, Width};
use romain_engine::{Devices, GroupConfig, GroupThread};
use scheme_runtime::Handle;
use syscall::flag::{O_NONBLOCK, O_RDWR};

/// Linux's `ESTALE`, as clients on the host see it (Redox numbers it alike).
const ESTALE: i32 = 116;

/// The testbed's `call` metadata word that reverses the payload
/// (`scheme_testbed::CALL_REVERSE`).
const CALL_REVERSE: u64 = 1;

/// Long enough for traced replicas to start, or restart, on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(20);

/// The testbed reaches no ports.
struct NoPorts;

impl PortDevice for NoPorts {
    fn read(&mut self, _port: u16, _width: Width) -> u32 {
        u32::MAX
    }

    fn write(&mut self, _port: u16, _width: Width, _value: u32) {}
}

mod common;
use common::{unique_dir, workspace_binary};

/// Two replicas of the testbed scheme, served in a directory of their own.
struct Group {
    dir: PathBuf,
    group: GroupThread,
}

impl Group {
    fn start() -> Self {
        let _ = env_logger::builder().is_test(true).try_init();
        let dir = unique_dir("restart-handles");
        let mut command = ReplicaCommand::new(workspace_binary("testbed"));
        command.arg("serve").env("RUST_LOG", "error");
        let config = GroupConfig {
            command,
            replicas: 2,
            watchdog: Duration::from_secs(2),
            device_window: None,
            backend: Default::default(),
        };
        let devices = Devices {
            ports: Box::new(NoPorts),
            memory: None,
        };
        let group = GroupThread::spawn(config, devices, dir.clone()).unwrap();
        let deadline = Instant::now() + PATIENCE;
        while !common::takes_connections(&dir.join("testbed")) {
            assert!(!group.is_finished(), "the group ended before serving");
            assert!(Instant::now() < deadline, "the group never served");
            thread::sleep(Duration::from_millis(10));
        }
        Self { dir, group }
    }

    fn open(&self, path: &str) -> Handle {
        Handle::open_in(&self.dir, path, O_RDWR | O_NONBLOCK).unwrap()
    }

    fn counter(&self, key: &str) -> u64 {
        let text = self.group.command("status").unwrap();
        text.lines()
            .filter_map(|line| line.split_once(": "))
            .find(|(name, _)| *name == key)
            .and_then(|(_, value)| value.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {text}"))
    }

    /// Kills replica 1: with two replicas the group has no majority at its next
    /// exchange (the idle round comes within 100 ms) and starts afresh.
    fn restart(&self) {
        let before = self.counter("group-restarts");
        let answer = self.group.command("kill 1").unwrap();
        assert!(answer.starts_with("ok"), "{answer}");
        let deadline = Instant::now() + PATIENCE;
        while self.counter("group-restarts") == before {
            assert!(!self.group.is_finished(), "the group ended");
            assert!(Instant::now() < deadline, "the group never restarted");
            thread::sleep(Duration::from_millis(10));
        }
        // The restart runs through to the fresh replicas' hello, so they serve
        // now; opening anything here would shift the numbers they hand out.
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A result with the error as its errno: a failure shows what succeeded.
fn outcome<T>(result: io::Result<T>) -> Result<T, Option<i32>> {
    result.map_err(|error| error.raw_os_error())
}

fn read_all(handle: &Handle) -> io::Result<Vec<u8>> {
    let mut buf = [0; 256];
    let n = handle.read(&mut buf)?;
    Ok(buf[..n].to_vec())
}

#[test]
fn a_handle_from_before_a_restart_is_stale_and_never_reaches_another_clients_resource() {
    let group = Group::start();
    // Client B's handle: the replicas' first.
    let b = group.open("testbed:queue/b");
    assert_eq!(b.write(b"b's bytes").unwrap(), 9);

    group.restart();

    // Client A's handle: the fresh replicas' first, numbered as B's was.
    let a = group.open("testbed:queue/a");
    assert_eq!(a.write(b"a's secret").unwrap(), 10);

    assert_eq!(outcome(read_all(&b)), Err(Some(ESTALE)), "B's old handle");
    assert_eq!(outcome(b.write(b"b again")), Err(Some(ESTALE)));
    assert_eq!(outcome(b.fpath()), Err(Some(ESTALE)));
    assert_eq!(
        outcome(b.call(&mut [1, 2, 3], &[CALL_REVERSE])),
        Err(Some(ESTALE))
    );
    assert!(
        matches!(outcome(b.fstat()), Err(Some(ESTALE))),
        "fstat of B's old handle"
    );
    // Closing the stale handle closes nothing of A's.
    b.close().unwrap();

    assert_eq!(
        read_all(&a).unwrap(),
        b"a's secret",
        "A finds its bytes, and only its"
    );
    assert_eq!(a.write(b"more").unwrap(), 4);
    assert_eq!(read_all(&a).unwrap(), b"more");
    // Handles opened after the restart work as ever.
    let b_again = group.open("testbed:queue/b");
    assert_eq!(b_again.write(b"fresh").unwrap(), 5);
    assert_eq!(read_all(&b_again).unwrap(), b"fresh");
}

/// A request parked on a handle when the group restarts fails once: with `EIO`
/// if its retry was the exchange that found the group broken, with `ESTALE` if
/// an earlier one did. Either way the handle is stale from then on.
#[test]
fn a_read_parked_when_the_group_restarts_fails_once_and_its_handle_is_stale() {
    const EIO: i32 = 5;
    let group = Group::start();
    let blocked = Handle::open_in(&group.dir, "testbed:queue/parked", O_RDWR).unwrap();
    // A queue of its own, so that nothing but the restart ends the wait.
    let reader = thread::spawn(move || {
        let first = outcome(read_all(&blocked));
        let second = outcome(read_all(&blocked));
        (first, second)
    });
    // Let the read reach the scheme and park.
    thread::sleep(Duration::from_millis(300));
    assert!(!reader.is_finished(), "the read did not wait");

    group.restart();
    // A handle opened after the restart gets the number the parked one had.
    let fresh = group.open("testbed:queue/fresh");
    assert_eq!(fresh.write(b"not for the parked read").unwrap(), 23);

    let deadline = Instant::now() + PATIENCE;
    while !reader.is_finished() {
        assert!(Instant::now() < deadline, "the parked read still waits");
        thread::sleep(Duration::from_millis(10));
    }
    let (first, second) = reader.join().unwrap();
    assert!(
        matches!(first, Err(Some(EIO | ESTALE))),
        "the parked read: {first:?}"
    );
    assert_eq!(second, Err(Some(ESTALE)), "the next read on the handle");
    assert_eq!(read_all(&fresh).unwrap(), b"not for the parked read");
}
