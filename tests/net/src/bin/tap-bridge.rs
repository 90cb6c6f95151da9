//! `tap-bridge`: the guest's own network stack over a NIC served as a scheme (see
//! `guest_net::bridge`).

use std::io;
use std::net::Ipv4Addr;
use std::process::ExitCode;

use clap::Parser;
use guest_net::bridge::{Bridge, RELAYING};
use guest_net::ipconfig::{Cidr, InterfaceConfig, QEMU_GATEWAY, QEMU_GUEST_ADDRESS};
use guest_net::nic::{format_mac, read_mac, Nic};
use guest_net::relay::BridgeCounters;
use guest_net::tap::Tap;
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use scheme_runtime::scheme_dir;

/// Create a TAP device for this machine's network stack, give it the address of the
/// NIC served as the scheme NAME plus an IPv4 address and default route, and relay
/// frames both ways between the two until SIGTERM or SIGINT; then print the frame
/// counters. Run as root: the scheme and /dev/net/tun both want it.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// The NIC's scheme
    #[arg(long, default_value = "network.e1000", value_name = "NAME")]
    scheme: String,
    /// The TAP device to create
    #[arg(long, default_value = "tap0")]
    tap: String,
    /// The device's IPv4 address and prefix
    #[arg(long, default_value = QEMU_GUEST_ADDRESS)]
    address: Cidr,
    /// The default route's gateway
    #[arg(long, default_value = QEMU_GATEWAY)]
    gateway: Ipv4Addr,
    /// Frames moved one way before the other way gets its turn
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    budget: u16,
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let args = Args::parse();
    match run(&args) {
        Ok(counters) => {
            println!("{counters}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            log::error!("{err}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> io::Result<BridgeCounters> {
    let schemes = scheme_dir();
    let mac = format_mac(read_mac(&schemes, &args.scheme)?);
    let tap = Tap::create(&args.tap)?;
    InterfaceConfig {
        name: args.tap.clone(),
        mac: Some(mac.clone()),
        address: args.address,
        gateway: args.gateway,
    }
    .apply()
    .map_err(io::Error::other)?;
    let nic = Nic::open(&schemes, &args.scheme)?;
    // Blocked only now, so `ip` above did not inherit the mask.
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGTERM);
    signals.add(Signal::SIGINT);
    signals.thread_block()?;
    let stop = SignalFd::with_flags(&signals, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
    println!(
        "{RELAYING} {} ({mac}, {}) <-> {}",
        tap.name(),
        args.address,
        args.scheme
    );
    Bridge::new(tap, nic, usize::from(args.budget)).run(&stop)
}
