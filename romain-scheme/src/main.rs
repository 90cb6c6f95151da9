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
        /// The isolation policy (TOML, as mmio: and dma: take it). With it, the
        /// replicas of a replicated group may connect only to the schemes their
        /// driver's rule lists.
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
    },
    /// Start a driver's group, or attach to the running one, and print its
    /// status. The group keeps running after this command ends.
    Up {
        /// The driver's name in the registry.
        driver: String,
        /// Replicas in the group. 1 (the default for a new group) runs the
        /// driver alone, restarted when it fails; 2 or more run it under the
        /// replication engine, which votes on every effect: 2 detect a fault, 3
        /// or more also repair it.
        #[arg(long, value_name = "N")]
        replicas: Option<NonZeroUsize>,
    },
    /// Print the status of a driver's group, or list all groups. Starts nothing.
    Status {
        /// The driver's name in the registry; without it, all groups.
        driver: Option<String>,
    },
    /// Watch every group live: replicas and their pids, events per second,
    /// votes, divergences, repairs, replacements, hangs, injected faults,
    /// restarts and the last fault, refreshed each interval (q quits).
    Top {
        /// Print one frame (rates over one interval) and exit, without taking
        /// over the terminal: for scripts and serial consoles.
        #[arg(long)]
        once: bool,
        /// Milliseconds between frames.
        #[arg(long, value_name = "MS", default_value_t = 1000,
              value_parser = clap::value_parser!(u64).range(100..=60_000))]
        interval_ms: u64,
    },
    /// Stop a driver's group for good.
    Down {
        /// The driver's name in the registry.
        driver: String,
    },
    /// Send a command to a driver's running group, such as a fault injection,
    /// and print its status after it.
    ///
    /// Replicated groups take fault injections into replica i (`flip <i> reg
    /// <register> <bit>`, `flip <i> mem <address> <bit>`, `kill <i>`, `stop <i>`,
    /// `hang <i>`) and `scrub`; every group takes `kill 0`, `stop 0`, `restart`
    /// and `down`.
    Inject {
        /// The driver's name in the registry.
        driver: String,
        /// The command, e.g. `flip 1 reg rax 3`.
        #[arg(required = true, value_name = "WORD")]
        command: Vec<String>,
    },
    /// Run a driver as a group of traced replicas that vote on every effect, and
    /// serve the driver's scheme for them (what `romain:` starts for `replicas=N`,
    /// N >= 2).
    #[cfg(target_os = "linux")]
    Replicate(ReplicateArgs),
    /// Run a fault-injection campaign: the `romain-campaign` program beside this
    /// one, with these arguments (`romain campaign --help` shows its own).
    #[cfg(target_os = "linux")]
    #[command(disable_help_flag = true)]
    Campaign {
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARG"
        )]
        args: Vec<std::ffi::OsString>,
    },
}

#[cfg(target_os = "linux")]
#[derive(clap::Args)]
struct ReplicateArgs {
    /// Replicas in the group: 1 traces without voting, 2 detects, 3 or more also repair.
    #[arg(long, value_name = "N", default_value_t = 3)]
    replicas: usize,
    /// Milliseconds a replica may take to reach its next event before it counts as hung.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    watchdog_ms: u64,
    /// How replicas stop at their events: `ptrace` (traced processes) or
    /// `stub` (a signal handler in each replica posting to a table shared
    /// with the engine, the mechanism Redox can run).
    #[arg(long, value_name = "KIND", default_value = "ptrace")]
    backend: romain_engine::BackendKind,
    /// The I/O ports the driver's port instructions reach, through mmio: (e.g. 0x2f8-0x2ff).
    #[arg(long, value_name = "RANGE")]
    ports: Option<driver_policy::PortRange>,
    /// The driver's policy label, when this runs as root and opens mmio: for it.
    #[arg(long)]
    label: Option<String>,
    /// The schemes the driver's policy rule lists, comma-separated (e.g.
    /// mmio,dma; empty: none): the only ones the replicas may connect to.
    /// Without it they may connect to any.
    #[arg(long, value_name = "LIST")]
    schemes: Option<String>,
    /// A SOCK_SEQPACKET socket to take commands (`status`, fault injection) on.
    #[arg(long, value_name = "FD")]
    control_fd: Option<i32>,
    /// The driver program and its arguments.
    #[arg(required = true, last = true)]
    driver: Vec<std::ffi::OsString>,
}

fn main() -> ExitCode {
    scheme_runtime::logging::init();
    let (result, driver) = match Cli::parse().command {
        Subcommands::Serve { registry, policy } => return serve(&registry, policy.as_deref()),
        Subcommands::Up { driver, replicas } => (client::up(&driver, replicas), driver),
        Subcommands::Status { driver: None } => (client::status(None), "romain:".to_owned()),
        Subcommands::Status {
            driver: Some(driver),
        } => (client::status(Some(&driver)), driver),
        Subcommands::Top { once, interval_ms } => return top(once, interval_ms),
        Subcommands::Down { driver } => (client::send(&driver, &Command::Down), driver),
        Subcommands::Inject { driver, command } => match command.join(" ").parse::<Command>() {
            Ok(command) => (client::send(&driver, &command), driver),
            Err(e) => {
                eprintln!("romain: {e}");
                return ExitCode::FAILURE;
            }
        },
        #[cfg(target_os = "linux")]
        Subcommands::Replicate(args) => return replicate(args),
        #[cfg(target_os = "linux")]
        Subcommands::Campaign { args } => return campaign(&args),
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

fn top(once: bool, interval_ms: u64) -> ExitCode {
    let interval = std::time::Duration::from_millis(interval_ms);
    let shown = match once {
        true => romain_scheme::top::once(interval).map(|frame| {
            for line in frame {
                println!("{line}");
            }
        }),
        false => romain_scheme::top::live(interval),
    };
    match shown {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("romain top: {}", client::explain(&e, "romain:"));
            ExitCode::FAILURE
        }
    }
}

/// Runs `romain-campaign` (beside this program, else from `PATH`) in this
/// process's place, as `git` runs its `git-<name>` programs.
#[cfg(target_os = "linux")]
fn campaign(args: &[std::ffi::OsString]) -> ExitCode {
    use std::os::unix::process::CommandExt;

    const PROGRAM: &str = "romain-campaign";
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join(PROGRAM)))
        .filter(|path| path.exists());
    let program = beside.unwrap_or_else(|| PathBuf::from(PROGRAM));
    let error = std::process::Command::new(&program).args(args).exec();
    eprintln!(
        "romain: cannot run {}: {error} (cargo build --release -p romain-campaign builds it)",
        program.display()
    );
    ExitCode::FAILURE
}

fn serve(registry: &std::path::Path, policy: Option<&std::path::Path>) -> ExitCode {
    let mut registry = match Registry::load(registry) {
        Ok(registry) => registry,
        Err(e) => {
            eprintln!("romain: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = policy {
        let policy = match driver_policy::Policy::load(path) {
            Ok(policy) => policy,
            Err(e) => {
                eprintln!("romain: {e}");
                return ExitCode::FAILURE;
            }
        };
        for driver in registry.apply_policy(&policy) {
            log::warn!(
                "{driver}: no rule in the policy for its label; its replicas may connect \
                 to any scheme"
            );
        }
    }
    if registry.drivers().next().is_none() {
        log::warn!("the registry lists no drivers; every open will fail with ENOENT");
    }
    // Replicated groups run `romain replicate`: this very program.
    // Replicated groups run this binary's `replicate`, which traces with ptrace:
    // where that is missing, groups run their driver alone.
    let engine = if cfg!(target_os = "linux") {
        match std::env::current_exe() {
            Ok(engine) => Some(engine),
            Err(e) => {
                eprintln!("romain: cannot find its own binary, which runs replicated groups: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    let supervisor = Supervisor::new(registry, engine);
    if let Err(e) = romain_scheme::wake_on_child_exit() {
        // Dead drivers are then found at the next tick instead.
        eprintln!("romain: cannot watch for drivers that end: {e}");
    }
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

#[cfg(target_os = "linux")]
fn replicate(args: ReplicateArgs) -> ExitCode {
    use std::os::fd::{FromRawFd, OwnedFd};

    use romain_engine::trap::ReplicaCommand;
    use romain_engine::{GroupConfig, ReplicateOptions};

    if args.replicas == 0 {
        eprintln!("romain: a group needs at least one replica");
        return ExitCode::FAILURE;
    }
    // The scheme's socket, if romain: handed it over, is the engine's alone: no
    // replica may accept on it behind the vote.
    scheme_runtime::claim_inherited();
    let schemes = match args.schemes.as_deref().map(romain_engine::scheme_names) {
        Some(Err(problem)) => {
            eprintln!("romain: --schemes: {problem}");
            return ExitCode::FAILURE;
        }
        Some(Ok(schemes)) => Some(schemes),
        None => None,
    };
    let (program, driver_args) = args.driver.split_first().expect("clap requires the driver");
    let mut command = ReplicaCommand::new(program);
    command.args(driver_args);
    // Every replica gets this process's environment (the registry's, as romain:
    // starts it): the same for all, so it cannot make them diverge.
    for (name, value) in std::env::vars_os() {
        command.env(name, value);
    }
    let options = ReplicateOptions {
        config: GroupConfig {
            command,
            replicas: args.replicas,
            watchdog: std::time::Duration::from_millis(args.watchdog_ms),
            device_window: None,
            backend: args.backend,
        },
        ports: args.ports,
        label: args.label,
        schemes,
        // SAFETY: the caller hands this descriptor to us on the command line, as
        // romain: does; nothing else in this process owns it.
        control: args
            .control_fd
            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
    };
    match romain_engine::replicate(options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("romain replicate: {e}");
            ExitCode::FAILURE
        }
    }
}
