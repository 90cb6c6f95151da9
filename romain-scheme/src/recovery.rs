//! The recovery script of a driver (MINIX 3's recovery policy script).
//!
//! After every fault the script runs as `script <driver> <reason> <repetition>`,
//! with `reason` one of `exit`, `signal`, `hang`, `killed`, `spawn` and
//! `repetition` the number of consecutive faults. The group's restart-to-serving
//! times so far come in the environment, in milliseconds, once a restart has
//! been measured: `ROMAIN_RESTART_TO_SERVING_LAST_MS` (the last completed
//! restart, not the one this fault starts) and `ROMAIN_RESTART_TO_SERVING_MEAN_MS`. It is told, not asked: the
//! supervisor restarts the driver on its own schedule, and the script adds what
//! the site wants (an alert, a device reset, a log entry). It runs beside the
//! supervisor, never waited for; one at a time per driver.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::serving_time::ServingTimes;

#[derive(Debug, Default)]
pub struct RecoveryScript {
    running: Option<Child>,
}

impl RecoveryScript {
    pub fn run(
        &mut self,
        script: &Path,
        driver: &str,
        reason: &str,
        repetition: u32,
        serving: &ServingTimes,
    ) {
        self.reap();
        if self.running.is_some() {
            log::warn!("{driver}: recovery script still running; not run for this {reason} fault");
            return;
        }
        let mut command = Command::new(script);
        command
            .arg(driver)
            .arg(reason)
            .arg(repetition.to_string())
            .stdin(Stdio::null());
        for (name, time) in [
            ("ROMAIN_RESTART_TO_SERVING_LAST_MS", serving.last()),
            ("ROMAIN_RESTART_TO_SERVING_MEAN_MS", serving.mean()),
        ] {
            if let Some(time) = time {
                command.env(name, crate::status::Millis(time).to_string());
            }
        }
        let spawned = command.spawn();
        match spawned {
            Ok(child) => self.running = Some(child),
            Err(e) => log::error!(
                "{driver}: cannot run recovery script {}: {e}",
                script.display()
            ),
        }
    }

    /// Collects the script once it has ended and logs a failure; never waits.
    pub fn reap(&mut self) {
        let Some(child) = &mut self.running else {
            return;
        };
        match child.try_wait() {
            Ok(None) => return,
            Ok(Some(status)) if !status.success() => {
                log::warn!("recovery script pid {} ended with {status}", child.id())
            }
            Ok(Some(_)) => {}
            Err(e) => log::error!("cannot wait for recovery script pid {}: {e}", child.id()),
        }
        self.running = None;
    }
}
