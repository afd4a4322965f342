//! Text OT benchmarks: a real trace through apply, single transforms, and the
//! deterministic client/server simulation.

use std::hint::black_box;
use std::time::Duration;

use chorus_bench::load_trace;
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

criterion_group!(benches, trace_replay, transform, simulation);
criterion_main!(benches);
