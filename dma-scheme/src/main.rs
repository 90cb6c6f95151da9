//! `dma`: the DMA buffer daemon, serving the `dma:` scheme.

use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use dma_scheme::backend::{DmaBackend, DmaMemory};
use dma_scheme::request::parse_bytes;
use dma_scheme::{DmaScheme, QuarantineConfig, QuotaSource, UniformQuota, SCHEME_NAME};

#[derive(Parser)]
#[command(
    name = "dma",
    version,
    about = "Serves the dma: scheme: contiguous, zeroed DMA buffers with per-client quotas",
    after_help = "Clients open dma:alloc?size=<bytes>&flags=<flag,...>&keep=<name> \
                  (flags: shared; keep: optional, see --keep-ms) and dma:status.\n\
                  Logging: RUST_LOG=info (or debug)."
)]
struct Args {
    /// The driver policy: each driver (recognised by its uid) may hold its rule's
    /// `dma_quota`; callers without a rule get no DMA memory.
    #[arg(long, value_name = "FILE", conflicts_with = "quota")]
    policy: Option<std::path::PathBuf>,

    /// The same quota for every client instead of a policy, in bytes (decimal, 0x
    /// hex, or with K/M/G). With neither, every allocation is refused.
    #[arg(long, value_name = "BYTES", value_parser = quota_bytes)]
    quota: Option<u64>,

    /// Where buffers come from.
    #[arg(long, value_enum, default_value_t = BackendChoice::default())]
    backend: BackendChoice,

    /// How long a freed buffer's memory is kept from reuse, in milliseconds: a
    /// dead driver's device may write into it until mmio: has stopped the
    /// device's bus mastering (see the crate's quarantine docs for why the
    /// default is enough). 0 releases at once, unsafe without an IOMMU.
    #[arg(long, value_name = "MS", default_value_t = QuarantineConfig::DEFAULT_HOLD.as_millis() as u64)]
    quarantine_ms: u64,

    /// For tests: fill each freed buffer with a pattern once its quarantine is
    /// over, keep it as long again, and check that nothing (no device) wrote
    /// into it; the outcome is counted in dma:status (poison_clean, poison_dirty)
    #[arg(long)]
    quarantine_poison: bool,

    /// How long a kept buffer (allocated with keep=<name>) waits, untouched and
    /// still charged to its driver, for that driver's restarted successor to
    /// adopt it once its last handle has closed, in milliseconds; after that it
    /// is freed into the quarantine.
    #[arg(long, value_name = "MS", default_value_t = QuarantineConfig::DEFAULT_KEEP.as_millis() as u64)]
    keep_ms: u64,
}

#[cfg(target_os = "linux")]
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
enum BackendChoice {
    /// One 2 MiB hugetlb page per buffer, bus address from /proc/self/pagemap
    /// (needs root and vm.nr_hugepages)
    #[default]
    Hugetlb,
    /// Plain memory with no bus address, for tests: NOT FOR DEVICES
    MemfdNotForDevices,
}

#[cfg(target_os = "redox")]
#[derive(Clone, Copy, Debug, Default, ValueEnum)]
enum BackendChoice {
    /// Contiguous frames from the kernel's memory scheme (needs uid 0)
    #[default]
    RedoxMemory,
}

fn quota_bytes(text: &str) -> Result<u64, String> {
    parse_bytes(text)
        .ok_or_else(|| format!("{text:?} is not a byte count (decimal, 0x hex, or with K/M/G)"))
}

fn main() -> ExitCode {
    scheme_runtime::logging::init();
    let args = Args::parse();
    let quarantine = QuarantineConfig {
        hold: std::time::Duration::from_millis(args.quarantine_ms),
        poison: args.quarantine_poison,
        keep: std::time::Duration::from_millis(args.keep_ms),
    };
    log::info!(
        "freed buffers are quarantined for {:?}{}",
        quarantine.hold,
        if quarantine.poison {
            ", then poisoned and checked after as long again"
        } else {
            ""
        }
    );
    log::info!(
        "kept buffers wait {:?} for their successor",
        quarantine.keep
    );
    match &args.policy {
        Some(path) => match driver_policy::Policy::load(path) {
            Ok(policy) => {
                log::info!("quotas from the policy {}", path.display());
                run(args.backend, policy, quarantine)
            }
            Err(e) => {
                log::error!("{e}");
                ExitCode::FAILURE
            }
        },
        None => {
            if args.quota.is_none() {
                log::warn!("no --policy or --quota: every allocation will be refused");
            }
            run(args.backend, UniformQuota(args.quota), quarantine)
        }
    }
}

fn run<Q: QuotaSource>(backend: BackendChoice, quota: Q, quarantine: QuarantineConfig) -> ExitCode {
    let served = match backend {
        #[cfg(target_os = "linux")]
        BackendChoice::Hugetlb => serve(dma_scheme::backend::HugetlbBackend, quota, quarantine),
        #[cfg(target_os = "linux")]
        BackendChoice::MemfdNotForDevices => {
            log::warn!("memfd backend: buffers have no bus address; never give them to a device");
            serve(dma_scheme::backend::MemfdBackend, quota, quarantine)
        }
        #[cfg(target_os = "redox")]
        BackendChoice::RedoxMemory => dma_scheme::backend::RedoxMemoryBackend::new()
            .and_then(|backend| serve(backend, quota, quarantine)),
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

fn serve<B: DmaBackend, Q: QuotaSource>(
    mut backend: B,
    quota: Q,
    quarantine: QuarantineConfig,
) -> std::io::Result<()> {
    probe(&mut backend);
    log::info!("serving {SCHEME_NAME} with the {} backend", backend.name());
    let mut scheme = DmaScheme::with_quarantine(backend, quota, quarantine);
    // The tick releases quarantined buffers on time while no request comes.
    let tick = scheme.tick();
    scheme_runtime::serve_with_tick(SCHEME_NAME, &mut scheme, Some(tick))
}

/// Allocates and frees one buffer, so that a backend that cannot work here (no
/// huge pages, no privilege) says so at start and not at a driver's first request.
fn probe<B: DmaBackend>(backend: &mut B) {
    let Some(size) = backend.buffer_size(1) else {
        return;
    };
    match backend.allocate(size, dma_scheme::Direction::Both) {
        Ok(memory) => log::info!(
            "{} backend works (a test buffer had bus address {})",
            backend.name(),
            memory
                .bus_addr()
                .map_or("none".into(), |addr| format!("{addr:#x}"))
        ),
        Err(e) => log::warn!(
            "{} backend cannot allocate now ({e}); allocations will fail until it can",
            backend.name()
        ),
    }
}
