//! Links the `chorus` binary with packed relative relocations (DT_RELR) when
//! the toolchain and the C library can do it.
//!
//! Why: the binary is position independent, so every pointer in its data
//! (vtables, tables of strings) is written at start-up from a relocation table.
//! Unpacked, that table is about 11,000 entries, 270 KB of the file that the
//! loader reads page by page and that then stays in the node's resident memory;
//! packed, it is 3 KB. Under the W2 cursor storm a node's peak RSS went down
//! by 0.2 to 0.6 MB of its 9 to 11 MB (most of a small node's memory is its
//! executable's pages). It changes no code and costs nothing at run time.
//!
//! Why a probe: DT_RELR needs a linker that knows `-z pack-relative-relocs`
//! (GNU ld 2.38, lld 15) and glibc 2.36 to load the result. So a trivial
//! program is linked the way rustc will link `chorus` (same rustc, linker and
//! flags), with linker warnings fatal, and run; only if both work is the flag
//! added. Elsewhere (another OS, musl, a cross build, an older toolchain) the
//! build is what it was, silently. A binary linked so needs glibc 2.36 where it
//! runs: `CHORUS_NO_RELR=1` builds one for an older system from a newer one.

use std::env;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const FLAG: &str = "-Wl,-z,pack-relative-relocs";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CHORUS_NO_RELR");
    let (Ok(target), Ok(host)) = (env::var("TARGET"), env::var("HOST")) else {
        return;
    };
    let wanted = env::var_os("CHORUS_NO_RELR").is_none_or(|v| v.is_empty() || v == "0");
    if wanted && target == host && target.ends_with("-linux-gnu") && probe_links_and_runs() {
        println!("cargo:rustc-link-arg-bins={FLAG}");
    }
}

/// Whether an empty Rust program links with `FLAG` without a linker warning
/// (an old GNU ld only warns that it ignores the option) and then starts (an
/// old glibc refuses to load it).
fn probe_links_and_runs() -> bool {
    let Some(out_dir) = env::var_os("OUT_DIR").map(PathBuf::from) else {
        return false;
    };
    let source = out_dir.join("relr_probe.rs");
    let program = out_dir.join("relr_probe");
    if std::fs::write(&source, "fn main() {}\n").is_err() {
        return false;
    }
    let mut rustc = Command::new(env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()));
    // The build's own flags and linker, so the probe links as `chorus` will.
    if let Ok(flags) = env::var("CARGO_ENCODED_RUSTFLAGS") {
        rustc.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    }
    if let Some(linker) = env::var_os("RUSTC_LINKER") {
        rustc.arg("-C").arg(format!("linker={}", linker.to_string_lossy()));
    }
    // --fatal-warnings must come first: GNU ld applies it to later options only.
    rustc.args(["-C", "link-arg=-Wl,--fatal-warnings", "-C"]);
    rustc.arg(format!("link-arg={FLAG}"));
    rustc.arg("-o").arg(&program).arg(&source);
    let quiet = |c: &mut Command| {
        c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status()
    };
    quiet(&mut rustc).is_ok_and(|s| s.success())
        && quiet(&mut Command::new(&program)).is_ok_and(|s| s.success())
}
