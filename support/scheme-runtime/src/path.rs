//! Scheme paths: `name:path` (legacy) and `/scheme/name/path` (rooted).

use std::fmt;

/// A parsed scheme path: which scheme, and the path inside it that the scheme's
/// `openat` receives (`romain:e1000?replicas=3` gives `romain` and
/// `e1000?replicas=3`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchemePath<'a> {
    pub scheme: &'a str,
    pub path: &'a str,
}

/// Why a string is not a scheme path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SchemePathError {
    /// Neither `name:path` nor `/scheme/name[/path]`.
    NotASchemePath,
    /// The scheme name is empty or holds a character outside `[A-Za-z0-9._-]`.
    BadSchemeName,
}

impl fmt::Display for SchemePathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotASchemePath => {
                f.write_str("not a scheme path (want name:path or /scheme/name/path)")
            }
            Self::BadSchemeName => {
                f.write_str("bad scheme name (want letters, digits, '.', '_' or '-')")
            }
        }
    }
}

impl std::error::Error for SchemePathError {}

impl<'a> SchemePath<'a> {
    pub fn parse(s: &'a str) -> Result<Self, SchemePathError> {
        let (scheme, path) = if let Some(rest) = s.strip_prefix("/scheme/") {
            rest.split_once('/').unwrap_or((rest, ""))
        } else if let Some((scheme, path)) = s.split_once(':') {
            (scheme, path.trim_start_matches('/'))
        } else {
            return Err(SchemePathError::NotASchemePath);
        };
        let name_ok = !matches!(scheme, "" | "." | "..")
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !name_ok {
            return Err(SchemePathError::BadSchemeName);
        }
        Ok(Self { scheme, path })
    }
}

impl fmt::Display for SchemePath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "/scheme/{}/{}", self.scheme, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms() {
        let legacy = SchemePath::parse("romain:e1000?replicas=3").unwrap();
        let rooted = SchemePath::parse("/scheme/romain/e1000?replicas=3").unwrap();
        assert_eq!(legacy, rooted);
        assert_eq!(legacy.scheme, "romain");
        assert_eq!(legacy.path, "e1000?replicas=3");
        assert_eq!(
            SchemePath::parse("mmio:/pci/00:03.0/bar0").unwrap().path,
            "pci/00:03.0/bar0"
        );
        assert_eq!(SchemePath::parse("/scheme/dma").unwrap().path, "");
        assert_eq!(legacy.to_string(), "/scheme/romain/e1000?replicas=3");
    }

    #[test]
    fn rejects() {
        assert_eq!(
            SchemePath::parse("e1000"),
            Err(SchemePathError::NotASchemePath)
        );
        assert_eq!(SchemePath::parse(":x"), Err(SchemePathError::BadSchemeName));
        assert_eq!(
            SchemePath::parse("a/b:x"),
            Err(SchemePathError::BadSchemeName)
        );
        assert_eq!(
            SchemePath::parse("/scheme//x"),
            Err(SchemePathError::BadSchemeName)
        );
        assert_eq!(
            SchemePath::parse("/scheme/../x"),
            Err(SchemePathError::BadSchemeName)
        );
    }
}
