//! NAS-Bench-201 end-to-end latencies (../shared/reference/nb201_latency_dev.csv,
//! HW-NAS-Bench / HELP): `coex calibrate` fits the GTX 1080 Ti template on 200 random
//! architectures and is judged on the other 15,425. The baseline to beat is the rank
//! correlation of the published MAC count (nb201_accuracy.csv's `macs_cifar_derived`,
//! not coex's) with the measured latency, on the same held-out rows.

use coex::calibrate::fit::Loss;
use coex::calibrate::measure::{Format, Nb201Column};
use coex::calibrate::{self, report, Config, Outcome, Split};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn reference(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference")
        .join(name)
}

fn calibrate_on_200(col: Nb201Column) -> Outcome {
    calibrate::run(&Config {
        accel: Path::new(env!("CARGO_MANIFEST_DIR")).join("accelerators/gpu/gtx1080ti.toml"),
        measurements: reference("nb201_latency_dev.csv"),
        format: Format::Nb201Latency(col),
        format_name: format!("nb201-latency:{}", col.name()),
        split: Split::Train(200),
        params: vec![],
        seed: 1,
        loss: Loss::LeastSquares,
    })
    .unwrap()
}

/// Published MACs by arch string.
fn published_macs() -> HashMap<String, f64> {
    let mut r = csv::Reader::from_path(reference("nb201_accuracy.csv")).unwrap();
    let h = r.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|x| x == n).unwrap();
    let (a, m) = (col("arch_str"), col("macs_cifar_derived"));
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            (rec[a].to_string(), rec[m].parse().unwrap())
        })
        .collect()
}

/// Held-out rows: (predicted after calibration, measured, published MACs).
fn heldout(o: &Outcome) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let macs = published_macs();
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    for r in o.per_row.iter().filter(|r| r.after_heldout.is_finite()) {
        let arch =
            r.op.split_whitespace()
                .find_map(|w| w.strip_prefix("arch="))
                .unwrap();
        out.0.push(r.after_heldout);
        out.1.push(r.measured);
        out.2.push(macs[arch]);
    }
    out
}

/// Calibrates on 200 networks of `col` and returns the held-out Kendall τ of the
/// model and of the published MAC count, printing both.
fn taus(col: Nb201Column) -> (f64, f64) {
    let o = calibrate_on_200(col);
    let (pred, meas, macs) = heldout(&o);
    assert_eq!(pred.len(), 15_425);
    let (tau, tau_macs) = (
        report::kendall_tau(&pred, &meas),
        report::kendall_tau(&macs, &meas),
    );
    eprintln!(
        "{}, 15,425 held-out networks: tau {tau:.3} (MAC count {tau_macs:.3}), median APE {:.1}%",
        col.name(),
        o.after.heldout.median_ape * 100.0
    );
    (tau, tau_macs)
}

/// Batch 1 is dispatch-bound: eager PyTorch runs every edge (`dead_ops = "run"`,
/// `none` as x·0), one host dispatch per op. Target τ ≥ 0.8.
#[test]
fn gtx1080ti_batch1_ranks_15425_unseen_networks() {
    let (tau, tau_macs) = taus(Nb201Column::Gtx1080TiB1);
    assert!(tau >= 0.8, "{tau}");
    assert!(tau > tau_macs);
}

/// Batch 256 is compute and bandwidth bound: the model must rank better than MACs.
#[test]
fn gtx1080ti_batch256_ranks_better_than_the_mac_count() {
    let (tau, tau_macs) = taus(Nb201Column::Gtx1080TiB256);
    assert!(tau > tau_macs, "{tau} vs {tau_macs}");
}
