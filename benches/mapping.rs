//! Speed of the mapper's hot path and of mapping a whole network.
//!
//! `cargo bench --bench mapping` reports:
//! - `evaluate_mapping/*`: one mapping's access analysis + latency/energy (criterion's
//!   time per iteration; mappings per second per core = 1 / that time);
//! - `search/resnet50_layer_eyeriss`: one Einsum's full mapper search (default budget);
//! - `network/resnet50_eyeriss`: every ResNet-50 layer mapped (distinct shapes in parallel).

use coex::arch;
use coex::cost::{self, evaluate_network, NetworkOptions, Objective};
use coex::lower::Kernel;
use coex::map::mapper::{search, SearchConfig};
use coex::map::{analyze, Problem};
use coex::workload::{self, spec::single_op_graph};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn problem(spec: &str) -> Problem {
    let g = single_op_graph(spec).unwrap();
    let e = coex::lower::lower(&g)
        .unwrap()
        .into_iter()
        .flat_map(|w| w.kernels)
        .find_map(|k| match k {
            Kernel::Einsum(e) => Some(e),
            _ => None,
        })
        .unwrap();
    Problem::from_einsum(&e).unwrap()
}

fn bench(c: &mut Criterion) {
    let eyeriss = arch::load(&root().join("accelerators/asic/eyeriss.toml"), &[]).unwrap();
    let simple = arch::load(
        &root().join("accelerators/asic/timeloop_simple_ws.toml"),
        &[],
    )
    .unwrap();
    let p = problem("conv2d n=1 c=128 h=28 w=28 k=128 r=3 s=3 stride=1 pad=1");
    let cfg = SearchConfig::default();
    for (name, t) in [("eyeriss", &eyeriss), ("timeloop_simple_ws", &simple)] {
        let best = search(&p, t, &cfg, cost::objective_fn(&p, t, Objective::Edp)).unwrap();
        let m = best.mapping;
        c.bench_function(&format!("evaluate_mapping/{name}"), |b| {
            b.iter(|| {
                let counts = analyze(black_box(&p), t, black_box(&m));
                black_box(cost::quick(&p, t, &counts))
            })
        });
    }
    c.bench_function("search/resnet50_layer_eyeriss", |b| {
        b.iter(|| {
            search(
                black_box(&p),
                &eyeriss,
                &cfg,
                cost::objective_fn(&p, &eyeriss, Objective::Edp),
            )
            .unwrap()
        })
    });
    let r50 = workload::load(&root().join("workloads/resnet50.toml"), None).unwrap();
    let mut group = c.benchmark_group("network");
    group.sample_size(10);
    group.bench_function("resnet50_eyeriss", |b| {
        b.iter(|| {
            evaluate_network(black_box(&r50), &eyeriss, &NetworkOptions::default(), None).unwrap()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
