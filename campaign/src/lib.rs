//! Fault-injection campaigns against replicated drivers.
//!
//! A campaign runs one driver under romain's replication engine with N replicas,
//! puts one seeded fault at a time into a random replica ([`fault`]), sends the
//! driver one client request and checks what came out of the device byte for byte,
//! then classifies the fault by what the client, the device and the engine's
//! counters saw ([`outcome`], FAIL*-style classes in absolute counts). The result is
//! one CSV row per fault, a table per N and fault kind, and a plot ([`report`]).
//!
//! The target today is the 16550 UART driver on a software chip on this machine
//! ([`uart`]): every byte the chip is handed is checked against the request, so a
//! wrong byte cannot pass unseen. At N = 1 the engine traces a lone replica that
//! nothing out-votes, and the campaign restarts it when it dies, as romain's
//! restart-only supervision would: MINIX 3's case, for comparison.

pub mod fault;
pub mod outcome;
pub mod report;
pub mod run;
pub mod uart;

pub use fault::{FaultKind, FaultPlan};
pub use outcome::{classify, Delivery, Observation, Outcome};
pub use report::{Summary, TrialRecord};
pub use run::{run_campaign, CampaignConfig};
