//! `image-init`: starts the image's init units (`/usr/lib/init.d/*.service`,
//! written from `filesystem.toml`) in the guest as Redox's init starts them:
//! in the order of their names, each scheme daemon waited for until it serves
//! its scheme, each oneshot until it ends. The guest of `make run` boots the
//! stack this way, so what runs there is what the image configures.
//!
//! Each unit's output goes to `/var/log/<unit>.log` (the console stays the
//! user's); one line per unit on stdout says what became of it.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use clap::Parser;
use image_config::init_unit::{ServiceKind, Unit, INIT_DIR};

/// Start the init units in DIR as Redox's init does: by name, waiting for
/// each scheme daemon to serve and each oneshot to end; exit once all are
/// started (the daemons keep running). Each unit's output goes to LOG_DIR.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// Where the units are
    #[arg(long, default_value = INIT_DIR, value_name = "DIR")]
    units: PathBuf,
    /// Where each unit's output goes (`<unit>.log`)
    #[arg(long, default_value = "/var/log", value_name = "LOG_DIR")]
    logs: PathBuf,
    /// Seconds a scheme daemon may take to serve its scheme, and a oneshot to end
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    timeout: u64,
}

/// What became of one unit.
enum Outcome {
    Serving { pid: u32, scheme: String },
    Ended(std::process::ExitStatus),
    Started { pid: u32 },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let timeout = Duration::from_secs(args.timeout);
    let units = match read_units(&args.units) {
        Ok(units) => units,
        Err(why) => {
            println!("image-init: {why}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = 0;
    for (name, unit) in &units {
        let what = unit
            .unit
            .description
            .as_deref()
            .unwrap_or(&unit.service.cmd);
        match start(name, unit, &args.logs, timeout) {
            Ok(Outcome::Serving { pid, scheme }) => {
                println!("image-init: {name}: {what}: pid {pid} serves {scheme}:")
            }
            Ok(Outcome::Ended(status)) if status.success() => {
                println!("image-init: {name}: {what}: done")
            }
            Ok(Outcome::Ended(status)) => {
                failed += 1;
                println!("image-init: {name}: {what}: FAILED: {status} (see /var/log/{name}.log)")
            }
            Ok(Outcome::Started { pid }) => println!("image-init: {name}: {what}: pid {pid}"),
            Err(why) => {
                failed += 1;
                println!("image-init: {name}: {what}: FAILED: {why}")
            }
        }
    }
    match failed {
        0 => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    }
}

/// Every unit in `dir`, by name.
fn read_units(dir: &Path) -> Result<Vec<(String, Unit)>, String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".service"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let path = dir.join(&name);
            let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let unit = Unit::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok((name, unit))
        })
        .collect()
}

/// Starts one unit and waits for it as its kind says.
fn start(name: &str, unit: &Unit, logs: &Path, timeout: Duration) -> Result<Outcome, String> {
    let log = File::create(logs.join(format!("{name}.log")))
        .map_err(|e| format!("{}: {e}", logs.display()))?;
    let err_log = log.try_clone().map_err(|e| e.to_string())?;
    let service = &unit.service;
    let mut child = Command::new(&service.cmd)
        .args(&service.args)
        .envs(&service.envs)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", service.cmd))?;
    let pid = child.id();
    let deadline = Instant::now() + timeout;
    match &service.kind {
        ServiceKind::Scheme(scheme) => {
            let socket = scheme_runtime::scheme_dir().join(scheme);
            while !socket.exists() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!(
                        "{} ended ({status}) before serving {scheme}:",
                        service.cmd
                    ));
                }
                if Instant::now() > deadline {
                    return Err(format!("{scheme}: not served after {timeout:?}"));
                }
                sleep(Duration::from_millis(20));
            }
            Ok(Outcome::Serving {
                pid,
                scheme: scheme.clone(),
            })
        }
        ServiceKind::Oneshot => loop {
            match child.try_wait() {
                Ok(Some(status)) => return Ok(Outcome::Ended(status)),
                Ok(None) if Instant::now() > deadline => {
                    return Err(format!("still running after {timeout:?}"))
                }
                Ok(None) => sleep(Duration::from_millis(20)),
                Err(e) => return Err(e.to_string()),
            }
        },
        // Nothing here tells readiness: the next unit starts at once.
        ServiceKind::OneshotAsync | ServiceKind::Notify => Ok(Outcome::Started { pid }),
    }
}
