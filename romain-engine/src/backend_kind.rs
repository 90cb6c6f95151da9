//! Which mechanism stops a group's replicas at their events: named here,
//! on every platform, so that a registry can ask for one.

/// The mechanism that stops replicas at their events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum BackendKind {
    /// Traced processes (the ptrace backend).
    #[default]
    Ptrace,
    /// A stub in each replica posting its events to a page shared with the
    /// engine (the stub backend, which Redox can run).
    Stub,
}

impl std::str::FromStr for BackendKind {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "ptrace" => Ok(Self::Ptrace),
            "stub" => Ok(Self::Stub),
            other => Err(format!("no backend {other:?} (ptrace or stub)")),
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Ptrace => "ptrace",
            Self::Stub => "stub",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backend_is_named_as_it_prints() {
        for kind in [BackendKind::Ptrace, BackendKind::Stub] {
            assert_eq!(kind.to_string().parse::<BackendKind>(), Ok(kind));
        }
        assert_eq!(BackendKind::default(), BackendKind::Ptrace);
        assert!("Stub".parse::<BackendKind>().is_err());
        assert!("".parse::<BackendKind>().is_err());
    }
}
