//! Benchmarks of Chorus's core, and the fixtures they share.
//!
//! `cargo bench -p chorus-bench` runs them (criterion); `scripts/bench-trace`
//! also replays the same trace through the reference implementation in Node
//! and prints the ratio.

use std::io::Read;
use std::path::PathBuf;

use chorus_core::trace::Trace;

/// The repository's folder of recorded editing traces.
pub fn traces_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../testdata/traces")
}

/// Loads a gzipped trace from [`traces_dir`].
pub fn load_trace(name: &str) -> Trace {
    let path = traces_dir().join(name);
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut json = String::new();
    flate2::read::GzDecoder::new(file).read_to_string(&mut json).expect("trace is gzipped JSON");
    Trace::from_json(&json).expect("trace parses")
}
