//! `fpn tune` on the machine the tests run on (CI's included): the shape of `check`'s output,
//! its exit code semantics (1 exactly when a check fails; 0 with `--warn-only`), the JSON
//! form agreeing with the text, `apply --dry-run` writing nothing, and configuration errors.
//! The verdicts themselves are unit-tested against fake trees (`tune/check.rs`).

use super::fpn;
use super::real_daemon::text;

const CHECKS: [&str; 15] = [
    "isolcpus",
    "nohz_full",
    "rcu_nocbs",
    "irq_affinity",
    "cpu_governor",
    "idle_states",
    "transparent_hugepages",
    "swap",
    "memlock",
    "realtime",
    "net.core.rmem_max",
    "net.core.wmem_max",
    "busy_poll",
    "gro",
    "clocksource",
];

#[test]
fn tune_check_reports_every_check_and_exits_by_its_failures() {
    let out = fpn(&["tune", "check"]);
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = stdout.lines();
    let head = lines.next().unwrap_or_default();
    assert!(head.starts_with("fpn tune check: hot CPUs "), "{}", text(&out));
    assert!(head.contains("intake#0"), "the core map names the roles: {head}");
    let mut counts = [0usize; 3];
    let mut names = Vec::new();
    for line in lines.by_ref() {
        if line.starts_with(' ') {
            assert!(line.trim_start().starts_with("fix: "), "{line}");
            continue;
        }
        let Some((status, rest)) = line.split_once(' ') else { break };
        let index = match status {
            "PASS" => 0,
            "WARN" => 1,
            "FAIL" => 2,
            _ => {
                assert!(line.starts_with("15 checks: "), "unexpected line {line}");
                let summary =
                    format!("15 checks: {} pass, {} warn, {} fail", counts[0], counts[1], counts[2]);
                assert_eq!(line, summary);
                break;
            }
        };
        counts[index] += 1;
        names.push(rest.split_whitespace().next().unwrap().to_string());
    }
    assert_eq!(names, CHECKS, "{stdout}");
    // Every warn and fail has its fix on the next line.
    assert_eq!(stdout.matches("fix: ").count(), counts[1] + counts[2], "{stdout}");
    let expected = if counts[2] > 0 { 1 } else { 0 };
    assert_eq!(out.status.code(), Some(expected), "{stdout}");

    let warn_only = fpn(&["tune", "check", "--warn-only"]);
    assert_eq!(warn_only.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&warn_only.stdout), stdout, "--warn-only changes the exit code only");

    let json = fpn(&["tune", "check", "--json"]);
    assert_eq!(json.status.code(), Some(expected));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["checks"].as_array().unwrap().len(), 15);
    assert_eq!(
        (v["pass"].as_u64(), v["warn"].as_u64(), v["fail"].as_u64()),
        (Some(counts[0] as u64), Some(counts[1] as u64), Some(counts[2] as u64))
    );
    for check in v["checks"].as_array().unwrap() {
        assert_eq!(check["fix"].is_null(), check["status"] == "pass", "{check}");
    }
}

#[test]
fn tune_apply_dry_run_prints_the_files_and_writes_nothing() {
    let root = std::env::temp_dir().join(format!("fpn-it-tune-root-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    let out = fpn(&["tune", "apply", "--dry-run", "--root", root.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for file in [
        "/etc/sysctl.d/60-flashpointd.conf",
        "/etc/tuned/flashpointd/tuned.conf",
        "/etc/default/grub.d/60-flashpointd.cfg",
    ] {
        assert!(stdout.contains(&format!("==> {file} <==")), "{stdout}");
    }
    assert!(stdout.contains("net.core.rmem_max = 4194304"), "{stdout}");
    assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0, "a dry run writes nothing");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn tune_check_refuses_an_invalid_configuration_with_exit_2() {
    let out = fpn(&["tune", "check", "--set", "window.window_ms=0"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("window.window_ms"), "{}", text(&out));
}
