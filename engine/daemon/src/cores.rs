//! The core map: which CPU runs which instance of which role.
//!
//! Configured as one CPU list per role (`[cores]`); resolved, once the instance counts are
//! known, into a [`CoreMap`] that lists every CPU that has work and the role instances pinned
//! to it. A role with more instances than CPUs is spread round-robin: instance `i` runs on
//! `list[i % list.len()]`.
//!
//! Nothing here reads the host except [`CpuSet::host`]; everything else takes the CPU set as
//! an argument so that tests are deterministic on any machine.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::Profile;

/// One kind of thread in the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Receives packets, decodes records, hands them to the builder shards.
    Intake,
    /// Collects a window's records and builds its block.
    Builder,
    /// Build workers: build whole windows a builder shard hands them, in parallel with it.
    BuildWorker,
    /// The merger: joins the shards' blocks into the window's block and clears the auction.
    Merger,
    /// Proves finished blocks, off the latency path.
    Prover,
    /// Writes the results journal (published windows) to disk.
    Journal,
    /// Writes the durable input log (every accepted record), group-committed.
    Log,
    /// Serves metrics and the admin API.
    Admin,
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::Intake,
        Role::Builder,
        Role::BuildWorker,
        Role::Merger,
        Role::Prover,
        Role::Journal,
        Role::Log,
        Role::Admin,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Intake => "intake",
            Role::Builder => "builder",
            Role::BuildWorker => "build_worker",
            Role::Merger => "merger",
            Role::Prover => "prover",
            Role::Journal => "journal",
            Role::Log => "log",
            Role::Admin => "admin",
        }
    }

    /// The roles on every window's latency path: a record is not in a block, and a bid not
    /// cleared, until intake, builder (or a build worker) and merger have run.
    pub const fn is_hot(self) -> bool {
        matches!(self, Role::Intake | Role::Builder | Role::BuildWorker | Role::Merger)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One value per role; the shape of the `[cores]` and `[idle]` sections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerRole<T> {
    pub intake: T,
    pub builder: T,
    pub build_worker: T,
    pub merger: T,
    pub prover: T,
    pub journal: T,
    pub log: T,
    pub admin: T,
}

impl<T> PerRole<T> {
    pub fn from_fn(mut f: impl FnMut(Role) -> T) -> PerRole<T> {
        PerRole {
            intake: f(Role::Intake),
            builder: f(Role::Builder),
            build_worker: f(Role::BuildWorker),
            merger: f(Role::Merger),
            prover: f(Role::Prover),
            journal: f(Role::Journal),
            log: f(Role::Log),
            admin: f(Role::Admin),
        }
    }

    pub fn get(&self, role: Role) -> &T {
        match role {
            Role::Intake => &self.intake,
            Role::Builder => &self.builder,
            Role::BuildWorker => &self.build_worker,
            Role::Merger => &self.merger,
            Role::Prover => &self.prover,
            Role::Journal => &self.journal,
            Role::Log => &self.log,
            Role::Admin => &self.admin,
        }
    }
}

/// The CPUs this process may run on (its affinity mask). Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuSet(BTreeSet<usize>);

impl CpuSet {
    /// # Panics
    /// If `ids` is empty: a process always has at least one CPU.
    pub fn new(ids: impl IntoIterator<Item = usize>) -> CpuSet {
        let set: BTreeSet<usize> = ids.into_iter().collect();
        assert!(!set.is_empty(), "a CPU set has at least one CPU");
        CpuSet(set)
    }

    /// The CPUs this process is allowed to run on, from `sched_getaffinity` (through
    /// `core_affinity`). Falls back to `0..available_parallelism` where the mask cannot be read.
    /// Reads the calling thread's mask: call it before any thread is pinned.
    pub fn host() -> CpuSet {
        match core_affinity::get_core_ids() {
            Some(ids) if !ids.is_empty() => CpuSet::new(ids.into_iter().map(|c| c.id)),
            _ => {
                let n = std::thread::available_parallelism().map_or(1, |n| n.get());
                CpuSet::new(0..n)
            }
        }
    }

    pub fn contains(&self, cpu: usize) -> bool {
        self.0.contains(&cpu)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// Ascending CPU ids.
    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().copied()
    }
}

impl fmt::Display for CpuSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<String> = self.iter().map(|c| c.to_string()).collect();
        write!(f, "{{{}}}", ids.join(", "))
    }
}

/// How many intakes, builder shards and build workers per shard a configuration runs: the
/// counts the default core map is laid out for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub intakes: usize,
    pub shards: usize,
    /// Build workers per shard.
    pub workers: usize,
}

/// Intakes and builder shards of the spread map, by allowed CPUs: `(from, intakes = shards)`,
/// the last row whose `from` is at most the CPU count applies. Each step is the largest count
/// whose hot roles (intakes, shards, one build worker per shard, merger) and the service CPU
/// all get CPUs of their own, `3k + 2 <= cpus` (8 CPUs: 2 + 2 + 2 + 1 + 1); on 4 to 7 CPUs one
/// intake and one shard, and the build worker shares the service CPU on 4. Past 8 the defaults
/// stop growing: more intakes need at least as many client connections to spread over (the
/// kernel hashes connections over the `SO_REUSEPORT` group), every shard adds a block the
/// merger joins each window, and nothing beyond 8 has been measured; the CPUs left over stay
/// free for the kernel's network work and other processes.
pub const SPREAD_STEPS: [(usize, usize); 4] = [(4, 1), (8, 2), (16, 4), (32, 8)];

/// Whether `profile` lays its roles out over `cpus` allowed CPUs (the spread map) rather than
/// on two (the 2-CPU map): `default` and `tuned` on 4 or more; `test` never.
pub fn spreads(profile: Profile, cpus: usize) -> bool {
    profile != Profile::Test && cpus >= 4
}

/// The default [`Shape`] for `profile` on `cpus` allowed CPUs (`docs/config.md`, "Default
/// maps"). On the 2-CPU map: one intake, one shard, two build workers (worker 0 on the second
/// CPU, an overflow worker beside the intake; one on one CPU). On the spread map:
/// [`SPREAD_STEPS`] intakes and shards with one build worker each (a free CPU each).
pub fn default_shape(profile: Profile, cpus: usize) -> Shape {
    if !spreads(profile, cpus) {
        return Shape { intakes: 1, shards: 1, workers: if cpus == 1 { 1 } else { 2 } };
    }
    let k = SPREAD_STEPS.iter().rev().find(|(from, _)| cpus >= *from).map_or(1, |s| s.1);
    Shape { intakes: k, shards: k, workers: 1 }
}

/// The default CPU lists, and why each role's list is what it is (`--print-config` prints
/// the reasons beside the resolved map).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub lists: PerRole<Vec<usize>>,
    pub why: PerRole<String>,
}

/// The default CPU lists for `profile` on `cpus` for a configuration of `shape`.
///
/// **2-CPU map** (`test` always; `default` and `tuned` on 2 or 3 CPUs): the first allowed CPU
/// runs intake and builder (the record path, joined by one SPSC ring), the second runs the
/// build workers, merger, prover, journal, log and admin; with two or more build workers the
/// list is `[second, first]`, so that each shard's worker 0 has the second CPU and its
/// overflow worker the first. More than one intake take the first CPUs, one each. On one CPU
/// everything shares it.
///
/// **Spread map** (`default` and `tuned` on 4 or more CPUs), in ascending CPU order: the
/// intakes (one CPU each, at most `cpus - 3`), the builder shards (one CPU each, at most what
/// leaves two), the merger, one service CPU (prover, journal, log, admin), then the build
/// workers on the CPUs left (one each, or with the services when none is left), then the
/// prover on a CPU of its own if one is left, then the log. Fewer CPUs than instances: the
/// instances go round-robin over the role's list. Only the idle strategies differ between
/// `default` (spin, then park) and `tuned` (hot roles spin).
pub fn default_layout(profile: Profile, cpus: &CpuSet, shape: Shape) -> Layout {
    let ids: Vec<usize> = cpus.iter().collect();
    let n = ids.len();
    if spreads(profile, n) {
        spread_layout(profile, &ids, shape)
    } else {
        compact_layout(profile, &ids, shape)
    }
}

/// The default lists alone (see [`default_layout`]).
pub fn default_lists(profile: Profile, cpus: &CpuSet, shape: Shape) -> PerRole<Vec<usize>> {
    default_layout(profile, cpus, shape).lists
}

fn compact_layout(profile: Profile, ids: &[usize], shape: Shape) -> Layout {
    let n = ids.len();
    let first = ids[0];
    let second = ids[1.min(n - 1)];
    // Worker 0 of each shard (the one that takes every window it can keep up with) on the
    // second CPU, the overflow workers beside the intake.
    let mut build = vec![second];
    if n >= 2 && shape.shards * shape.workers >= 2 {
        build.push(first);
    }
    let intake = ids[..shape.intakes.clamp(1, n)].to_vec();
    let lists = PerRole {
        intake,
        builder: vec![first],
        build_worker: build,
        merger: vec![second],
        prover: vec![second],
        journal: vec![second],
        log: vec![second],
        admin: vec![second],
    };
    let map = if n == 1 {
        "one CPU allowed: every role shares it".to_string()
    } else if n >= 4 {
        format!("2-CPU map: the {} profile keeps to two CPUs, {n} allowed", profile.as_str())
    } else {
        format!("2-CPU map: {} profile, {n} CPUs allowed", profile.as_str())
    };
    let record_path =
        "the record path: intake and builder share the first CPU, so their ring stays in one core's caches";
    let off_path = "off the record path, on the second CPU; it parks when idle";
    let why: PerRole<String> = PerRole {
        intake: if shape.intakes > 1 {
            "intakes take the first CPUs, one each".into()
        } else {
            record_path.into()
        },
        builder: record_path.into(),
        build_worker: "worker 0 of each shard on the second CPU, overflow workers beside the intake".into(),
        merger: "once per window, after the blocks are built: on the second CPU, off the record path".into(),
        prover: off_path.into(),
        journal: off_path.into(),
        log: off_path.into(),
        admin: off_path.into(),
    };
    Layout { lists, why: PerRole::from_fn(|role| format!("{} ({map})", why.get(role))) }
}

fn spread_layout(profile: Profile, ids: &[usize], shape: Shape) -> Layout {
    let n = ids.len();
    let mut next = 0;
    let mut take = |k: usize| {
        let list = ids[next..next + k].to_vec();
        next += k;
        (list, n - next)
    };
    let intakes = shape.intakes.clamp(1, n - 3);
    let (intake, _) = take(intakes);
    let builders = shape.shards.clamp(1, n - intakes - 2);
    let (builder, _) = take(builders);
    let (merger, _) = take(1);
    let (service, mut left) = take(1);
    let service = service[0];
    let workers = shape.shards * shape.workers;
    let worker_cpus = workers.min(left);
    let build_worker = if worker_cpus == 0 {
        vec![service]
    } else {
        let (list, l) = take(worker_cpus);
        left = l;
        list
    };
    let prover = if left > 0 {
        let (list, l) = take(1);
        left = l;
        list
    } else {
        vec![service]
    };
    let log = if left > 0 { take(1).0 } else { vec![service] };

    let own = |count: usize, cpus: usize, what: &str| {
        if cpus >= count {
            "hot role, a CPU of its own".to_string()
        } else {
            format!(
                "hot role: {count} {what}s round-robin on {cpus} CPUs (the rest are needed by the other roles)"
            )
        }
    };
    let build_why = if workers == 0 {
        "no build workers (builder.workers = 0): listed with the service roles".to_string()
    } else if worker_cpus == 0 {
        "no CPU left after intakes, builders, merger and services: with the service roles".to_string()
    } else if worker_cpus < workers {
        format!(
            "{workers} build workers round-robin on the {worker_cpus} CPUs left after intakes, builders, merger and services"
        )
    } else {
        "a CPU each, after intakes, builders, merger and services".to_string()
    };
    let services = "service roles share one CPU; they park when idle";
    let why = PerRole {
        intake: own(shape.intakes.max(1), intakes, "intake"),
        builder: own(shape.shards.max(1), builders, "builder shard"),
        build_worker: build_why,
        merger: "hot role, a CPU of its own".to_string(),
        prover: if prover[0] == service {
            services.to_string()
        } else {
            "a CPU of its own, left after the hot roles: a proof takes seconds of CPU and must not delay the log or the journal".to_string()
        },
        journal: services.to_string(),
        log: if log[0] == service {
            services.to_string()
        } else {
            "a CPU of its own, left after the prover's: every receipt waits for its group commit".to_string()
        },
        admin: services.to_string(),
    };
    let lists = PerRole {
        intake,
        builder,
        build_worker,
        merger,
        prover,
        journal: vec![service],
        log,
        admin: vec![service],
    };
    let map = format!("spread map: {} profile, {n} CPUs allowed", profile.as_str());
    Layout { lists, why: PerRole::from_fn(|role| format!("{} ({map})", why.get(role))) }
}

/// One running copy of a role: builder shard 2 is `{ role: Builder, index: 2 }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoleInstance {
    pub role: Role,
    pub index: usize,
}

impl fmt::Display for RoleInstance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.role, self.index)
    }
}

/// The role instances pinned to one CPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuPlan {
    pub cpu: usize,
    /// In [`Role::ALL`] order, then by index.
    pub roles: Vec<RoleInstance>,
}

/// Every CPU that has work, ascending, with what runs on it. CPUs listed in `[cores]` whose
/// role has no instances (a disabled prover or admin) do not appear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreMap {
    pub plans: Vec<CpuPlan>,
}

impl CoreMap {
    /// Spreads `counts[role]` instances of each role round-robin over `lists[role]`.
    ///
    /// # Panics
    /// If a role has instances but an empty list (validation rejects that first).
    pub fn resolve(lists: &PerRole<Vec<usize>>, counts: &PerRole<usize>) -> CoreMap {
        let mut plans: Vec<CpuPlan> = Vec::new();
        for role in Role::ALL {
            let list = lists.get(role);
            let count = *counts.get(role);
            assert!(count == 0 || !list.is_empty(), "role {role} has instances but no CPU");
            for index in 0..count {
                let cpu = list[index % list.len()];
                let instance = RoleInstance { role, index };
                match plans.iter_mut().find(|p| p.cpu == cpu) {
                    Some(plan) => plan.roles.push(instance),
                    None => plans.push(CpuPlan { cpu, roles: vec![instance] }),
                }
            }
        }
        plans.sort_by_key(|p| p.cpu);
        CoreMap { plans }
    }

    /// The CPU that runs `role` instance `index`.
    pub fn cpu_of(&self, role: Role, index: usize) -> Option<usize> {
        let wanted = RoleInstance { role, index };
        self.plans.iter().find(|p| p.roles.contains(&wanted)).map(|p| p.cpu)
    }

    /// How many instances of `role` run.
    pub fn instances(&self, role: Role) -> usize {
        self.plans.iter().flat_map(|p| &p.roles).filter(|r| r.role == role).count()
    }

    /// The roles other than `instance` that share its CPU.
    pub fn neighbours(&self, instance: RoleInstance) -> Vec<RoleInstance> {
        self.plans
            .iter()
            .find(|p| p.roles.contains(&instance))
            .map(|p| p.roles.iter().copied().filter(|r| *r != instance).collect())
            .unwrap_or_default()
    }
}

impl CoreMap {
    /// What `instance` is, in words: `builder shard 1 of 2`.
    pub fn describe(&self, instance: RoleInstance) -> String {
        let count = self.instances(instance.role);
        let i = instance.index;
        match instance.role {
            Role::Intake => format!("intake {i} of {count}"),
            Role::Builder => format!("builder shard {i} of {count}"),
            Role::BuildWorker => {
                // Worker `i` serves shard `i / builder.workers`.
                let per = (count / self.instances(Role::Builder).max(1)).max(1);
                format!("build worker {} of shard {}", i % per, i / per)
            }
            Role::Merger => "the merger: joins the shards' blocks, clears the auction".into(),
            Role::Prover => format!("prover worker {i} of {count}"),
            Role::Journal => "the results journal's writer".into(),
            Role::Log => "the input log's group commit".into(),
            Role::Admin => "metrics and the admin API".into(),
        }
    }

    /// The map as [`Display`] prints it, each CPU's line followed by one indented line per
    /// role instance on it: what it is and why it is there (`why`: one reason per role).
    pub fn explain(&self, why: &PerRole<String>) -> String {
        let mut out = String::new();
        for plan in &self.plans {
            let roles: Vec<String> = plan.roles.iter().map(|r| r.to_string()).collect();
            out.push_str(&format!("cpu {}: {}\n", plan.cpu, roles.join(" ")));
            for r in &plan.roles {
                out.push_str(&format!("    {r}: {} \u{2014} {}\n", self.describe(*r), why.get(r.role)));
            }
        }
        out
    }
}

impl fmt::Display for CoreMap {
    /// One line per CPU: `cpu 0: intake#0 builder#0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for plan in &self.plans {
            let roles: Vec<String> = plan.roles.iter().map(|r| r.to_string()).collect();
            writeln!(f, "cpu {}: {}", plan.cpu, roles.join(" "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two build workers per shard (`builder.workers` on the 2-CPU map).
    fn counts(intake: usize, shards: usize, provers: usize) -> PerRole<usize> {
        PerRole {
            intake,
            builder: shards,
            build_worker: 2 * shards,
            merger: 1,
            prover: provers,
            journal: 1,
            log: 1,
            admin: 1,
        }
    }

    fn ri(role: Role, index: usize) -> RoleInstance {
        RoleInstance { role, index }
    }

    #[test]
    fn one_cpu_runs_everything_for_every_profile() {
        let cpus = CpuSet::new([0]);
        for profile in [Profile::Default, Profile::Test, Profile::Tuned] {
            let lists = default_lists(profile, &cpus, Shape { intakes: 1, shards: 4, workers: 2 });
            let map = CoreMap::resolve(&lists, &counts(1, 4, 1));
            assert_eq!(map.plans.len(), 1, "{profile:?}");
            assert_eq!(map.plans[0].cpu, 0);
            assert_eq!(map.plans[0].roles.len(), 1 + 4 + 8 + 1 + 1 + 1 + 1 + 1);
        }
    }

    #[test]
    fn two_cpus_split_record_path_from_the_rest() {
        let cpus = CpuSet::new([0, 1]);
        for profile in [Profile::Default, Profile::Test, Profile::Tuned] {
            let map = CoreMap::resolve(&default_lists(profile, &cpus, TWO_CPU_SHAPE), &counts(1, 1, 1));
            assert_eq!(
                map.plans,
                vec![
                    CpuPlan {
                        cpu: 0,
                        roles: vec![ri(Role::Intake, 0), ri(Role::Builder, 0), ri(Role::BuildWorker, 1)]
                    },
                    CpuPlan {
                        cpu: 1,
                        roles: vec![
                            ri(Role::BuildWorker, 0),
                            ri(Role::Merger, 0),
                            ri(Role::Prover, 0),
                            ri(Role::Journal, 0),
                            ri(Role::Log, 0),
                            ri(Role::Admin, 0)
                        ]
                    },
                ],
                "{profile:?}"
            );
        }
    }

    #[test]
    fn allowed_set_that_does_not_start_at_zero() {
        let cpus = CpuSet::new([6, 3]);
        let map = CoreMap::resolve(&default_lists(Profile::Default, &cpus, TWO_CPU_SHAPE), &counts(1, 1, 1));
        assert_eq!(map.cpu_of(Role::Intake, 0), Some(3));
        assert_eq!(map.cpu_of(Role::Admin, 0), Some(6));
    }

    /// The 2-CPU map's default shape.
    const TWO_CPU_SHAPE: Shape = Shape { intakes: 1, shards: 1, workers: 2 };

    /// The instance counts the loader derives from `shape` (prover, journal, log and admin
    /// enabled, one prover worker).
    fn counts_of(shape: Shape) -> PerRole<usize> {
        PerRole {
            intake: shape.intakes,
            builder: shape.shards,
            build_worker: shape.shards * shape.workers,
            merger: 1,
            prover: 1,
            journal: 1,
            log: 1,
            admin: 1,
        }
    }

    #[test]
    fn default_shape_by_cpu_count() {
        let shape = |profile, n| {
            let s = default_shape(profile, n);
            (s.intakes, s.shards, s.workers)
        };
        for profile in [Profile::Default, Profile::Tuned] {
            let table: [(usize, (usize, usize, usize)); 13] = [
                (1, (1, 1, 1)),
                (2, (1, 1, 2)),
                (3, (1, 1, 2)),
                (4, (1, 1, 1)),
                (7, (1, 1, 1)),
                (8, (2, 2, 1)),
                (15, (2, 2, 1)),
                (16, (4, 4, 1)),
                (31, (4, 4, 1)),
                (32, (8, 8, 1)),
                (64, (8, 8, 1)),
                (128, (8, 8, 1)),
                (6, (1, 1, 1)),
            ];
            for (n, want) in table {
                assert_eq!(shape(profile, n), want, "{profile:?} on {n} CPUs");
            }
        }
        for n in [1, 2, 4, 16, 64] {
            let want = if n == 1 { (1, 1, 1) } else { (1, 1, 2) };
            assert_eq!(shape(Profile::Test, n), want, "the test profile keeps the 2-CPU shape on {n}");
        }
    }

    /// Contiguous and non-contiguous affinity masks of many sizes.
    fn masks() -> Vec<CpuSet> {
        let mut out: Vec<CpuSet> =
            [1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 24, 32, 64].map(|n| CpuSet::new(0..n)).into();
        out.push(CpuSet::new([2, 5, 7, 11]));
        out.push(CpuSet::new([3, 9, 10, 40, 41, 42, 43, 63]));
        out.push(CpuSet::new((0..32).map(|c| 2 * c + 1)));
        out.push(CpuSet::new((8..24).chain(40..56)));
        out.push(CpuSet::new([6, 3]));
        out.push(CpuSet::new([5, 1, 9]));
        out
    }

    /// Every instance has a CPU of the allowed set, and every list obeys what validation asks
    /// (non-empty; no longer than its instance count; one CPU for the single-thread roles).
    fn assert_valid(lists: &PerRole<Vec<usize>>, counts: &PerRole<usize>, cpus: &CpuSet, what: &str) {
        for role in Role::ALL {
            let list = lists.get(role);
            assert!(!list.is_empty(), "{what}: {role} has no CPU");
            assert!(list.iter().all(|c| cpus.contains(*c)), "{what}: {role} {list:?} outside {cpus}");
            let unique: BTreeSet<_> = list.iter().collect();
            assert_eq!(unique.len(), list.len(), "{what}: {role} lists a CPU twice");
            let count = *counts.get(role);
            match role {
                Role::Merger | Role::Journal | Role::Log | Role::Admin => {
                    assert_eq!(list.len(), 1, "{what}: {role}")
                }
                _ => assert!(list.len() <= count.max(1), "{what}: {role} lists {list:?} for {count}"),
            }
        }
        let map = CoreMap::resolve(lists, counts);
        for role in Role::ALL {
            for index in 0..*counts.get(role) {
                assert!(map.cpu_of(role, index).is_some(), "{what}: {role}#{index} has no CPU");
            }
        }
    }

    #[test]
    fn every_role_has_an_allowed_cpu_on_every_mask_and_profile() {
        for cpus in masks() {
            for profile in Profile::ALL {
                let shape = default_shape(profile, cpus.len());
                let lists = default_lists(profile, &cpus, shape);
                assert_valid(&lists, &counts_of(shape), &cpus, &format!("{profile:?} on {cpus}"));
                // Shapes larger than the host: everything still has a CPU, round-robin.
                for big in [
                    Shape { intakes: 16, shards: 64, workers: 3 },
                    Shape { intakes: 2, shards: 8, workers: 0 },
                ] {
                    let lists = default_lists(profile, &cpus, big);
                    assert_valid(&lists, &counts_of(big), &cpus, &format!("{profile:?} {big:?} on {cpus}"));
                }
            }
        }
    }

    #[test]
    fn spread_map_gives_hot_roles_cpus_of_their_own() {
        for cpus in masks().into_iter().filter(|c| c.len() >= 4) {
            for profile in [Profile::Default, Profile::Tuned] {
                let what = format!("{profile:?} on {cpus}");
                let shape = default_shape(profile, cpus.len());
                let map = CoreMap::resolve(&default_lists(profile, &cpus, shape), &counts_of(shape));
                for plan in &map.plans {
                    let hot: Vec<_> = plan.roles.iter().filter(|r| r.role.is_hot()).collect();
                    // Intake, builder and merger never share; a build worker shares only with
                    // the parking service roles, and only where no CPU is left for it (4 CPUs).
                    if hot.iter().any(|r| matches!(r.role, Role::Intake | Role::Builder | Role::Merger)) {
                        assert_eq!(plan.roles.len(), 1, "{what}: cpu {} runs {:?}", plan.cpu, plan.roles);
                    }
                    assert!(hot.len() <= 1, "{what}: cpu {} runs hot roles {hot:?}", plan.cpu);
                    if hot.len() == 1 && plan.roles.len() > 1 {
                        assert_eq!(hot[0].role, Role::BuildWorker, "{what}");
                        assert_eq!(cpus.len(), 4, "{what}: only 4 CPUs leave no CPU for the build worker");
                    }
                }
                // The map uses every CPU it has roles for: intakes, shards, one worker each,
                // merger, services, prover, log; the rest stay free.
                let k = shape.intakes;
                assert_eq!(shape.shards, k);
                assert_eq!(map.plans.len(), cpus.len().min(3 * k + 4), "{what}");
                assert!(2 * k + 2 <= cpus.len(), "{what}: intakes, shards, merger and services fit");
                if cpus.len() >= 8 {
                    assert!(3 * k + 2 <= cpus.len(), "{what}: every hot role fits");
                }
            }
        }
    }

    #[test]
    fn sixteen_cpus_lay_out_in_order() {
        let cpus = CpuSet::new(0..16);
        let shape = default_shape(Profile::Default, 16);
        let layout = default_layout(Profile::Default, &cpus, shape);
        let l = &layout.lists;
        assert_eq!(l.intake, vec![0, 1, 2, 3]);
        assert_eq!(l.builder, vec![4, 5, 6, 7]);
        assert_eq!(l.merger, vec![8]);
        assert_eq!((l.journal.clone(), l.admin.clone()), (vec![9], vec![9]));
        assert_eq!(l.build_worker, vec![10, 11, 12, 13]);
        assert_eq!(l.prover, vec![14]);
        assert_eq!(l.log, vec![15]);
        let map = CoreMap::resolve(l, &counts_of(shape));
        let text = map.explain(&layout.why);
        assert!(
            text.contains(
                "cpu 5: builder#1\n    builder#1: builder shard 1 of 4 \u{2014} hot role, a CPU of its own \
                 (spread map: default profile, 16 CPUs allowed)\n"
            ),
            "{text}"
        );
        assert!(text.contains("    build_worker#3: build worker 0 of shard 3 \u{2014} a CPU each"), "{text}");
        assert!(text.contains("cpu 9: journal#0 admin#0\n"), "{text}");
        // Every CPU line is followed by one reason line per instance on it.
        assert_eq!(text.lines().filter(|l| l.starts_with("cpu ")).count(), 16);
        assert_eq!(text.lines().filter(|l| l.starts_with("    ")).count(), 4 + 4 + 4 + 1 + 4);
    }

    #[test]
    fn four_and_eight_cpus() {
        let lists = default_lists(Profile::Default, &CpuSet::new(0..4), default_shape(Profile::Default, 4));
        assert_eq!((lists.intake, lists.builder, lists.merger), (vec![0], vec![1], vec![2]));
        assert_eq!((lists.prover, lists.build_worker), (vec![3], vec![3]), "no CPU left: with the services");

        let cpus = CpuSet::new(0..8);
        let lists = default_lists(Profile::Tuned, &cpus, default_shape(Profile::Tuned, 8));
        assert_eq!((lists.intake, lists.builder), (vec![0, 1], vec![2, 3]));
        assert_eq!((lists.merger, lists.journal, lists.prover), (vec![4], vec![5], vec![5]));
        assert_eq!(lists.build_worker, vec![6, 7]);

        // More shards than spare CPUs: builders get cpus 1..=5, shards wrap round-robin.
        let lists = default_lists(Profile::Tuned, &cpus, Shape { intakes: 1, shards: 8, workers: 1 });
        assert_eq!(lists.builder, vec![1, 2, 3, 4, 5]);
        assert_eq!(lists.build_worker, vec![7], "no CPU left: with prover, journal and admin");
        let map = CoreMap::resolve(&lists, &counts(1, 8, 1));
        assert_eq!(map.cpu_of(Role::Builder, 5), Some(1));
        assert_eq!(map.cpu_of(Role::Builder, 7), Some(3));
    }

    #[test]
    fn two_and_three_cpus_keep_the_two_cpu_map() {
        for n in [2, 3] {
            let cpus = CpuSet::new(0..n);
            for profile in Profile::ALL {
                let layout = default_layout(profile, &cpus, default_shape(profile, n));
                assert_eq!(layout.lists, default_lists(profile, &CpuSet::new(0..2), TWO_CPU_SHAPE));
                assert!(layout.why.intake.contains("2-CPU map"), "{:?}", layout.why.intake);
            }
        }
        // Two intakes asked for on two CPUs: one each.
        let lists =
            default_lists(Profile::Default, &CpuSet::new([4, 9]), Shape { intakes: 2, ..TWO_CPU_SHAPE });
        assert_eq!(lists.intake, vec![4, 9]);
    }

    #[test]
    fn round_robin_and_disabled_roles() {
        let lists = PerRole {
            intake: vec![0, 1],
            builder: vec![2, 3],
            build_worker: vec![4],
            merger: vec![4],
            prover: vec![5],
            journal: vec![5],
            log: vec![5],
            admin: vec![5],
        };
        let mut c = counts(2, 5, 0);
        c.admin = 0;
        c.build_worker = 0;
        let map = CoreMap::resolve(&lists, &c);
        assert_eq!(map.instances(Role::Intake), 2);
        assert_eq!(map.instances(Role::Builder), 5);
        assert_eq!(map.instances(Role::Prover), 0);
        let shard_cpus: Vec<_> = (0..5).map(|i| map.cpu_of(Role::Builder, i).unwrap()).collect();
        assert_eq!(shard_cpus, vec![2, 3, 2, 3, 2]);
        assert_eq!(map.plans.last().unwrap().roles, vec![ri(Role::Journal, 0), ri(Role::Log, 0)]);
        assert_eq!(map.to_string().lines().next(), Some("cpu 0: intake#0"));
    }

    /// `CpuSet::host` agrees with the kernel's own account of this process's affinity.
    #[cfg(target_os = "linux")]
    #[test]
    fn host_set_matches_proc_self_status() {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap().trim();
        let mut want = Vec::new();
        for part in list.split(',') {
            match part.split_once('-') {
                Some((lo, hi)) => want.extend(lo.parse::<usize>().unwrap()..=hi.parse::<usize>().unwrap()),
                None => want.push(part.parse::<usize>().unwrap()),
            }
        }
        assert_eq!(CpuSet::host(), CpuSet::new(want));
    }
}
