//! Loader tests: precedence, every validation message, unknown names, core maps. The CPU set
//! and the environment are injected; nothing here reads the host or mutates the process env.

use std::path::PathBuf;

use super::*;
use crate::cores::{CpuPlan, RoleInstance};
use crate::idle::IdleStrategy;

fn cpus(n: usize) -> CpuSet {
    CpuSet::new(0..n)
}

fn file(text: &str) -> Option<(PathBuf, String)> {
    Some((PathBuf::from("test.toml"), text.to_string()))
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn sets(pairs: &[&str]) -> Vec<Flag> {
    pairs.iter().map(|s| Flag::Set(s.to_string())).collect()
}

fn ok(inputs: Inputs) -> Loaded {
    load(&inputs, &cpus(2)).unwrap_or_else(|e| panic!("expected a valid config, got {e}"))
}

fn errors(inputs: Inputs) -> Vec<String> {
    match load(&inputs, &cpus(2)) {
        Ok(_) => panic!("expected errors for {inputs:?}"),
        Err(ConfigErrors(errors)) => errors.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn no_inputs_give_the_documented_defaults() {
    let loaded = ok(Inputs::default());
    let s = &loaded.settings;
    assert_eq!(s.profile, Profile::Default);
    assert_eq!(s.data_dir, PathBuf::from("./data"));
    assert_eq!(
        s.window,
        WindowSettings {
            window_ns: 20_000_000,
            records_max: 65_536,
            keys_max: 524_288,
            bids_max: 65_536,
            dedup_horizon_windows: 16,
            clients_max: 65_536,
        }
    );
    assert_eq!(s.builder.kind, fpn_engine::BuilderKind::Improved);
    assert_eq!(s.builder.shards, 1);
    assert_eq!(s.builder.fee_rate.ppm(), 100_000);
    assert_eq!(s.auction.top_k, 64);
    assert_eq!(s.auction.budget_cap, None);
    assert_eq!(s.auction.recency_ns, None);
    assert_eq!(s.auction.order, BidOrder::PriorityFirst);
    assert_eq!(s.auction.pricing, Pricing::FirstPrice);
    assert_eq!(s.rings, RingSettings { capacity: 65_536, results_capacity: 1_024 });
    assert_eq!(s.admin.addr.to_string(), "127.0.0.1:9464");
    assert!(s.admin.enabled && s.prover.enabled);
    assert_eq!(s.prover.mode, ProverMode::Coalesce);
    assert_eq!(s.quic.listen.to_string(), "127.0.0.1:4433");
    let wt = &s.webtransport;
    assert!(!wt.enabled);
    assert_eq!(
        (wt.listen.to_string().as_str(), wt.path.as_str(), &wt.url_host),
        ("127.0.0.1:4434", "/fpn/1", &None)
    );
    let hours = |h: u64| std::time::Duration::from_secs(h * 3600);
    assert_eq!(wt.cert, WebTransportCert::SelfSigned { validity: hours(312), renew_before: hours(24) });
    assert_eq!((wt.frames_capacity, wt.answers_capacity, wt.results_pending_max), (4_096, 16_384, 64));
    assert!(loaded.origins.values().all(|o| *o == Origin::Default));
    assert!(loaded.warnings.is_empty());
}

#[test]
fn each_layer_overrides_the_one_below() {
    let key = "window.duration_ms";
    let f = file("[window]\nduration_ms = 30\n");
    let e = env(&[("FPN_WINDOW_DURATION_MS", "40")]);
    let s = sets(&["window.duration_ms=50"]);

    let cases = [
        (None, vec![], vec![], 20, Origin::Default),
        (f.clone(), vec![], vec![], 30, Origin::File("test.toml".into())),
        (f.clone(), e.clone(), vec![], 40, Origin::Env("FPN_WINDOW_DURATION_MS".into())),
        (None, e.clone(), vec![], 40, Origin::Env("FPN_WINDOW_DURATION_MS".into())),
        (f.clone(), e.clone(), s.clone(), 50, Origin::Flag("--set".into())),
        (f.clone(), vec![], s.clone(), 50, Origin::Flag("--set".into())),
    ];
    for (file, env, flags, want_ms, want_origin) in cases {
        let loaded = ok(Inputs { file, env, flags });
        assert_eq!(loaded.config.window.duration_ms, want_ms);
        assert_eq!(loaded.settings.window.window_ns, want_ms * 1_000_000);
        assert_eq!(loaded.origins[key], want_origin);
    }
}

#[test]
fn dedicated_flags_win_over_set_and_later_set_wins() {
    let flags = vec![
        Flag::Set("engine.data_dir=/a".into()),
        Flag::Key { flag: "--data-dir", key: "engine.data_dir", value: "/b".into() },
        Flag::Set("window.duration_ms=7".into()),
        Flag::Set("window.duration_ms=8".into()),
    ];
    let loaded = ok(Inputs { flags, ..Inputs::default() });
    assert_eq!(loaded.settings.data_dir, PathBuf::from("/b"));
    assert_eq!(loaded.origins["engine.data_dir"], Origin::Flag("--data-dir".into()));
    assert_eq!(loaded.settings.window.window_ns, 8_000_000);
}

#[test]
fn every_value_type_parses_from_env_and_flags() {
    let loaded = ok(Inputs {
        env: env(&[
            ("FPN_ADMIN_ENABLED", "false"),
            ("FPN_BUILDER_FEE_RATE", "0.000001"),
            ("FPN_CORES_BUILDER", "[0, 1]"),
            ("FPN_ENGINE_PROFILE", "test"),
            ("FPN_CONFIG", "ignored-here.toml"),
            ("PATH", "/usr/bin"),
        ]),
        flags: sets(&[
            "builder.shards=4",
            "cores.intake=0,1",
            "auction.budget_cap=500",
            "auction.recency_ms=3",
        ]),
        ..Inputs::default()
    });
    let s = &loaded.settings;
    assert!(!s.admin.enabled);
    assert_eq!(s.builder.fee_rate.ppm(), 1);
    assert_eq!(s.cores.builder, vec![0, 1]);
    assert_eq!(s.cores.intake, vec![0, 1]);
    assert_eq!(s.profile, Profile::Test);
    assert_eq!(s.auction.budget_cap, Some(500));
    assert_eq!(s.auction.recency_ns, Some(3_000_000));
    assert_eq!(s.core_map.instances(Role::Intake), 2);
    assert_eq!(s.core_map.instances(Role::Builder), 4);
    assert_eq!(s.core_map.instances(Role::Admin), 0, "admin disabled");
}

#[test]
fn profile_sets_idle_defaults_but_explicit_keys_win() {
    let tuned = ok(Inputs { flags: sets(&["engine.profile=tuned"]), ..Inputs::default() });
    assert_eq!(*tuned.settings.idle.get(Role::Intake), IdleStrategy::Spin);
    assert_eq!(*tuned.settings.idle.get(Role::Merger), IdleStrategy::Spin);
    assert!(!crate::idle::spins_forever(*tuned.settings.idle.get(Role::Prover)));
    // On two CPUs tuned falls back to the shared map, so the spinning roles share CPUs.
    assert!(!tuned.warnings.is_empty());
    assert!(tuned.warnings.iter().any(|w| w.contains("cpu 0: intake#0 spins") && w.contains("builder#0")));

    let test = ok(Inputs {
        file: file("[engine]\nprofile = \"test\"\n[idle]\nbuilder = \"spin\"\n"),
        ..Inputs::default()
    });
    assert_eq!(*test.settings.idle.get(Role::Builder), IdleStrategy::Spin);
    assert!(matches!(test.settings.idle.get(Role::Intake), IdleStrategy::Park { .. }));

    let default = ok(Inputs::default());
    for role in Role::ALL {
        assert!(
            !crate::idle::spins_forever(*default.settings.idle.get(role)),
            "default profile must not spin {role}"
        );
    }
}

#[test]
fn realtime_is_off_by_default_and_warns_where_a_fifo_spinner_shares_a_cpu_with_daemon_threads() {
    let s = ok(Inputs::default()).settings;
    assert_eq!((s.realtime, s.realtime_priority), (Realtime::Off, 10));
    let on = ok(Inputs {
        env: env(&[("FPN_ENGINE_REALTIME", "try"), ("FPN_ENGINE_REALTIME_PRIORITY", "7")]),
        ..Inputs::default()
    });
    assert_eq!((on.settings.realtime, on.settings.realtime_priority), (Realtime::Try, 7));
    assert!(on.warnings.is_empty(), "the default profile parks: {:?}", on.warnings);
    // Tuned on two CPUs: the merger spins on cpu 1 beside the journal, admin and prover.
    let tuned = |realtime: &str, n: usize| {
        let flags = sets(&["engine.profile=tuned", &format!("engine.realtime={realtime}")]);
        load(&Inputs { flags, ..Inputs::default() }, &cpus(n)).unwrap().warnings
    };
    let fifo: Vec<String> = tuned("on", 2).into_iter().filter(|w| w.contains("SCHED_FIFO")).collect();
    assert_eq!(fifo.len(), 1, "{fifo:?}");
    assert!(
        fifo[0].starts_with("cpu 1: ") && fifo[0].contains("prover#0, journal#0, admin#0"),
        "{}",
        fifo[0]
    );
    assert!(!tuned("off", 2).iter().any(|w| w.contains("SCHED_FIFO")));
    // The spread map gives each spinner a CPU of its own: nothing to warn about.
    assert!(tuned("on", 8).is_empty(), "{:?}", tuned("on", 8));
}

#[test]
fn tuned_profile_on_eight_cpus_gives_hot_roles_their_own_cpus() {
    let inputs = Inputs { flags: sets(&["engine.profile=tuned"]), ..Inputs::default() };
    let loaded = load(&inputs, &cpus(8)).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let map = &loaded.settings.core_map;
    let ri = |role, index| RoleInstance { role, index };
    assert_eq!(
        map.plans,
        vec![
            CpuPlan { cpu: 0, roles: vec![ri(Role::Intake, 0)] },
            CpuPlan { cpu: 1, roles: vec![ri(Role::Intake, 1)] },
            CpuPlan { cpu: 2, roles: vec![ri(Role::Builder, 0)] },
            CpuPlan { cpu: 3, roles: vec![ri(Role::Builder, 1)] },
            CpuPlan { cpu: 4, roles: vec![ri(Role::Merger, 0)] },
            CpuPlan {
                cpu: 5,
                roles: vec![ri(Role::Prover, 0), ri(Role::Journal, 0), ri(Role::Log, 0), ri(Role::Admin, 0)]
            },
            CpuPlan { cpu: 6, roles: vec![ri(Role::BuildWorker, 0)] },
            CpuPlan { cpu: 7, roles: vec![ri(Role::BuildWorker, 1)] },
        ]
    );
}

/// On 16 CPUs the default profile spreads: four intakes, four shards with a build worker
/// each, the merger and the services on CPUs of their own, and no role that spins forever
/// (an idle daemon leaves its CPUs idle). `--print-config` gives every instance its reason.
#[test]
fn default_profile_uses_a_many_core_host() {
    let loaded = load(&Inputs::default(), &cpus(16)).unwrap();
    let s = &loaded.settings;
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!((s.intakes_n(), s.builder.shards, s.builder.workers), (4, 4, 1));
    assert_eq!(s.core_map.plans.len(), 16);
    for role in Role::ALL {
        assert!(!matches!(s.idle.get(role), IdleStrategy::Spin), "{role} spins in the default profile");
    }
    assert!(loaded.origins.values().all(|o| *o == Origin::Default));
    let text = loaded.to_toml();
    assert!(text.contains("4 intake(s), 4 builder shard(s), 1 build worker(s) each"), "{text}");
    assert!(
        text.contains(
            "#   cpu 5: builder#1\n#       builder#1: builder shard 1 of 4 \u{2014} hot role, a CPU of its own \
             (spread map: default profile, 16 CPUs allowed)\n"
        ),
        "{text}"
    );
    assert_eq!(text.lines().filter(|l| l.starts_with("#   cpu ")).count(), 16);

    // An explicit key wins, and the reason says where it came from.
    let flags = sets(&["builder.shards=2", "cores.merger=15"]);
    let loaded = load(&Inputs { flags, ..Inputs::default() }, &cpus(16)).unwrap();
    assert_eq!((loaded.settings.intakes_n(), loaded.settings.builder.shards), (4, 2));
    assert_eq!(loaded.config.cores.builder, vec![4, 5]);
    assert!(loaded.to_toml().contains("merger#0: the merger: joins the shards' blocks, clears the auction \u{2014} cores.merger set (flag --set)"));
}

/// A layer that lists the intake CPUs without `engine.intakes` gets one intake per CPU (as
/// before the key existed); both set must agree with the round-robin rule.
#[test]
fn intakes_follow_an_explicit_intake_list() {
    let listed = ok(Inputs { flags: sets(&["cores.intake=0,1"]), ..Inputs::default() });
    assert_eq!((listed.config.engine.intakes, listed.settings.intakes_n()), (2, 2));
    let counted = ok(Inputs { flags: sets(&["engine.intakes=3"]), ..Inputs::default() });
    assert_eq!(counted.config.cores.intake, vec![0, 1], "one CPU each while they last");
    assert_eq!(counted.settings.core_map.cpu_of(Role::Intake, 2), Some(0), "then round-robin");
    let errs = errors(Inputs { flags: sets(&["cores.intake=0,1", "engine.intakes=1"]), ..Inputs::default() });
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].contains("lists 2 CPUs but engine.intakes = 1"), "{errs:?}");
}

#[test]
fn core_map_on_one_and_two_cpus() {
    let one = load(&Inputs::default(), &cpus(1)).unwrap();
    assert_eq!(one.settings.core_map.plans.len(), 1);
    assert_eq!(one.settings.core_map.plans[0].roles.len(), 8);

    // Two and three CPUs: the 2-CPU map, whatever the profile.
    for n in [2, 3] {
        for profile in Profile::ALL {
            let set = sets(&[&format!("engine.profile={}", profile.as_str())]);
            let two = load(&Inputs { flags: set, ..Inputs::default() }, &cpus(n)).unwrap();
            assert_eq!(
                two.settings.core_map.to_string(),
                "cpu 0: intake#0 builder#0 build_worker#1\ncpu 1: build_worker#0 merger#0 prover#0 journal#0 log#0 admin#0\n",
                "{profile:?} on {n} CPUs"
            );
            assert_eq!((two.settings.builder.shards, two.settings.builder.workers), (1, 2));
        }
    }

    // The 2-CPU defaults name cpu 1, which a 1-CPU host lacks; an explicit list is checked.
    let err = load(&Inputs { flags: sets(&["cores.merger=1"]), ..Inputs::default() }, &cpus(1)).unwrap_err();
    assert_eq!(err.0.len(), 1);
    assert!(err.0[0].to_string().contains("cpu 1 is not in this process's allowed CPUs {0}"));
}

#[test]
fn keys_max_follows_records_max_unless_set() {
    let derived = ok(Inputs { env: env(&[("FPN_WINDOW_RECORDS_MAX", "1000")]), ..Inputs::default() });
    assert_eq!(derived.settings.window.keys_max, 8_000);
    assert_eq!(derived.origins["window.keys_max"], Origin::Default);
    let explicit = ok(Inputs {
        env: env(&[("FPN_WINDOW_RECORDS_MAX", "1000"), ("FPN_WINDOW_KEYS_MAX", "10")]),
        ..Inputs::default()
    });
    assert_eq!(explicit.settings.window.keys_max, 10);
}

/// Each row: a `--set` assignment and text its error must contain (besides the key itself).
#[test]
fn every_invalid_value_names_its_key_value_and_the_allowed_range() {
    let cases: &[(&str, &str)] = &[
        (
            "engine.profile=fast",
            r#"engine.profile = "fast" (flag --set): must be one of "default", "test", "tuned""#,
        ),
        ("engine.data_dir=", r#"engine.data_dir = "" (flag --set): must not be empty"#),
        (
            "engine.lock_memory=yes",
            r#"engine.lock_memory = "yes" (flag --set): must be one of "off", "try", "on""#,
        ),
        (
            "engine.realtime=fifo",
            r#"engine.realtime = "fifo" (flag --set): must be one of "off", "try", "on""#,
        ),
        ("engine.realtime_priority=0", "engine.realtime_priority = 0 (flag --set): must be in 1..=99"),
        ("engine.realtime_priority=100", "engine.realtime_priority = 100 (flag --set): must be in 1..=99"),
        ("engine.intakes=0", "engine.intakes = 0 (flag --set): must be in 1..=64"),
        ("engine.intakes=65", "engine.intakes = 65 (flag --set): must be in 1..=64"),
        ("window.duration_ms=0", "window.duration_ms = 0 (flag --set): must be in 1..=1000"),
        ("window.duration_ms=1001", "window.duration_ms = 1001 (flag --set): must be in 1..=1000"),
        ("window.records_max=0", "window.records_max = 0 (flag --set): must be in 1..=1048576"),
        ("window.records_max=1048577", "must be in 1..=1048576"),
        ("window.keys_max=0", "window.keys_max = 0 (flag --set): must be in 1..=67108864"),
        ("window.bids_max=0", "window.bids_max = 0 (flag --set): must be in 1..=1048576"),
        (
            "window.dedup_horizon_windows=0",
            "window.dedup_horizon_windows = 0 (flag --set): must be in 1..=4096",
        ),
        (
            "builder.kind=best",
            r#"builder.kind = "best" (flag --set): must be one of "improved", "greedy", "fifo""#,
        ),
        ("builder.shards=0", "builder.shards = 0 (flag --set): must be in 1..=64"),
        ("builder.shards=65", "builder.shards = 65 (flag --set): must be in 1..=64"),
        ("builder.local_search_steps_max=1000000001", "must be in 0..=1000000000"),
        ("builder.exact_intents_max=65", "builder.exact_intents_max = 65 (flag --set): must be in 0..=64"),
        ("builder.exact_nodes_max=1000000001", "builder.exact_nodes_max = 1000000001"),
        ("builder.fee_rate=1.5", r#"builder.fee_rate = "1.5" (flag --set): must be within [0, 1]"#),
        ("auction.top_k=0", "auction.top_k = 0 (flag --set): must be in 1..=1048576"),
        (
            "auction.reserve=17592186044416",
            "auction.reserve = 17592186044416 (flag --set): must be in 0..=17592186044415",
        ),
        (
            "auction.budget_cap=17592186044416",
            "auction.budget_cap = 17592186044416 (flag --set): must be in 0..=17592186044415",
        ),
        ("auction.recency_ms=3600001", "auction.recency_ms = 3600001 (flag --set): must be in 0..=3600000"),
        (
            "auction.order=random",
            r#"auction.order = "random" (flag --set): must be one of "priority-first", "amount-desc""#,
        ),
        ("auction.pricing=second-price", r#"must be one of "first-price", "uniform""#),
        ("auction.bids_max=0", "auction.bids_max = 0 (flag --set): must be in 1..=1048576"),
        ("rings.capacity=1000", "rings.capacity = 1000 (flag --set): must be a power of two in 8..=16777216"),
        ("rings.capacity=1", "rings.capacity = 1 (flag --set): must be a power of two in 8..=16777216"),
        ("rings.capacity=33554432", "must be a power of two in 8..=16777216"),
        (
            "rings.results_capacity=3",
            "rings.results_capacity = 3 (flag --set): must be a power of two in 2..=1048576",
        ),
        ("cores.intake=", "cores.intake = [] (flag --set): must list at least one CPU"),
        ("cores.intake=0,0", "cores.intake = [0, 0] (flag --set): lists cpu 0 twice"),
        (
            "cores.prover=5",
            "cores.prover = [5] (flag --set): cpu 5 is not in this process's allowed CPUs {0, 1}",
        ),
        ("cores.builder=0,1", "cores.builder = [0, 1] (flag --set): lists 2 CPUs but builder.shards = 1"),
        ("cores.merger=0,1", "cores.merger = [0, 1] (flag --set): lists 2 CPUs; merger runs as one thread"),
        (
            "cores.journal=0,1",
            "cores.journal = [0, 1] (flag --set): lists 2 CPUs; journal runs as one thread",
        ),
        ("cores.admin=0,1", "cores.admin = [0, 1] (flag --set): lists 2 CPUs; admin runs as one thread"),
        ("idle.intake=sleep", r#"idle.intake = "sleep" (flag --set): unknown idle strategy "sleep""#),
        ("idle.journal=park:0us", r#"idle.journal = "park:0us" (flag --set): park of 0 ns is out of range"#),
        (
            "admin.addr=localhost:9464",
            r#"admin.addr = "localhost:9464" (flag --set): must be an IP address and port"#,
        ),
        ("admin.addr=127.0.0.1", "must be an IP address and port"),
        ("prover.workers=0", "prover.workers = 0 (flag --set): must be in 1..=64"),
        ("prover.mode=drop", r#"prover.mode = "drop" (flag --set): must be one of "coalesce", "skip""#),
        ("prover.queue_capacity=0", "prover.queue_capacity = 0 (flag --set): must be in 1..=65536"),
        ("prover.span_max=1025", "prover.span_max = 1025 (flag --set): must be in 1..=1024"),
        ("prover.jobs_max=0", "prover.jobs_max = 0 (flag --set): must be in 1..=65536"),
        ("quic.listen=:4433", r#"quic.listen = ":4433" (flag --set): must be an IP address and port"#),
        ("quic.connections_max=0", "quic.connections_max = 0 (flag --set): must be in 1..=1000000"),
        ("quic.auth=token", r#"quic.auth = "token" (flag --set): must be one of "open", "keys""#),
        ("quic.cert=/etc/fpn/cert.pem", "needs quic.key too (set both or neither)"),
        ("quic.key=/etc/fpn/key.pem", "needs quic.cert too (set both or neither)"),
        ("quic.datagram_frame_max=1500", "quic.datagram_frame_max = 1500 (flag --set): must be in 64..=1400"),
        ("quic.burst=0", "quic.burst = 0 (flag --set): must be in 1..=4294967295"),
        ("quic.idle_timeout_ms=0", "quic.idle_timeout_ms = 0 (flag --set): must be in 1..=3600000"),
        (
            "quic.rx_timestamps=ptp",
            r#"quic.rx_timestamps = "ptp" (flag --set): must be one of "software", "hardware", "off""#,
        ),
        (
            "webtransport.listen=4434",
            r#"webtransport.listen = "4434" (flag --set): must be an IP address and port"#,
        ),
        ("webtransport.path=fpn", r#"webtransport.path = "fpn" (flag --set): must start with `/`"#),
        ("webtransport.path=/fpn?x=1", "no `?` or `#`"),
        ("webtransport.url_host=a/b", r#"webtransport.url_host = "a/b" (flag --set): must be a host name"#),
        ("webtransport.cert=/etc/fpn/wt.pem", "needs webtransport.key too (set both or neither)"),
        (
            "webtransport.cert_validity_hours=337",
            "webtransport.cert_validity_hours = 337 (flag --set): must be in 3..=336",
        ),
        (
            "webtransport.cert_renew_before_hours=311",
            "webtransport.cert_renew_before_hours = 311 (flag --set): must be in 1..=310",
        ),
        (
            "webtransport.frames_capacity=0",
            "webtransport.frames_capacity = 0 (flag --set): must be in 1..=16777216",
        ),
        (
            "webtransport.answers_capacity=100",
            "webtransport.answers_capacity = 100 (flag --set): must be in 2048..=16777216",
        ),
        ("webtransport.results_pending_max=0", "must be in 1..=65536"),
        // Type errors, found before validation.
        (
            "window.duration_ms=20ms",
            r#"window.duration_ms = "20ms" (flag --set): expected a non-negative integer"#,
        ),
        ("window.duration_ms=-1", "expected a non-negative integer"),
        ("admin.enabled=yes", r#"admin.enabled = "yes" (flag --set): expected true or false"#),
        ("cores.builder=0,x", r#"cores.builder = "0,x" (flag --set): expected a list of CPU ids"#),
    ];
    for (set, want) in cases {
        let errs = errors(Inputs { flags: sets(&[set]), ..Inputs::default() });
        assert_eq!(errs.len(), 1, "{set}: {errs:?}");
        let key = set.split_once('=').unwrap().0;
        assert!(
            errs[0].starts_with(&format!("{key} = ")),
            "{set}: {:?} does not name its key first",
            errs[0]
        );
        assert!(errs[0].contains(want), "{set}: {:?} does not contain {want:?}", errs[0]);
    }
}

#[test]
fn quic_keys_file_is_read_and_checked() {
    let dir = std::env::temp_dir().join(format!("fpn-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good");
    std::fs::write(&good, "# id key\n7 alpha\n\n9 beta-2\n").unwrap();
    let inputs = |path: &std::path::Path| Inputs {
        flags: sets(&["quic.auth=keys", &format!("quic.keys_file={}", path.display())]),
        ..Inputs::default()
    };
    let s = load(&inputs(&good), &cpus(2)).unwrap().settings;
    let mut want = std::collections::BTreeMap::new();
    want.insert(b"alpha".to_vec(), 7);
    want.insert(b"beta-2".to_vec(), 9);
    assert_eq!(s.quic.auth, QuicAuth::Keys(want));
    let bad = dir.join("bad");
    std::fs::write(&bad, "7 alpha\n0 zero\nnokey\n8 alpha\n").unwrap();
    let errs = errors(inputs(&bad));
    assert_eq!(errs.len(), 3, "{errs:?}");
    assert!(errs.iter().all(|e| e.starts_with("quic.keys_file = ")), "{errs:?}");
    assert!(errs[2].contains("line 4: a key listed twice"), "{errs:?}");
    let errs = errors(Inputs { flags: sets(&["quic.auth=keys"]), ..Inputs::default() });
    assert!(errs[0].contains("must name a file"), "{errs:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn prover_cpu_count_only_checked_when_enabled() {
    let errs = errors(Inputs { flags: sets(&["cores.prover=0,1"]), ..Inputs::default() });
    assert!(errs[0].contains("lists 2 CPUs but prover.workers = 1"), "{errs:?}");
    let loaded =
        ok(Inputs { flags: sets(&["cores.prover=0,1", "prover.enabled=false"]), ..Inputs::default() });
    assert_eq!(loaded.settings.core_map.instances(Role::Prover), 0);
    ok(Inputs { flags: sets(&["cores.prover=0,1", "prover.workers=3"]), ..Inputs::default() });
}

#[test]
fn fee_rate_edge_cases() {
    let ppm = |text: &str| -> Result<u32, String> {
        let inputs = Inputs { env: env(&[("FPN_BUILDER_FEE_RATE", text)]), ..Inputs::default() };
        load(&inputs, &cpus(2)).map(|l| l.settings.builder.fee_rate.ppm()).map_err(|e| e.0[0].to_string())
    };
    assert_eq!(ppm("0"), Ok(0));
    assert_eq!(ppm("1"), Ok(1_000_000));
    assert_eq!(ppm("1.000000"), Ok(1_000_000));
    assert_eq!(ppm("0.1"), Ok(100_000));
    assert_eq!(ppm(".5"), Ok(500_000));
    assert_eq!(ppm("0.999999"), Ok(999_999));
    assert_eq!(ppm("0.0000010"), Ok(1), "trailing zeros past 6 places are exact");
    let cases = [
        ("1.5", "must be within [0, 1]"),
        ("1.000001", "must be within [0, 1]"),
        ("-0.1", "must be within [0, 1]"),
        ("0.0000001", "must have at most 6 decimal places"),
        ("1e-1", "must be a decimal number"),
        ("0,1", "must be a decimal number"),
        ("", "must be a decimal number"),
        ("abc", "must be a decimal number"),
    ];
    for (text, want) in cases {
        let err = ppm(text).unwrap_err();
        assert!(
            err.starts_with(&format!("builder.fee_rate = {text:?} (env FPN_BUILDER_FEE_RATE): {want}")),
            "{text}: {err}"
        );
    }
    // In the file a float is refused: it would not be exact.
    let errs = errors(Inputs { file: file("[builder]\nfee_rate = 0.1\n"), ..Inputs::default() });
    assert_eq!(errs, vec!["builder.fee_rate = 0.1 (file test.toml): expected a quoted string (numbers such as fee_rate are written \"0.1\")".to_string()]);
}

#[test]
fn unknown_names_in_every_layer_are_errors() {
    let errs = errors(Inputs {
        file: file("top = 1\n[windw]\nduration_ms = 5\n[window]\nduration_mss = 5\n[cores.extra]\nx = 1\n"),
        env: env(&[("FPN_WINDOW_DURATION_MX", "3"), ("FPN_NOPE", "1"), ("FPNX_OTHER", "ignored")]),
        flags: sets(&["windw.duration_ms=3", "window.duration_ms"]),
    });
    let want = [
        "unknown key `cores.extra` (file test.toml)",
        "unknown section [windw] (file test.toml): did you mean window?",
        "unknown key `top` (file test.toml): keys belong in a section",
        "unknown key `window.duration_mss` (file test.toml): did you mean window.duration_ms?",
        "unknown variable (env FPN_NOPE)",
        "unknown variable (env FPN_WINDOW_DURATION_MX): did you mean FPN_WINDOW_DURATION_MS?",
        "unknown key `windw.duration_ms` (flag --set): did you mean window.duration_ms?",
        "--set \"window.duration_ms\" has no `=` (flag --set)",
    ];
    assert_eq!(errs.len(), want.len(), "{errs:#?}");
    for w in want {
        assert!(errs.iter().any(|e| e.starts_with(w)), "missing {w:?} in {errs:#?}");
    }
}

#[test]
fn all_errors_are_collected_across_layers() {
    let errs = errors(Inputs {
        file: file("[builder]\nfee_rate = \"1.5\"\nshards = 0\n"),
        env: env(&[("FPN_WINDOW_DURATION_MS", "0")]),
        flags: sets(&["rings.capacity=3"]),
    });
    assert_eq!(errs.len(), 4, "{errs:#?}");
}

#[test]
fn toml_syntax_errors_name_the_file() {
    let errs = errors(Inputs { file: file("[window\n"), ..Inputs::default() });
    assert_eq!(errs.len(), 1);
    assert!(errs[0].starts_with("config file test.toml: "), "{errs:?}");
}

#[test]
fn printed_config_loads_back_to_the_same_config() {
    let first = ok(Inputs {
        env: env(&[("FPN_ENGINE_PROFILE", "tuned"), ("FPN_AUCTION_BUDGET_CAP", "99")]),
        flags: sets(&["builder.fee_rate=0.25", "cores.intake=0,1"]),
        ..Inputs::default()
    });
    let text = first.to_toml();
    assert!(text.contains("#   cpu 0: intake#0 builder#0 build_worker#1\n"), "{text}");
    assert!(text.contains("#   builder.fee_rate (flag --set)\n"), "{text}");
    let second = ok(Inputs { file: file(&text), ..Inputs::default() });
    assert_eq!(second.config, first.config);
    assert_eq!(second.settings, first.settings);
}

#[test]
fn env_names_are_one_to_one_with_keys() {
    let keys = key_paths();
    let names: std::collections::BTreeSet<String> = keys.iter().map(|k| env_var_name(k)).collect();
    assert_eq!(names.len(), keys.len());
    assert_eq!(env_var_name("window.duration_ms"), "FPN_WINDOW_DURATION_MS");
    for key in &keys {
        let (section, _) = key.split_once('.').unwrap();
        assert!(!section.contains('_'), "section {section} would make env names ambiguous");
    }
}

#[test]
fn docs_list_every_key_and_env_var() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/config.md");
    let docs = std::fs::read_to_string(path).expect("docs/config.md exists");
    for key in key_paths() {
        let name = env_var_name(&key);
        assert!(docs.contains(&format!("`{name}`")), "docs/config.md lacks {name}");
        let (_, leaf) = key.split_once('.').unwrap();
        assert!(docs.contains(&format!("`{leaf}`")), "docs/config.md lacks key {key}");
    }
    for name in NON_KEY_VARS {
        assert!(docs.contains(name), "docs/config.md lacks {name}");
    }
}

/// The default in each key's row of docs/config.md is the built-in default (on 2 CPUs), and
/// the profile table matches `Profile::idle`.
#[test]
fn docs_state_the_real_defaults() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/config.md");
    let docs = std::fs::read_to_string(path).expect("docs/config.md exists");
    let defaults = toml::Table::try_from(Config::defaults(DefaultsBasis::default(), &cpus(2))).unwrap();
    for (section, table) in &defaults {
        if section == "idle" {
            continue;
        }
        let heading = format!("### `[{section}]`");
        let start = docs.find(&heading).unwrap_or_else(|| panic!("docs/config.md lacks {heading}"));
        let chunk = &docs[start + heading.len()..];
        let chunk = &chunk[..chunk.find("\n### ").unwrap_or(chunk.len())];
        for (key, value) in table.as_table().unwrap() {
            let row = chunk
                .lines()
                .find(|l| l.starts_with(&format!("| `{key}` |")))
                .unwrap_or_else(|| panic!("docs [{section}] has no row for {key}"));
            let cell = row.split('|').nth(2).unwrap();
            assert!(cell.contains(&format!("`{value}`")), "docs {section}.{key}: {cell:?} lacks `{value}`");
        }
    }
    for role in Role::ALL {
        let row = docs
            .lines()
            .find(|l| l.starts_with(&format!("| {role} | `")))
            .unwrap_or_else(|| panic!("profile table lacks {role}"));
        let want = format!(
            "| {role} | `{}` | `{}` | `{}` |",
            Profile::Default.idle(role),
            Profile::Test.idle(role),
            Profile::Tuned.idle(role)
        );
        assert_eq!(row, want);
    }
}

#[test]
fn webtransport_listens_apart_from_quic_and_takes_a_pem_pair() {
    let errs = errors(Inputs {
        flags: sets(&["webtransport.enabled=true", "webtransport.listen=127.0.0.1:4433"]),
        ..Inputs::default()
    });
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(errs[0].starts_with("webtransport.listen = \"127.0.0.1:4433\""), "{errs:?}");
    assert!(errs[0].contains("must differ from quic.listen"), "{errs:?}");
    // Port 0 picks a free port for each: no conflict.
    let ok =
        sets(&["webtransport.enabled=true", "webtransport.listen=127.0.0.1:0", "quic.listen=127.0.0.1:0"]);
    assert!(load(&Inputs { flags: ok, ..Inputs::default() }, &cpus(2)).is_ok());
    let dir = std::env::temp_dir().join(format!("fpn-wt-pem-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, "x").unwrap();
    std::fs::write(&key, "x").unwrap();
    let pem = sets(&[
        &format!("webtransport.cert={}", cert.display()),
        &format!("webtransport.key={}", key.display()),
    ]);
    let s = load(&Inputs { flags: pem, ..Inputs::default() }, &cpus(2)).unwrap().settings;
    assert_eq!(s.webtransport.cert, WebTransportCert::Pem { cert, key });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn log_group_wait_defaults_to_10_ms_without_durability_and_an_explicit_value_wins() {
    let group = ok(Inputs::default());
    assert_eq!(group.settings.log.group_wait_ns, 0);
    let none = ok(Inputs { flags: sets(&["log.durability=none"]), ..Inputs::default() });
    assert_eq!(none.settings.log.group_wait_ns, LOG_GROUP_WAIT_US_NONE * 1_000);
    let both = ok(Inputs {
        flags: sets(&["log.durability=none"]),
        env: env(&[("FPN_LOG_GROUP_WAIT_US", "250")]),
        ..Inputs::default()
    });
    assert_eq!(both.settings.log.group_wait_ns, 250_000);
}

#[test]
fn log_sync_auto_waits_only_where_the_log_shares_an_intakes_cpu_and_receipts_wait() {
    let load_on = |n: usize, flags: &[&str]| {
        load(&Inputs { flags: sets(flags), ..Inputs::default() }, &cpus(n)).unwrap().settings
    };
    // One CPU: the log beside the intake.
    let one = load_on(1, &[]);
    assert_eq!(one.log.sync, LogSync::Auto);
    assert_eq!(one.log_sync(), LogSync::Wait);
    // Nothing waits for the disk with durability none.
    assert_eq!(load_on(1, &["log.durability=none"]).log_sync(), LogSync::Poll);
    // The 2-CPU and spread maps put the log away from the intakes.
    assert_eq!(load_on(2, &[]).log_sync(), LogSync::Poll);
    assert_eq!(load_on(8, &[]).log_sync(), LogSync::Poll);
    // A layer that moves the log beside an intake gets the wait.
    assert_eq!(load_on(2, &["cores.log=0"]).log_sync(), LogSync::Wait);
    // An explicit value wins.
    assert_eq!(load_on(1, &["log.sync=poll"]).log_sync(), LogSync::Poll);
    assert_eq!(load_on(8, &["log.sync=wait"]).log_sync(), LogSync::Wait);
    let errs = errors(Inputs { flags: sets(&["log.sync=sometimes"]), ..Inputs::default() });
    assert!(
        errs.iter()
            .any(|e| e
                .contains(r#"log.sync = "sometimes" (flag --set): must be one of "auto", "poll", "wait""#)),
        "{errs:?}"
    );
}

#[test]
fn quic_receipts_held_max_reaches_the_session_limits() {
    let default = ok(Inputs::default());
    assert_eq!(default.settings.quic.limits().receipts_held_max, fpn_quic::RECEIPTS_HELD_MAX);
    let set = ok(Inputs { flags: sets(&["quic.receipts_held_max=4096"]), ..Inputs::default() });
    assert_eq!(set.settings.quic.limits().receipts_held_max, 4096);
    let errs = errors(Inputs { flags: sets(&["quic.receipts_held_max=10"]), ..Inputs::default() });
    assert!(
        errs.iter()
            .any(|e| e.contains("quic.receipts_held_max = 10 (flag --set): must be in 1024..=1048576")),
        "{errs:?}"
    );
}
