//! `uart16550`: drives a 16550 UART and serves it as a serial scheme.

use std::process::ExitCode;

use clap::Parser;
use uart16550::Options;

fn main() -> ExitCode {
    scheme_runtime::logging::init();
    let options = Options::parse();
    match uart16550::run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            log::error!("{error}");
            ExitCode::FAILURE
        }
    }
}
