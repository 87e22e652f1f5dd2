//! Compiles `bpf/probes.bpf.c` into `$OUT_DIR/probes.bpf.o` with clang (`FPN_EBPF_CLANG`, else
//! `clang` on the PATH), for BPF ISA v3 (atomic fetch-add: Linux 5.12+). Without clang the crate still builds, with an empty object, and the
//! loader says at run time that this build has no probes (`fpn_ebpf::BUILT_WITH_CLANG`). A
//! clang that is there but fails on the source fails the build: that is a bug to see.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    for file in ["bpf/probes.bpf.c", "bpf/kernel.h"] {
        println!("cargo:rerun-if-changed={file}");
    }
    println!("cargo:rerun-if-env-changed=FPN_EBPF_CLANG");
    println!("cargo:rerun-if-env-changed=PATH");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR")).join("probes.bpf.o");
    let clang = std::env::var("FPN_EBPF_CLANG").unwrap_or_else(|_| "clang".to_string());
    let result = Command::new(&clang)
        .args(["-target", "bpf", "-mcpu=v3", "-O2", "-g", "-Wall", "-Werror", "-c", "bpf/probes.bpf.c", "-o"])
        .arg(&out)
        .status();
    match result {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("{clang} failed on bpf/probes.bpf.c ({status})"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::write(&out, b"").expect("write the empty object");
            println!("cargo:rustc-env=FPN_EBPF_NO_CLANG=1");
            println!(
                "cargo:warning=fpn-ebpf: `{clang}` not found; built without the eBPF probes \
                 (install clang, e.g. `apt-get install clang`, and rebuild)"
            );
        }
        Err(e) => panic!("cannot run {clang}: {e}"),
    }
}
