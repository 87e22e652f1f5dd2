//! `node --test js/fpn.test.mjs`: the browser module against docs/wire.md's examples. CI needs
//! node 18 or later (Debian's `nodejs`).

use std::process::Command;

#[test]
fn the_browser_module_passes_its_node_tests() {
    let dir = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("node").args(["--test", "js/fpn.test.mjs"]).current_dir(dir).output();
    let out = match out {
        Ok(out) => out,
        Err(e) => panic!("cannot run node ({e}): install the Debian package `nodejs` (node 18 or later)"),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "node --test failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // node's runner ends with "# pass N" / "# fail N"; no test run would pass vacuously.
    let passed =
        stdout.lines().find_map(|l| l.strip_prefix("# pass ")).and_then(|n| n.trim().parse::<u32>().ok());
    assert!(passed.is_some_and(|n| n >= 10), "too few node tests ran:\n{stdout}");
}
