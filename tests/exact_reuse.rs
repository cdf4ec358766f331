//! Exact reuse: a level fetches only the elements of its new tile it does not already
//! hold, whichever loop steps and however many inner loops wrap (issue 13).
//!
//! The mapped executor (`check::mapped`) walks every step and takes set differences of
//! the actual tensor coordinates; `map::analyze` counts the same in closed form. These
//! tests hold them equal on random shapes (strides, dilations, paddings, groups),
//! every shipped loop-nest ASIC template and random valid mappings, and pin the
//! hand-checked case that motivated the change.

use coex::arch::{self, Template};
use coex::check::mapped::{compare, execute_mapped, ExecOptions, MulticastRule};
use coex::check::{einsum, DataGen, Tensor};
use coex::lower::{Einsum, Kernel};
use coex::map::{analyze, analyze_with, Counts, Mapping, Problem, Reuse, MAX_DIMS};
use coex::workload::spec::single_op_graph;
use proptest::prelude::*;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn template(name: &str) -> Template {
    arch::load(&repo(&format!("accelerators/asic/{name}.toml")), &[]).unwrap()
}

fn einsums(spec: &str) -> Vec<Einsum> {
    let g = single_op_graph(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
    coex::lower::lower(&g)
        .unwrap()
        .into_iter()
        .flat_map(|w| w.kernels)
        .filter_map(|k| match k {
            Kernel::Einsum(e) => Some(e),
            _ => None,
        })
        .collect()
}

/// `factors`: (level, dim, factor); `order`: dims outer→inner at every level.
fn mapping(p: &Problem, t: &Template, factors: &[(usize, &str, u32)], order: &[&str]) -> Mapping {
    let mut m = Mapping::trivial(p, t);
    m.factors[0] = [1; MAX_DIMS];
    for &(l, d, f) in factors {
        m.factors[l][p.dim_index(d).unwrap()] = f;
    }
    for l in 0..t.levels.len() {
        let mut o: Vec<u8> = order
            .iter()
            .map(|d| p.dim_index(d).unwrap() as u8)
            .collect();
        let rest: Vec<u8> = (0..p.ndims as u8).filter(|d| !o.contains(d)).collect();
        o.extend(rest);
        m.order[l][..p.ndims].copy_from_slice(&o);
    }
    m
}

/// The 3×3, 128-channel, 28×28 layer on the Timeloop exercise design with
/// `pe_spad[K8 S3 R3 P2]` directly above the 1-word input register.
fn simple_ws_case() -> (Einsum, Template, Problem, Mapping) {
    let e = einsums("conv2d n=1 c=128 h=28 w=28 k=128 r=3 s=3 stride=1 pad=1").remove(0);
    let t = template("timeloop_simple_ws");
    let p = Problem::from_einsum(&e).unwrap();
    let mut m = mapping(
        &p,
        &t,
        &[
            (0, "C", 8),
            (0, "P", 14),
            (1, "Q", 28),
            (2, "K", 8),
            (2, "S", 3),
            (2, "R", 3),
            (2, "P", 2),
        ],
        &["C", "Q", "K", "S", "R", "P"],
    );
    m.spatial_rows[p.dim_index("C").unwrap()] = 16;
    m.spatial_cols[p.dim_index("K").unwrap()] = 16;
    m.validate(&p, &t).unwrap();
    (e, t, p, m)
}

/// With `pe_spad[K8 S3 R3 P2]` above the input register, input row h = p + r: when P
/// wraps from 1 to 0 and R steps, the register already holds the word it needs. Of
/// every 6 (R, P) steps only 4 bring a new word, so the register's fills (and the
/// glb's input reads, multicast over K) are 2/3 of the old rule's, which refilled the
/// 1-word tile at every step: old fills = temporal steps above it × PEs.
#[test]
fn simple_ws_input_register_fills_are_two_thirds_of_the_old_rule() {
    let (_, t, p, m) = simple_ws_case();
    let reg = t.level_index("input_activation_reg").unwrap();
    let glb = t.level_index("shared_glb").unwrap();
    assert_eq!(
        m.compact(&p, &t),
        "DRAM[C8 P14] shared_glb[Q28] sp[K16c C16r] pe_spad[K8 S3 R3 P2] weight_reg[] \
         input_activation_reg[] output_activation_reg[]"
    );
    let c = analyze(&p, &t, &m);
    assert_eq!(c.overflow, None);
    // The old rule, plainly: the register's tile is one word; the innermost loop above
    // it that indexes inputs (P2) brings one new word per step and every carry further
    // out refetches the word, so every temporal step fills one word in each of the
    // 256 PEs (115,605,504: what main's model counted).
    let steps: u64 = 8 * 14 * 28 * 8 * 3 * 3 * 2;
    let old_fills = steps * 256;
    assert_eq!(
        old_fills, 115_605_504,
        "recorded from main before the change"
    );
    assert_eq!(c.fills[reg][0] * 3, old_fills * 2);
    // K is unrolled over the columns: 16 PEs share one glb read.
    let old_glb_reads = old_fills / 16;
    assert_eq!(c.reads[glb][0] * 3, old_glb_reads * 2);
}

/// The same layer's energy drops with the register's (and the glb's) words.
#[test]
fn simple_ws_exact_reuse_lowers_energy_against_the_sliding_rule() {
    let (_, t, p, m) = simple_ws_case();
    let exact = coex::cost::quick(&p, &t, &analyze(&p, &t, &m));
    let sliding = coex::cost::quick(&p, &t, &analyze_with(&p, &t, &m, Reuse::Sliding));
    let saved = 1.0 - exact.energy_pj / sliding.energy_pj;
    assert!(
        saved > 0.035,
        "exact reuse saves {:.2}% of the energy",
        saved * 100.0
    );
}

/// The executor's counts on a scaled copy of the case: the walk, not the formula,
/// finds the 2/3.
#[test]
fn simple_ws_case_walked_step_by_step() {
    let (_, t, _, mut m) = simple_ws_case();
    // C128 → 4 (2 per PE row, 2 rows), K128 → 16 (8 in pe_spad, 2 columns), P28 →
    // 4 (2 at DRAM, 2 in pe_spad), Q28 → 3: the same nest above the register.
    let e = einsums("conv2d n=1 c=4 h=4 w=3 k=16 r=3 s=3 stride=1 pad=1").remove(0);
    let p = Problem::from_einsum(&e).unwrap();
    let [c, k, pd, q] = ["C", "K", "P", "Q"].map(|n| p.dim_index(n).unwrap());
    m.factors[0][c] = 2;
    m.factors[0][pd] = 2;
    m.factors[1][q] = 3;
    m.spatial_rows[c] = 2;
    m.spatial_cols[k] = 2;
    m.validate(&p, &t).unwrap();
    let (counted, modeled) = run(&e, &t, &m);
    assert_counts_equal(&t, &counted, &modeled, "scaled simple_ws case");
    let reg = t.level_index("input_activation_reg").unwrap();
    let steps = 2 * 2 * 3 * 8 * 3 * 3 * 2;
    assert_eq!(counted.fills[reg][0] * 3, steps * 4 * 2);
}

fn integers(gen: &DataGen, key: &str, shape: &[usize]) -> Tensor {
    let mut t = gen.ids(key, shape, 7);
    t.data.iter_mut().for_each(|x| *x -= 3.0);
    t
}

/// Executes `e` under `m` (output checked against the plain Einsum) and returns the
/// executor's counts and the model's.
fn run(e: &Einsum, t: &Template, m: &Mapping) -> (coex::check::mapped::Counted, Counts) {
    let gen = DataGen::new(3);
    let i = integers(&gen, "i", &e.input.shape);
    let w = integers(&gen, "w", &e.weight.shape);
    let p = Problem::from_einsum(e).unwrap();
    let r = execute_mapped(
        e,
        t,
        m,
        &i,
        &w,
        ExecOptions {
            multicast: MulticastRule::Broadcast,
        },
    )
    .unwrap_or_else(|err| panic!("{}: {err}", m.compact(&p, t)));
    let (reference, _) = einsum::execute(e, &i, &w).unwrap();
    assert_eq!(r.output, reference, "mapped output");
    (r.counted, analyze(&p, t, m))
}

fn assert_counts_equal(
    t: &Template,
    counted: &coex::check::mapped::Counted,
    modeled: &Counts,
    what: &str,
) {
    let mm = compare(t, counted, modeled);
    assert!(
        mm.is_empty(),
        "{what}:\n{}",
        mm.iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The shipped ASIC templates that use the loop-nest model (not the systolic ones),
/// shrunk to a small array.
fn loop_nest_templates(rows: u32, cols: u32) -> Vec<Template> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(repo("accelerators/asic"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    paths.sort();
    let o = [
        ("array.rows".to_string(), rows.to_string()),
        ("array.cols".to_string(), cols.to_string()),
    ];
    paths
        .iter()
        .map(|p| arch::load(p, &o).unwrap())
        .filter(|t| t.array.dataflow.is_none())
        .collect()
}

fn prime_factors(mut n: u64) -> Vec<u64> {
    let mut v = vec![];
    let mut f = 2;
    while f * f <= n {
        while n.is_multiple_of(f) {
            v.push(f);
            n /= f;
        }
        f += 1;
    }
    if n > 1 {
        v.push(n);
    }
    v
}

/// A random valid mapping with many small loops (so inner loops wrap often): random
/// spatial factors, each dim's prime factors (of a bound padded by 0–2) spread over
/// random levels, random orders and bypasses, then factors moved outward until every
/// tile fits.
fn random_mapping(p: &Problem, t: &Template, rng: &mut ChaCha8Rng) -> Option<Mapping> {
    let nl = t.levels.len();
    let mut m = Mapping::trivial(p, t);
    let (mut rows, mut cols) = (t.array.rows as u64, t.array.cols as u64);
    for d in 0..p.ndims {
        if p.is_reduction(d) && !t.array.spatial_reduction {
            continue;
        }
        let on = |axis: &[String]| axis.iter().any(|s| s == p.names[d]);
        if on(&t.array.spatial_rows) && rows > 1 && rng.random_bool(0.4) {
            let f = rng.random_range(1..=p.bounds[d].min(rows));
            m.spatial_rows[d] = f as u32;
            rows /= f;
        } else if on(&t.array.spatial_cols) && cols > 1 && rng.random_bool(0.4) {
            let f = rng.random_range(1..=p.bounds[d].min(cols));
            m.spatial_cols[d] = f as u32;
            cols /= f;
        }
    }
    for d in 0..p.ndims {
        m.factors[0][d] = 1;
        let rest = p.bounds[d].div_ceil(m.spatial(d)) + rng.random_range(0..=2u64) / 2;
        for f in prime_factors(rest) {
            m.factors[rng.random_range(0..nl)][d] *= f as u32;
        }
    }
    for l in 0..nl {
        let mut o: Vec<u8> = (0..p.ndims as u8).collect();
        o.shuffle(rng);
        m.order[l][..p.ndims].copy_from_slice(&o);
        for k in 0..3 {
            if l > 0 && m.keep[l][k] && rng.random_bool(0.1) {
                m.keep[l][k] = false;
            }
        }
    }
    for _ in 0..200 {
        let Some(l) = analyze(p, t, &m).overflow else {
            return m.validate(p, t).is_ok().then_some(m);
        };
        let movable: Vec<(usize, usize)> = (l.max(1)..nl)
            .flat_map(|j| (0..p.ndims).map(move |d| (j, d)))
            .filter(|&(j, d)| m.factors[j][d] > 1)
            .collect();
        let &(j, d) = movable.get(rng.random_range(0..movable.len().max(1)))?;
        let f = prime_factors(m.factors[j][d] as u64)[0] as u32;
        m.factors[j][d] /= f;
        m.factors[j - 1][d] *= f;
    }
    None
}

/// Small convolutions with random kernels, strides, dilations, paddings and groups
/// (2-D, 1-D, depthwise), and GEMMs.
fn shape() -> impl Strategy<Value = String> {
    let conv = (
        1..3usize,
        1..4usize,
        1..4usize,
        1..4usize,
        1..4usize,
        1..4usize,
        1..3usize,
        0..5usize,
        0..4usize,
    )
        .prop_flat_map(|(g, cg, kg, r, s, stride, dil, extra_h, extra_w)| {
            let reach_r = (r - 1) * dil + 1;
            let reach_s = (s - 1) * dil + 1;
            (0..r.max(s)).prop_map(move |pad| {
                format!(
                    "conv2d n=1 c={} h={} w={} k={} r={r} s={s} stride={stride} dilation={dil} pad={pad} groups={g}",
                    g * cg,
                    reach_r + extra_h,
                    reach_s + extra_w,
                    g * kg
                )
            })
        });
    let conv1d = (1..6usize, 1..5usize, 1..4usize, 0..8usize, 0..3usize).prop_map(
        |(r, stride, dil, extra, pad)| {
            format!(
                "conv1d n=1 c=3 l={} k=2 kernel={r} stride={stride} dilation={dil} pad={}",
                (r - 1) * dil + 1 + extra,
                pad.min(r - 1)
            )
        },
    );
    let dw = (1..4usize, 1..3usize, 0..6usize, 0..2usize).prop_map(|(r, stride, extra, pad)| {
        format!(
            "dwconv2d n=1 c=3 h={} w={} kernel={r} stride={stride} pad={}",
            r + extra,
            r + 1,
            pad.min(r - 1)
        )
    });
    let gemm =
        (1..9usize, 1..9usize, 1..9usize).prop_map(|(m, n, k)| format!("gemm m={m} n={n} k={k}"));
    prop_oneof![3 => conv, 2 => conv1d, 1 => dw, 1 => gemm]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    /// On every shipped loop-nest ASIC template: reads, fills and updates per level and
    /// operand from the model equal the step-by-step walk's (and tile sizes and padded
    /// MACs); the old sliding-window rule never counts fewer.
    #[test]
    fn model_equals_the_exact_walk(
        spec in shape(),
        rows in prop::sample::select(vec![1u32, 2, 3, 4]),
        cols in prop::sample::select(vec![1u32, 2, 4]),
        seed in any::<u64>(),
    ) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for t in loop_nest_templates(rows, cols) {
            for mut e in einsums(&spec) {
                e.dtype = t.precisions[seed as usize % t.precisions.len()];
                let p = Problem::from_einsum(&e).unwrap();
                let Some(m) = random_mapping(&p, &t, &mut rng) else { continue };
                let (counted, modeled) = run(&e, &t, &m);
                assert_counts_equal(&t, &counted, &modeled, &format!("{spec} on {}: {}", t.name, m.compact(&p, &t)));
                let sliding = analyze_with(&p, &t, &m, Reuse::Sliding);
                for l in 0..t.levels.len() {
                    for o in 0..3 {
                        prop_assert!(modeled.fills[l][o] <= sliding.fills[l][o]);
                        prop_assert!(modeled.reads[l][o] <= sliding.reads[l][o]);
                        prop_assert!(modeled.updates[l][o] <= sliding.updates[l][o]);
                    }
                }
            }
        }
    }
}
