use std::path::PathBuf;
use std::process::{Command, Output};

/// A unique scratch file under the target directory (no temp-dir crate needed).
fn write_config(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("flashpointd-it");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}-{}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs flashpointd with `args` and exactly `env`: the child's environment is cleared first,
/// so no FPN_* variable of the test runner leaks in.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flashpointd"));
    cmd.args(args).env_clear();
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("flashpointd runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

const GOOD: &str = r#"
[engine]
profile = "test"

[window]
duration_ms = 10

[builder]
fee_rate = "0.05"

# No [cores]: the default map adapts to whatever CPUs the test host allows.
"#;

#[test]
fn good_file_checks_ok() {
    let path = write_config("good", GOOD);
    let out = run(&["--config", path.to_str().unwrap(), "--check-config"], &[]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ok\n");
}

#[test]
fn bad_file_exits_2_naming_every_bad_key() {
    let path =
        write_config("bad", "[builder]\nfee_rate = \"1.5\"\nshards = 0\n\n[window]\nduration_mss = 5\n");
    let out = run(&["--config", path.to_str().unwrap(), "--check-config"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "nothing on stdout: {}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("invalid configuration (3 errors)"), "{err}");
    assert!(
        err.contains(&format!("builder.fee_rate = \"1.5\" (file {}): must be within [0, 1]", path.display())),
        "{err}"
    );
    assert!(err.contains("builder.shards = 0"), "{err}");
    assert!(err.contains("must be in 1..=64"), "{err}");
    assert!(err.contains("unknown key `window.duration_mss`"), "{err}");
    assert!(err.contains("did you mean window.duration_ms?"), "{err}");
}

#[test]
fn fpn_config_names_the_file_and_env_overrides_it() {
    let path = write_config("via-env", GOOD);
    let p = path.to_str().unwrap();
    let out = run(&["--check-config"], &[("FPN_CONFIG", p)]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));

    let out = run(&["--check-config"], &[("FPN_CONFIG", p), ("FPN_WINDOW_DURATION_MS", "0")]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("window.duration_ms = 0 (env FPN_WINDOW_DURATION_MS): must be in 1..=1000"),
        "{err}"
    );
}

#[test]
fn unknown_env_var_is_an_error() {
    let out = run(&["--check-config"], &[("FPN_WINDOW_DURATIONMS", "5")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .contains("unknown variable (env FPN_WINDOW_DURATIONMS): did you mean FPN_WINDOW_DURATION_MS?")
    );
}

#[test]
fn missing_file_is_exit_2() {
    let out = run(&["--config", "/nonexistent/flashpointd.toml", "--check-config"], &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("config file /nonexistent/flashpointd.toml: cannot read"));
}

#[test]
fn print_config_shows_flag_over_env_over_file() {
    let path = write_config("print", GOOD);
    let out = run(
        &[
            "--config",
            path.to_str().unwrap(),
            "--print-config",
            "--set",
            "window.duration_ms=7",
            "--data-dir",
            "/srv/fpn",
        ],
        &[("FPN_WINDOW_DURATION_MS", "9"), ("FPN_WINDOW_BIDS_MAX", "128")],
    );
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("duration_ms = 7\n"), "{stdout}");
    assert!(stdout.contains("bids_max = 128\n"), "{stdout}");
    assert!(stdout.contains("data_dir = \"/srv/fpn\"\n"), "{stdout}");
    assert!(stdout.contains("fee_rate = \"0.05\"\n"), "{stdout}");
    assert!(stdout.contains("what runs on each CPU and why:\n#   cpu "), "{stdout}");
    assert!(stdout.contains(": intake#0 builder#0"), "{stdout}");
    assert!(stdout.contains("#   window.duration_ms (flag --set)\n"), "{stdout}");

    // The printed text is itself a valid config file.
    let again = write_config("printed", &stdout);
    let out = run(&["--config", again.to_str().unwrap(), "--check-config"], &[]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
}

#[test]
fn usage_errors_exit_2() {
    let out = run(&["--no-such-flag"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["--print-config", "--check-config"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn keys_the_engine_refuses_together_exit_2_before_anything_starts() {
    let dir = std::env::temp_dir().join(format!("fpn-never-created-{}", std::process::id()));
    let data_dir = dir.display().to_string();
    for mode in [&["--check-config"][..], &[][..]] {
        let mut args = vec!["--set", "window.records_max=10", "--set", "window.bids_max=100"];
        args.extend(["--data-dir", &data_dir, "--admin-addr", "127.0.0.1:0"]);
        args.extend(mode);
        let out = run(&args, &[]);
        assert_eq!(out.status.code(), Some(2), "{mode:?}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("invalid configuration: window.bids_max"),
            "{}",
            text(&out.stderr)
        );
        assert!(!dir.exists(), "nothing started: no data dir");
    }
}

#[test]
fn a_spinning_role_sharing_its_cpu_is_a_warning_not_an_error() {
    // The default map puts intake and builder on the same CPU on every host.
    let out = run(&["--check-config", "--set", "idle.intake=spin"], &[]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "ok\n");
    let err = text(&out.stderr);
    assert!(err.contains("flashpointd: warning: cpu "), "{err}");
    assert!(
        err.contains("intake#0 spins (idle.intake = \"spin\") but shares the CPU with builder#0"),
        "{err}"
    );
}

/// The core map is checked against the real affinity mask of the process: narrowed with
/// `taskset` (util-linux, essential on Debian) to one CPU, a list naming another CPU fails.
#[cfg(target_os = "linux")]
#[test]
fn core_map_follows_the_process_affinity_mask() {
    // The lowest CPU this test may use (CPU 0 need not be allowed in a container).
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let allowed = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap().trim();
    let cpu: usize = allowed.split([',', '-']).next().unwrap().parse().unwrap();
    let taskset = |args: &[&str]| -> Output {
        Command::new("taskset")
            .args(["-c", &cpu.to_string(), env!("CARGO_BIN_EXE_flashpointd")])
            .args(args)
            .env_clear()
            .output()
            .expect("taskset runs (util-linux)")
    };
    let out = taskset(&["--print-config"]);
    assert_eq!(out.status.code(), Some(0), "stderr: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains(&format!("# allowed CPUs: {{{cpu}}} (1)\n")), "{stdout}");
    let all_roles = format!(
        "#   cpu {cpu}: intake#0 builder#0 build_worker#0 merger#0 prover#0 journal#0 log#0 admin#0\n"
    );
    assert!(stdout.contains(&all_roles), "{stdout}");

    let other = cpu + 1;
    let out = taskset(&["--check-config", "--set", &format!("cores.merger={other}")]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    let want = format!(
        "cores.merger = [{other}] (flag --set): cpu {other} is not in this process's allowed CPUs {{{cpu}}}"
    );
    assert!(err.contains(&want), "{err}");
}
