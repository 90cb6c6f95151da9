//! Why a request was refused, naming the driver, the resource and the rule.
//!
//! A label a caller named comes from its path, so a message quotes only a
//! [`Clipped`] prefix of it: a denial is logged, and a long label must not make
//! a long log line.

use std::fmt;

use crate::Clipped;

/// A refused request. Its message names the rule that decided, e.g.
/// `driver e1000: BAR 2 not granted (bars = [0])`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denial {
    /// No rule names the caller's uid.
    UnknownUid { uid: u32 },
    /// uid 0 opened without naming the driver it acts for.
    RootWithoutLabel,
    /// uid 0 named a driver the policy does not have.
    UnknownLabel { label: String },
    /// A driver named another driver's label.
    ForeignLabel { uid: u32, label: String },
    /// A driver asked for a resource its rule does not grant.
    NotGranted {
        driver: String,
        resource: String,
        granted: String,
    },
}

impl Denial {
    /// The driver whose rule refused, if the caller was recognised.
    pub fn driver(&self) -> Option<&str> {
        match self {
            Self::NotGranted { driver, .. } => Some(driver),
            _ => None,
        }
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownUid { uid } => write!(f, "uid {uid} is not a driver in the policy"),
            Self::RootWithoutLabel => {
                f.write_str("uid 0 acts for no driver: name one with label=<driver>")
            }
            Self::UnknownLabel { label } => {
                write!(f, "no driver named `{}` in the policy", Clipped::new(label))
            }
            Self::ForeignLabel { uid, label } => {
                write!(
                    f,
                    "uid {uid} may not act for driver {} (only uid 0 acts for another driver)",
                    Clipped::new(label)
                )
            }
            Self::NotGranted {
                driver,
                resource,
                granted,
            } => {
                write!(f, "driver {driver}: {resource} not granted ({granted})")
            }
        }
    }
}

impl std::error::Error for Denial {}
