//! The mmio scheme served over the Linux host transport, software register
//! banks standing in for the devices, used by a client as a driver uses it.
#![cfg(target_os = "linux")]

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use driver_policy::{Bdf, DeviceId, Policy};
use mmio_scheme::bus::SoftBank;
use mmio_scheme::wire::{Batch, Width};
use mmio_scheme::{MmioScheme, SoftMachine};
use scheme_runtime::{Handle, HostServer};
use syscall::flag::{O_RDONLY, O_RDWR};

const E1000_BAR0: &str = "/scheme/mmio/pci/0000:00:03.0/bar0?label=e1000";

/// A served scheme in a private scheme directory; stopped on drop.
struct Served {
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    server: Option<JoinHandle<io::Result<()>>>,
}

impl Served {
    fn start(name: &str, policy: Policy, hardware: SoftMachine) -> Self {
        let dir = std::env::temp_dir().join(format!("mmio-host-{name}-{}", std::process::id()));
        let mut server = HostServer::bind(&dir, "mmio").unwrap();
        server.set_tick(Some(Duration::from_millis(10)));
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let server = thread::spawn(move || {
            let mut scheme = MmioScheme::new(policy, hardware);
            while !stopped.load(Ordering::Relaxed) {
                server.run_round(&mut scheme)?;
            }
            Ok(())
        });
        Self {
            dir,
            stop,
            server: Some(server),
        }
    }

    fn open(&self, path: &str) -> io::Result<Handle> {
        Handle::open_in(&self.dir, path, O_RDWR)
    }

    fn open_read_only(&self, path: &str) -> io::Result<Handle> {
        Handle::open_in(&self.dir, path, O_RDONLY)
    }

    fn status(&self) -> String {
        let status = self.open("/scheme/mmio/status").unwrap();
        let mut text = vec![0; 4096];
        let len = status.read(&mut text).unwrap();
        String::from_utf8(text[..len].to_vec()).unwrap()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(server) = self.server.take() {
            let outcome = server.join();
            if !thread::panicking() {
                outcome
                    .expect("server thread panicked")
                    .expect("server failed");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// This process acts for driver e1000: as the driver itself (its uid is in the
/// rule) or, when run as root, as the supervisor naming it.
fn policy() -> Policy {
    policy_with_schemes(r#"["mmio"]"#)
}

/// [`policy`], with the rule's `schemes` set to `schemes`.
fn policy_with_schemes(schemes: &str) -> Policy {
    let uid = nix::unistd::getuid().as_raw();
    let e1000_uid = if uid == 0 { 1001 } else { uid };
    format!(
        "[driver.e1000]\nuid = {e1000_uid}\ndevice = \"8086:100e\"\nbars = [0]\nschemes = {schemes}\n"
    )
    .parse()
    .unwrap()
}

fn e1000_machine() -> (SoftMachine, SoftBank) {
    let bar0 = SoftBank::memory(0x2_0000);
    bar0.poke(0x8, Width::U32, 0x8008_0783);
    let mut machine = SoftMachine::new();
    let bdf: Bdf = "00:03.0".parse().unwrap();
    machine.add_bar(
        bdf,
        DeviceId {
            vendor: 0x8086,
            device: 0x100e,
        },
        0,
        bar0.clone(),
    );
    machine.add_bar(
        bdf,
        DeviceId {
            vendor: 0x8086,
            device: 0x100e,
        },
        1,
        SoftBank::memory(0x40),
    );
    (machine, bar0)
}

#[test]
fn a_client_reads_writes_and_batches_over_the_host_transport() {
    let (machine, bar0) = e1000_machine();
    let served = Served::start("access", policy(), machine);
    let bar = served.open(E1000_BAR0).unwrap();
    assert_eq!(bar.fpath().unwrap(), "/scheme/mmio/pci/0000:00:03.0/bar0");
    assert_eq!(bar.fstat().unwrap().st_size, 0x2_0000);

    let mut status = [0; 4];
    assert_eq!(bar.read_at(&mut status, 0x8).unwrap(), 4);
    assert_eq!(u32::from_le_bytes(status), 0x8008_0783);
    assert_eq!(bar.write_at(&0x0400_0000u32.to_le_bytes(), 0x0).unwrap(), 4);
    assert_eq!(bar0.peek(0x0, Width::U32), 0x0400_0000);

    let mut batch = Batch::new();
    batch.write(0x5400, Width::U32, 0x1200_5452).unwrap();
    let ral = batch.read(0x5400, Width::U32).unwrap();
    let ctrl = batch.read(0x0, Width::U32).unwrap();
    assert_eq!(bar.call(batch.payload_mut(), &[]).unwrap(), 3);
    assert_eq!(
        (batch.value(ral), batch.value(ctrl)),
        (Some(0x1200_5452), Some(0x0400_0000))
    );

    let misaligned = bar.read_at(&mut status, 0x2).unwrap_err();
    assert_eq!(misaligned.kind(), io::ErrorKind::InvalidInput);
    let mut bad = Batch::new();
    bad.write(0x0, Width::U32, 0).unwrap();
    bad.read(0x2_0000, Width::U32).unwrap();
    assert_eq!(
        bar.call(bad.payload_mut(), &[]).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    assert_eq!(
        bar0.peek(0x0, Width::U32),
        0x0400_0000,
        "the refused batch wrote nothing"
    );

    let text = served.status();
    assert!(
        text.contains("accesses: 5\nbatches: 1\ninvalid: 2\n"),
        "{text}"
    );
    assert!(text.contains("driver e1000 pid"), "{text}");
}

#[test]
fn the_policy_holds_over_the_host_transport() {
    let (machine, _bar0) = e1000_machine();
    let served = Served::start("policy", policy(), machine);
    let denied = served
        .open("/scheme/mmio/pci/0000:00:03.0/bar1?label=e1000")
        .unwrap_err();
    assert_eq!(denied.kind(), io::ErrorKind::PermissionDenied);
    let foreign = served
        .open("/scheme/mmio/port/0x2f8-0x2ff?label=e1000")
        .unwrap_err();
    assert_eq!(foreign.kind(), io::ErrorKind::PermissionDenied);
    let missing = served
        .open("/scheme/mmio/pci/0000:00:03.0/bar9")
        .unwrap_err();
    assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    assert!(served.status().contains("denials: 2\n"));
}

#[test]
fn a_closed_handle_leaves_the_status() {
    let (machine, _bar0) = e1000_machine();
    let served = Served::start("close", policy(), machine);
    let bar = served.open(E1000_BAR0).unwrap();
    assert!(served.status().starts_with("handles: 1\n"));
    bar.close().unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !served.status().starts_with("handles: 0\n") {
        assert!(Instant::now() < deadline, "the scheme never saw the close");
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_read_only_handle_cannot_write_over_the_host_transport() {
    let (machine, bar0) = e1000_machine();
    let served = Served::start("read-only", policy(), machine);
    let bar = served.open_read_only(E1000_BAR0).unwrap();
    let mut status = [0; 4];
    assert_eq!(bar.read_at(&mut status, 0x8).unwrap(), 4);
    assert_eq!(u32::from_le_bytes(status), 0x8008_0783);
    let refused = bar.write_at(&1u32.to_le_bytes(), 0x0).unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(nix::libc::EBADF), "{refused}");
    let mut batch = Batch::new();
    batch.write(0x0, Width::U32, 1).unwrap();
    let refused = bar.call(batch.payload_mut(), &[]).unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(nix::libc::EBADF), "{refused}");
    assert_eq!(bar0.peek(0x0, Width::U32), 0);
}

#[test]
fn a_driver_without_mmio_in_its_schemes_is_refused_over_the_host_transport() {
    let (machine, bar0) = e1000_machine();
    let served = Served::start("schemes", policy_with_schemes(r#"["dma"]"#), machine);
    let refused = served.open(E1000_BAR0).unwrap_err();
    assert_eq!(refused.kind(), io::ErrorKind::PermissionDenied, "{refused}");
    assert!(served.status().contains("denials: 1\n"));
    assert!(bar0.log().is_empty());
}
