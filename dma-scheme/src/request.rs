//! The paths a client opens:
//! `alloc?size=<bytes>&flags=<flag,...>&dir=<direction>&keep=<name>` and `status`.

use std::cmp::Ordering;
use std::fmt;
use std::num::NonZeroU64;

use syscall::error::{EINVAL, ENOENT};

use crate::{BufferFlags, Direction};

/// What an `openat` path asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenRequest {
    Alloc(AllocRequest),
    /// A snapshot of the daemon's accounting, read as text.
    Status,
}

/// A new buffer of at least `size` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocRequest {
    pub size: NonZeroU64,
    pub flags: BufferFlags,
    pub direction: Direction,
    /// With a name, the buffer is kept for a successor when its last handle
    /// closes, instead of being freed (see [`crate::keep`]).
    pub keep: Option<KeepName>,
}

/// The path that asks for this buffer, as [`parse`] takes it.
impl fmt::Display for AllocRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "alloc?size={}", self.size)?;
        if !self.flags.is_empty() {
            write!(f, "&flags={}", self.flags)?;
        }
        if self.direction != Direction::Both {
            write!(f, "&dir={}", self.direction)?;
        }
        if let Some(name) = &self.keep {
            write!(f, "&keep={name}")?;
        }
        Ok(())
    }
}

/// The name a kept buffer is found by: 1 to [`KeepName::MAX_LEN`] characters
/// of `a-z`, `0-9`, `.`, `_` and `-`.
///
/// The alphabet leaves out everything a path or a log line treats specially
/// (`&`, `=`, `/`, `?`, spaces, control characters), so a name goes into
/// `fpath` and the log as it is. Stored inline so that [`AllocRequest`] stays
/// `Copy`.
#[derive(Clone, Copy)]
pub struct KeepName {
    len: u8,
    bytes: [u8; KeepName::MAX_LEN],
}

impl KeepName {
    pub const MAX_LEN: usize = 32;

    /// `name` if it is a valid keep name.
    pub fn new(name: &str) -> Result<Self, BadKeepName> {
        let valid = (1..=Self::MAX_LEN).contains(&name.len())
            && name.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            });
        if !valid {
            return Err(BadKeepName(name.into()));
        }
        let mut bytes = [0; Self::MAX_LEN];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Ok(Self {
            // At most MAX_LEN (32), checked above.
            len: name.len() as u8,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored (checked in `new`), so this never falls back.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl PartialEq for KeepName {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for KeepName {}

impl PartialOrd for KeepName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KeepName {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for KeepName {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Debug for KeepName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeepName({:?})", self.as_str())
    }
}

impl fmt::Display for KeepName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for KeepName {
    type Err = BadKeepName;

    fn from_str(name: &str) -> Result<Self, BadKeepName> {
        Self::new(name)
    }
}

/// A text that is not a [`KeepName`], quoted as an [`Excerpt`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadKeepName(pub Excerpt);

impl fmt::Display for BadKeepName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "keep name {} is not 1 to {} characters of a-z, 0-9, '.', '_' and '-'",
            self.0,
            KeepName::MAX_LEN
        )
    }
}

impl std::error::Error for BadKeepName {}

/// Text from a client's path, as messages show it: escaped, cut to its first
/// [`Excerpt::MAX_CHARS`] characters, and with its length when cut.
///
/// A path may be 64 KiB long and a refusal is logged: an excerpt keeps the log
/// line short whatever the client sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Excerpt {
    head: String,
    /// Bytes in the whole text.
    len: usize,
}

impl Excerpt {
    /// Characters kept; enough to recognise what a client asked for.
    pub const MAX_CHARS: usize = 64;

    pub fn new(text: &str) -> Self {
        Self {
            head: text.chars().take(Self::MAX_CHARS).collect(),
            len: text.len(),
        }
    }
}

impl From<&str> for Excerpt {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

impl fmt::Display for Excerpt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.head)?;
        if self.head.len() < self.len {
            write!(f, "... ({} bytes)", self.len)?;
        }
        Ok(())
    }
}

/// Why a path is refused. What it quotes from the path is an [`Excerpt`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestError {
    UnknownPath(Excerpt),
    /// A query part without `=`.
    Malformed(Excerpt),
    UnknownKey(Excerpt),
    RepeatedKey(Excerpt),
    MissingSize,
    BadSize(Excerpt),
    ZeroSize,
    UnknownFlag(Excerpt),
    RepeatedFlag(Excerpt),
    UnknownDirection(Excerpt),
    BadKeepName(BadKeepName),
}

impl RequestError {
    /// The errno a client gets: an unknown path does not exist, the rest is a bad argument.
    pub fn errno(&self) -> i32 {
        match self {
            Self::UnknownPath(_) => ENOENT,
            _ => EINVAL,
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownPath(path) => write!(
                f,
                "unknown path {path} (want alloc?size=...&flags=...&dir=...&keep=... or status)"
            ),
            Self::Malformed(part) => write!(f, "query part {part} is not key=value"),
            Self::UnknownKey(key) => write!(f, "unknown key {key} (want size, flags, dir or keep)"),
            Self::RepeatedKey(key) => write!(f, "key {key} given twice"),
            Self::MissingSize => f.write_str("alloc needs size=<bytes>"),
            Self::BadSize(text) => write!(
                f,
                "size {text} is not a byte count (decimal, 0x hex, or with K/M/G)"
            ),
            Self::ZeroSize => f.write_str("size 0: a buffer has at least one byte"),
            Self::UnknownFlag(flag) => write!(f, "unknown flag {flag} (known: shared)"),
            Self::RepeatedFlag(flag) => write!(f, "flag {flag} given twice"),
            Self::UnknownDirection(direction) => write!(
                f,
                "unknown direction {direction} (known: both, to-device, from-device)"
            ),
            Self::BadKeepName(bad) => bad.fmt(f),
        }
    }
}

impl std::error::Error for RequestError {}

/// Parses the path an `openat` on the scheme receives.
pub fn parse(path: &str) -> Result<OpenRequest, RequestError> {
    let path = path.trim_start_matches('/');
    let (name, query) = match path.split_once('?') {
        Some((name, query)) => (name, Some(query)),
        None => (path, None),
    };
    match (name, query) {
        ("alloc", Some(query)) => parse_alloc(query).map(OpenRequest::Alloc),
        ("alloc", None) => Err(RequestError::MissingSize),
        ("status", None) => Ok(OpenRequest::Status),
        _ => Err(RequestError::UnknownPath(path.into())),
    }
}

fn parse_alloc(query: &str) -> Result<AllocRequest, RequestError> {
    let mut size = None;
    let mut flags = None;
    let mut direction = None;
    let mut keep = None;
    for part in query.split('&') {
        let (key, value) = part
            .split_once('=')
            .ok_or_else(|| RequestError::Malformed(part.into()))?;
        let slot_taken = match key {
            "size" => size.replace(parse_size(value)?).is_some(),
            "flags" => flags.replace(parse_flags(value)?).is_some(),
            "dir" => direction
                .replace(
                    Direction::named(value)
                        .ok_or_else(|| RequestError::UnknownDirection(value.into()))?,
                )
                .is_some(),
            "keep" => keep
                .replace(KeepName::new(value).map_err(RequestError::BadKeepName)?)
                .is_some(),
            _ => return Err(RequestError::UnknownKey(key.into())),
        };
        if slot_taken {
            return Err(RequestError::RepeatedKey(key.into()));
        }
    }
    Ok(AllocRequest {
        size: size.ok_or(RequestError::MissingSize)?,
        flags: flags.unwrap_or_default(),
        direction: direction.unwrap_or_default(),
        keep,
    })
}

fn parse_size(text: &str) -> Result<NonZeroU64, RequestError> {
    let bytes = parse_bytes(text).ok_or_else(|| RequestError::BadSize(text.into()))?;
    NonZeroU64::new(bytes).ok_or(RequestError::ZeroSize)
}

fn parse_flags(list: &str) -> Result<BufferFlags, RequestError> {
    let mut flags = BufferFlags::empty();
    if list.is_empty() {
        return Ok(flags);
    }
    for name in list.split(',') {
        let flag =
            BufferFlags::named(name).ok_or_else(|| RequestError::UnknownFlag(name.into()))?;
        if flags.contains(flag) {
            return Err(RequestError::RepeatedFlag(name.into()));
        }
        flags |= flag;
    }
    Ok(flags)
}

/// A byte count: decimal (`8192`), hexadecimal (`0x2000`), or decimal with a
/// binary suffix `K`, `M` or `G` (`2M` is 2 MiB). `None` if malformed or beyond `u64`.
pub fn parse_bytes(text: &str) -> Option<u64> {
    if let Some(hex) = text.strip_prefix("0x") {
        return digits_only(hex, |b| b.is_ascii_hexdigit())
            .and_then(|h| u64::from_str_radix(h, 16).ok());
    }
    let (number, shift) = match text.as_bytes().last()? {
        b'K' => (&text[..text.len() - 1], 10),
        b'M' => (&text[..text.len() - 1], 20),
        b'G' => (&text[..text.len() - 1], 30),
        _ => (text, 0),
    };
    let value: u64 = digits_only(number, |b| b.is_ascii_digit())?.parse().ok()?;
    value.checked_mul(1 << shift)
}

/// `text` if it is non-empty and every byte passes `is_digit` (`parse` alone would take a sign).
fn digits_only(text: &str, is_digit: fn(&u8) -> bool) -> Option<&str> {
    (!text.is_empty() && text.as_bytes().iter().all(is_digit)).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc(size: u64, flags: BufferFlags) -> OpenRequest {
        OpenRequest::Alloc(AllocRequest {
            size: NonZeroU64::new(size).unwrap(),
            flags,
            direction: Direction::Both,
            keep: None,
        })
    }

    fn kept(size: u64, flags: BufferFlags, name: &str) -> OpenRequest {
        OpenRequest::Alloc(AllocRequest {
            size: NonZeroU64::new(size).unwrap(),
            flags,
            direction: Direction::Both,
            keep: Some(KeepName::new(name).unwrap()),
        })
    }

    #[test]
    fn a_keep_name_is_read_from_the_path() {
        assert_eq!(
            parse("alloc?size=4096&flags=shared&keep=rx-ring"),
            Ok(kept(4096, BufferFlags::SHARED, "rx-ring"))
        );
        assert_eq!(
            parse("alloc?keep=a.b_c-9&size=1"),
            Ok(kept(1, BufferFlags::empty(), "a.b_c-9"))
        );
        let longest = "z".repeat(KeepName::MAX_LEN);
        assert_eq!(
            parse(&format!("alloc?size=1&keep={longest}")),
            Ok(kept(1, BufferFlags::empty(), &longest))
        );
    }

    #[test]
    fn bad_keep_names_are_refused_with_an_excerpt() {
        let too_long = "z".repeat(KeepName::MAX_LEN + 1);
        for name in ["", "RX", "rx ring", "rx/ring", "rx%26", "é", &too_long] {
            let error = parse(&format!("alloc?size=1&keep={name}")).unwrap_err();
            assert_eq!(
                error,
                RequestError::BadKeepName(BadKeepName(name.into())),
                "{name:?}"
            );
            assert_eq!(error.errno(), EINVAL);
        }
        assert_eq!(
            parse("alloc?size=1&keep=a&keep=a").unwrap_err(),
            RequestError::RepeatedKey("keep".into())
        );
        let long = "A".repeat(1000);
        assert_eq!(
            parse(&format!("alloc?size=1&keep={long}"))
                .unwrap_err()
                .to_string(),
            format!(
                "keep name \"{}\"... (1000 bytes) is not 1 to 32 characters of a-z, 0-9, '.', '_' and '-'",
                "A".repeat(64)
            )
        );
    }

    #[test]
    fn a_direction_is_read_from_the_path_and_an_unknown_one_refused() {
        let toward = |direction| {
            Ok(OpenRequest::Alloc(AllocRequest {
                size: NonZeroU64::new(4096).unwrap(),
                flags: BufferFlags::SHARED,
                direction,
                keep: None,
            }))
        };
        assert_eq!(
            parse("alloc?size=4096&flags=shared&dir=from-device"),
            toward(Direction::FromDevice)
        );
        assert_eq!(
            parse("alloc?dir=to-device&size=4096&flags=shared"),
            toward(Direction::ToDevice)
        );
        assert_eq!(
            parse("alloc?size=4096&flags=shared&dir=both"),
            toward(Direction::Both)
        );
        let error = parse("alloc?size=1&dir=sideways").unwrap_err();
        assert_eq!(error, RequestError::UnknownDirection("sideways".into()));
        assert_eq!(error.errno(), EINVAL);
        assert_eq!(
            parse("alloc?size=1&dir=both&dir=both").unwrap_err(),
            RequestError::RepeatedKey("dir".into())
        );
    }

    #[test]
    fn keep_names_compare_by_their_text() {
        let a = KeepName::new("rx").unwrap();
        assert_eq!(a, "rx".parse().unwrap());
        assert_ne!(a, KeepName::new("rx0").unwrap());
        assert!(a < KeepName::new("tx").unwrap());
        assert_eq!(a.to_string(), "rx");
        assert_eq!(format!("{a:?}"), "KeepName(\"rx\")");
    }

    #[test]
    fn accepts() {
        assert_eq!(
            parse("alloc?size=4096"),
            Ok(alloc(4096, BufferFlags::empty()))
        );
        assert_eq!(
            parse("alloc?size=100&flags=shared"),
            Ok(alloc(100, BufferFlags::SHARED))
        );
        assert_eq!(
            parse("/alloc?flags=shared&size=0x2000"),
            Ok(alloc(0x2000, BufferFlags::SHARED))
        );
        assert_eq!(
            parse("alloc?size=2M&flags="),
            Ok(alloc(2 << 20, BufferFlags::empty()))
        );
        assert_eq!(parse("status"), Ok(OpenRequest::Status));
    }

    #[test]
    fn rejects() {
        let err = |path: &str| parse(path).unwrap_err();
        assert_eq!(err("alloc"), RequestError::MissingSize);
        assert_eq!(err("alloc?flags=shared"), RequestError::MissingSize);
        assert_eq!(err("alloc?size=0"), RequestError::ZeroSize);
        assert_eq!(err("alloc?size=0x0"), RequestError::ZeroSize);
        assert_eq!(err("alloc?size=-1"), RequestError::BadSize("-1".into()));
        assert_eq!(err("alloc?size=+1"), RequestError::BadSize("+1".into()));
        assert_eq!(err("alloc?size="), RequestError::BadSize("".into()));
        assert_eq!(err("alloc?size=1T"), RequestError::BadSize("1T".into()));
        assert_eq!(
            err("alloc?size=99999999999999999999"),
            RequestError::BadSize("99999999999999999999".into())
        );
        assert_eq!(
            err("alloc?size=17179869184G"),
            RequestError::BadSize("17179869184G".into())
        );
        assert_eq!(
            err("alloc?size=4096&size=8192"),
            RequestError::RepeatedKey("size".into())
        );
        assert_eq!(
            err("alloc?size=4096&colour=red"),
            RequestError::UnknownKey("colour".into())
        );
        assert_eq!(
            err("alloc?size=4096&shared"),
            RequestError::Malformed("shared".into())
        );
        assert_eq!(
            err("alloc?size=4096&flags=cached"),
            RequestError::UnknownFlag("cached".into())
        );
        assert_eq!(
            err("alloc?size=4096&flags=shared,"),
            RequestError::UnknownFlag("".into())
        );
        assert_eq!(
            err("alloc?size=4096&flags=shared,shared"),
            RequestError::RepeatedFlag("shared".into())
        );
        assert_eq!(
            err("status?verbose=1"),
            RequestError::UnknownPath("status?verbose=1".into())
        );
        assert_eq!(err(""), RequestError::UnknownPath("".into()));
        assert_eq!(err("free"), RequestError::UnknownPath("free".into()));
    }

    #[test]
    fn an_excerpt_keeps_short_text_whole_and_cuts_long_text_to_64_characters() {
        assert_eq!(Excerpt::new("cached").to_string(), "\"cached\"");
        let long = format!("{}{}", "é".repeat(64), "x".repeat(1000));
        assert_eq!(
            Excerpt::new(&long).to_string(),
            format!("\"{}\"... (1128 bytes)", "é".repeat(64))
        );
        assert_eq!(
            Excerpt::new(&"\n".repeat(100)).to_string(),
            format!("\"{}\"... (100 bytes)", "\\n".repeat(64))
        );
    }

    #[test]
    fn errnos() {
        assert_eq!(RequestError::UnknownPath("x".into()).errno(), ENOENT);
        assert_eq!(RequestError::ZeroSize.errno(), EINVAL);
        assert_eq!(RequestError::UnknownFlag("x".into()).errno(), EINVAL);
    }

    #[test]
    fn display_is_parseable() {
        for request in [
            AllocRequest {
                size: NonZeroU64::new(12345).unwrap(),
                flags: BufferFlags::SHARED,
                direction: Direction::FromDevice,
                keep: None,
            },
            AllocRequest {
                size: NonZeroU64::new(1).unwrap(),
                flags: BufferFlags::empty(),
                direction: Direction::Both,
                keep: None,
            },
            AllocRequest {
                size: NonZeroU64::new(8192).unwrap(),
                flags: BufferFlags::SHARED,
                direction: Direction::ToDevice,
                keep: Some(KeepName::new("rx-ring").unwrap()),
            },
            AllocRequest {
                size: NonZeroU64::new(4096).unwrap(),
                flags: BufferFlags::empty(),
                direction: Direction::Both,
                keep: Some(KeepName::new("tx.0").unwrap()),
            },
        ] {
            assert_eq!(parse(&request.to_string()), Ok(OpenRequest::Alloc(request)));
        }
    }

    #[test]
    fn byte_counts() {
        assert_eq!(parse_bytes("0"), Some(0));
        assert_eq!(parse_bytes("8K"), Some(8192));
        assert_eq!(parse_bytes("3G"), Some(3 << 30));
        assert_eq!(parse_bytes("0x1F"), Some(31));
        assert_eq!(parse_bytes("0x"), None);
        assert_eq!(parse_bytes("K"), None);
        assert_eq!(parse_bytes("1.5M"), None);
        assert_eq!(parse_bytes(" 1"), None);
        assert_eq!(parse_bytes(&u64::MAX.to_string()), Some(u64::MAX));
    }
}
