//! The TCP path through the test guest, end to end: a TCP echo service for the
//! guest, the host's load client that measures it through QEMU's port forward, and a
//! bridge that puts the guest's own TCP/IP stack on a TAP device whose frames go
//! through a NIC served as a `network.<name>` scheme (our e1000 driver), so the same
//! service and load measure our driver and Linux's in-kernel one.
//!
//! Modules: [`paths`] (what is measured), [`protocol`] (the service's lines and the
//! console announcement), [`pattern`] (the bytes transfers carry), [`echo`] (the
//! service), [`load`] (the client), [`stream`] (a timed bulk stream into the guest,
//! both ends), [`relay`] (moving counted frames), [`tap`] and
//! [`nic`] (the two ports), [`bridge`] (the relay loop), [`ipconfig`] (addresses and
//! routes), [`child`] (helper processes a guest program starts and stops), [`cpu`]
//! (what the driver costs the processor, and its console line).

pub mod bridge;
pub mod child;
pub mod cpu;
pub mod echo;
pub mod ipconfig;
pub mod load;
pub mod nic;
pub mod paths;
pub mod pattern;
pub mod protocol;
pub mod relay;
pub mod stream;
pub mod tap;
