//! Links the `chorus` binary with packed relative relocations (DT_RELR) and
//! with the functions a node runs laid out together, when the toolchain and
//! the C library can do it.
//!
//! Why packed relocations: the binary is position independent, so every
//! pointer in its data (vtables, tables of strings) is written at start-up
//! from a relocation table. Unpacked, that table is about 11,000 entries,
//! 270 KB of the file that the loader reads page by page and that then stays
//! in the node's resident memory; packed, it is 3 KB. Under the W2 cursor
//! storm a node's peak RSS went down by 0.2 to 0.6 MB of its 9 to 11 MB (most
//! of a small node's memory is its executable's pages). It changes no code and
//! costs nothing at run time.
//!
//! Why the layout: the kernel maps an executable's code 64 KB at a time around
//! each page it runs, so a function run once drags its neighbours in. The
//! 1,300 or so functions a node runs (start-up, W1, W2) were spread over 96 of
//! the 150 64 KB blocks of its 10 MB of code, about 5 MB resident, mostly
//! functions it never runs (command-line errors, Redis, TLS, JWT keys). Listed
//! in `hot-functions.txt` (written by `scripts/hot-functions`), they are put
//! first, in one output section `.text.hot`, by a linker script generated from
//! the list: about 3 MB resident, 1.9 MB less peak RSS under W2. Only the
//! place of functions changes, not their code. The list names functions by
//! their symbols without the hash (`17h…E`, and `Cs…_` in v0 names), which
//! depends on the checkout and the toolchain: a list made elsewhere still
//! applies, a generic function's instances all go first, and a name no longer
//! there matches nothing. A stale list only costs memory; the script renews it.
//!
//! Why probes: DT_RELR needs a linker that knows `-z pack-relative-relocs`
//! (GNU ld 2.38, lld 15) and glibc 2.36 to load the result; the layout needs a
//! linker that takes `INSERT BEFORE` scripts (lld, GNU ld). So a trivial
//! program is linked the way rustc will link `chorus` (same rustc, linker and
//! flags), with linker warnings fatal, and run; only if both work is the flag
//! added. Elsewhere (another OS, musl, a cross build, an older toolchain) the
//! build is what it was, silently. A binary linked with DT_RELR needs glibc
//! 2.36 where it runs: `CHORUS_NO_RELR=1` builds one for an older system from
//! a newer one.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const RELR: &str = "-Wl,-z,pack-relative-relocs";
const HOT_LIST: &str = "hot-functions.txt";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={HOT_LIST}");
    println!("cargo:rerun-if-env-changed=CHORUS_NO_RELR");
    let (Ok(target), Ok(host)) = (env::var("TARGET"), env::var("HOST")) else {
        return;
    };
    let Some(out_dir) = env::var_os("OUT_DIR").map(PathBuf::from) else {
        return;
    };
    if target != host || !target.ends_with("-linux-gnu") {
        return;
    }
    let wanted = env::var_os("CHORUS_NO_RELR").is_none_or(|v| v.is_empty() || v == "0");
    if wanted && probe_links_and_runs(&out_dir, "relr_probe", RELR) {
        println!("cargo:rustc-link-arg-bins={RELR}");
    }
    // The list is of an optimised binary's functions; an unoptimised one
    // runs others, and its memory is not what counts.
    let optimised = env::var("OPT_LEVEL").is_ok_and(|level| level != "0");
    let script = if optimised { write_hot_text_script(&out_dir) } else { None };
    if let Some(script) = script {
        let flag = format!("-Wl,-T,{}", script.display());
        if probe_links_and_runs(&out_dir, "hot_text_probe", &flag) {
            println!("cargo:rustc-link-arg-bins={flag}");
        }
    }
}

/// Writes the linker script that puts the sections of the functions in
/// `HOT_LIST` (`-ffunction-sections`: one `.text.SYMBOL` each, or
/// `.text.unlikely.SYMBOL` for a cold one) into `.text.hot`, before `.text`, in
/// the list's order. Each line is a symbol with `*` where its hash was. None
/// without a list or with an empty one.
fn write_hot_text_script(out_dir: &Path) -> Option<PathBuf> {
    let list = std::fs::read_to_string(HOT_LIST).ok()?;
    // Only symbol characters and `*`: a line is pasted into a linker script.
    let is_name = |l: &&str| !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.$*".contains(&b));
    let names: Vec<&str> = list.lines().map(str::trim).filter(|l| !l.starts_with('#')).filter(is_name).collect();
    if names.is_empty() {
        return None;
    }
    let mut script = String::from("SECTIONS {\n  .text.hot : {\n");
    for name in names {
        script.push_str(&format!("    *(.text.{name} .text.unlikely.{name})\n"));
    }
    script.push_str("  }\n} INSERT BEFORE .text;\n");
    let path = out_dir.join("hot-text.ld");
    std::fs::write(&path, script).ok()?;
    Some(path)
}

/// Whether an empty Rust program links with `flag` without a linker warning
/// (an old GNU ld only warns that it ignores an option) and then starts (an
/// old glibc refuses to load a DT_RELR binary).
fn probe_links_and_runs(out_dir: &Path, name: &str, flag: &str) -> bool {
    let source = out_dir.join(format!("{name}.rs"));
    let program = out_dir.join(name);
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
    rustc.arg(format!("link-arg={flag}"));
    rustc.arg("-o").arg(&program).arg(&source);
    let quiet = |c: &mut Command| {
        c.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).status()
    };
    quiet(&mut rustc).is_ok_and(|s| s.success())
        && quiet(&mut Command::new(&program)).is_ok_and(|s| s.success())
}
