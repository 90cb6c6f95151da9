//! The `dma:` scheme: DMA buffers for drivers.
//!
//! `dma:alloc?size=<bytes>&flags=<flag,...>` opens a new buffer: physically
//! contiguous, zeroed, its size rounded up to what the backend allocates, charged
//! to the opener's uid (a driver is a uid: all its processes share one quota),
//! freed when its last handle (or mapping, on Redox) goes or its owner dies, and
//! usable only by the process that opened it. The client learns the bus address
//! from `call` ([`info`]) and maps the buffer (Linux: the host transport's
//! `map_fd`; Redox: this scheme's `mmap_prep`, always `MAP_SHARED`). `dma:status`
//! reads the accounting as text ([`status`]): totals for everyone, per-uid lines
//! for root and for the caller's own uid only.
//!
//! Who may open it at all is the [`QuotaSource`]'s answer: with a policy, a
//! driver whose rule does not list `dma` in `schemes` gets `EACCES` for every
//! path; a caller with no rule may read `status` but gets no memory.
//!
//! On Linux a client that closes a handle but keeps its mapping keeps those pages
//! (no later buffer reuses them) while they no longer count against its quota; on
//! Redox the kernel holds the handle open until the last mapping goes. The
//! descriptor a Linux client maps is sealed at the buffer's size, and a hugetlb
//! buffer's page is pinned by the daemon, so that a client can neither resize
//! its buffer nor free its page while the buffer is open (`README.md`).
//!
//! A freed buffer's memory is held in a [`quarantine`] before the backend gets
//! it back: there is no IOMMU, and the dead driver's device may write into it
//! until `mmio:` has stopped the device's bus mastering.
//!
//! `dma:alloc?...&keep=<name>` asks for a buffer that is kept when its last
//! handle goes ([`keep`]): it waits, untouched and still charged, for the same
//! driver's restarted successor to adopt it by name, so that the successor
//! takes over a running device without resetting it.
//!
//! `dma:alloc?...&dir=<to-device|from-device|both>` says which way the buffer's
//! bytes go ([`Direction`]); a replication engine keeps its replicas' copies in
//! step by it. A kept buffer is adopted only with the same direction.
//!
//! Drivers use [`DmaBuffer`]; the daemon is [`DmaScheme`] over a [`backend`].

pub mod backend;
mod client;
mod flags;
pub mod info;
pub mod keep;
mod ledger;
pub mod quarantine;
mod quota;
pub mod request;
mod scheme;
pub mod status;

pub use client::DmaBuffer;
pub use flags::{BufferFlags, Direction};
pub use info::{BufferInfo, KeepState};
pub use quarantine::QuarantineConfig;
pub use quota::{QuotaSource, UniformQuota};
pub use request::KeepName;
pub use scheme::DmaScheme;

/// The name the daemon registers.
pub const SCHEME_NAME: &str = "dma";
