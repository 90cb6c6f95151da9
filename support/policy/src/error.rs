//! Why a policy file was refused.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// A value that does not parse (a BDF, a device id, a port range, a size).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueError {
    input: String,
    problem: &'static str,
}

impl ValueError {
    pub(crate) fn new(input: &str, problem: &'static str) -> Self {
        Self {
            input: input.to_owned(),
            problem,
        }
    }
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` {}", self.input, self.problem)
    }
}

impl std::error::Error for ValueError {}

/// A policy that cannot be loaded. Every message names the file or, for a
/// rule, the driver and the key at fault.
#[derive(Debug)]
pub enum PolicyError {
    Read {
        path: PathBuf,
        source: io::Error,
    },
    /// Not TOML, or a top-level key other than `driver`.
    Syntax(toml::de::Error),
    /// A driver rule that is malformed or conflicts with another rule.
    Rule {
        driver: String,
        key: Option<&'static str>,
        problem: String,
    },
}

impl PolicyError {
    pub(crate) fn rule(driver: &str, key: &'static str, problem: impl fmt::Display) -> Self {
        Self::Rule {
            driver: driver.to_owned(),
            key: Some(key),
            problem: problem.to_string(),
        }
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read { path, source } => {
                write!(f, "cannot read policy {}: {source}", path.display())
            }
            Self::Syntax(error) => write!(f, "policy is not a valid policy file: {error}"),
            Self::Rule {
                driver,
                key: Some(key),
                problem,
            } => write!(f, "driver {driver}, key `{key}`: {problem}"),
            Self::Rule {
                driver,
                key: None,
                problem,
            } => write!(f, "driver {driver}: {problem}"),
        }
    }
}

impl std::error::Error for PolicyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Read { source, .. } => Some(source),
            Self::Syntax(error) => Some(error),
            Self::Rule { .. } => None,
        }
    }
}
