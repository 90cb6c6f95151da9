//! The seam between the group's logic and the mechanism that stops replicas at
//! their events.
//!
//! [`crate::replica_group`] decides: it votes on what the replicas did, chooses
//! whom to repair or replace, performs the effect once and says how every
//! replica goes on. A [`Backend`] carries that out on real replicas: it starts
//! them, runs them to their next event and reports what each reached
//! ([`Arrival`]), sets the results, copies one replica's state into another and
//! compares their memory. The ptrace backend ([`ptrace::PtraceBackend`]) is the
//! one Linux runs today; an in-process trap stub (the Redox issue) fits behind
//! the same trait, and the group's logic is tested with a scripted one.

pub mod ptrace;
#[cfg(test)]
pub mod scripted;
pub mod stub;

use std::ops::Range;

use nix::libc::user_regs_struct;
use nix::unistd::Pid;

use crate::fault_injection::Fault;
use crate::member::Arrival;
use crate::replica_group::GroupFailure;
use crate::trap::repair::{
    compare_memory, differing_code_pages, repair_code, repair_memory, PageVote,
};
use crate::trap::TrapError;
use crate::vote::ReplicaIndex;

/// A replica's memory, as the group reads what an event hands out (a message
/// header and the buffers it points to).
pub trait ReplicaMemory {
    fn read_memory(&self, address: u64, len: usize) -> Result<Vec<u8>, TrapError>;
}

/// Replicas in numbered places, each stopped at an event, running toward the
/// next, or gone. Every method but [`Backend::advance`] is called while the
/// live replicas are stopped.
pub trait Backend {
    /// Starts replicas in places `0..count`, stopped before their first
    /// instruction; earlier ones must be gone ([`Backend::clear`]).
    fn spawn(&mut self, count: usize) -> Result<(), GroupFailure>;

    /// Ends every replica and empties every place.
    fn clear(&mut self);

    /// How many places there are, live or empty.
    fn places(&self) -> usize;

    fn is_live(&self, index: ReplicaIndex) -> bool;

    /// The process of a live replica, for the status and for keeping scheme
    /// memory in step (which reads and writes replicas' memory by process).
    fn pid(&self, index: ReplicaIndex) -> Option<Pid>;

    /// Resumes every live replica and waits until each reaches its next event,
    /// dies, or does not arrive within the watchdog period; one arrival per
    /// place (none for an empty place).
    fn advance(&mut self) -> Result<Vec<Option<Arrival>>, GroupFailure>;

    /// The event a majority agreed on, before it is completed.
    fn agreed_on(&mut self, regs: &user_regs_struct, is_syscall: bool);

    /// Makes a stopped replica go on from its event with `stores` written
    /// into its memory and `regs` as its registers. A replica left without it
    /// goes on as it stopped (it runs an intercepted syscall itself).
    fn complete(
        &mut self,
        index: ReplicaIndex,
        stores: &[(u64, Vec<u8>)],
        regs: &user_regs_struct,
    ) -> Result<(), GroupFailure>;

    /// Reads a stopped replica's memory.
    fn read_memory(
        &self,
        index: ReplicaIndex,
        address: u64,
        len: usize,
    ) -> Result<Vec<u8>, TrapError>;

    /// Empties place `index`; its replica is ended.
    fn discard(&mut self, index: ReplicaIndex);

    /// Copies the memory, code and floating-point state of `source` into
    /// `faulty`; its registers are set with everyone's when the event
    /// completes. Says what was copied, or why it cannot be done.
    fn repair(&mut self, faulty: ReplicaIndex, source: ReplicaIndex) -> Result<String, String>;

    /// Fills the empty place `index` with a copy of `source` that goes on with
    /// `regs`, stopped where `source` is.
    fn replace(
        &mut self,
        index: ReplicaIndex,
        source: ReplicaIndex,
        regs: &user_regs_struct,
    ) -> Result<(), GroupFailure>;

    /// The pages (private memory and code) on which any of `among` differs
    /// from the first of them, not reading those in `known_alike`.
    fn differing_pages(
        &mut self,
        among: &[ReplicaIndex],
        known_alike: &[Range<u64>],
    ) -> Result<Vec<u64>, String>;

    /// Gives every page of `pages`, in each of `among`, the content a strict
    /// majority of them holds; positions in the result are into `among`.
    fn vote_pages(&mut self, among: &[ReplicaIndex], pages: &[u64]) -> Result<PageVote, String>;

    /// Puts a fault into a stopped replica.
    fn inject(&mut self, index: ReplicaIndex, fault: &Fault) -> Result<(), String>;
}

/// One replica of a backend, as [`ReplicaMemory`].
pub struct ReplicaOf<'a, B: ?Sized> {
    pub backend: &'a B,
    pub index: ReplicaIndex,
}

impl<B: Backend + ?Sized> ReplicaMemory for ReplicaOf<'_, B> {
    fn read_memory(&self, address: u64, len: usize) -> Result<Vec<u8>, TrapError> {
        self.backend.read_memory(self.index, address, len)
    }
}

/// A replica killed while stopped is gone before the engine's next call on it; its
/// death shows at the next wait, so only other failures stop the group.
pub(crate) fn continue_member(result: nix::Result<()>) -> Result<(), GroupFailure> {
    match result {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(errno) => Err(errno.into()),
    }
}

/// Copies the private memory and code of process `healthy` that differ into
/// `faulty`; says what was copied, or why it could not be.
pub fn copy_memory_and_code(healthy: Pid, faulty: Pid) -> Result<String, String> {
    let memory = repair_memory(healthy, faulty)
        .map_err(|error| format!("memory not repairable ({error})"))?;
    let code =
        repair_code(healthy, faulty).map_err(|error| format!("code not repairable ({error})"))?;
    Ok(format!(
        "{} pages of memory and {code} of code copied",
        memory.pages_copied
    ))
}

/// The pages (private memory and code) on which any of the processes `pids`
/// differs from the first, not reading those in `known_alike`.
pub fn compare_replicas(pids: &[Pid], known_alike: &[Range<u64>]) -> Result<Vec<u64>, String> {
    let Some(&reference) = pids.first() else {
        return Ok(Vec::new());
    };
    let mut pages = std::collections::BTreeSet::new();
    for &other in &pids[1..] {
        pages.extend(compare_memory(reference, other, known_alike).map_err(|e| e.to_string())?);
    }
    // Code is compared too: a corrupted instruction is a fault no event shows
    // until it runs, and a replica copied from carries it along.
    pages.extend(differing_code_pages(pids).map_err(|e| e.to_string())?);
    Ok(pages.into_iter().collect())
}

/// Any backend, chosen when the group starts.
impl<B: Backend + ?Sized> Backend for Box<B> {
    fn spawn(&mut self, count: usize) -> Result<(), GroupFailure> {
        (**self).spawn(count)
    }
    fn clear(&mut self) {
        (**self).clear()
    }
    fn places(&self) -> usize {
        (**self).places()
    }
    fn is_live(&self, index: ReplicaIndex) -> bool {
        (**self).is_live(index)
    }
    fn pid(&self, index: ReplicaIndex) -> Option<Pid> {
        (**self).pid(index)
    }
    fn advance(&mut self) -> Result<Vec<Option<Arrival>>, GroupFailure> {
        (**self).advance()
    }
    fn agreed_on(&mut self, regs: &user_regs_struct, is_syscall: bool) {
        (**self).agreed_on(regs, is_syscall)
    }
    fn complete(
        &mut self,
        index: ReplicaIndex,
        stores: &[(u64, Vec<u8>)],
        regs: &user_regs_struct,
    ) -> Result<(), GroupFailure> {
        (**self).complete(index, stores, regs)
    }
    fn read_memory(
        &self,
        index: ReplicaIndex,
        address: u64,
        len: usize,
    ) -> Result<Vec<u8>, TrapError> {
        (**self).read_memory(index, address, len)
    }
    fn discard(&mut self, index: ReplicaIndex) {
        (**self).discard(index)
    }
    fn repair(&mut self, faulty: ReplicaIndex, source: ReplicaIndex) -> Result<String, String> {
        (**self).repair(faulty, source)
    }
    fn replace(
        &mut self,
        index: ReplicaIndex,
        source: ReplicaIndex,
        regs: &user_regs_struct,
    ) -> Result<(), GroupFailure> {
        (**self).replace(index, source, regs)
    }
    fn differing_pages(
        &mut self,
        among: &[ReplicaIndex],
        known_alike: &[Range<u64>],
    ) -> Result<Vec<u64>, String> {
        (**self).differing_pages(among, known_alike)
    }
    fn vote_pages(&mut self, among: &[ReplicaIndex], pages: &[u64]) -> Result<PageVote, String> {
        (**self).vote_pages(among, pages)
    }
    fn inject(&mut self, index: ReplicaIndex, fault: &Fault) -> Result<(), String> {
        (**self).inject(index, fault)
    }
}
