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

/// The default CPU lists for a profile on a host.
///
/// `default` and `test` use at most two CPUs, whatever the host has:
/// the first allowed CPU runs intake and builder (the record path, joined by one SPSC ring),
/// the second runs the build workers, merger, prover, journal and admin; with two or more
/// build workers the list is `[second, first]`, so that each shard's worker 0 has the second
/// CPU and its overflow worker the first. On one CPU everything shares it.
///
/// `tuned` gives every hot role its own CPU when the host has at least four:
/// intake on the first, `min(shards, cpus - 3)` builder CPUs after it, then the merger, then one
/// CPU shared by prover, journal and admin; the build workers get the CPUs left after that
/// (up to one per worker), or share that last CPU when none is left. With fewer than four
/// CPUs it falls back to the two-CPU map above.
pub fn default_lists(profile: Profile, cpus: &CpuSet, shards: usize, workers: usize) -> PerRole<Vec<usize>> {
    let ids: Vec<usize> = cpus.iter().collect();
    let n = ids.len();
    // Build worker instances; a list is never longer (and never empty).
    let instances = (shards * workers).max(1);
    if profile == Profile::Tuned && n >= 4 {
        let k = shards.clamp(1, n - 3);
        let rest = ids[2 + k];
        // Build workers on the CPUs left free, up to one per worker; else with the cold roles.
        let free = &ids[3 + k..];
        let build = if free.is_empty() { vec![rest] } else { free[..free.len().min(instances)].to_vec() };
        return PerRole {
            intake: vec![ids[0]],
            builder: ids[1..1 + k].to_vec(),
            build_worker: build,
            merger: vec![ids[1 + k]],
            prover: vec![rest],
            journal: vec![rest],
            log: vec![rest],
            admin: vec![rest],
        };
    }
    let first = ids[0];
    let second = ids[1.min(n - 1)];
    // Worker 0 of each shard (the one that takes every window it can keep up with) on the
    // second CPU, the overflow workers beside the intake.
    let mut build = vec![second];
    if n >= 2 && instances >= 2 {
        build.push(first);
    }
    PerRole {
        intake: vec![first],
        builder: vec![first],
        build_worker: build,
        merger: vec![second],
        prover: vec![second],
        journal: vec![second],
        log: vec![second],
        admin: vec![second],
    }
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
            let lists = default_lists(profile, &cpus, 4, 2);
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
            let map = CoreMap::resolve(&default_lists(profile, &cpus, 1, 2), &counts(1, 1, 1));
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
        let map = CoreMap::resolve(&default_lists(Profile::Default, &cpus, 1, 2), &counts(1, 1, 1));
        assert_eq!(map.cpu_of(Role::Intake, 0), Some(3));
        assert_eq!(map.cpu_of(Role::Admin, 0), Some(6));
    }

    #[test]
    fn eight_cpus_default_uses_two_tuned_spreads() {
        let cpus = CpuSet::new(0..8);
        let compact = CoreMap::resolve(&default_lists(Profile::Default, &cpus, 4, 2), &counts(1, 4, 1));
        assert_eq!(compact.plans.iter().map(|p| p.cpu).collect::<Vec<_>>(), vec![0, 1]);

        let lists = default_lists(Profile::Tuned, &cpus, 4, 1);
        assert_eq!(lists.intake, vec![0]);
        assert_eq!(lists.builder, vec![1, 2, 3, 4]);
        assert_eq!(lists.merger, vec![5]);
        assert_eq!(lists.prover, vec![6]);
        assert_eq!(lists.build_worker, vec![7]);
        let mut one_worker_each = counts(1, 4, 1);
        one_worker_each.build_worker = 4;
        let map = CoreMap::resolve(&lists, &one_worker_each);
        for shard in 0..4 {
            assert_eq!(map.cpu_of(Role::Builder, shard), Some(1 + shard));
            assert!(map.neighbours(ri(Role::Builder, shard)).is_empty());
        }
        assert!(map.neighbours(ri(Role::Merger, 0)).is_empty());
        assert_eq!(
            map.neighbours(ri(Role::Journal, 0)),
            vec![ri(Role::Prover, 0), ri(Role::Log, 0), ri(Role::Admin, 0)]
        );
        // The four shards' build workers share the one CPU left, 7.
        assert_eq!(map.plans.len(), 8);
        assert_eq!(map.plans[7].roles, (0..4).map(|i| ri(Role::BuildWorker, i)).collect::<Vec<_>>());

        // More shards than spare CPUs: builders get cpus 1..=5, shards wrap round-robin.
        let lists = default_lists(Profile::Tuned, &cpus, 8, 1);
        assert_eq!(lists.builder, vec![1, 2, 3, 4, 5]);
        assert_eq!(lists.build_worker, vec![7], "no CPU left: with prover, journal and admin");
        let map = CoreMap::resolve(&lists, &counts(1, 8, 1));
        assert_eq!(map.cpu_of(Role::Builder, 5), Some(1));
        assert_eq!(map.cpu_of(Role::Builder, 7), Some(3));
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
