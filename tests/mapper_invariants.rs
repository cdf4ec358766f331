//! Properties of the mapper and the cost model over random Einsums and every shipped
//! ASIC template. Tile sizes are recomputed here by enumerating the operand indices
//! each tile touches (from the Einsum's affine projections), independently of the
//! access model's footprint formulas.

use coex::arch::{self, Template};
use coex::cost::{self, Objective};
use coex::lower::{Einsum, Kernel};
use coex::map::mapper::{search, SearchConfig};
use coex::map::{analyze, Mapping, Problem};
use coex::workload::spec::single_op_graph;
use proptest::prelude::*;
use std::collections::HashSet;
use std::path::Path;

fn templates() -> Vec<Template> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("accelerators/asic");
    let mut v: Vec<Template> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().map(|e| e == "toml").unwrap_or(false))
        .map(|p| arch::load(&p, &[]).unwrap())
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

fn einsum(spec: &str) -> Einsum {
    let g = single_op_graph(spec).unwrap();
    coex::lower::lower(&g)
        .unwrap()
        .into_iter()
        .flat_map(|w| w.kernels)
        .find_map(|k| match k {
            Kernel::Einsum(e) => Some(e),
            _ => None,
        })
        .unwrap()
}

/// Distinct elements of operand `o` touched by the box `ext` (enumerated).
fn enumerated_tile(e: &Einsum, o: usize, ext: &[u64]) -> u64 {
    let op = e.operands()[o];
    let mut seen = HashSet::new();
    let n = e.dims.len();
    let mut point = vec![0usize; n];
    loop {
        // Mixed-radix key of the index tuple (padding offsets shifted to be ≥ 0).
        let key = op
            .proj
            .iter()
            .fold(0i64, |acc, a| acc * 4096 + a.eval(&point) + 1024);
        seen.insert(key);
        let mut d = 0;
        loop {
            if d == n {
                return seen.len() as u64;
            }
            point[d] += 1;
            if (point[d] as u64) < ext[d] {
                break;
            }
            point[d] = 0;
            d += 1;
        }
    }
}

/// Tile extents per level, recomputed from the mapping's factors.
fn tile_extents(m: &Mapping, t: &Template, ndims: usize, l: usize) -> Vec<u64> {
    let fan = t.fanout_level();
    (0..ndims)
        .map(|d| {
            let temporal: u64 = (l..m.nlevels as usize)
                .map(|j| m.factors[j][d] as u64)
                .product();
            temporal * if l < fan { m.spatial(d) } else { 1 }
        })
        .collect()
}

fn check(spec: &str, t: &Template, objective: Objective) {
    let e = einsum(spec);
    let p = Problem::from_einsum(&e).unwrap();
    let cfg = SearchConfig {
        budget: 120,
        spatial_candidates: 3,
        seed: 7,
        ..SearchConfig::default()
    };
    let found = match search(&p, t, &cfg, cost::objective_fn(&p, t, objective)) {
        Ok(f) => f,
        // A template may be unable to hold some shape; that must be an error, never a bad mapping.
        Err(err) => {
            assert!(err.to_string().contains("no valid mapping"), "{err}");
            return;
        }
    };
    let m = found.mapping;
    m.validate(&p, t).unwrap();
    for d in 0..p.ndims {
        assert!(
            m.padded_bound(d) >= p.bounds[d],
            "dim {} covered",
            p.names[d]
        );
    }
    // Capacity, from enumerated tiles.
    for (l, lv) in t.levels.iter().enumerate() {
        let Some(cap) = lv.size_words else { continue };
        let ext = tile_extents(&m, t, p.ndims, l);
        let copies = if lv.double_buffered { 2 } else { 1 };
        let used: u64 = (0..3)
            .filter(|&o| m.keep[l][o])
            .map(|o| enumerated_tile(&e, o, &ext) * copies)
            .sum();
        assert!(
            used <= cap,
            "{spec} on {}: level {} holds {used} > {cap} words",
            t.name,
            lv.name
        );
    }
    let c = analyze(&p, t, &m);
    assert!(c.overflow.is_none());
    let q = cost::quick(&p, t, &c);
    let util = p.macs as f64 / (q.latency_cycles * t.array.pes() as f64);
    assert!(util <= 1.0 + 1e-9, "utilization {util} > 1");
    assert!(
        q.energy_pj >= p.macs as f64 * t.mac_energy_pj(p.dtype).unwrap(),
        "energy below MACs x MAC energy"
    );
    assert!(c.padded_macs >= p.macs);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, .. ProptestConfig::default() })]

    #[test]
    fn conv_mappings_fit_every_buffer(
        c in 1usize..24, k in 1usize..24, hw in 4usize..14, r in prop::sample::select(vec![1usize, 3, 5]),
        stride in 1usize..3, obj in prop::sample::select(vec![Objective::Edp, Objective::Latency, Objective::Energy]),
    ) {
        let pad = r / 2;
        let spec = format!("conv2d n=1 c={c} h={hw} w={hw} k={k} r={r} s={r} stride={stride} pad={pad}");
        for t in templates() {
            check(&spec, &t, obj);
        }
    }

    #[test]
    fn gemm_mappings_fit_every_buffer(m in 1usize..40, n in 1usize..40, k in 1usize..40) {
        let spec = format!("gemm m={m} n={n} k={k}");
        for t in templates() {
            check(&spec, &t, Objective::Edp);
        }
    }
}

#[test]
fn a_bigger_buffer_never_costs_more_dram_traffic_for_the_best_mapping_found() {
    // Sweep the global buffer of pe_buffer_ws; the mapper keeps its best, and every
    // mapping valid in the smaller buffer is valid in the larger one, so with an
    // exhaustive-enough search DRAM traffic can only fall. Checked on a ResNet layer.
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("accelerators/asic/pe_buffer_ws.toml");
    let e = einsum("conv2d n=1 c=64 h=28 w=28 k=64 r=3 s=3 stride=1 pad=1");
    let p = Problem::from_einsum(&e).unwrap();
    let dram_words = |kib: u32| {
        let t = arch::load(&path, &[("level.GLB.size_kib".into(), kib.to_string())]).unwrap();
        let cfg = SearchConfig {
            budget: 4000,
            spatial_candidates: 4,
            seed: 3,
            ..SearchConfig::default()
        };
        let obj = |_m: &Mapping, c: &coex::map::Counts| {
            (0..3).map(|o| c.reads[0][o] + c.updates[0][o]).sum::<u64>() as f64
        };
        let f = search(&p, &t, &cfg, obj).unwrap();
        f.score
    };
    let small = dram_words(16);
    let large = dram_words(512);
    assert!(
        large <= small,
        "DRAM words: {large} with 512 KiB vs {small} with 16 KiB"
    );
    // The layer needs 36,864 weights + 50,176 inputs + 50,176 outputs once from/to DRAM (minimum traffic).
    assert!(large >= (36_864 + 50_176 * 2) as f64);
}
