//! Which fault goes where: seeded, so a campaign can be replayed fault by fault.

use std::fmt;

/// Where the engine puts replicas' copies of scheme memory.
pub use romain_engine::SHARED_MEMORY_BASE;
/// The copies' span: 1 TiB, far beyond what the engine's 1,024 objects of
/// `dma:` buffers reach, and far below the C library's mappings.
const SHARED_MEMORY_SPAN: u64 = 1 << 40;

/// The kinds of fault a campaign injects (Romain's and Herder's): a flipped bit
/// in a register, in memory of each kind (a replica's copy of DMA memory among
/// them), or in the code of one replica; and a replica killed, stopped, or sent
/// into an endless loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    Register,
    Stack,
    Heap,
    Data,
    /// A bit of the replica's private copy of a `dma:` buffer (see
    /// `romain_engine::shared_memory`).
    Dma,
    Code,
    Kill,
    Stop,
    Hang,
}

impl FaultKind {
    pub const ALL: [FaultKind; 9] = [
        FaultKind::Register,
        FaultKind::Stack,
        FaultKind::Heap,
        FaultKind::Data,
        FaultKind::Dma,
        FaultKind::Code,
        FaultKind::Kill,
        FaultKind::Stop,
        FaultKind::Hang,
    ];
    /// What a driver without DMA can take: every kind but [`FaultKind::Dma`].
    pub const WITHOUT_DMA: [FaultKind; 8] = [
        FaultKind::Register,
        FaultKind::Stack,
        FaultKind::Heap,
        FaultKind::Data,
        FaultKind::Code,
        FaultKind::Kill,
        FaultKind::Stop,
        FaultKind::Hang,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Register => "register",
            FaultKind::Stack => "stack",
            FaultKind::Heap => "heap",
            FaultKind::Data => "data",
            FaultKind::Dma => "dma",
            FaultKind::Code => "code",
            FaultKind::Kill => "kill",
            FaultKind::Stop => "stop",
            FaultKind::Hang => "hang",
        }
    }

    /// The kind [`FaultKind::name`] names.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.name() == name)
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The general registers the engine can flip, as its `flip` command names them.
pub const REGISTERS: [&str; 20] = [
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "rsp", "r8", "r9", "r10", "r11", "r12", "r13",
    "r14", "r15", "rip", "rflags", "fs_base", "gs_base",
];

/// How many of `register`'s low bits a flip may hit: segment bases keep to
/// canonical addresses (below bit 47), since the kernel refuses others.
pub fn flippable_bits(register: &str) -> u64 {
    if register.ends_with("_base") {
        47
    } else {
        64
    }
}

/// A replica's memory, by kind, as `(start, end)` ranges.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Regions {
    pub stack: Vec<(u64, u64)>,
    pub heap: Vec<(u64, u64)>,
    pub data: Vec<(u64, u64)>,
    /// The replica's copies of `dma:` buffers, which the engine places from
    /// [`SHARED_MEMORY_BASE`] on.
    pub dma: Vec<(u64, u64)>,
    pub code: Vec<(u64, u64)>,
}

impl Regions {
    /// Sorts the lines of a `/proc/<pid>/maps` text: the stack, the heap (the
    /// brk heap and anonymous writable mappings), the copies of DMA memory (the
    /// anonymous writable mappings from [`SHARED_MEMORY_BASE`] on), the data and
    /// the code of the program whose file name ends in `program`.
    pub fn parse(maps: &str, program: &str) -> Self {
        let mut regions = Regions::default();
        for line in maps.lines() {
            let mut fields = line.split_whitespace();
            let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
                continue;
            };
            let path = fields.nth(3).unwrap_or("");
            let Some((start, end)) = range.split_once('-').and_then(|(start, end)| {
                Some((
                    u64::from_str_radix(start, 16).ok()?,
                    u64::from_str_radix(end, 16).ok()?,
                ))
            }) else {
                continue;
            };
            let ours = !program.is_empty() && path.ends_with(program);
            let list = match (perms, path) {
                (_, "[stack]") => &mut regions.stack,
                ("rw-p", "")
                    if (SHARED_MEMORY_BASE..SHARED_MEMORY_BASE + SHARED_MEMORY_SPAN)
                        .contains(&start) =>
                {
                    &mut regions.dma
                }
                ("rw-p", "[heap]" | "") => &mut regions.heap,
                ("rw-p", _) if ours => &mut regions.data,
                ("r-xp", _) if ours => &mut regions.code,
                _ => continue,
            };
            list.push((start, end));
        }
        regions
    }

    fn of(&self, kind: FaultKind) -> &[(u64, u64)] {
        match kind {
            FaultKind::Stack => &self.stack,
            FaultKind::Heap => &self.heap,
            FaultKind::Data => &self.data,
            FaultKind::Dma => &self.dma,
            _ => &self.code,
        }
    }
}

/// One fault: what it is, which replica it goes into, and the engine command
/// that injects it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub replica: usize,
    pub command: String,
}

/// Picks faults from a seed: the same seed and the same replicas' memory give the
/// same faults.
#[derive(Clone, Debug)]
pub struct FaultPlan {
    state: u64,
    kinds: Vec<FaultKind>,
}

impl FaultPlan {
    /// Faults of the kinds a driver without DMA can take, in equal shares.
    pub fn new(seed: u64) -> Self {
        Self::with_kinds(seed, &FaultKind::WITHOUT_DMA)
    }

    /// Faults drawn from `kinds`, each entry an equal share (a kind named twice
    /// comes twice as often).
    pub fn with_kinds(seed: u64, kinds: &[FaultKind]) -> Self {
        Self {
            // XorShift must not start at zero.
            state: seed.max(1),
            kinds: if kinds.is_empty() {
                FaultKind::WITHOUT_DMA.to_vec()
            } else {
                kinds.to_vec()
            },
        }
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state % bound.max(1)
    }

    /// The next fault for a group of `replicas`, `regions` telling where each
    /// replica's memory lies. A memory kind with no region becomes a register flip.
    pub fn next(&mut self, replicas: usize, regions: impl Fn(usize) -> Regions) -> Fault {
        let pick = self.below(self.kinds.len() as u64) as usize;
        let kind = self.kinds[pick];
        let replica = self.below(replicas as u64) as usize;
        let command = match kind {
            FaultKind::Kill => format!("kill {replica}"),
            FaultKind::Stop => format!("stop {replica}"),
            FaultKind::Hang => format!("hang {replica}"),
            FaultKind::Stack
            | FaultKind::Heap
            | FaultKind::Data
            | FaultKind::Dma
            | FaultKind::Code => {
                let regions = regions(replica);
                let ranges = regions.of(kind);
                if ranges.is_empty() {
                    return self.register(replica);
                }
                let (start, end) = ranges[self.below(ranges.len() as u64) as usize];
                let address = start + self.below(end - start);
                let bit = self.below(8);
                format!("flip {replica} mem {address:#x} {bit}")
            }
            FaultKind::Register => return self.register(replica),
        };
        Fault {
            kind,
            replica,
            command,
        }
    }

    fn register(&mut self, replica: usize) -> Fault {
        let register = REGISTERS[self.below(REGISTERS.len() as u64) as usize];
        let bit = self.below(flippable_bits(register));
        Fault {
            kind: FaultKind::Register,
            replica,
            command: format!("flip {replica} reg {register} {bit}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
555555554000-555555560000 r--p 00000000 08:01 42 /usr/bin/uart16550
555555560000-5555555a0000 r-xp 0000c000 08:01 42 /usr/bin/uart16550
5555555b0000-5555555b2000 rw-p 0005c000 08:01 42 /usr/bin/uart16550
5555555b2000-5555555d3000 rw-p 00000000 00:00 0 [heap]
7ffff7d00000-7ffff7d21000 rw-p 00000000 00:00 0
610000000000-610000200000 rw-p 00000000 00:00 0
7ffff7f00000-7ffff7f10000 r-xp 00000000 08:01 7 /usr/lib/libc.so.6
7ffff7f20000-7ffff7f22000 rw-p 00010000 08:01 7 /usr/lib/libc.so.6
7ffffffde000-7ffffffff000 rw-p 00000000 00:00 0 [stack]
";

    #[test]
    fn maps_are_sorted_into_stack_heap_data_and_code_of_the_program() {
        let regions = Regions::parse(MAPS, "uart16550");
        assert_eq!(regions.stack, [(0x7ffffffde000, 0x7ffffffff000)]);
        assert_eq!(
            regions.heap,
            [
                (0x5555555b2000, 0x5555555d3000),
                (0x7ffff7d00000, 0x7ffff7d21000)
            ]
        );
        assert_eq!(regions.dma, [(0x610000000000, 0x610000200000)]);
        assert_eq!(regions.data, [(0x5555555b0000, 0x5555555b2000)]);
        assert_eq!(regions.code, [(0x555555560000, 0x5555555a0000)]);
    }

    #[test]
    fn a_seed_gives_the_same_faults_every_time_and_every_kind_in_time() {
        let regions = |_| Regions::parse(MAPS, "uart16550");
        let run = |seed| {
            let mut plan = FaultPlan::new(seed);
            (0..400).map(|_| plan.next(3, regions)).collect::<Vec<_>>()
        };
        let faults = run(7);
        assert_eq!(faults, run(7));
        assert_ne!(faults, run(8));
        for kind in FaultKind::WITHOUT_DMA {
            assert!(faults.iter().any(|f| f.kind == kind), "no {kind} in 400");
        }
        for fault in &faults {
            assert!(fault.replica < 3);
            assert!(fault.command.contains(&fault.replica.to_string()));
        }
        let code = faults.iter().find(|f| f.kind == FaultKind::Code).unwrap();
        let address = code.command.split_whitespace().nth(3).unwrap();
        let address = u64::from_str_radix(address.trim_start_matches("0x"), 16).unwrap();
        assert!((0x555555560000..0x5555555a0000).contains(&address));
    }

    #[test]
    fn a_plan_draws_only_its_kinds_and_a_kind_named_twice_comes_about_twice_as_often() {
        let regions = |_| Regions::parse(MAPS, "uart16550");
        let mut plan = FaultPlan::new(5);
        let faults: Vec<Fault> = (0..400).map(|_| plan.next(3, regions)).collect();
        assert!(faults.iter().all(|f| f.kind != FaultKind::Dma));
        let kinds = [FaultKind::Dma, FaultKind::Dma, FaultKind::Kill];
        let mut plan = FaultPlan::with_kinds(5, &kinds);
        let faults: Vec<Fault> = (0..900).map(|_| plan.next(3, regions)).collect();
        let dma = faults.iter().filter(|f| f.kind == FaultKind::Dma).count();
        let kills = faults.iter().filter(|f| f.kind == FaultKind::Kill).count();
        assert_eq!(dma + kills, 900);
        assert!((500..700).contains(&dma), "{dma} of 900 DMA flips");
        let address = faults[faults
            .iter()
            .position(|f| f.kind == FaultKind::Dma)
            .unwrap()]
        .command
        .split_whitespace()
        .nth(3)
        .map(|a| u64::from_str_radix(a.trim_start_matches("0x"), 16).unwrap())
        .unwrap();
        assert!((0x610000000000..0x610000200000).contains(&address));
    }

    #[test]
    fn every_kind_is_found_by_its_name() {
        for kind in FaultKind::ALL {
            assert_eq!(FaultKind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(FaultKind::from_name("cosmic-ray"), None);
    }

    #[test]
    fn a_memory_kind_with_no_region_becomes_a_register_flip() {
        let mut plan = FaultPlan::new(3);
        let faults: Vec<Fault> = (0..100)
            .map(|_| plan.next(2, |_| Regions::default()))
            .collect();
        assert!(faults.iter().all(|f| !matches!(
            f.kind,
            FaultKind::Stack | FaultKind::Heap | FaultKind::Data | FaultKind::Code
        )));
        assert!(faults.iter().any(|f| f.command.contains(" reg ")));
    }
}
