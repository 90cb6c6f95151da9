//! Comparison and majority vote of replica states at an externalization event.
//!
//! Every live replica stops at its next event; the supervisor hands their states here and
//! learns whether to perform the effect (all agree, or a strict majority agrees and the
//! rest is repaired or replaced) or to keep it from the device (no majority).

mod event;
mod registers;
mod replica_state;

pub use event::{Event, EventField, EventKind};
pub use registers::{Register, Registers};
pub use replica_state::{Difference, ReplicaState};

/// A replica's position in its group, 0-based.
pub type ReplicaIndex = usize;

/// What the supervisor does with an event, given the replicas' states.
#[derive(Debug, PartialEq, Eq)]
pub enum VoteOutcome<'a> {
    /// Every replica is alive and all agree: perform the effect.
    Unanimous { agreed: &'a ReplicaState },
    /// A strict majority of all replicas agrees: perform the effect as `agreed`, then
    /// repair or replace each member of `minority` from replica `source`, the lowest
    /// index of the majority.
    Majority {
        agreed: &'a ReplicaState,
        source: ReplicaIndex,
        minority: Vec<Dissenter>,
    },
    /// No state has a strict majority: the effect must not reach the device. For the log,
    /// `dissenters` are compared with `reference`, the lowest live replica (none if all
    /// are dead).
    NoMajority {
        reference: Option<ReplicaIndex>,
        dissenters: Vec<Dissenter>,
    },
}

/// A replica outside the agreeing group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dissenter {
    pub replica: ReplicaIndex,
    pub dissent: Dissent,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dissent {
    /// The replica reached the event in a different state; repair copies a healthy one.
    Diverged(Vec<Difference>),
    /// The replica died or never arrived; it must be replaced.
    Dead,
}

/// Votes on the replicas' states; `None` stands for a replica that is dead or that the
/// watchdog gave up on.
///
/// The majority is a strict majority of all N replicas, not of the live ones: a dead
/// replica counts as a vote against. So one survivor of two (or none of zero) never
/// decides alone, because nothing shows that it is the healthy one; with N = 2 any loss
/// or disagreement stops the effect, and the group is restarted instead.
///
/// States are compared field by field (no digest that could hide a difference), and the
/// outcome depends only on the states and their order.
pub fn vote(states: &[Option<ReplicaState>]) -> VoteOutcome<'_> {
    let needed = states.len() / 2 + 1;
    let live = || {
        states
            .iter()
            .enumerate()
            .filter_map(|(i, state)| state.as_ref().map(|state| (i, state)))
    };
    // At most one state can hold a strict majority, and the first replica found holding
    // it is the lowest index of the majority: the deterministic repair source.
    let supporters =
        |candidate: &ReplicaState| live().filter(|(_, state)| *state == candidate).count();
    let winner = live()
        .map(|(i, state)| (i, state, supporters(state)))
        .find(|&(_, _, votes)| votes >= needed);
    match winner {
        Some((_, agreed, votes)) if votes == states.len() => VoteOutcome::Unanimous { agreed },
        Some((source, agreed, _)) => VoteOutcome::Majority {
            agreed,
            source,
            minority: dissenters(states, Some(agreed)),
        },
        None => {
            let reference = live().next();
            VoteOutcome::NoMajority {
                reference: reference.map(|(i, _)| i),
                dissenters: dissenters(states, reference.map(|(_, state)| state)),
            }
        }
    }
}

/// The replicas that are dead or differ from `reference`, in index order.
fn dissenters(states: &[Option<ReplicaState>], reference: Option<&ReplicaState>) -> Vec<Dissenter> {
    states
        .iter()
        .enumerate()
        .filter_map(|(replica, state)| {
            let dissent = match (state, reference) {
                (None, _) => Dissent::Dead,
                (Some(state), Some(reference)) if state != reference => {
                    Dissent::Diverged(reference.differences(state))
                }
                (Some(_), _) => return None,
            };
            Some(Dissenter { replica, dissent })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn out(value: u32) -> ReplicaState {
        ReplicaState {
            event: Event::PortOut {
                port: 0x2f8,
                width: 1,
                value,
            },
            registers: Registers {
                rax: value.into(),
                rip: 0x40_1000,
                rflags: 0x246,
                ..Registers::default()
            },
        }
    }

    fn with_register(mut state: ReplicaState, register: Register, value: u64) -> ReplicaState {
        state.registers.set(register, value);
        state
    }

    fn dead(replica: ReplicaIndex) -> Dissenter {
        Dissenter {
            replica,
            dissent: Dissent::Dead,
        }
    }

    fn diverged(replica: ReplicaIndex, differences: Vec<Difference>) -> Dissenter {
        Dissenter {
            replica,
            dissent: Dissent::Diverged(differences),
        }
    }

    #[test]
    fn single_replica_decides_only_while_alive() {
        let states = [Some(out(0x41))];
        assert_eq!(vote(&states), VoteOutcome::Unanimous { agreed: &out(0x41) });
        assert_eq!(
            vote(&[None]),
            VoteOutcome::NoMajority {
                reference: None,
                dissenters: vec![dead(0)]
            }
        );
    }

    #[test]
    fn no_replicas_is_no_majority() {
        assert_eq!(
            vote(&[]),
            VoteOutcome::NoMajority {
                reference: None,
                dissenters: Vec::new()
            }
        );
    }

    #[test]
    fn two_agreeing_replicas_are_unanimous() {
        let states = [Some(out(0x41)), Some(out(0x41))];
        assert_eq!(vote(&states), VoteOutcome::Unanimous { agreed: &out(0x41) });
    }

    #[test]
    fn two_disagreeing_replicas_have_no_majority() {
        let states = [Some(out(0x41)), Some(out(0x43))];
        assert_eq!(
            vote(&states),
            VoteOutcome::NoMajority {
                reference: Some(0),
                dissenters: vec![diverged(1, out(0x41).differences(&out(0x43)))]
            }
        );
    }

    /// One survivor of two is not a strict majority: nothing shows it is the healthy one.
    #[test]
    fn one_survivor_of_two_has_no_majority() {
        for states in [[None, Some(out(0x41))], [Some(out(0x41)), None]] {
            let survivor = states.iter().position(Option::is_some);
            let dead_one = states.iter().position(Option::is_none).unwrap();
            assert_eq!(
                vote(&states),
                VoteOutcome::NoMajority {
                    reference: survivor,
                    dissenters: vec![dead(dead_one)]
                }
            );
        }
    }

    #[test]
    fn three_agreeing_replicas_are_unanimous() {
        let states = [Some(out(0x41)), Some(out(0x41)), Some(out(0x41))];
        assert_eq!(vote(&states), VoteOutcome::Unanimous { agreed: &out(0x41) });
    }

    #[test]
    fn flipped_register_bit_is_outvoted_and_named() {
        let healthy = out(0x41);
        let faulty = with_register(healthy.clone(), Register::Rbx, 1 << 17);
        let states = [Some(healthy.clone()), Some(faulty), Some(healthy.clone())];
        assert_eq!(
            vote(&states),
            VoteOutcome::Majority {
                agreed: &healthy,
                source: 0,
                minority: vec![diverged(
                    1,
                    vec![Difference::Register {
                        register: Register::Rbx,
                        expected: 0,
                        found: 1 << 17
                    }]
                )],
            }
        );
    }

    #[test]
    fn different_port_value_is_outvoted_and_named() {
        let healthy = out(0x41);
        let mut faulty = healthy.clone();
        faulty.event = Event::PortOut {
            port: 0x2f8,
            width: 1,
            value: 0x43,
        };
        let states = [Some(faulty), Some(healthy.clone()), Some(healthy.clone())];
        assert_eq!(
            vote(&states),
            VoteOutcome::Majority {
                agreed: &healthy,
                source: 1,
                minority: vec![diverged(
                    0,
                    vec![Difference::EventValue {
                        field: EventField::Value,
                        expected: 0x41,
                        found: 0x43
                    }]
                )],
            }
        );
    }

    #[test]
    fn dead_replica_of_three_is_replaced() {
        let states = [Some(out(0x41)), Some(out(0x41)), None];
        assert_eq!(
            vote(&states),
            VoteOutcome::Majority {
                agreed: &out(0x41),
                source: 0,
                minority: vec![dead(2)]
            }
        );
    }

    #[test]
    fn dead_and_diverged_replicas_are_both_listed() {
        let states = [
            None,
            Some(out(0x41)),
            Some(out(0x43)),
            Some(out(0x41)),
            Some(out(0x41)),
        ];
        assert_eq!(
            vote(&states),
            VoteOutcome::Majority {
                agreed: &out(0x41),
                source: 1,
                minority: vec![dead(0), diverged(2, out(0x41).differences(&out(0x43)))],
            }
        );
    }

    #[test]
    fn three_different_states_have_no_majority() {
        let states = [Some(out(1)), Some(out(2)), Some(out(3))];
        assert_eq!(
            vote(&states),
            VoteOutcome::NoMajority {
                reference: Some(0),
                dissenters: vec![
                    diverged(1, out(1).differences(&out(2))),
                    diverged(2, out(1).differences(&out(3)))
                ],
            }
        );
    }

    #[test]
    fn two_dead_of_three_have_no_majority() {
        let states = [None, Some(out(0x41)), None];
        assert_eq!(
            vote(&states),
            VoteOutcome::NoMajority {
                reference: Some(1),
                dissenters: vec![dead(0), dead(2)]
            }
        );
    }

    #[test]
    fn all_dead_have_no_majority() {
        assert_eq!(
            vote(&[None, None, None]),
            VoteOutcome::NoMajority {
                reference: None,
                dissenters: vec![dead(0), dead(1), dead(2)]
            }
        );
    }

    /// Half of an even group is not a strict majority, even when the other half is split.
    #[test]
    fn half_of_four_is_not_a_majority() {
        let states = [Some(out(1)), Some(out(1)), Some(out(2)), Some(out(3))];
        assert!(matches!(
            vote(&states),
            VoteOutcome::NoMajority {
                reference: Some(0),
                ..
            }
        ));
    }

    /// A different kind of event is outvoted even though every register agrees.
    #[test]
    fn different_event_kind_is_outvoted() {
        let healthy = out(0x41);
        let faulty = ReplicaState {
            event: Event::PortIn {
                port: 0x2f8,
                width: 1,
            },
            ..healthy.clone()
        };
        let states = [Some(healthy.clone()), Some(healthy.clone()), Some(faulty)];
        assert_eq!(
            vote(&states),
            VoteOutcome::Majority {
                agreed: &healthy,
                source: 0,
                minority: vec![diverged(
                    2,
                    vec![Difference::EventKind {
                        expected: EventKind::PortOut,
                        found: EventKind::PortIn
                    }]
                )],
            }
        );
    }

    fn any_register() -> impl Strategy<Value = Register> {
        proptest::sample::select(Register::ALL.to_vec())
    }

    fn any_registers() -> impl Strategy<Value = Registers> {
        proptest::collection::vec(any::<u64>(), Register::ALL.len()).prop_map(|values| {
            let mut registers = Registers::default();
            for (register, value) in Register::ALL.into_iter().zip(values) {
                registers.set(register, value);
            }
            registers
        })
    }

    proptest! {
        #[test]
        fn any_single_flipped_bit_is_outvoted_and_named(
            registers in any_registers(),
            register in any_register(),
            bit in 0..64u32,
            faulty in 0..3usize,
        ) {
            let healthy = ReplicaState { event: Event::MemoryWrite { address: 0xfebf_0000, width: 4, value: 7 }, registers };
            let original = registers.get(register);
            let flipped = with_register(healthy.clone(), register, original ^ (1 << bit));
            let mut states = [Some(healthy.clone()), Some(healthy.clone()), Some(healthy.clone())];
            states[faulty] = Some(flipped);
            let source = if faulty == 0 { 1 } else { 0 };
            prop_assert_eq!(
                vote(&states),
                VoteOutcome::Majority {
                    agreed: &healthy,
                    source,
                    minority: vec![diverged(
                        faulty,
                        vec![Difference::Register { register, expected: original, found: original ^ (1 << bit) }]
                    )],
                }
            );
        }
    }
}
