//! The `romain:` scheme: handles on the group table.
//!
//! Reading a handle gives status text (the root: one line per group; a group:
//! its `key=value` lines), taken afresh at every read at offset 0 so a reader
//! going through it in pieces sees one consistent snapshot. Writing a group
//! handle takes one [`Command`]. Starting a group and commanding one take root
//! or the supervisor's own user; anyone may read.
//!
//! What a reader sees depends on who opened the handle (as a file's
//! permissions are checked at open): root, the supervisor's own user and the
//! group's driver (its registry `uid`) see everything; anyone else sees the
//! groups' state and counters without pids and fault details
//! ([`Audience`](crate::status::Audience)).
//!
//! A refusal is logged once, quoting at most a [`Clipped`] prefix of the path
//! or command the client sent.

use std::collections::BTreeMap;
use std::time::Instant;

use driver_policy::Clipped;
use redox_scheme::scheme::SchemeSync;
use redox_scheme::{CallerCtx, OpenResult};
use scheme_runtime::SchemeDaemon;
use syscall::error::{Error, Result, EACCES, EBADF, EINVAL};
use syscall::flag::MODE_FILE;
use syscall::schemev2::NewFdFlags;
use syscall::Stat;

use crate::command::Command;
use crate::open_path::{self, OpenTarget};
use crate::status::Audience;
use crate::supervisor::Supervisor;
use crate::SCHEME_NAME;

const ROOT_ID: usize = 0;

/// Characters of an error message that quotes client text (a query key, a
/// command word) kept in a log line: the explanation, not 64 KiB of input.
const MESSAGE_CHARS: usize = 160;

enum Target {
    Root,
    Group(String),
}

struct OpenHandle {
    target: Target,
    /// Who opened it: decides what its status shows.
    opener_uid: u32,
    /// The text the last read at offset 0 produced.
    snapshot: String,
}

pub struct RomainScheme {
    supervisor: Supervisor,
    handles: BTreeMap<usize, OpenHandle>,
    next_id: usize,
    owner_uid: u32,
}

impl RomainScheme {
    /// Serves `supervisor`; callers running as `owner_uid` or root may start and
    /// command groups.
    pub fn new(supervisor: Supervisor, owner_uid: u32) -> Self {
        Self {
            supervisor,
            handles: BTreeMap::new(),
            next_id: ROOT_ID + 1,
            owner_uid,
        }
    }

    fn may_control(&self, ctx: &CallerCtx) -> bool {
        ctx.uid == 0 || ctx.uid == self.owner_uid
    }

    fn handle(&self, id: usize) -> Result<&OpenHandle> {
        self.handles.get(&id).ok_or(Error::new(EBADF))
    }

    /// How much of `driver`'s status `uid` may see: everything for root, the
    /// supervisor's user and the driver itself; no pids or fault details for
    /// anyone else.
    fn audience(&self, uid: u32, driver: &str) -> Audience {
        let drivers_own = self
            .supervisor
            .registry()
            .driver(driver)
            .and_then(|spec| spec.uid)
            == Some(uid);
        if uid == 0 || uid == self.owner_uid || drivers_own {
            Audience::Trusted
        } else {
            Audience::Public
        }
    }

    fn render(&self, handle: &OpenHandle) -> String {
        let uid = handle.opener_uid;
        match &handle.target {
            Target::Root => self
                .supervisor
                .groups()
                .map(|group| {
                    let status = group.status();
                    status.summary_for(self.audience(uid, status.driver))
                })
                .collect(),
            Target::Group(driver) => self
                .supervisor
                .group(driver)
                .map(|group| group.status().text_for(self.audience(uid, driver)))
                .unwrap_or_default(),
        }
    }

    fn command(&mut self, id: usize, text: &[u8], ctx: &CallerCtx) -> Result<()> {
        let Target::Group(driver) = &self.handle(id)?.target else {
            log::warn!(
                "pid {}: commands go to a group handle ({SCHEME_NAME}:<driver>), not the root",
                ctx.pid
            );
            return Err(Error::new(EINVAL));
        };
        let driver = driver.clone();
        if !self.may_control(ctx) {
            log::warn!(
                "{driver}: pid {} (uid {}) may not command groups",
                ctx.pid,
                ctx.uid
            );
            return Err(Error::new(EACCES));
        }
        let parsed = std::str::from_utf8(text)
            .map_err(|_| "command is not UTF-8".to_owned())
            .and_then(|text| text.parse::<Command>().map_err(|e| e.to_string()));
        let command = parsed.map_err(|problem| {
            log::warn!(
                "{driver}: pid {}: bad command: {}",
                ctx.pid,
                Clipped::at_most(&problem, MESSAGE_CHARS)
            );
            Error::new(EINVAL)
        })?;
        log::info!("{driver}: pid {} says {command}", ctx.pid);
        self.supervisor
            .command(&driver, &command, Instant::now())
            .map_err(|e| {
                log::warn!("{driver}: {command} refused: {e}");
                Error::new(e.errno())
            })
    }
}

impl SchemeSync for RomainScheme {
    fn scheme_root(&mut self) -> Result<usize> {
        Ok(ROOT_ID)
    }

    fn openat(
        &mut self,
        fd: usize,
        path: &str,
        _flags: usize,
        _fcntl: u32,
        ctx: &CallerCtx,
    ) -> Result<OpenResult> {
        if fd != ROOT_ID {
            return Err(Error::new(EBADF));
        }
        let target = match open_path::parse(path) {
            Ok(OpenTarget::Root) => Target::Root,
            Ok(OpenTarget::Group(request)) => {
                let may_start = self.may_control(ctx);
                self.supervisor
                    .open(&request, may_start, Instant::now())
                    .map_err(|e| {
                        log::warn!("open {} by pid {}: {e}", Clipped::new(path), ctx.pid);
                        Error::new(e.errno())
                    })?;
                Target::Group(request.driver.to_owned())
            }
            Err(e) => {
                log::warn!(
                    "open {} by pid {}: {}",
                    Clipped::new(path),
                    ctx.pid,
                    Clipped::at_most(&e.to_string(), MESSAGE_CHARS)
                );
                return Err(Error::new(EINVAL));
            }
        };
        let id = self.next_id;
        self.next_id += 1;
        self.handles.insert(
            id,
            OpenHandle {
                target,
                opener_uid: ctx.uid,
                snapshot: String::new(),
            },
        );
        Ok(OpenResult::ThisScheme {
            number: id,
            flags: NewFdFlags::POSITIONED,
        })
    }

    fn read(
        &mut self,
        id: usize,
        buf: &mut [u8],
        offset: u64,
        _fcntl: u32,
        _ctx: &CallerCtx,
    ) -> Result<usize> {
        let handle = self.handle(id)?;
        if offset == 0 {
            let text = self.render(handle);
            self.handles.get_mut(&id).expect("looked up above").snapshot = text;
        }
        let snapshot = self.handle(id)?.snapshot.as_bytes();
        Ok(scheme_runtime::copy_at_offset(snapshot, offset, buf))
    }

    fn write(
        &mut self,
        id: usize,
        buf: &[u8],
        _offset: u64,
        _fcntl: u32,
        ctx: &CallerCtx,
    ) -> Result<usize> {
        self.command(id, buf, ctx)?;
        Ok(buf.len())
    }

    fn fstat(&mut self, id: usize, stat: &mut Stat, _ctx: &CallerCtx) -> Result<()> {
        let handle = self.handle(id)?;
        stat.st_mode = MODE_FILE | 0o644;
        stat.st_size = self.render(handle).len() as u64;
        Ok(())
    }

    fn fpath(&mut self, id: usize, buf: &mut [u8], _ctx: &CallerCtx) -> Result<usize> {
        let path = match &self.handle(id)?.target {
            Target::Root => format!("{SCHEME_NAME}:"),
            Target::Group(driver) => format!("{SCHEME_NAME}:{driver}"),
        };
        Ok(scheme_runtime::copy_at_offset(path.as_bytes(), 0, buf))
    }

    fn on_close(&mut self, id: usize) {
        // The group lives on: closing a handle never stops it.
        self.handles.remove(&id);
    }
}

impl SchemeDaemon for RomainScheme {
    fn after_round(&mut self) {
        self.supervisor.poll(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scheme_runtime::caller_ctx;
    use syscall::error::{ENOENT, EOPNOTSUPP};

    const OWNER: u32 = 1000;

    fn scheme() -> RomainScheme {
        let registry = "[driver.absent]\nbinary = \"/nonexistent/driver\"\n"
            .parse()
            .unwrap();
        RomainScheme::new(
            Supervisor::new(registry, Some("/nonexistent/romain".into())),
            OWNER,
        )
    }

    fn open(scheme: &mut RomainScheme, path: &str, uid: u32) -> Result<usize> {
        match scheme.openat(ROOT_ID, path, 0, 0, &caller_ctx(7, uid, uid))? {
            OpenResult::ThisScheme { number, .. } => Ok(number),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn read_all(scheme: &mut RomainScheme, id: usize, chunk: usize) -> String {
        let mut text = Vec::new();
        let mut buf = vec![0u8; chunk];
        loop {
            let n = scheme
                .read(id, &mut buf, text.len() as u64, 0, &caller_ctx(7, 0, 0))
                .unwrap();
            if n == 0 {
                return String::from_utf8(text).unwrap();
            }
            text.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn paths_map_to_errnos() {
        let mut scheme = scheme();
        let errno =
            |scheme: &mut RomainScheme, path: &str| open(scheme, path, OWNER).unwrap_err().errno;
        assert_eq!(errno(&mut scheme, "nosuch"), ENOENT);
        assert_eq!(errno(&mut scheme, "absent?replicas=zero"), EINVAL);
        assert_eq!(errno(&mut scheme, "absent?attach"), syscall::error::ESRCH);
        assert_eq!(
            open(&mut scheme, "absent", 4321).unwrap_err().errno,
            EACCES,
            "a stranger may not start"
        );
        assert_eq!(
            scheme
                .openat(99, "", 0, 0, &caller_ctx(7, 0, 0))
                .unwrap_err()
                .errno,
            EBADF
        );
    }

    #[test]
    fn status_reads_in_pieces_and_commands_are_checked() {
        let mut scheme = scheme();
        let root = open(&mut scheme, "", 4321).unwrap();
        assert_eq!(read_all(&mut scheme, root, 64), "");
        let group = open(&mut scheme, "absent?replicas=1", 0).unwrap();
        let status = read_all(&mut scheme, group, 7);
        assert!(
            status.starts_with("driver=absent\nstate=backoff\nreplicas=1\npids=\n"),
            "{status}"
        );
        assert!(status.contains("\nlast_fault=spawn\n"), "{status}");
        assert_eq!(
            read_all(&mut scheme, root, 5),
            "driver=absent state=backoff replicas=1 restarts=0\n",
            "a stranger opened the root: no pids"
        );

        let stranger = caller_ctx(8, 4321, 4321);
        let owner = caller_ctx(8, OWNER, OWNER);
        let write = |scheme: &mut RomainScheme, id, text: &str, ctx: &CallerCtx| {
            scheme
                .write(id, text.as_bytes(), 0, 0, ctx)
                .map_err(|e| e.errno)
        };
        assert_eq!(write(&mut scheme, group, "down", &stranger), Err(EACCES));
        assert_eq!(write(&mut scheme, root, "down", &owner), Err(EINVAL));
        assert_eq!(write(&mut scheme, group, "explode", &owner), Err(EINVAL));
        assert_eq!(write(&mut scheme, group, "kill 1", &owner), Err(EINVAL));
        assert_eq!(
            write(&mut scheme, group, "flip 0 reg rax 1", &owner),
            Err(EOPNOTSUPP),
            "a group of one has no engine to inject faults with"
        );
        assert_eq!(
            scheme
                .write(group, &[0xff, 0xfe], 0, 0, &owner)
                .unwrap_err()
                .errno,
            EINVAL
        );
        assert_eq!(
            write(&mut scheme, group, "kill 0", &owner),
            Err(syscall::error::ESRCH)
        );
        assert_eq!(write(&mut scheme, group, "down\n", &owner), Ok(5));
        assert!(read_all(&mut scheme, group, 4096).contains("\nstate=down\n"));

        let mut stat = Stat::default();
        scheme.fstat(group, &mut stat, &owner).unwrap();
        assert_eq!(
            stat.st_size as usize,
            read_all(&mut scheme, group, 4096).len()
        );
        let mut path = [0u8; 64];
        let n = scheme.fpath(group, &mut path, &owner).unwrap();
        assert_eq!(&path[..n], b"romain:absent");

        scheme.on_close(group);
        assert_eq!(
            scheme
                .read(group, &mut path, 0, 0, &owner)
                .unwrap_err()
                .errno,
            EBADF
        );
        assert!(
            scheme.supervisor.group("absent").is_some(),
            "closing a handle leaves the group"
        );
    }

    #[test]
    fn a_stranger_reads_a_groups_counters_but_not_its_pids_or_fault_details() {
        let mut scheme = scheme();
        let started = open(&mut scheme, "absent?replicas=1", 0).unwrap();
        assert!(read_all(&mut scheme, started, 4096).contains("\nlast_fault_detail="));

        let stranger = open(&mut scheme, "absent?attach", 4321).unwrap();
        let text = read_all(&mut scheme, stranger, 4096);
        for line in [
            "driver=absent",
            "state=backoff",
            "restarts=0",
            "last_fault=spawn",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing from\n{text}"
            );
        }
        assert!(!text.contains("pids="), "{text}");
        assert!(!text.contains("last_fault_detail="), "{text}");
        let root = open(&mut scheme, "", 4321).unwrap();
        assert_eq!(
            read_all(&mut scheme, root, 4096),
            "driver=absent state=backoff replicas=1 restarts=0\n"
        );

        for uid in [0, OWNER] {
            let group = open(&mut scheme, "absent?attach", uid).unwrap();
            let text = read_all(&mut scheme, group, 4096);
            assert!(text.contains("\npids=\n"), "uid {uid}: {text}");
            assert!(text.contains("\nlast_fault_detail="), "uid {uid}: {text}");
            let root = open(&mut scheme, "", uid).unwrap();
            assert!(read_all(&mut scheme, root, 4096).contains(" pids= "));
        }
    }

    #[test]
    fn a_groups_own_driver_sees_its_pids_and_fault_details() {
        let registry = "[driver.own]\nbinary = \"/nonexistent/driver\"\nuid = 1001\ngid = 1001\n"
            .parse()
            .unwrap();
        let mut scheme = RomainScheme::new(
            Supervisor::new(registry, Some("/nonexistent/romain".into())),
            OWNER,
        );
        open(&mut scheme, "own?replicas=1", 0).unwrap();
        let driver = open(&mut scheme, "own?attach", 1001).unwrap();
        let text = read_all(&mut scheme, driver, 4096);
        assert!(text.contains("\npids=\n"), "{text}");
        assert!(text.contains("\nlast_fault_detail="), "{text}");
        let other = open(&mut scheme, "own?attach", 1002).unwrap();
        assert!(!read_all(&mut scheme, other, 4096).contains("pids="));
    }
}
