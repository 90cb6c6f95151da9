//! The Linux host transport: schemes served over `SOCK_SEQPACKET` Unix sockets.

pub mod client;
pub mod listener;
pub mod memory;
pub mod server;
pub mod socket;
