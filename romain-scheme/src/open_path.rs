//! What a path opened in `romain:` asks for.
//!
//! - `` (the scheme root): the list of groups;
//! - `<driver>`: the driver's group, started if it does not run;
//! - `<driver>?replicas=<N>`: the same, as (or attached to) a group of N replicas;
//! - `<driver>?attach`: the running group only, never started (for status and
//!   control without side effects). Query items are joined with `&`;
//! - `store/<driver>/<key>`: a value in the driver's state store, which outlives
//!   the driver's restarts (`crate::store`: who may open it, what a key may be,
//!   the limits). Driver names never hold a `/`, so a driver named `store` is
//!   still `store`.

use std::fmt;
use std::num::NonZeroUsize;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenTarget<'a> {
    Root,
    Group(GroupRequest<'a>),
    Store(StoreRequest<'a>),
}

/// A value in a driver's state store; both names as the client sent them,
/// checked against the registry and the store's rules by the caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreRequest<'a> {
    pub driver: &'a str,
    pub key: &'a str,
}

const STORE_PREFIX: &str = "store/";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupRequest<'a> {
    pub driver: &'a str,
    /// How many replicas the opener asked for, if it said.
    pub replicas: Option<NonZeroUsize>,
    /// Attach to a running group; never start one.
    pub attach: bool,
}

/// A path `romain:` does not understand.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathError {
    NoDriver,
    EmptyQueryItem,
    UnknownKey(String),
    Duplicate(&'static str),
    BadReplicas(String),
    AttachTakesNoValue,
    StoreWantsDriverAndKey,
    StoreTakesNoQuery,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDriver => f.write_str("a query needs a driver name before the '?'"),
            Self::EmptyQueryItem => f.write_str("empty query item"),
            Self::UnknownKey(key) => {
                write!(f, "unknown query key {key:?} (want replicas=<N> or attach)")
            }
            Self::Duplicate(key) => write!(f, "{key} given twice"),
            Self::BadReplicas(value) => write!(f, "replicas={value:?}: want a whole number from 1"),
            Self::AttachTakesNoValue => f.write_str("attach takes no value"),
            Self::StoreWantsDriverAndKey => f.write_str("want store/<driver>/<key>"),
            Self::StoreTakesNoQuery => f.write_str("a store path takes no query"),
        }
    }
}

impl std::error::Error for PathError {}

pub fn parse(path: &str) -> Result<OpenTarget<'_>, PathError> {
    let path = path.trim_matches('/');
    if let Some(rest) = path.strip_prefix(STORE_PREFIX) {
        return parse_store(rest);
    }
    let (driver, query) = match path.split_once('?') {
        Some((driver, query)) => (driver, Some(query)),
        None => (path, None),
    };
    if driver.is_empty() {
        return match query {
            None => Ok(OpenTarget::Root),
            Some(_) => Err(PathError::NoDriver),
        };
    }
    let mut request = GroupRequest {
        driver,
        replicas: None,
        attach: false,
    };
    for item in query.map(|q| q.split('&')).into_iter().flatten() {
        let (key, value) = match item.split_once('=') {
            Some((key, value)) => (key, Some(value)),
            None => (item, None),
        };
        match (key, value) {
            ("", None) => return Err(PathError::EmptyQueryItem),
            ("replicas", _) if request.replicas.is_some() => {
                return Err(PathError::Duplicate("replicas"))
            }
            ("replicas", value) => {
                let value = value.unwrap_or("");
                // Digits only: `+3` or ` 3` would parse but are not what anyone means.
                let count = Some(value)
                    .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<NonZeroUsize>().ok())
                    .ok_or_else(|| PathError::BadReplicas(value.to_owned()))?;
                request.replicas = Some(count);
            }
            ("attach", _) if request.attach => return Err(PathError::Duplicate("attach")),
            ("attach", None) => request.attach = true,
            ("attach", Some(_)) => return Err(PathError::AttachTakesNoValue),
            (key, _) => return Err(PathError::UnknownKey(key.to_owned())),
        }
    }
    Ok(OpenTarget::Group(request))
}

fn parse_store(rest: &str) -> Result<OpenTarget<'_>, PathError> {
    if rest.contains('?') {
        return Err(PathError::StoreTakesNoQuery);
    }
    match rest.split_once('/') {
        Some((driver, key)) if !driver.is_empty() && !key.is_empty() => {
            Ok(OpenTarget::Store(StoreRequest { driver, key }))
        }
        _ => Err(PathError::StoreWantsDriverAndKey),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(driver: &str, replicas: Option<usize>, attach: bool) -> OpenTarget<'_> {
        OpenTarget::Group(GroupRequest {
            driver,
            replicas: replicas.and_then(NonZeroUsize::new),
            attach,
        })
    }

    #[test]
    fn root_and_groups() {
        assert_eq!(parse(""), Ok(OpenTarget::Root));
        assert_eq!(parse("/"), Ok(OpenTarget::Root));
        assert_eq!(parse("e1000"), Ok(group("e1000", None, false)));
        assert_eq!(parse("/e1000/"), Ok(group("e1000", None, false)));
        assert_eq!(
            parse("e1000?replicas=3"),
            Ok(group("e1000", Some(3), false))
        );
        assert_eq!(parse("e1000?attach"), Ok(group("e1000", None, true)));
        assert_eq!(
            parse("e1000?attach&replicas=1"),
            Ok(group("e1000", Some(1), true))
        );
        // The driver name is checked against the registry, not here.
        assert_eq!(parse("no/such"), Ok(group("no/such", None, false)));
    }

    #[test]
    fn store_paths_name_a_driver_and_a_key() {
        let store = |driver, key| Ok(OpenTarget::Store(StoreRequest { driver, key }));
        assert_eq!(parse("store/uart/settings"), store("uart", "settings"));
        assert_eq!(parse("/store/e1000/stats/"), store("e1000", "stats"));
        // The key's rules are the store's: a slash in it is refused there.
        assert_eq!(parse("store/uart/a/b"), store("uart", "a/b"));
        // Slashes around a path are dropped, as for groups.
        assert_eq!(parse("store/"), Ok(group("store", None, false)));
        assert_eq!(parse("store?attach"), Ok(group("store", None, true)));
        for (path, error) in [
            ("store/uart", PathError::StoreWantsDriverAndKey),
            ("store/uart/", PathError::StoreWantsDriverAndKey),
            ("store//key", PathError::StoreWantsDriverAndKey),
            ("store/uart/k?x=1", PathError::StoreTakesNoQuery),
        ] {
            assert_eq!(parse(path), Err(error), "{path}");
        }
    }

    #[test]
    fn bad_queries() {
        let cases = [
            ("?replicas=1", PathError::NoDriver),
            ("e1000?", PathError::EmptyQueryItem),
            ("e1000?replicas=1&", PathError::EmptyQueryItem),
            ("e1000?replicas=0", PathError::BadReplicas("0".into())),
            ("e1000?replicas=", PathError::BadReplicas("".into())),
            ("e1000?replicas", PathError::BadReplicas("".into())),
            ("e1000?replicas=x", PathError::BadReplicas("x".into())),
            ("e1000?replicas=+3", PathError::BadReplicas("+3".into())),
            ("e1000?replicas=-1", PathError::BadReplicas("-1".into())),
            (
                "e1000?replicas=99999999999999999999999",
                PathError::BadReplicas("99999999999999999999999".into()),
            ),
            (
                "e1000?replicas=1&replicas=1",
                PathError::Duplicate("replicas"),
            ),
            ("e1000?attach&attach", PathError::Duplicate("attach")),
            ("e1000?attach=yes", PathError::AttachTakesNoValue),
            ("e1000?voters=3", PathError::UnknownKey("voters".into())),
            ("e1000?=3", PathError::UnknownKey("".into())),
        ];
        for (path, error) in cases {
            assert_eq!(parse(path), Err(error), "{path}");
        }
        assert_eq!(
            PathError::UnknownKey("voters".into()).to_string(),
            "unknown query key \"voters\" (want replicas=<N> or attach)"
        );
    }
}
