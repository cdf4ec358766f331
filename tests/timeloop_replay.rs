//! Replays Timeloop's own mappings of two ResNet-18 layers on the "simple weight
//! stationary" design and compares coex's access counts and energy with Timeloop's
//! output (../shared/reference/timeloop_ws: levels.csv, summary.csv, *.map.yaml).
//! The reference numbers are read from Timeloop's files, not typed in.

use coex::arch;
use coex::cost;
use coex::lower::{lower, Kernel};
use coex::map::file::{import_timeloop, resolve};
use coex::map::{analyze, analyze_with, Problem, Reuse};
use coex::workload::spec::single_op_graph;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn reference(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/reference/timeloop_ws")
        .join(name)
}

fn template() -> arch::Template {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("accelerators/asic/timeloop_simple_ws.toml");
    arch::load(&path, &[]).expect("template loads")
}

fn problem(spec: &str) -> Problem {
    let g = single_op_graph(spec).unwrap();
    let work = lower(&g).unwrap();
    let e = work
        .iter()
        .flat_map(|w| &w.kernels)
        .find_map(|k| match k {
            Kernel::Einsum(e) => Some(e.clone()),
            _ => None,
        })
        .unwrap();
    Problem::from_einsum(&e).unwrap()
}

/// levels.csv rows for one layer: (level, dataspace) → (reads, fills, updates) totals.
fn timeloop_counts(layer: &str) -> HashMap<(String, String), (u64, u64, u64)> {
    let mut rdr = csv::Reader::from_path(reference("levels.csv")).unwrap();
    let h = rdr.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|x| x == n).unwrap();
    let (cl, clev, cds, cr, cf, cu) = (
        col("layer"),
        col("level"),
        col("dataspace"),
        col("reads_total"),
        col("fills_total"),
        col("updates_total"),
    );
    let num = |s: &str| {
        if s.is_empty() {
            0
        } else {
            s.parse::<f64>().unwrap() as u64
        }
    };
    let mut m = HashMap::new();
    for r in rdr.records() {
        let r = r.unwrap();
        if &r[cl] != layer || &r[clev] == "mac" {
            continue;
        }
        m.insert(
            (r[clev].to_string(), r[cds].to_string()),
            (num(&r[cr]), num(&r[cf]), num(&r[cu])),
        );
    }
    m
}

fn timeloop_summary(layer: &str) -> (u64, f64) {
    let mut rdr = csv::Reader::from_path(reference("summary.csv")).unwrap();
    let h = rdr.headers().unwrap().clone();
    let col = |n: &str| h.iter().position(|x| x == n).unwrap();
    for r in rdr.records() {
        let r = r.unwrap();
        if &r[col("layer")] == layer {
            return (
                r[col("cycles")].parse().unwrap(),
                r[col("energy_pJ")].parse().unwrap(),
            );
        }
    }
    panic!("{layer} not in summary.csv");
}

fn replay(layer: &str, spec: &str) {
    let t = template();
    let p = problem(spec);
    let raw = import_timeloop(&reference(&format!("{layer}.map.yaml")), layer, &t).unwrap();
    let m = resolve(&raw, &p, &t).unwrap();
    // Timeloop discards a tile's residual when the tile's stride changes (a wrap of an
    // inner loop), so it is replayed under coex's sliding-window-only reuse; coex's own
    // exact count can only be lower (see README, Timeloop agreement).
    let c = analyze_with(&p, &t, &m, Reuse::Sliding);
    let exact = analyze(&p, &t, &m);
    let expected = timeloop_counts(layer);
    assert!(!expected.is_empty());
    let ds = ["Inputs", "Weights", "Outputs"];
    let mut compared = 0;
    for (l, lv) in t.levels.iter().enumerate() {
        for (o, name) in ds.iter().enumerate() {
            if !m.keep[l][o] {
                continue;
            }
            let (r, f, u) = expected[&(lv.name.clone(), name.to_string())];
            assert_eq!(
                (c.reads[l][o], c.fills[l][o], c.updates[l][o]),
                (r, f, u),
                "{layer} {} {name}: coex (reads, fills, updates) vs Timeloop",
                lv.name
            );
            compared += 1;
        }
    }
    assert_eq!(
        compared,
        expected.len(),
        "every Timeloop level/dataspace compared"
    );
    for l in 0..t.levels.len() {
        for o in 0..3 {
            assert!(exact.reads[l][o] <= c.reads[l][o]);
            assert!(exact.fills[l][o] <= c.fills[l][o]);
            assert!(exact.updates[l][o] <= c.updates[l][o]);
        }
    }
    let (cycles, energy) = timeloop_summary(layer);
    let q = cost::quick(&p, &t, &c);
    assert_eq!(q.latency_cycles as u64, cycles, "cycles");
    let err = (q.energy_pj - energy).abs() / energy;
    let qe = cost::quick(&p, &t, &exact);
    eprintln!(
        "{layer}: energy {:.1} pJ vs Timeloop {energy:.1} pJ ({:+.3}%); exact reuse {:.1} pJ ({:+.4}%)",
        q.energy_pj,
        (q.energy_pj - energy) / energy * 100.0,
        qe.energy_pj,
        (qe.energy_pj - energy) / energy * 100.0
    );
    assert!(
        err < 0.01,
        "{layer}: energy {:.1} pJ vs Timeloop {energy:.1} pJ ({:.3}%)",
        q.energy_pj,
        err * 100.0
    );
}

#[test]
fn resnet18_layer00_7x7_stride2_matches_timeloop() {
    replay(
        "resnet18_00",
        "conv2d n=1 c=3 h=224 w=224 k=64 r=7 s=7 stride=2 pad=3",
    );
}

#[test]
fn resnet18_layer01_3x3_matches_timeloop() {
    replay(
        "resnet18_01",
        "conv2d n=1 c=64 h=56 w=56 k=64 r=3 s=3 stride=1 pad=1",
    );
}
