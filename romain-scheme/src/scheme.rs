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
//!
//! `store/<driver>/<key>` handles read and write the driver's [`Store`]
//! (`crate::store` states the rules); the store belongs to the scheme, not to
//! the group, so it outlives every restart of the driver. A store handle holds
//! at most one value (a snapshot taken at a read at offset 0, shared with the
//! store), and a driver at most [`MAX_STORE_HANDLES`] of them at a time.

use std::sync::Arc;
use std::time::Instant;

use driver_policy::Clipped;
use redox_scheme::scheme::SchemeSync;
use redox_scheme::{CallerCtx, OpenResult};
use scheme_runtime::{HandleTable, SchemeDaemon, ROOT_ID};
use syscall::error::{Error, Result, EACCES, EBADF, EINVAL, EMFILE, ENOENT};
use syscall::flag::{MODE_FILE, O_ACCMODE, O_CREAT, O_EXCL, O_WRONLY};
use syscall::schemev2::NewFdFlags;
use syscall::Stat;

use crate::command::Command;
use crate::open_path::{self, OpenTarget, StoreRequest};
use crate::status::Audience;
use crate::store::{Key, Store, StoreError};
use crate::supervisor::Supervisor;
use crate::SCHEME_NAME;

/// Characters of an error message that quotes client text (a query key, a
/// command word) kept in a log line: the explanation, not 64 KiB of input.
const MESSAGE_CHARS: usize = 160;

/// Store handles one driver may hold open at once: a driver needs one or two,
/// and each may hold a value.
pub const MAX_STORE_HANDLES: usize = 16;

enum Target {
    Root,
    Group(String),
    Store(StoreHandle),
}

struct StoreHandle {
    driver: String,
    key: Key,
    readable: bool,
    writable: bool,
    /// O_CREAT: the first write may create the key.
    create: bool,
    /// The value the last read at offset 0 took; replaced values stay whole
    /// here until then.
    snapshot: Option<Arc<[u8]>>,
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
    store: Store,
    handles: HandleTable<OpenHandle>,
    owner_uid: u32,
}

impl RomainScheme {
    /// Serves `supervisor`; callers running as `owner_uid` or root may start and
    /// command groups.
    pub fn new(supervisor: Supervisor, owner_uid: u32) -> Self {
        Self {
            supervisor,
            store: Store::new(),
            handles: HandleTable::new(),
            owner_uid,
        }
    }

    fn may_control(&self, ctx: &CallerCtx) -> bool {
        ctx.uid == 0 || ctx.uid == self.owner_uid
    }

    fn handle(&self, id: usize) -> Result<&OpenHandle> {
        self.handles.get(id).ok_or(Error::new(EBADF))
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

    /// The one user who may open `driver`'s store: its registry `uid`, or the
    /// supervisor's own when it has none (the driver then runs as the
    /// supervisor). `None`: no such driver.
    fn store_owner(&self, driver: &str) -> Option<u32> {
        let spec = self.supervisor.registry().driver(driver)?;
        Some(spec.uid.unwrap_or(self.owner_uid))
    }

    fn open_store(
        &self,
        request: &StoreRequest<'_>,
        flags: usize,
        ctx: &CallerCtx,
    ) -> std::result::Result<StoreHandle, StoreRefusal> {
        let driver = request.driver;
        let owner = self.store_owner(driver).ok_or(StoreRefusal::NoDriver)?;
        if ctx.uid != owner {
            return Err(StoreRefusal::NotTheDriver { owner });
        }
        let key = Key::parse(request.key).map_err(StoreRefusal::Store)?;
        let open_files = self
            .handles
            .values()
            .filter(|h| matches!(&h.target, Target::Store(s) if s.driver == driver))
            .count();
        if open_files >= MAX_STORE_HANDLES {
            return Err(StoreRefusal::TooManyHandles);
        }
        let writable = flags & O_WRONLY != 0;
        let create = flags & O_CREAT != 0;
        if writable {
            let exclusive = flags & O_EXCL != 0;
            self.store
                .check_writer(driver, &key, create, exclusive)
                .map_err(StoreRefusal::Store)?;
        } else if self.store.get(driver, &key).is_none() {
            return Err(StoreRefusal::Store(StoreError::NotSet));
        }
        Ok(StoreHandle {
            driver: driver.to_owned(),
            key,
            readable: flags & O_ACCMODE != O_WRONLY,
            writable,
            create,
            snapshot: None,
        })
    }

    fn store_handle(&mut self, id: usize) -> Result<&mut StoreHandle> {
        match &mut self.handles.get_mut(id).ok_or(Error::new(EBADF))?.target {
            Target::Store(handle) => Ok(handle),
            _ => Err(Error::new(EBADF)),
        }
    }

    fn read_store(&mut self, id: usize, buf: &mut [u8], offset: u64) -> Result<usize> {
        let (driver, key, readable) = match &self.handle(id)?.target {
            Target::Store(h) => (h.driver.clone(), h.key.clone(), h.readable),
            _ => return Err(Error::new(EBADF)),
        };
        if !readable {
            return Err(Error::new(EBADF));
        }
        let current = self.store.get(&driver, &key);
        let handle = self.store_handle(id)?;
        if offset == 0 || handle.snapshot.is_none() {
            handle.snapshot = current;
        }
        let value = handle.snapshot.as_deref().unwrap_or_default();
        Ok(scheme_runtime::copy_at_offset(value, offset, buf))
    }

    fn write_store(&mut self, id: usize, buf: &[u8], ctx: &CallerCtx) -> Result<usize> {
        let handle = self.store_handle(id)?;
        if !handle.writable {
            return Err(Error::new(EBADF));
        }
        let (driver, key, create) = (handle.driver.clone(), handle.key.clone(), handle.create);
        self.store.set(&driver, &key, buf, create).map_err(|e| {
            log::warn!(
                "store/{driver}/{key}: pid {}: {e} (keys and bytes in use: {:?})",
                ctx.pid,
                self.store.usage(&driver)
            );
            Error::new(e.errno())
        })?;
        log::debug!(
            "store/{driver}/{key}: pid {} set {} bytes",
            ctx.pid,
            buf.len()
        );
        Ok(buf.len())
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
            Target::Store(_) => String::new(),
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
        flags: usize,
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
            Ok(OpenTarget::Store(request)) => match self.open_store(&request, flags, ctx) {
                Ok(handle) => Target::Store(handle),
                // A driver's first start finds nothing stored: no refusal.
                Err(StoreRefusal::Store(StoreError::NotSet)) => {
                    log::debug!("open {} by pid {}: not set", Clipped::new(path), ctx.pid);
                    return Err(Error::new(ENOENT));
                }
                Err(refusal) => {
                    log::warn!(
                        "open {} by pid {} (uid {}): {refusal}",
                        Clipped::new(path),
                        ctx.pid,
                        ctx.uid
                    );
                    return Err(Error::new(refusal.errno()));
                }
            },
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
        let id = self.handles.insert(OpenHandle {
            target,
            opener_uid: ctx.uid,
            snapshot: String::new(),
        })?;
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
        if let Target::Store(_) = handle.target {
            return self.read_store(id, buf, offset);
        }
        if offset == 0 {
            let text = self.render(handle);
            self.handles.get_mut(id).expect("looked up above").snapshot = text;
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
        if let Target::Store(_) = self.handle(id)?.target {
            return self.write_store(id, buf, ctx);
        }
        self.command(id, buf, ctx)?;
        Ok(buf.len())
    }

    fn fstat(&mut self, id: usize, stat: &mut Stat, _ctx: &CallerCtx) -> Result<()> {
        let handle = self.handle(id)?;
        stat.st_mode = MODE_FILE | 0o644;
        stat.st_size = match &handle.target {
            Target::Store(h) => self.store.get(&h.driver, &h.key).map_or(0, |v| v.len()),
            _ => self.render(handle).len(),
        } as u64;
        Ok(())
    }

    fn fpath(&mut self, id: usize, buf: &mut [u8], _ctx: &CallerCtx) -> Result<usize> {
        let path = match &self.handle(id)?.target {
            Target::Root => format!("{SCHEME_NAME}:"),
            Target::Group(driver) => format!("{SCHEME_NAME}:{driver}"),
            Target::Store(h) => format!("{SCHEME_NAME}:store/{}/{}", h.driver, h.key),
        };
        Ok(scheme_runtime::copy_at_offset(path.as_bytes(), 0, buf))
    }

    fn on_close(&mut self, id: usize) {
        // The group lives on: closing a handle never stops it.
        self.handles.remove(id);
    }
}

/// Why a store path was not opened.
#[derive(Debug)]
enum StoreRefusal {
    NoDriver,
    NotTheDriver { owner: u32 },
    TooManyHandles,
    Store(StoreError),
}

impl StoreRefusal {
    fn errno(&self) -> i32 {
        match self {
            Self::NoDriver => ENOENT,
            Self::NotTheDriver { .. } => EACCES,
            Self::TooManyHandles => EMFILE,
            Self::Store(e) => e.errno(),
        }
    }
}

impl std::fmt::Display for StoreRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NoDriver => f.write_str("no such driver in the registry"),
            Self::NotTheDriver { owner } => {
                write!(
                    f,
                    "only the driver's own user (uid {owner}) may open its store"
                )
            }
            Self::TooManyHandles => write!(
                f,
                "the driver holds {MAX_STORE_HANDLES} store handles already"
            ),
            Self::Store(e) => e.fmt(f),
        }
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

    mod store {
        use super::*;
        use syscall::error::{EEXIST, EFBIG, ENOSPC};
        use syscall::flag::{O_RDONLY, O_RDWR};

        const DRIVER_UID: u32 = 1001;

        /// `own` runs as its own user; `plain` as the supervisor.
        fn scheme() -> RomainScheme {
            let registry =
                "[driver.own]\nbinary = \"/nonexistent/driver\"\nuid = 1001\ngid = 1001\n\
                            [driver.plain]\nbinary = \"/nonexistent/driver\"\n"
                    .parse()
                    .unwrap();
            RomainScheme::new(
                Supervisor::new(registry, Some("/nonexistent/romain".into())),
                OWNER,
            )
        }

        fn open(scheme: &mut RomainScheme, path: &str, flags: usize, uid: u32) -> Result<usize> {
            match scheme.openat(ROOT_ID, path, flags, 0, &caller_ctx(9, uid, uid))? {
                OpenResult::ThisScheme { number, .. } => Ok(number),
                other => panic!("unexpected {other:?}"),
            }
        }

        fn errno(result: Result<usize>) -> i32 {
            result.expect_err("an error").errno
        }

        fn save(scheme: &mut RomainScheme, path: &str, uid: u32, value: &[u8]) -> Result<usize> {
            let id = open(scheme, path, O_WRONLY | O_CREAT, uid)?;
            let written = scheme.write(id, value, 0, 0, &caller_ctx(9, uid, uid));
            scheme.on_close(id);
            written
        }

        fn load(scheme: &mut RomainScheme, path: &str, uid: u32) -> Result<Vec<u8>> {
            let id = open(scheme, path, O_RDONLY, uid)?;
            let mut value = Vec::new();
            let mut buf = [0u8; 3];
            loop {
                let n = scheme.read(
                    id,
                    &mut buf,
                    value.len() as u64,
                    0,
                    &caller_ctx(9, uid, uid),
                )?;
                if n == 0 {
                    scheme.on_close(id);
                    return Ok(value);
                }
                value.extend_from_slice(&buf[..n]);
            }
        }

        #[test]
        fn a_driver_reads_back_what_it_wrote_and_an_unset_key_is_enoent() {
            let mut scheme = scheme();
            let path = "store/own/settings";
            assert_eq!(errno(open(&mut scheme, path, O_RDONLY, DRIVER_UID)), ENOENT);
            assert_eq!(
                errno(open(&mut scheme, path, O_WRONLY, DRIVER_UID)),
                ENOENT,
                "writing an unset key takes O_CREAT"
            );
            assert_eq!(
                save(&mut scheme, path, DRIVER_UID, b"baud=9600").unwrap(),
                9
            );
            assert_eq!(load(&mut scheme, path, DRIVER_UID).unwrap(), b"baud=9600");
            assert_eq!(save(&mut scheme, path, DRIVER_UID, b"x").unwrap(), 1);
            assert_eq!(
                load(&mut scheme, path, DRIVER_UID).unwrap(),
                b"x",
                "replaced whole"
            );

            // The supervisor's own user is the driver without a registry uid.
            save(&mut scheme, "store/plain/k", OWNER, b"v").unwrap();
            assert_eq!(load(&mut scheme, "store/plain/k", OWNER).unwrap(), b"v");

            let id = open(&mut scheme, path, O_RDWR, DRIVER_UID).unwrap();
            let mut stat = Stat::default();
            scheme
                .fstat(id, &mut stat, &caller_ctx(9, DRIVER_UID, DRIVER_UID))
                .unwrap();
            assert_eq!(stat.st_size, 1);
            let mut name = [0u8; 64];
            let n = scheme
                .fpath(id, &mut name, &caller_ctx(9, DRIVER_UID, DRIVER_UID))
                .unwrap();
            assert_eq!(&name[..n], b"romain:store/own/settings");
        }

        #[test]
        fn a_reader_going_through_a_value_in_pieces_keeps_the_value_it_started_on() {
            let mut scheme = scheme();
            let ctx = caller_ctx(9, DRIVER_UID, DRIVER_UID);
            save(&mut scheme, "store/own/k", DRIVER_UID, b"old value").unwrap();
            let reader = open(&mut scheme, "store/own/k", O_RDONLY, DRIVER_UID).unwrap();
            let mut buf = [0u8; 4];
            assert_eq!(scheme.read(reader, &mut buf, 0, 0, &ctx).unwrap(), 4);
            save(&mut scheme, "store/own/k", DRIVER_UID, b"new").unwrap();
            assert_eq!(scheme.read(reader, &mut buf, 4, 0, &ctx).unwrap(), 4);
            assert_eq!(&buf, b"valu");
            assert_eq!(
                scheme.read(reader, &mut buf, 0, 0, &ctx).unwrap(),
                3,
                "offset 0 looks again"
            );
            assert_eq!(&buf[..3], b"new");
            assert_eq!(
                scheme.write(reader, b"w", 0, 0, &ctx).unwrap_err().errno,
                EBADF
            );
            let writer = open(&mut scheme, "store/own/k", O_WRONLY, DRIVER_UID).unwrap();
            assert_eq!(
                scheme.read(writer, &mut buf, 0, 0, &ctx).unwrap_err().errno,
                EBADF
            );
            // Any offset: each write is the whole value.
            assert_eq!(scheme.write(writer, b"at 7", 7, 0, &ctx).unwrap(), 4);
            assert_eq!(
                load(&mut scheme, "store/own/k", DRIVER_UID).unwrap(),
                b"at 7"
            );
        }

        #[test]
        fn another_user_is_refused_with_eacces_root_included() {
            let mut scheme = scheme();
            save(&mut scheme, "store/own/k", DRIVER_UID, b"secret").unwrap();
            for uid in [0, OWNER, 1002] {
                for flags in [O_RDONLY, O_WRONLY | O_CREAT, O_RDWR] {
                    assert_eq!(
                        errno(open(&mut scheme, "store/own/k", flags, uid)),
                        EACCES,
                        "uid {uid}, flags {flags:#x}"
                    );
                }
            }
            for uid in [0, DRIVER_UID] {
                assert_eq!(
                    errno(open(&mut scheme, "store/plain/k", O_RDONLY, uid)),
                    EACCES
                );
            }
            assert_eq!(
                load(&mut scheme, "store/own/k", DRIVER_UID).unwrap(),
                b"secret"
            );
            // Root may when it is the driver's user: the supervisor's, here.
            let mut as_root = RomainScheme::new(
                Supervisor::new(
                    "[driver.plain]\nbinary = \"/x\"\n".parse().unwrap(),
                    Some("/nonexistent/romain".into()),
                ),
                0,
            );
            save(&mut as_root, "store/plain/k", 0, b"v").unwrap();
        }

        #[test]
        fn unknown_drivers_bad_keys_and_bad_paths_are_refused() {
            let mut scheme = scheme();
            let flags = O_WRONLY | O_CREAT;
            assert_eq!(
                errno(open(&mut scheme, "store/nosuch/k", flags, DRIVER_UID)),
                ENOENT
            );
            for bad in [
                "store/own/UPPER",
                "store/own/a/b",
                "store/own/..",
                "store/own",
                "store/own/k?x",
            ] {
                assert_eq!(
                    errno(open(&mut scheme, bad, flags, DRIVER_UID)),
                    EINVAL,
                    "{bad}"
                );
            }
            let long = format!("store/own/{}", "k".repeat(65));
            assert_eq!(errno(open(&mut scheme, &long, flags, DRIVER_UID)), EINVAL);
            save(&mut scheme, "store/own/once", DRIVER_UID, b"1").unwrap();
            assert_eq!(
                errno(open(
                    &mut scheme,
                    "store/own/once",
                    flags | O_EXCL,
                    DRIVER_UID
                )),
                EEXIST
            );
        }

        #[test]
        fn the_size_limits_are_efbig_for_a_value_and_enospc_for_a_driver() {
            let mut scheme = scheme();
            let page = [7u8; 4096];
            assert_eq!(
                save(&mut scheme, "store/own/big", DRIVER_UID, &page).unwrap(),
                4096
            );
            assert_eq!(
                save(&mut scheme, "store/own/big", DRIVER_UID, &[0; 4097])
                    .unwrap_err()
                    .errno,
                EFBIG
            );
            assert_eq!(
                load(&mut scheme, "store/own/big", DRIVER_UID).unwrap(),
                page
            );
            for i in 1..16 {
                save(&mut scheme, &format!("store/own/k{i}"), DRIVER_UID, &page).unwrap();
            }
            assert_eq!(
                save(&mut scheme, "store/own/more", DRIVER_UID, b"x")
                    .unwrap_err()
                    .errno,
                ENOSPC,
                "64 KiB in use"
            );
            for i in 1..16 {
                save(&mut scheme, &format!("store/own/k{i}"), DRIVER_UID, b"").unwrap();
            }
            for i in 16..64 {
                save(&mut scheme, &format!("store/own/k{i}"), DRIVER_UID, b"").unwrap();
            }
            assert_eq!(
                errno(open(
                    &mut scheme,
                    "store/own/k64",
                    O_WRONLY | O_CREAT,
                    DRIVER_UID
                )),
                ENOSPC,
                "64 keys in use"
            );
            save(&mut scheme, "store/plain/k64", OWNER, b"x").unwrap();
        }

        #[test]
        fn a_driver_holds_a_bounded_number_of_store_handles() {
            let mut scheme = scheme();
            save(&mut scheme, "store/own/k", DRIVER_UID, b"v").unwrap();
            let held: Vec<usize> = (0..MAX_STORE_HANDLES)
                .map(|_| open(&mut scheme, "store/own/k", O_RDONLY, DRIVER_UID).unwrap())
                .collect();
            assert_eq!(
                errno(open(&mut scheme, "store/own/k", O_RDONLY, DRIVER_UID)),
                EMFILE
            );
            scheme.on_close(held[0]);
            open(&mut scheme, "store/own/k", O_RDONLY, DRIVER_UID).unwrap();
        }

        #[test]
        fn a_write_to_a_store_handle_is_a_value_not_a_command() {
            let mut scheme = scheme();
            let ctx = caller_ctx(9, OWNER, OWNER);
            let id = open(&mut scheme, "store/plain/k", O_WRONLY | O_CREAT, OWNER).unwrap();
            assert_eq!(scheme.write(id, b"down", 0, 0, &ctx).unwrap(), 4);
            assert!(
                scheme.supervisor.group("plain").is_none(),
                "no command was run"
            );
        }
    }
}
