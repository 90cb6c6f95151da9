//! `romain`: serve the driver supervisor, or bring drivers up and down through it.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use romain_scheme::{client, Command, Registry, RomainScheme, Supervisor};

#[derive(Parser)]
#[command(
    version,
    about = "romain: supervised drivers. Serves the romain: scheme, which starts drivers \
             from a registry and restarts them when they crash or hang; the other \
             subcommands are its clients."
)]
struct Cli {
    #[command(subcommand)]
    command: Subcommands,
}

#[derive(Subcommand)]
enum Subcommands {
    /// Serve the romain: scheme (on Linux in $SCHEME_DIR, default /run/schemes).
    Serve {
        /// The driver registry (TOML).
        #[arg(long, value_name = "FILE", default_value = "/etc/romain/drivers.toml")]
        registry: PathBuf,
    },
    /// Start a driver's group, or attach to the running one, and print its
    /// status. The group keeps running after this command ends.
    Up {
        /// The driver's name in the registry.
        driver: String,
        /// Replicas per group; only 1 until the replication engine exists.
        #[arg(long, value_name = "N")]
        replicas: Option<NonZeroUsize>,
    },
    /// Print the status of a driver's group, or list all groups. Starts nothing.
    Status {
        /// The driver's name in the registry; without it, all groups.
        driver: Option<String>,
    },
    /// Stop a driver's group for good.
    Down {
        /// The driver's name in the registry.
        driver: String,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let (result, driver) = match Cli::parse().command {
        Subcommands::Serve { registry } => return serve(&registry),
        Subcommands::Up { driver, replicas } => (client::up(&driver, replicas), driver),
        Subcommands::Status { driver: None } => (client::status(None), "romain:".to_owned()),
        Subcommands::Status {
            driver: Some(driver),
        } => (client::status(Some(&driver)), driver),
        Subcommands::Down { driver } => (client::send(&driver, Command::Down), driver),
    };
    match result {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("romain: {}", client::explain(&e, &driver));
            ExitCode::FAILURE
        }
    }
}

fn serve(registry: &std::path::Path) -> ExitCode {
    let registry = match Registry::load(registry) {
        Ok(registry) => registry,
        Err(e) => {
            eprintln!("romain: {e}");
            return ExitCode::FAILURE;
        }
    };
    if registry.drivers().next().is_none() {
        log::warn!("the registry lists no drivers; every open will fail with ENOENT");
    }
    let supervisor = Supervisor::new(registry);
    let tick = supervisor.tick();
    let mut scheme = RomainScheme::new(supervisor, romain_scheme::own_uid());
    match scheme_runtime::serve_with_tick(romain_scheme::SCHEME_NAME, &mut scheme, Some(tick)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("romain: {e}");
            ExitCode::FAILURE
        }
    }
}
