//! A scripted backend, and the group's logic tested on it: each replica is a
//! list of the events it reaches, so a test says exactly where replicas
//! diverge, crash or hang, and checks what the group decides (the vote, which
//! replica is repaired or replaced, what reaches the device and how often)
//! without processes or tracing. The same behaviour on real traced replicas is
//! tested in `romain-scheme/tests/engine.rs` and the guest's tests.

use std::collections::VecDeque;
use std::ops::Range;

use nix::libc::user_regs_struct;
use nix::unistd::Pid;

use super::Backend;
use crate::fault_injection::Fault;
use crate::member::{Action, Arrival, Stopped};
use crate::replica_group::GroupFailure;
use crate::syscall_policy::SyscallClass;
use crate::trap::repair::PageVote;
use crate::trap::{PortAccess, PortOut, Syscall, TrapError, Width};
use crate::vote::{Event, ReplicaIndex};

/// Where a replica's scripted channel exchange reads the request.
pub const REQUEST_BUFFER: u64 = 0x1000;

/// What a scripted replica does next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Writes `value` to a byte port, with `rax` holding `rax`.
    PortOut { port: u16, value: u32, rax: u64 },
    /// Writes `reply` to its channel and waits for the next request.
    AwaitRequest { reply: Vec<u8> },
    /// A syscall it runs itself (`getpid` under no filter), with `rax` holding `rax`.
    RunsItself { rax: u64 },
    /// Ends with this status, as `exit` does.
    Exit(i32),
    /// Crashes.
    Crash,
    /// Does not reach its next event.
    Hang,
}

/// A scripted replica: what it will do, and what the group told it.
#[derive(Clone, Debug)]
pub struct ScriptedReplica {
    pub steps: VecDeque<Step>,
    /// The registers it goes on with, as the group set them last.
    pub regs: user_regs_struct,
    /// Every store the group made into its memory.
    pub stores: Vec<(u64, Vec<u8>)>,
}

/// What the group asked of the backend, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    Repair {
        faulty: ReplicaIndex,
        source: ReplicaIndex,
    },
    Replace {
        index: ReplicaIndex,
        source: ReplicaIndex,
    },
    Discard(ReplicaIndex),
    /// The memory of some replicas was compared.
    Compare(Vec<ReplicaIndex>),
}

/// Replicas that follow their scripts. `spawn` gives place `i` the script
/// `scripts[i]`.
#[derive(Default)]
pub struct ScriptedBackend {
    pub scripts: Vec<Vec<Step>>,
    pub replicas: Vec<Option<ScriptedReplica>>,
    pub calls: Vec<Call>,
    /// Replicas whose repair fails, as one whose memory cannot be copied.
    pub unrepairable: Vec<ReplicaIndex>,
    /// What [`Backend::differing_pages`] and [`Backend::vote_pages`] find.
    pub differing: Vec<u64>,
    pub page_vote: PageVote,
}

impl ScriptedBackend {
    pub fn new(scripts: Vec<Vec<Step>>) -> Self {
        Self {
            scripts,
            ..Self::default()
        }
    }

    fn arrival(step: Option<Step>, regs: &user_regs_struct) -> Arrival {
        let mut regs = *regs;
        match step {
            Some(Step::PortOut { port, value, rax }) => {
                regs.rax = rax;
                Arrival::Event(Box::new(Stopped {
                    event: Event::PortOut {
                        port,
                        width: 1,
                        value,
                    },
                    action: Action::Port(PortAccess::Out(PortOut {
                        port,
                        width: Width::Byte,
                        value,
                        len: 1,
                    })),
                    regs,
                }))
            }
            Some(Step::AwaitRequest { reply }) => {
                let syscall = Syscall {
                    number: nix::libc::SYS_pread64,
                    args: [100, REQUEST_BUFFER, 4096, reply.len() as u64, 0, 0],
                };
                Arrival::Event(Box::new(Stopped {
                    event: Event::Syscall {
                        number: syscall.number as u64,
                        args: syscall.args,
                        data: reply.clone(),
                    },
                    action: Action::Syscall(
                        syscall,
                        SyscallClass::ChannelExchange {
                            buffer: REQUEST_BUFFER,
                            len: 4096,
                            reply_len: reply.len() as u64,
                        },
                    ),
                    regs,
                }))
            }
            Some(Step::RunsItself { rax }) => {
                regs.rax = rax;
                let syscall = Syscall {
                    number: nix::libc::SYS_getpid,
                    args: [0; 6],
                };
                Arrival::Event(Box::new(Stopped {
                    event: Event::Syscall {
                        number: syscall.number as u64,
                        args: syscall.args,
                        data: Vec::new(),
                    },
                    action: Action::Syscall(syscall, SyscallClass::RunInEach),
                    regs,
                }))
            }
            Some(Step::Exit(code)) => Arrival::Died(format!("exited with status {code}")),
            Some(Step::Crash) => Arrival::Died("crashed with SIGSEGV".to_owned()),
            Some(Step::Hang) => Arrival::Hung,
            None => Arrival::Died("exited with status 0".to_owned()),
        }
    }

    fn replica(&self, index: ReplicaIndex) -> Result<&ScriptedReplica, TrapError> {
        self.replicas
            .get(index)
            .and_then(Option::as_ref)
            .ok_or_else(|| TrapError::UnexpectedStart(format!("replica {index} is gone")))
    }
}

impl Backend for ScriptedBackend {
    fn spawn(&mut self, count: usize) -> Result<(), GroupFailure> {
        self.replicas = (0..count)
            .map(|index| {
                Some(ScriptedReplica {
                    steps: self.scripts.get(index).cloned().unwrap_or_default().into(),
                    // SAFETY: user_regs_struct is plain integers; all zero is valid.
                    regs: unsafe { std::mem::zeroed() },
                    stores: Vec::new(),
                })
            })
            .collect();
        Ok(())
    }

    fn clear(&mut self) {
        self.replicas.clear();
    }

    fn places(&self) -> usize {
        self.replicas.len()
    }

    fn is_live(&self, index: ReplicaIndex) -> bool {
        self.replicas.get(index).is_some_and(Option::is_some)
    }

    fn pid(&self, _index: ReplicaIndex) -> Option<Pid> {
        None
    }

    fn advance(&mut self) -> Result<Vec<Option<Arrival>>, GroupFailure> {
        Ok(self
            .replicas
            .iter_mut()
            .map(|replica| {
                let replica = replica.as_mut()?;
                let step = replica.steps.pop_front();
                Some(Self::arrival(step, &replica.regs))
            })
            .collect())
    }

    fn agreed_on(&mut self, _regs: &user_regs_struct, _is_syscall: bool) {}

    fn complete(
        &mut self,
        index: ReplicaIndex,
        stores: &[(u64, Vec<u8>)],
        regs: &user_regs_struct,
    ) -> Result<(), GroupFailure> {
        let replica = self.replicas[index].as_mut().ok_or_else(|| {
            GroupFailure::Trace(TrapError::UnexpectedStart(format!(
                "replica {index} completed while gone"
            )))
        })?;
        replica.stores.extend_from_slice(stores);
        replica.regs = *regs;
        Ok(())
    }

    fn read_memory(
        &self,
        index: ReplicaIndex,
        _address: u64,
        _len: usize,
    ) -> Result<Vec<u8>, TrapError> {
        self.replica(index).map(|_| Vec::new())
    }

    fn discard(&mut self, index: ReplicaIndex) {
        self.calls.push(Call::Discard(index));
        self.replicas[index] = None;
    }

    fn repair(&mut self, faulty: ReplicaIndex, source: ReplicaIndex) -> Result<String, String> {
        self.calls.push(Call::Repair { faulty, source });
        if self.unrepairable.contains(&faulty) {
            return Err("memory not repairable (scripted)".to_owned());
        }
        // The repaired replica goes on as its source does.
        let steps = self.replicas[source]
            .as_ref()
            .ok_or("its source is gone")?
            .steps
            .clone();
        self.replicas[faulty].as_mut().ok_or("it is gone")?.steps = steps;
        Ok("its script copied".to_owned())
    }

    fn replace(
        &mut self,
        index: ReplicaIndex,
        source: ReplicaIndex,
        regs: &user_regs_struct,
    ) -> Result<(), GroupFailure> {
        self.calls.push(Call::Replace { index, source });
        let mut copy = self.replicas[source].clone().ok_or_else(|| {
            GroupFailure::Trace(TrapError::UnexpectedStart("source gone".to_owned()))
        })?;
        copy.regs = *regs;
        self.replicas[index] = Some(copy);
        Ok(())
    }

    fn differing_pages(
        &mut self,
        among: &[ReplicaIndex],
        _known_alike: &[Range<u64>],
    ) -> Result<Vec<u64>, String> {
        self.calls.push(Call::Compare(among.to_vec()));
        Ok(self.differing.clone())
    }

    fn vote_pages(&mut self, _among: &[ReplicaIndex], _pages: &[u64]) -> Result<PageVote, String> {
        Ok(self.page_vote.clone())
    }

    fn inject(&mut self, index: ReplicaIndex, fault: &Fault) -> Result<(), String> {
        let replica = self.replicas[index].as_mut().ok_or("gone")?;
        match fault {
            Fault::Kill => replica.steps.push_front(Step::Crash),
            Fault::Stop | Fault::Spin => replica.steps.push_front(Step::Hang),
            Fault::RegisterBit { .. } | Fault::MemoryBit { .. } => {
                return Err("the scripted backend has no state to flip".to_owned())
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::fault_injection::Injection;
    use crate::replica_group::{Devices, GroupConfig, ReplicaGroup};
    use crate::trap::{PortDevice, ReplicaCommand};

    const PORT: u16 = 0x3f8;

    /// The port writes that reached the device, in order.
    type Written = Arc<Mutex<Vec<(u16, u32)>>>;

    struct RecordingPorts(Written);

    impl PortDevice for RecordingPorts {
        fn read(&mut self, _port: u16, _width: Width) -> u32 {
            0
        }
        fn write(&mut self, port: u16, _width: Width, value: u32) {
            self.0.lock().expect("not poisoned").push((port, value));
        }
    }

    fn devices() -> (Devices, Written) {
        let written = Written::default();
        let devices = Devices {
            ports: Box::new(RecordingPorts(Arc::clone(&written))),
            memory: None,
        };
        (devices, written)
    }

    fn start(backend: ScriptedBackend) -> ReplicaGroup<ScriptedBackend> {
        let config = GroupConfig {
            command: ReplicaCommand::new("scripted"),
            replicas: backend.scripts.len(),
            watchdog: Duration::from_millis(100),
            device_window: None,
            backend: Default::default(),
        };
        ReplicaGroup::start_on(backend, config).expect("a scripted group starts")
    }

    fn out(value: u32) -> Step {
        Step::PortOut {
            port: PORT,
            value,
            rax: 0,
        }
    }

    fn park() -> Step {
        Step::AwaitRequest {
            reply: b"done".to_vec(),
        }
    }

    fn written(written: &Written) -> Vec<u32> {
        let written = written.lock().expect("not poisoned");
        written.iter().map(|&(_, value)| value).collect()
    }

    #[test]
    fn agreeing_replicas_make_each_write_reach_the_device_once_in_order() {
        let script = vec![out(1), out(2), park()];
        let mut group = start(ScriptedBackend::new(vec![script; 3]));
        let (mut devices, device) = devices();
        let reply = group.exchange(None, &mut devices).expect("the group runs");
        assert_eq!(reply.as_deref(), Some(&b"done"[..]));
        assert_eq!(written(&device), [1, 2]);
        let stats = group.stats();
        assert_eq!((stats.events, stats.votes, stats.divergences), (3, 3, 0));
        assert!(group.backend().calls.is_empty());
    }

    #[test]
    fn a_divergent_write_is_outvoted_and_its_replica_repaired_from_the_majority() {
        let good = vec![out(1), out(2), park()];
        let bad = vec![out(9), out(2), park()];
        let mut group = start(ScriptedBackend::new(vec![good.clone(), bad, good]));
        let (mut devices, device) = devices();
        group
            .exchange(None, &mut devices)
            .expect("the majority goes on");
        assert_eq!(written(&device), [1, 2]);
        assert_eq!(
            group.backend().calls,
            [
                Call::Compare(vec![0, 2]),
                Call::Repair {
                    faulty: 1,
                    source: 0
                }
            ]
        );
        let stats = group.stats();
        assert_eq!((stats.divergences, stats.repairs), (1, 1));
        let regs: Vec<u64> = group
            .backend()
            .replicas
            .iter()
            .map(|replica| replica.as_ref().expect("live").regs.rip)
            .collect();
        assert_eq!(regs, [2, 2, 2], "every replica went on past both writes");
    }

    #[test]
    fn divergent_registers_at_an_agreed_write_are_outvoted_too() {
        let good = vec![out(1), park()];
        let bad = vec![
            Step::PortOut {
                port: PORT,
                value: 1,
                rax: 1 << 7,
            },
            park(),
        ];
        let mut group = start(ScriptedBackend::new(vec![bad, good.clone(), good]));
        let (mut devices, device) = devices();
        group
            .exchange(None, &mut devices)
            .expect("the majority goes on");
        assert_eq!(written(&device), [1]);
        assert_eq!(
            group.backend().calls,
            [
                Call::Compare(vec![1, 2]),
                Call::Repair {
                    faulty: 0,
                    source: 1
                }
            ]
        );
    }

    #[test]
    fn two_replicas_that_disagree_withhold_the_write() {
        let mut group = start(ScriptedBackend::new(vec![
            vec![out(1), park()],
            vec![out(9), park()],
        ]));
        let (mut devices, device) = devices();
        let failure = group.exchange(None, &mut devices).expect_err("no majority");
        assert!(matches!(failure, GroupFailure::NoMajority(_)), "{failure}");
        assert!(written(&device).is_empty(), "nothing reached the device");
        assert_eq!(group.stats().no_majority, 1);
    }

    #[test]
    fn a_crashed_replica_is_replaced_by_a_copy_of_a_voted_one() {
        let good = vec![out(1), out(2), park()];
        let mut group = start(ScriptedBackend::new(vec![
            good.clone(),
            good,
            vec![Step::Crash],
        ]));
        let (mut devices, device) = devices();
        group
            .exchange(None, &mut devices)
            .expect("the majority goes on");
        assert_eq!(written(&device), [1, 2]);
        assert_eq!(
            group.backend().calls,
            [
                Call::Compare(vec![0, 1]),
                Call::Discard(2),
                Call::Replace {
                    index: 2,
                    source: 0
                }
            ]
        );
        let stats = group.stats();
        assert_eq!((stats.crashes, stats.replacements), (1, 1));
        assert_eq!(
            group.backend().replicas[2].as_ref().map(|r| r.regs.rip),
            Some(2),
            "the copy went on with the others, past both writes"
        );
    }

    #[test]
    fn a_hung_replica_is_repaired_and_counted_as_a_hang() {
        let good = vec![out(1), park()];
        let mut group = start(ScriptedBackend::new(vec![
            good.clone(),
            vec![Step::Hang],
            good,
        ]));
        let (mut devices, device) = devices();
        group
            .exchange(None, &mut devices)
            .expect("the majority goes on");
        assert_eq!(written(&device), [1]);
        assert_eq!(
            group.backend().calls,
            [
                Call::Compare(vec![0, 2]),
                Call::Repair {
                    faulty: 1,
                    source: 0
                }
            ]
        );
        assert_eq!((group.stats().hangs, group.stats().crashes), (1, 0));
    }

    #[test]
    fn a_replica_that_cannot_be_repaired_is_dropped_and_replaced() {
        let good = vec![out(1), park()];
        let mut backend = ScriptedBackend::new(vec![good.clone(), vec![out(9), park()], good]);
        backend.unrepairable = vec![1];
        let mut group = start(backend);
        let (mut devices, device) = devices();
        group
            .exchange(None, &mut devices)
            .expect("the majority goes on");
        assert_eq!(written(&device), [1]);
        assert_eq!(
            group.backend().calls,
            [
                Call::Compare(vec![0, 2]),
                Call::Repair {
                    faulty: 1,
                    source: 0
                },
                Call::Discard(1),
                Call::Replace {
                    index: 1,
                    source: 0
                }
            ]
        );
        assert_eq!(group.stats().repairs, 0);
    }

    #[test]
    fn memory_no_majority_holds_fails_the_group_before_anything_is_copied_or_written() {
        let good = vec![out(1), park()];
        let mut backend = ScriptedBackend::new(vec![good.clone(), vec![out(9), park()], good]);
        backend.differing = vec![0x5000];
        backend.page_vote = PageVote {
            rewritten: Vec::new(),
            unsettled: vec![0x5000],
        };
        let mut group = start(backend);
        let (mut devices, device) = devices();
        let failure = group.exchange(None, &mut devices).expect_err("no majority");
        assert!(matches!(failure, GroupFailure::NoMajority(_)), "{failure}");
        assert!(written(&device).is_empty());
        assert_eq!(
            group.backend().calls,
            [Call::Compare(vec![0, 2])],
            "the agreeing replicas compared, nothing copied"
        );
        let stats = group.stats();
        assert_eq!((stats.no_majority, stats.divergences), (1, 1));
    }

    #[test]
    fn memory_a_majority_holds_is_settled_and_counted_before_the_copy() {
        let good = vec![out(1), park()];
        let mut backend = ScriptedBackend::new(vec![good.clone(), vec![out(9), park()], good]);
        backend.differing = vec![0x5000];
        backend.page_vote = PageVote {
            rewritten: vec![(1, 0x5000)],
            unsettled: Vec::new(),
        };
        let mut group = start(backend);
        let (mut devices, device) = devices();
        group
            .exchange(None, &mut devices)
            .expect("the majority goes on");
        assert_eq!(written(&device), [1]);
        // The agreeing replicas are 0 and 2: position 1 among them is replica 2.
        let stats = group.stats();
        assert_eq!((stats.divergences, stats.repairs), (2, 2));
        let fault = stats.last_fault.unwrap_or_default();
        assert!(
            fault.contains("replica 1"),
            "the last fault is the register one: {fault}"
        );
        assert_eq!(
            group.backend().calls[..2],
            [
                Call::Compare(vec![0, 2]),
                Call::Repair {
                    faulty: 1,
                    source: 0
                }
            ]
        );
    }

    #[test]
    fn a_memory_repair_names_the_first_page_the_replica_differs_on() {
        // Replica 1 is repaired at a syscall each replica runs, so dropped: at
        // the next event only its empty place calls for a copy, and the
        // memory the others settle is the last fault.
        let good = vec![Step::RunsItself { rax: 39 }, out(1), park()];
        let bad = vec![Step::RunsItself { rax: 40 }, out(1), park()];
        let mut backend = ScriptedBackend::new(vec![good.clone(), bad, good]);
        backend.differing = vec![0x5000, 0x6000];
        backend.page_vote = PageVote {
            rewritten: vec![(0, 0x5000), (1, 0x6000)],
            unsettled: Vec::new(),
        };
        let mut group = start(backend);
        let (mut devices, _) = devices();
        group
            .exchange(None, &mut devices)
            .expect("the majority goes on");
        let fault = group.stats().last_fault.unwrap_or_default();
        assert!(
            fault.contains("replica 2: memory differs from the majority's from page 0x6000"),
            "{fault}"
        );
    }

    #[test]
    fn every_replica_exiting_alike_ends_the_group() {
        let mut group = start(ScriptedBackend::new(vec![vec![Step::Exit(3)]; 3]));
        let (mut devices, _) = devices();
        let failure = group.exchange(None, &mut devices).expect_err("ended");
        assert!(
            matches!(&failure, GroupFailure::DriverEnded(how) if how == "exited with status 3"),
            "{failure}"
        );
    }

    #[test]
    fn a_request_reaches_every_waiting_replica_alike() {
        let script = vec![park(), out(1), park()];
        let mut group = start(ScriptedBackend::new(vec![script; 3]));
        let (mut devices, device) = devices();
        group.exchange(None, &mut devices).expect("parks");
        assert!(written(&device).is_empty());
        group
            .exchange(Some(b"request"), &mut devices)
            .expect("serves");
        assert_eq!(written(&device), [1]);
        for replica in group.backend().replicas.iter().flatten() {
            assert_eq!(replica.stores, [(REQUEST_BUFFER, b"request".to_vec())]);
        }
        assert_eq!(group.requests(), 1);
        let stats = group.stats();
        assert_eq!((stats.replicas, stats.requests, stats.rounds), (3, 1, 0));
    }

    #[test]
    fn a_round_is_delivered_as_any_message_and_counted_as_a_round() {
        let script = vec![park(), out(1), park()];
        let mut group = start(ScriptedBackend::new(vec![script; 2]));
        let (mut devices, device) = devices();
        group.exchange(None, &mut devices).expect("parks");
        let mut round = Vec::new();
        scheme_runtime::replicated::codec::encode_round(&[], false, &mut round);
        group.exchange(Some(&round), &mut devices).expect("runs");
        assert_eq!(written(&device), [1]);
        for replica in group.backend().replicas.iter().flatten() {
            assert_eq!(replica.stores, [(REQUEST_BUFFER, round.clone())]);
        }
        let stats = group.stats();
        assert_eq!((stats.rounds, stats.requests), (1, 0));
    }

    #[test]
    fn a_killed_replica_is_replaced_at_the_next_event() {
        let script = vec![park(), out(1), park()];
        let mut group = start(ScriptedBackend::new(vec![script; 3]));
        let (mut devices, device) = devices();
        group.exchange(None, &mut devices).expect("parks");
        group
            .inject(Injection {
                replica: 0,
                fault: Fault::Kill,
            })
            .expect("queued");
        group
            .exchange(Some(b"request"), &mut devices)
            .expect("serves");
        assert_eq!(written(&device), [1]);
        assert_eq!(
            group.backend().calls,
            [
                Call::Compare(vec![1, 2]),
                Call::Discard(0),
                Call::Replace {
                    index: 0,
                    source: 1
                }
            ]
        );
        assert_eq!(group.stats().injected, 1);
    }

    #[test]
    fn a_single_replica_is_counted_in_events_but_never_voted() {
        let mut group = start(ScriptedBackend::new(vec![vec![out(1), park()]]));
        let (mut devices, device) = devices();
        group.exchange(None, &mut devices).expect("runs");
        assert_eq!(written(&device), [1]);
        let stats = group.stats();
        assert_eq!((stats.events, stats.votes), (2, 0));
    }

    #[test]
    fn an_exchange_reaches_out_only_with_an_event_besides_the_one_that_ends_it() {
        let script = vec![park(), out(1), park(), park()];
        let mut group = start(ScriptedBackend::new(vec![script; 3]));
        let (mut devices, _) = devices();
        group.exchange(None, &mut devices).expect("parks");
        assert!(
            !group.last_exchange_reached_out(),
            "only the exchange itself"
        );
        group
            .exchange(Some(b"write"), &mut devices)
            .expect("serves");
        assert!(group.last_exchange_reached_out(), "a port write");
        group
            .exchange(Some(b"nothing"), &mut devices)
            .expect("serves");
        assert!(!group.last_exchange_reached_out());
    }

    /// A reply that holds one call for the engine to make with it, on a
    /// descriptor the replicas never opened (so the call itself fails).
    fn reply_holding_a_call() -> Vec<u8> {
        let request = b"held request";
        let mut section = 7u32.to_le_bytes().to_vec();
        section.extend((request.len() as u32).to_le_bytes());
        section.extend(request);
        let mut reply = vec![0; scheme_runtime::wire::RESPONSE_HEADER_LEN];
        reply[4..8].copy_from_slice(&(section.len() as u32).to_le_bytes());
        reply.extend(section);
        reply
    }

    #[test]
    fn a_call_held_for_the_reply_is_made_and_counts_as_reaching_out() {
        let script = vec![
            park(),
            Step::AwaitRequest {
                reply: reply_holding_a_call(),
            },
            park(),
        ];
        let mut group = start(ScriptedBackend::new(vec![script; 3]));
        let (mut devices, _) = devices();
        group.exchange(None, &mut devices).expect("parks");
        let reply = group
            .exchange(Some(b"request"), &mut devices)
            .expect("serves")
            .expect("a reply");
        assert_eq!(group.stats().held_calls, 1);
        assert!(
            group.last_exchange_reached_out(),
            "the held call reached out"
        );
        assert_eq!(
            reply,
            vec![0; scheme_runtime::wire::RESPONSE_HEADER_LEN],
            "the daemon gets the reply without the section"
        );
        group
            .exchange(Some(b"request"), &mut devices)
            .expect("serves");
        assert!(!group.last_exchange_reached_out(), "no call held this time");
    }

    #[test]
    fn every_replica_crashing_alike_is_a_fault_not_the_driver_ending() {
        let mut group = start(ScriptedBackend::new(vec![vec![Step::Crash]; 3]));
        let (mut devices, _) = devices();
        let failure = group.exchange(None, &mut devices).expect_err("no majority");
        assert!(matches!(failure, GroupFailure::NoMajority(_)), "{failure}");
    }

    #[test]
    fn a_replica_repaired_at_a_syscall_each_runs_is_replaced_at_the_next_event() {
        let good = vec![Step::RunsItself { rax: 39 }, out(1), park()];
        let bad = vec![Step::RunsItself { rax: 40 }, out(1), park()];
        let mut group = start(ScriptedBackend::new(vec![good.clone(), bad, good]));
        let (mut devices, device) = devices();
        group
            .exchange(None, &mut devices)
            .expect("the majority goes on");
        assert_eq!(written(&device), [1]);
        // Repaired, it may not be at the syscall the others run: dropped, and at
        // the next event a copy takes its place, after the others' memory is
        // settled.
        assert_eq!(
            group.backend().calls,
            [
                Call::Compare(vec![0, 2]),
                Call::Repair {
                    faulty: 1,
                    source: 0
                },
                Call::Discard(1),
                Call::Compare(vec![0, 2]),
                Call::Replace {
                    index: 1,
                    source: 0
                }
            ]
        );
        let stats = group.stats();
        assert_eq!(
            (stats.divergences, stats.crashes, stats.replacements),
            (1, 0, 1),
            "the dropped replica did not crash"
        );
    }

    #[test]
    fn a_fault_for_a_replica_the_group_does_not_have_is_refused() {
        let mut group = start(ScriptedBackend::new(vec![vec![park()]; 2]));
        let refused = group.inject(Injection {
            replica: 2,
            fault: Fault::Kill,
        });
        assert!(refused.is_err());
    }
}
