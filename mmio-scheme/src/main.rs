//! `mmio`: serves the `mmio:` scheme over this machine's devices.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use driver_policy::Policy;
use mmio_scheme::{MmioScheme, SystemHardware};

/// Serve the mmio: scheme: checked device register access for unprivileged
/// drivers, as a policy grants it.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The driver policy (TOML): which driver may use which BARs and ports; a
    /// driver whose rule does not list `mmio` in `schemes` may use none.
    #[arg(long, value_name = "FILE")]
    policy: PathBuf,
}

fn main() -> ExitCode {
    scheme_runtime::logging::init();
    let args = Args::parse();
    let policy = match Policy::load(&args.policy) {
        Ok(policy) => policy,
        Err(error) => {
            log::error!("{error}");
            return ExitCode::FAILURE;
        }
    };
    for rule in policy.drivers() {
        log::info!(
            "policy: driver {} (uid {}): bars {:?}, direct {:?}, ports {:?}, schemes {:?}",
            rule.label(),
            rule.uid(),
            rule.bars(),
            rule.direct_bars(),
            rule.ports()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            rule.schemes()
        );
    }
    let mut scheme = MmioScheme::new(policy, SystemHardware::new());
    log::info!("serving mmio: with policy {}", args.policy.display());
    match scheme_runtime::serve("mmio", &mut scheme) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("serving mmio: failed: {error}");
            ExitCode::FAILURE
        }
    }
}
