//! A small scheme for the replica and forwarder tests.
//!
//! Opening `note` makes a note: write appends to it, read reads it at an offset
//! (and would block while it is empty; with `reads_take`, read takes its first
//! bytes as from a queue, whatever the offset, and may be read ahead), call reverses the payload and answers
//! with the number of metadata words. `elsewhere` answers with another scheme's
//! descriptor, which cannot be passed on. Rounds and closes are counted.

use std::collections::BTreeMap;

use redox_scheme::scheme::SchemeSync;
use redox_scheme::{CallerCtx, OpenResult};
use syscall::error::{Error, Result, EBADF, ENOENT, EWOULDBLOCK};
use syscall::flag::EventFlags;
use syscall::schemev2::NewFdFlags;
use syscall::Stat;

use crate::{copy_at_offset, SchemeDaemon};

pub const ROOT: usize = 0;

#[derive(Default)]
pub struct Notes {
    notes: BTreeMap<usize, Vec<u8>>,
    next_id: usize,
    pub rounds: usize,
    pub closed: Vec<usize>,
    /// The pid of the last caller that opened or read.
    pub last_pid: usize,
    /// What the daemon asks of its next round.
    pub next_round_within: Option<std::time::Duration>,
    /// A line it acknowledges in every round the line fired.
    pub line: Option<super::RelayedLine>,
    /// Rounds the line fired in.
    pub line_fired: usize,
    /// Reads take the bytes they read, and may be made ahead.
    pub reads_take: bool,
    /// Reads made, by the replica for a client or not.
    pub reads: usize,
}

impl Notes {
    /// Notes whose reads take what they read, and may be made ahead.
    pub fn taking() -> Self {
        Self {
            reads_take: true,
            ..Self::default()
        }
    }

    fn note(&mut self, id: usize) -> Result<&mut Vec<u8>> {
        self.notes.get_mut(&id).ok_or(Error::new(EBADF))
    }
}

impl SchemeSync for Notes {
    fn scheme_root(&mut self) -> Result<usize> {
        Ok(ROOT)
    }

    fn openat(
        &mut self,
        dir: usize,
        path: &str,
        _flags: usize,
        _fcntl_flags: u32,
        ctx: &CallerCtx,
    ) -> Result<OpenResult> {
        if dir != ROOT {
            return Err(Error::new(EBADF));
        }
        self.last_pid = ctx.pid;
        match path {
            "note" => {
                self.next_id += 1;
                self.notes.insert(self.next_id, Vec::new());
                Ok(OpenResult::ThisScheme {
                    number: self.next_id,
                    flags: NewFdFlags::POSITIONED,
                })
            }
            "elsewhere" => Ok(OpenResult::OtherScheme { fd: 3 }),
            _ => Err(Error::new(ENOENT)),
        }
    }

    fn read(
        &mut self,
        id: usize,
        buf: &mut [u8],
        offset: u64,
        _fcntl_flags: u32,
        ctx: &CallerCtx,
    ) -> Result<usize> {
        self.last_pid = ctx.pid;
        self.reads += 1;
        let reads_take = self.reads_take;
        let note = self.note(id)?;
        if note.is_empty() {
            return Err(Error::new(EWOULDBLOCK));
        }
        if reads_take {
            let taken = buf.len().min(note.len());
            buf[..taken].copy_from_slice(&note[..taken]);
            note.drain(..taken);
            return Ok(taken);
        }
        Ok(copy_at_offset(note, offset, buf))
    }

    fn write(
        &mut self,
        id: usize,
        buf: &[u8],
        _offset: u64,
        _fcntl_flags: u32,
        _ctx: &CallerCtx,
    ) -> Result<usize> {
        self.note(id)?.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn call(
        &mut self,
        id: usize,
        payload: &mut [u8],
        metadata: &[u64],
        _ctx: &CallerCtx,
    ) -> Result<usize> {
        self.note(id)?;
        payload.reverse();
        Ok(metadata.len())
    }

    fn fstat(&mut self, id: usize, stat: &mut Stat, _ctx: &CallerCtx) -> Result<()> {
        stat.st_size = self.note(id)?.len() as u64;
        Ok(())
    }

    fn fpath(&mut self, id: usize, buf: &mut [u8], _ctx: &CallerCtx) -> Result<usize> {
        self.note(id)?;
        Ok(copy_at_offset(
            format!("notes:note/{id}").as_bytes(),
            0,
            buf,
        ))
    }

    fn fevent(&mut self, id: usize, flags: EventFlags, _ctx: &CallerCtx) -> Result<EventFlags> {
        let ready = if self.note(id)?.is_empty() {
            EventFlags::EVENT_WRITE
        } else {
            EventFlags::EVENT_READ | EventFlags::EVENT_WRITE
        };
        Ok(ready & flags)
    }

    fn on_close(&mut self, id: usize) {
        if self.notes.remove(&id).is_some() {
            self.closed.push(id);
        }
    }
}

impl SchemeDaemon for Notes {
    fn after_round(&mut self) {
        self.rounds += 1;
        if let Some(line) = self.line.as_ref().filter(|line| line.take_fired()) {
            self.line_fired += 1;
            line.acknowledge();
        }
    }

    fn relayed_line(&self) -> Option<super::RelayedLine> {
        self.line.clone()
    }

    fn next_round_within(&self) -> Option<std::time::Duration> {
        self.next_round_within
    }

    fn may_read_ahead(&self, id: usize) -> bool {
        self.reads_take && self.notes.contains_key(&id)
    }
}
