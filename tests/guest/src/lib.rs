//! Shared by the host harness and the programs it runs inside the QEMU guest: the result
//! line protocol, and what the in-guest programs need to act as drivers of the guest's
//! devices through the `mmio:` and `dma:` daemons.

pub mod campaign_lines;
pub mod com2_bulk;
pub mod guest;
pub mod kill_cost;
pub mod protocol;
pub mod restart_lines;
