//! `romain-testdriver`: a stand-in driver for the supervisor's tests and for
//! trying the supervisor out without hardware. It serves a scheme that answers
//! every open (so the heartbeat sees it alive), or exits at once.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use redox_scheme::scheme::SchemeSync;
use redox_scheme::{CallerCtx, OpenResult};
use scheme_runtime::SchemeDaemon;
use syscall::error::Result;
use syscall::schemev2::NewFdFlags;

#[derive(Parser)]
#[command(
    version,
    about = "A stand-in driver for romain: serves a scheme that answers every open, or exits at once"
)]
struct Cli {
    #[command(subcommand)]
    command: Mode,
}

#[derive(Subcommand)]
enum Mode {
    /// Serve scheme NAME until killed.
    Serve { name: String },
    /// Exit at once with CODE, like a driver that fails at start-up.
    Exit { code: u8 },
}

/// Answers every open with a fresh handle that does nothing.
#[derive(Default)]
struct Alive {
    opened: usize,
}

impl SchemeSync for Alive {
    fn scheme_root(&mut self) -> Result<usize> {
        Ok(0)
    }

    fn openat(
        &mut self,
        _fd: usize,
        _path: &str,
        _flags: usize,
        _fcntl: u32,
        _ctx: &CallerCtx,
    ) -> Result<OpenResult> {
        self.opened += 1;
        Ok(OpenResult::ThisScheme {
            number: self.opened,
            flags: NewFdFlags::empty(),
        })
    }
}

impl SchemeDaemon for Alive {}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match Cli::parse().command {
        Mode::Serve { name } => match scheme_runtime::serve(&name, &mut Alive::default()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("romain-testdriver: {e}");
                ExitCode::FAILURE
            }
        },
        Mode::Exit { code } => {
            log::info!("exiting with {code}, as told");
            ExitCode::from(code)
        }
    }
}
