//! Differential test against the reference implementation of the op type,
//! the npm package `ot-text-unicode` (pinned in tools/ot-reference).
//!
//! A Node script draws random documents and ops (emoji, ZWJ sequences,
//! combining marks, CRLF) and records what the reference computes; Chorus must
//! compute exactly the same. The seed is printed, and `CHORUS_REFERENCE_SEED`
//! replays one.

use std::path::PathBuf;
use std::process::Command;

use chorus_core::text::{apply_to_str, Author, Side, TextDoc, TextOp};
use serde::Deserialize;

/// Cases per kind; the four kinds the reference is compared on (apply,
/// transform, compose, transformPosition) make 12,000 cases in all.
const CASES_PER_KIND: usize = 3_000;

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
enum Case {
    Apply { doc: String, op: TextOp, result: String },
    Transform { doc: String, op: TextOp, other: TextOp, side: String, result: TextOp },
    Compose { doc: String, op1: TextOp, op2: TextOp, result: TextOp },
    TransformPosition { doc: String, pos: usize, op: TextOp, result: usize },
    Invert { doc: String, op: TextOp, result: TextOp },
    ApplyError { doc: String, op: TextOp },
}

fn reference_cases(seed: u64) -> String {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/ot-reference");
    assert!(
        dir.join("node_modules/ot-text-unicode").is_dir(),
        "the reference package is not installed in {}; run scripts/test (it runs `npm ci` there)",
        dir.display()
    );
    let out = Command::new("node")
        .current_dir(&dir)
        .args(["cases.mjs", "--seed", &seed.to_string(), "--count", &CASES_PER_KIND.to_string()])
        .output()
        .expect("run node (Node.js 20 or later must be installed)");
    assert!(out.status.success(), "cases.mjs failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("cases are UTF-8")
}

#[test]
fn chorus_computes_what_the_reference_computes() {
    let seed: u64 = std::env::var("CHORUS_REFERENCE_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(20_261_124);
    println!("reference cases seed={seed} (set CHORUS_REFERENCE_SEED to replay)");
    let lines = reference_cases(seed);
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    let mut disagreements = Vec::new();
    for (n, line) in lines.lines().enumerate() {
        let case: Case = serde_json::from_str(line).unwrap_or_else(|e| panic!("line {n}: {e}: {line}"));
        let (kind, agrees) = match &case {
            Case::Apply { doc, op, result } => ("apply", apply_to_str(doc, op).as_ref() == Ok(result)),
            Case::Transform { op, other, side, result, .. } => {
                let side = if side == "left" { Side::Left } else { Side::Right };
                ("transform", &op.transform(other, side) == result)
            }
            Case::Compose { op1, op2, result, .. } => ("compose", &op1.compose(op2) == result),
            Case::TransformPosition { pos, op, result, .. } => {
                ("transformPosition", op.transform_position(*pos, Author::Other) == *result)
            }
            Case::Invert { op, result, .. } => ("invert", op.invert().as_ref() == Ok(result)),
            Case::ApplyError { doc, op } => ("applyError", apply_to_str(doc, op).is_err()),
        };
        *counts.entry(kind).or_default() += 1;
        if !agrees {
            disagreements.push(format!("line {n}: {line}"));
        }
    }
    println!("cases per kind: {counts:?}");
    let compared: usize =
        ["apply", "transform", "compose", "transformPosition"].iter().map(|k| counts.get(k).copied().unwrap_or(0)).sum();
    assert!(compared >= 10_000, "only {compared} cases of apply/transform/compose/transformPosition");
    assert!(
        disagreements.is_empty(),
        "seed={seed}: {} disagreements with ot-text-unicode, first ones:\n{}",
        disagreements.len(),
        disagreements.iter().take(10).cloned().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn every_reference_input_passes_our_checks() {
    // The reference's inputs are valid ops; our validation must agree.
    let lines = reference_cases(7);
    for line in lines.lines().take(2_000) {
        let case: Case = serde_json::from_str(line).unwrap();
        let ops: Vec<(&String, &TextOp)> = match &case {
            Case::Apply { doc, op, .. } | Case::TransformPosition { doc, op, .. } | Case::Invert { doc, op, .. } => {
                vec![(doc, op)]
            }
            Case::Transform { doc, op, other, .. } => vec![(doc, op), (doc, other)],
            Case::Compose { doc, op1, .. } => vec![(doc, op1)],
            Case::ApplyError { .. } => vec![],
        };
        for (doc, op) in ops {
            assert_eq!(TextDoc::from(doc.as_str()).check(op), Ok(()), "{line}");
        }
    }
}
