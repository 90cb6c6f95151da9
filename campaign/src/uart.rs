//! The campaign's target on this machine: the 16550 UART driver under the
//! replication engine, its ports on a software chip, its scheme served in a
//! private scheme directory.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use romain_engine::trap::{PortDevice, ReplicaCommand, Width};
use romain_engine::{Devices, GroupConfig, GroupThread};
use scheme_runtime::Handle;
use syscall::flag::O_RDWR;
use uart16550::access::PortIo;
use uart16550::soft::Soft16550;

use crate::fault::Regions;
use crate::outcome::{Counters, Delivery};

/// COM2, where the driver looks for its chip.
const BASE: u16 = 0x2f8;
const SCHEME: &str = "uart.campaign";
/// How long the group may take to serve again after a restart.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// The software chip as the engine's port device.
struct SoftPorts(Soft16550);

impl PortDevice for SoftPorts {
    fn read(&mut self, port: u16, _width: Width) -> u32 {
        port.checked_sub(BASE)
            .and_then(|offset| u8::try_from(offset).ok())
            .and_then(|offset| self.0.read(offset).ok())
            .map_or(0xff, u32::from)
    }

    fn write(&mut self, port: u16, _width: Width, value: u32) {
        if let Some(offset) = port.checked_sub(BASE).and_then(|o| u8::try_from(o).ok()) {
            // A write the chip refuses is a byte it never sends: the check sees it.
            let _ = self.0.write(offset, value as u8);
        }
    }
}

/// A replicated UART driver and the chip it drives.
pub struct UartTarget {
    driver: PathBuf,
    replicas: usize,
    watchdog: Duration,
    dir: PathBuf,
    chip: Soft16550,
    group: Option<GroupThread>,
}

impl UartTarget {
    /// Starts `driver` (the `uart16550` program) as `replicas` replicas, a
    /// replica that takes longer than `watchdog` to its next event counting as hung.
    pub fn start(driver: &Path, replicas: usize, watchdog: Duration) -> io::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "romain-campaign-{}-{replicas}-{:?}",
            std::process::id(),
            Instant::now()
        ));
        std::fs::create_dir_all(&dir)?;
        let mut target = Self {
            driver: driver.to_owned(),
            replicas,
            watchdog,
            dir,
            chip: Soft16550::new(),
            group: None,
        };
        target.restart()?;
        Ok(target)
    }

    /// Starts the group afresh (after it stopped serving) and waits until it serves.
    pub fn restart(&mut self) -> io::Result<()> {
        self.group = None;
        let mut command = ReplicaCommand::new(&self.driver);
        command
            .args(["--access", "direct", "--scheme", SCHEME])
            .args(["--poll-interval", "2000", "--linger", "0"])
            .env("RUST_LOG", "off");
        let config = GroupConfig {
            command,
            replicas: self.replicas,
            watchdog: self.watchdog,
            device_window: None,
            backend: Default::default(),
        };
        let devices = Devices {
            ports: Box::new(SoftPorts(self.chip.clone())),
            memory: None,
        };
        let group = GroupThread::spawn(config, devices, self.dir.clone())?;
        let start = Instant::now();
        while Handle::open_in(&self.dir, &format!("{SCHEME}:status"), 0).is_err() {
            if group.is_finished() || start.elapsed() > START_TIMEOUT {
                return Err(io::Error::other(
                    "the replicated UART driver did not come up",
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.group = Some(group);
        Ok(())
    }

    /// Whether the engine still serves the group.
    pub fn is_serving(&self) -> bool {
        self.group
            .as_ref()
            .is_some_and(|group| !group.is_finished())
    }

    /// Sends a control command (`status`, `scrub`, a fault) to the engine.
    pub fn command(&self, text: &str) -> io::Result<String> {
        match &self.group {
            Some(group) if !group.is_finished() => group.command(text),
            _ => Err(io::Error::other("the group is not running")),
        }
    }

    fn status(&self) -> HashMap<String, String> {
        self.command("status")
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split_once(':'))
            .map(|(key, value)| (key.trim().to_owned(), value.trim().to_owned()))
            .collect()
    }

    /// The engine's counters now (zeros when it does not answer).
    pub fn counters(&self) -> Counters {
        let status = self.status();
        let count = |key: &str| status.get(key).and_then(|v| v.parse().ok()).unwrap_or(0);
        Counters {
            divergences: count("divergences"),
            repairs: count("repairs"),
            replacements: count("replacements"),
            no_majority: count("no-majority"),
            restarts: count("group-restarts"),
        }
    }

    /// Where replica `index`'s memory lies (empty when it is gone).
    pub fn regions(&self, index: usize) -> Regions {
        let status = self.status();
        let pid = status
            .get("pids")
            .and_then(|pids| pids.split_whitespace().nth(index))
            .and_then(|pid| pid.parse::<i32>().ok());
        let program = self
            .driver
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        pid.and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/maps")).ok())
            .map(|maps| Regions::parse(&maps, &program))
            .unwrap_or_default()
    }

    /// Writes `message` through a fresh handle and checks what the chip sent:
    /// exactly the message, other bytes, only its first part, an error, or no
    /// answer in time.
    pub fn request(&self, message: &[u8], timeout: Duration) -> Delivery {
        // Bytes of an earlier, failed request are not this one's.
        std::thread::sleep(Duration::from_millis(5));
        self.chip.take_transmitted();
        let (done, result) = mpsc::channel();
        let dir = self.dir.clone();
        let bytes = message.to_vec();
        std::thread::spawn(move || {
            let _ = done.send(write_all(&dir, &bytes));
        });
        match result.recv_timeout(timeout) {
            Err(_) => return Delivery::TimedOut,
            Ok(Err(_)) => return Delivery::Failed,
            Ok(Ok(())) => {}
        }
        let mut sent = Vec::new();
        // The driver sends within milliseconds; a short wait tells a loss from a delay.
        let deadline = Instant::now() + timeout.min(Duration::from_secs(2));
        while sent.len() < message.len() && Instant::now() < deadline {
            sent.extend(self.chip.take_transmitted());
            std::thread::sleep(Duration::from_millis(1));
        }
        // Anything more that follows at once belongs to this request too.
        std::thread::sleep(Duration::from_millis(2));
        sent.extend(self.chip.take_transmitted());
        if sent == message {
            Delivery::Exact
        } else if message.starts_with(&sent) {
            Delivery::Short
        } else {
            Delivery::Wrong
        }
    }
}

impl Drop for UartTarget {
    fn drop(&mut self) {
        self.group = None;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_all(dir: &Path, message: &[u8]) -> io::Result<()> {
    let data = Handle::open_in(dir, &format!("{SCHEME}:data"), O_RDWR)?;
    let mut rest = message;
    while !rest.is_empty() {
        let written = data.write(rest)?;
        rest = &rest[written..];
    }
    Ok(())
}
