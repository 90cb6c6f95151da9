//! Redox: schemes served through `redox_scheme::Socket`, opened through libredox.
//!
//! Only type-checked on the machines this project is built on (Redox cannot be
//! linked or booted there), so this layer stays as thin as the API allows.

pub mod client;
pub mod server;
