//! Text OT benchmarks: a real trace through apply, single transforms, the
//! server's per-op commit path on documents of different sizes, and the
//! deterministic client/server simulation.

use std::hint::black_box;
use std::time::Duration;

use chorus_bench::load_trace;
use chorus_core::oplog::{OrderedText, Rebased};
use chorus_core::sim::{simulate, SimConfig};
use chorus_core::text::{Side, TextDoc, TextOp};
use criterion::{criterion_group, criterion_main, Criterion};

fn trace_replay(c: &mut Criterion) {
    let trace = load_trace("automerge-paper.json.gz");
    let ops = trace.patch_ops();
    let mut group = c.benchmark_group("trace");
    group.sample_size(20).measurement_time(Duration::from_secs(8));
    group.bench_function("automerge-paper/apply", |b| {
        b.iter(|| {
            let mut doc = TextDoc::from(trace.start_content.as_str());
            for op in &ops {
                doc.apply(op).expect("trace op applies");
            }
            assert_eq!(doc.len_chars(), trace.end_content.chars().count());
            doc
        })
    });
    group.finish();
}

fn transform(c: &mut Criterion) {
    let ins_a = TextOp::insert(5, "a");
    let ins_b = TextOp::insert(3, "b");
    let del = TextOp::delete(2, 4);
    let mut group = c.benchmark_group("transform");
    group.bench_function("insert-vs-insert", |b| {
        b.iter(|| black_box(&ins_a).transform(black_box(&ins_b), Side::Left))
    });
    group.bench_function("insert-vs-delete", |b| {
        b.iter(|| black_box(&ins_a).transform(black_box(&del), Side::Right))
    });
    group.bench_function("delete-vs-insert", |b| {
        b.iter(|| black_box(&del).transform(black_box(&ins_b), Side::Left))
    });
    group.finish();
}

/// What a node does for one submitted op (as `chorus-server`'s document
/// replica does it): transform it from a base 8 versions old, check it
/// against the document at its base and at the head, give its deletes their
/// text, apply it and log it. Run on an empty document and on 1 MB: the cost
/// must not depend on the size.
fn commit_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("commit");
    for (name, size) in [("empty", 0usize), ("1MB", 1_000_000)] {
        let line = "Chorus benchmark filler text, one line after another.\n";
        let text = line.repeat(size / line.len());
        let mut doc = OrderedText::new(TextDoc::from(text.as_str()), 0);
        let mut seq = 0u64;
        let mut x = 12_345u64;
        group.bench_function(name, |b| {
            b.iter(|| {
                seq += 1;
                // A cheap deterministic spread of positions over the document.
                x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                let head = doc.version();
                let base = head.saturating_sub(8).max(doc.log().oldest());
                let len_at_base = doc.log().len_at(base, doc.text().len_chars()).expect("in the log");
                let at = (x >> 33) as usize % (len_at_base + 1);
                // Inserts and deletes in turn keep the document at its size.
                let op = if seq % 2 == 0 && at < len_at_base { TextOp::delete(at, 1) } else { TextOp::insert(at, "a") };
                op.check_against(len_at_base).expect("fits its base");
                let Ok(Rebased::Fresh(op)) = doc.log().rebase("bench", seq, base, &op) else { panic!("fresh op") };
                let op = doc.text().make_invertible(&op).expect("fits the head");
                doc.commit("bench", seq, black_box(op), 0).expect("applies");
                if seq % 1_000 == 0 {
                    doc.trim_to(doc.version() - 100);
                }
            })
        });
    }
    group.finish();
}

fn simulation(c: &mut Criterion) {
    let mut group = c.benchmark_group("simulation");
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    group.bench_function("8-clients-10k-ops", |b| {
        b.iter(|| {
            let mut config = SimConfig::new(42, 8, 10_000);
            config.disconnect_chance = 0.005;
            simulate(&config).expect("simulation converges")
        })
    });
    group.finish();
}

criterion_group!(benches, trace_replay, transform, commit_path, simulation);
criterion_main!(benches);
