//! `tcp-echo`: the guest's TCP echo service (see `guest_net::protocol`).

use std::net::{Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use guest_net::echo::{EchoService, LISTENING, SERVED, SESSION};

/// Serve the TCP echo service on PORT, one connection at a time, until a client sends
/// `quit`: `echo` echoes, `sink LEN` checksums what arrives, `source LEN SEED` sends a
/// pattern and its checksum.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TCP port to listen on
    #[arg(long)]
    port: u16,
    /// The network path the service is reached through, named in its banner
    #[arg(long)]
    label: String,
    /// Address to listen on
    #[arg(long, default_value_t = Ipv4Addr::UNSPECIFIED)]
    address: Ipv4Addr,
    /// Seconds a read or write may wait before the connection is given up
    #[arg(long, default_value_t = 30, value_name = "SECS")]
    io_timeout: u64,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let addr = SocketAddr::from((args.address, args.port));
    let timeout = Duration::from_secs(args.io_timeout);
    let served = EchoService::bind(addr, &args.label, timeout).and_then(|service| {
        println!("{LISTENING} on {} as {}", service.local_addr()?, args.label);
        service.serve_telling(|news| println!("{SESSION} {news}"))
    });
    match served {
        Ok(served) => {
            println!("{SERVED} {served}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            log::error!("{addr}: {err}");
            ExitCode::FAILURE
        }
    }
}
