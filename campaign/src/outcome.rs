//! What became of one fault: the classes a campaign counts.

use std::fmt;

/// The class of one fault's outcome, most severe last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// Nothing noticed it and the request was served exactly.
    Masked,
    /// A divergence was found and the faulty replica repaired.
    Repaired,
    /// A replica died or hung and was replaced by a copy of a healthy one.
    Replaced,
    /// No majority (or the lone replica died): the group was started afresh, and
    /// the request was still served exactly (it came after the restart).
    Restarted,
    /// The client's request failed with an error: detected, not hidden.
    ClientError,
    /// The client was told its write succeeded, the group then restarted (no
    /// majority, or its lone replica died) and the bytes the driver still held
    /// never reached the device: detected by the engine, not told to the client.
    LostInRestart,
    /// The device was handed other bytes than the client sent, or fewer, while the
    /// client was told it succeeded: silent data corruption.
    SilentCorruption,
    /// The engine itself stopped serving (not the driver's death at N = 1).
    DaemonCrash,
    /// The request never completed.
    UnrecoveredHang,
}

impl Outcome {
    pub const ALL: [Outcome; 9] = [
        Outcome::Masked,
        Outcome::Repaired,
        Outcome::Replaced,
        Outcome::Restarted,
        Outcome::ClientError,
        Outcome::LostInRestart,
        Outcome::SilentCorruption,
        Outcome::DaemonCrash,
        Outcome::UnrecoveredHang,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Outcome::Masked => "masked",
            Outcome::Repaired => "repaired",
            Outcome::Replaced => "replaced",
            Outcome::Restarted => "restarted",
            Outcome::ClientError => "client-error",
            Outcome::LostInRestart => "lost-in-restart",
            Outcome::SilentCorruption => "silent-corruption",
            Outcome::DaemonCrash => "daemon-crash",
            Outcome::UnrecoveredHang => "hang",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the device was handed for the request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Exactly the request's bytes.
    Exact,
    /// The client was told the write succeeded, but the device got other bytes.
    Wrong,
    /// The client was told the write succeeded, but the device got only the first
    /// part of them (none, maybe) and nothing after.
    Short,
    /// The client's request failed with an error.
    Failed,
    /// The request did not complete in time.
    TimedOut,
}

/// The engine's counters that tell how it dealt with a fault.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub divergences: u64,
    pub repairs: u64,
    pub replacements: u64,
    pub no_majority: u64,
    pub restarts: u64,
}

/// Everything a campaign saw of one fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    pub delivery: Delivery,
    /// The engine's counters before the fault and after the request (and a scrub).
    pub before: Counters,
    pub after: Counters,
    /// The engine stopped serving for another reason than its lone replica's death.
    pub engine_crashed: bool,
    /// The campaign had to start the group again (its lone replica died).
    pub supervisor_restarted: bool,
}

/// The class of what was observed: what reached the client or the device first,
/// then how the engine dealt with it.
pub fn classify(seen: &Observation) -> Outcome {
    let grew = |field: fn(&Counters) -> u64| field(&seen.after) > field(&seen.before);
    let restarted = seen.supervisor_restarted || grew(|c| c.no_majority) || grew(|c| c.restarts);
    match seen.delivery {
        Delivery::Wrong => Outcome::SilentCorruption,
        Delivery::Short if restarted => Outcome::LostInRestart,
        Delivery::Short => Outcome::SilentCorruption,
        _ if seen.engine_crashed => Outcome::DaemonCrash,
        Delivery::TimedOut => Outcome::UnrecoveredHang,
        Delivery::Failed => Outcome::ClientError,
        Delivery::Exact => {
            if restarted {
                Outcome::Restarted
            } else if grew(|c| c.replacements) {
                Outcome::Replaced
            } else if grew(|c| c.repairs) || grew(|c| c.divergences) {
                Outcome::Repaired
            } else {
                Outcome::Masked
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(delivery: Delivery, after: Counters) -> Observation {
        Observation {
            delivery,
            before: Counters::default(),
            after,
            engine_crashed: false,
            supervisor_restarted: false,
        }
    }

    #[test]
    fn what_reached_the_client_or_the_device_decides_first() {
        let repaired = Counters {
            repairs: 1,
            divergences: 1,
            ..Counters::default()
        };
        assert_eq!(
            classify(&seen(Delivery::Wrong, repaired)),
            Outcome::SilentCorruption
        );
        assert_eq!(
            classify(&seen(Delivery::Failed, repaired)),
            Outcome::ClientError
        );
        assert_eq!(
            classify(&seen(Delivery::Short, repaired)),
            Outcome::SilentCorruption
        );
        let restarted = Counters {
            no_majority: 1,
            ..Counters::default()
        };
        assert_eq!(
            classify(&seen(Delivery::Short, restarted)),
            Outcome::LostInRestart
        );
        let by_supervisor = Observation {
            supervisor_restarted: true,
            ..seen(Delivery::Short, Counters::default())
        };
        assert_eq!(classify(&by_supervisor), Outcome::LostInRestart);
        assert_eq!(
            classify(&seen(Delivery::Wrong, restarted)),
            Outcome::SilentCorruption
        );
        assert_eq!(
            classify(&seen(Delivery::TimedOut, repaired)),
            Outcome::UnrecoveredHang
        );
        let crashed = Observation {
            engine_crashed: true,
            ..seen(Delivery::Failed, repaired)
        };
        assert_eq!(classify(&crashed), Outcome::DaemonCrash);
        let wrong_and_crashed = Observation {
            engine_crashed: true,
            ..seen(Delivery::Wrong, repaired)
        };
        assert_eq!(classify(&wrong_and_crashed), Outcome::SilentCorruption);
    }

    #[test]
    fn an_exact_delivery_is_classed_by_what_the_engine_did() {
        let only = |counters: Counters| classify(&seen(Delivery::Exact, counters));
        assert_eq!(only(Counters::default()), Outcome::Masked);
        let divergence = Counters {
            divergences: 1,
            ..Counters::default()
        };
        assert_eq!(only(divergence), Outcome::Repaired);
        let repair = Counters {
            repairs: 1,
            ..Counters::default()
        };
        assert_eq!(only(repair), Outcome::Repaired);
        let replaced = Counters {
            replacements: 1,
            repairs: 1,
            ..Counters::default()
        };
        assert_eq!(only(replaced), Outcome::Replaced);
        let no_majority = Counters {
            no_majority: 1,
            replacements: 1,
            ..Counters::default()
        };
        assert_eq!(only(no_majority), Outcome::Restarted);
        let restarted = Counters {
            restarts: 1,
            ..Counters::default()
        };
        assert_eq!(only(restarted), Outcome::Restarted);
        let by_supervisor = Observation {
            supervisor_restarted: true,
            ..seen(Delivery::Exact, Counters::default())
        };
        assert_eq!(classify(&by_supervisor), Outcome::Restarted);
    }

    #[test]
    fn counters_that_did_not_grow_do_not_count() {
        let same = Counters {
            repairs: 5,
            replacements: 2,
            no_majority: 1,
            restarts: 1,
            divergences: 7,
        };
        let observation = Observation {
            before: same,
            ..seen(Delivery::Exact, same)
        };
        assert_eq!(classify(&observation), Outcome::Masked);
    }
}
