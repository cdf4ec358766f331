//! Sweep throughput on the default space (`workloads/sweeps/default.toml`: NAS-Bench-201
//! × an Eyeriss-like hardware space), through the one evaluation function of the
//! search (`search::Evaluator::evaluate`: graph + accelerator → metrics):
//!
//! - `explore/warm`: 512 random joint points whose layer schedules are already cached
//!   (graphs and accelerators too): what revisited designs and shared layers cost;
//! - `explore/cold`: 64 random joint points on a fresh evaluator (every distinct
//!   Einsum mapped on every new design, mapper budget 300).

use coex::search::space::{Point, Space};
use coex::search::{Evaluator, Sweep};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::{Rng, SeedableRng};

fn points(space: &Space, n: usize, seed: u64) -> Vec<(u64, Point)> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..n as u64)
        .map(|i| {
            let p: Point = space
                .dims
                .iter()
                .map(|d| rng.random_range(0..d.values.len() as u32))
                .collect();
            (i, space.canonical(&p))
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/sweeps/default.toml");
    let sweep = Sweep::load(&path).expect("default sweep");
    let space = Space::new(&sweep).expect("space");
    let mut g = c.benchmark_group("explore");

    let warm_pts = points(&space, 512, 1);
    let warm = Evaluator::new(&space).unwrap();
    warm.evaluate(&warm_pts).unwrap();
    g.throughput(Throughput::Elements(warm_pts.len() as u64));
    g.bench_function("warm", |b| b.iter(|| warm.evaluate(&warm_pts).unwrap()));

    let cold_pts = points(&space, 64, 2);
    g.sample_size(10);
    g.throughput(Throughput::Elements(cold_pts.len() as u64));
    g.bench_function("cold", |b| {
        b.iter(|| {
            let e = Evaluator::new(&space).unwrap();
            e.evaluate(&cold_pts).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
