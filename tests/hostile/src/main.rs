//! `hostile-target`: serves one daemon's scheme for the hostile-client suite, or
//! attacks one as an unprivileged user.
//!
//! `serve <daemon>` runs the daemon's own scheme code over the real host
//! transport (`scheme_runtime::serve`), on a software device where the daemon
//! drives hardware, so its descriptors, memory and log can be watched from
//! outside. `attack` becomes uid/gid 65534 when run as root, then sends each
//! class of hostile request (see `hostile_clients::attack`).

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hostile_clients::{attack, serve, AttackClass, Daemon};

/// Serve a daemon's scheme for the hostile-client suite, or attack one.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve DAEMON's scheme in $SCHEME_DIR (software devices where it has any).
    Serve {
        #[arg(value_enum)]
        daemon: Daemon,
    },
    /// As uid 65534 (when run as root), send COUNT requests of each CLASS to
    /// DAEMON's scheme in $SCHEME_DIR; print one line per class.
    Attack {
        #[arg(value_enum)]
        daemon: Daemon,
        /// Requests per class.
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        /// The classes to send; all of them by default.
        #[arg(long, value_enum, value_delimiter = ',')]
        class: Vec<AttackClass>,
    },
    /// As uid 65534 (when run as root), open PATH on the scheme connection FD
    /// inherited unopened from another process, read it and print what it says.
    OpenInherited {
        #[arg(long)]
        fd: i32,
        path: String,
    },
}

fn main() -> ExitCode {
    scheme_runtime::logging::init();
    let result = match Cli::parse().command {
        Command::Serve { daemon } => serve(daemon),
        Command::Attack {
            daemon,
            count,
            class,
        } => attack::run(daemon, count, &class),
        Command::OpenInherited { fd, path } => attack::open_inherited(fd, &path),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hostile-target: {e}");
            ExitCode::FAILURE
        }
    }
}
