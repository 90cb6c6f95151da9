//! `testbed`: serve the testbed scheme, act as a client of it, or show the runtime
//! at work (`testbed demo`).

mod client;
mod demo;
mod echo;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    version,
    about = "The testbed scheme: serve it, use it, or watch a demo of the scheme runtime"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the testbed scheme (in $SCHEME_DIR on Linux, default /run/schemes).
    Serve {
        /// Scheme name to register.
        #[arg(long, default_value = "testbed")]
        name: String,
    },
    /// Open a path and act on it.
    Client(client::ClientArgs),
    /// Start a testbed daemon in a private scheme directory and walk through what the
    /// runtime does: identities, concurrent clients, blocking, calls, shared memory,
    /// a killed client, and the cost of a round trip.
    Demo,
    /// A plain Unix-socket (SOCK_SEQPACKET) echo server at PATH: the baseline the
    /// transport benchmark compares against.
    EchoServer { path: std::path::PathBuf },
}

fn main() -> ExitCode {
    scheme_runtime::logging::init();
    let result = match Cli::parse().command {
        Command::Serve { name } => {
            let mut testbed = scheme_testbed::Testbed::new();
            scheme_runtime::serve(&name, &mut testbed)
        }
        Command::Client(args) => client::run(args),
        Command::Demo => demo::run(),
        Command::EchoServer { path } => echo::serve(&path),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("testbed: {e}");
            ExitCode::FAILURE
        }
    }
}
