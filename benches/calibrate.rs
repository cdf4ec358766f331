//! Speed of calibration's inner loop: costing measured rows under trial parameters.
//!
//! `cargo bench --bench calibrate` reports, on the 280 H200 kernel rows
//! (../shared/reference/h200_kernels_train.csv):
//! - `calibrate/h200_predict_280_rows`: every row's prediction once (one residual
//!   evaluation of the fit; rows in parallel);
//! - `calibrate/h200_fit_all_rows`: the default least-squares fit on all rows (what
//!   `--out` runs once after the cross-validation folds).

use coex::calibrate::{self, fit::Loss, measure, RowKinds};
use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use std::path::Path;

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = root.join("../shared/reference/h200_kernels_train.csv");
    let device = calibrate::load_device(&root.join("accelerators/gpu/h200.toml")).unwrap();
    let (rows, _) = measure::import(measure::Format::H200Kernels, &data)
        .unwrap_or_else(|e| panic!("{e} (the bench reads ../shared/reference)"));
    let rows = calibrate::prepare(rows, &data, &device).unwrap();
    let refs: Vec<&calibrate::Prepared> = rows.iter().collect();
    let kinds = RowKinds {
        whole_networks: false,
        eager: true,
        classes: [true; 4],
    };
    let params =
        calibrate::resolve_params(&calibrate::default_params(&device, kinds), &device).unwrap();
    let mut g = c.benchmark_group("calibrate");
    g.bench_function("h200_predict_280_rows", |b| {
        b.iter(|| {
            use rayon::prelude::*;
            refs.par_iter()
                .map(|p| calibrate::predict(black_box(&device), p).unwrap())
                .sum::<f64>()
        })
    });
    g.sample_size(10);
    g.bench_function("h200_fit_all_rows", |b| {
        b.iter(|| calibrate::fit_rows(&device, &params, &refs, Loss::LeastSquares).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
