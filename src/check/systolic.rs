//! The systolic executor: runs an Einsum fold by fold on a simulated systolic array and
//! counts every element that moves, as an oracle for `map::systolic`'s closed forms.
//!
//! What it shares with the model: the dataflow's roles (which GEMM-view dims sit on the
//! rows, the cols and the stream), the loop order of the folds, and the template's
//! capacity rule for whether an operand stays resident in its SRAM. What it does not
//! share: every count. It builds the im2col matrix element by element from the Einsum's
//! projections, walks every fold, every streamed vector and every PE, delivers each
//! element from its SRAM (and from DRAM when the SRAM does not hold it: a resident SRAM
//! keeps every distinct element it has seen, a streaming one nothing), multiplies real
//! numbers, and accumulates partial sums in a simulated output SRAM with
//! read-modify-write. The output must equal the plain Einsum executor's.

use super::tensor::{next_index, Tensor};
use super::CheckError;
use crate::arch::{Dataflow, Template};
use crate::lower::{Einsum, Operand};
use crate::map::systolic::{chains, fits, Chains, Systolic};
use crate::map::{Counts, Problem};
use std::collections::{HashMap, HashSet};

/// Counts and output of one systolic run.
pub struct SystolicRun {
    pub output: Tensor,
    pub counts: Counts,
    /// Folds executed (row folds × col folds × batch).
    pub folds: u64,
    pub macs: u64,
}

/// One operand's simulated SRAM: resident (keeps every distinct element once fetched)
/// or streaming (every element it hands on comes from DRAM).
struct Sram {
    resident: bool,
    held: HashSet<Vec<i64>>,
}

impl Sram {
    /// Hands one element to the array; returns whether DRAM had to supply it.
    fn deliver(&mut self, key: &[i64]) -> bool {
        if !self.resident {
            return true;
        }
        if self.held.contains(key) {
            return false;
        }
        self.held.insert(key.to_vec());
        true
    }
}

/// The projected coordinates of `op` at loop `point` (outside the tensor: padding).
fn coords(op: &Operand, point: &[usize]) -> Vec<i64> {
    op.proj.iter().map(|a| a.eval(point)).collect()
}

fn value(op: &Operand, t: &Tensor, key: &[i64]) -> f64 {
    let mut off = 0usize;
    for (&i, &len) in key.iter().zip(&op.shape) {
        if i < 0 || i as usize >= len {
            return 0.0;
        }
        off = off * len + i as usize;
    }
    t.data[off]
}

/// Runs `e` on systolic template `t`. Capacity is the template's; sizes are small
/// enough to enumerate (the caller scales layers down).
pub fn execute_systolic(
    e: &Einsum,
    t: &Template,
    input: &Tensor,
    weight: &Tensor,
) -> Result<SystolicRun, CheckError> {
    let err = |message: String| CheckError::Einsum {
        einsum: e.name.clone(),
        message,
    };
    let p = Problem::from_einsum(e).map_err(|x| err(x.to_string()))?;
    let df = t
        .array
        .dataflow
        .ok_or_else(|| err("not a systolic template".into()))?;
    let ch: Chains = chains(t, df).map_err(err)?;
    // Split the Einsum's dims into GEMM roles by which operands they index.
    let mut roles: [Vec<usize>; 4] = Default::default();
    for d in 0..p.ndims {
        let [i, w, o] = [0, 1, 2].map(|x| p.operands[x].is_relevant(d));
        let r = match (i, w, o) {
            (true, true, true) => 0,
            (_, _, false) => 3,
            (false, true, true) => 2,
            _ => 1,
        };
        roles[r].push(d);
    }
    // Every index tuple of one role, in row-major order of its dims.
    let tuples = |r: usize| -> Vec<Vec<usize>> {
        let bounds: Vec<usize> = roles[r].iter().map(|&d| e.dims[d].bound).collect();
        let mut out = Vec::new();
        let mut idx = vec![0usize; bounds.len()];
        loop {
            out.push(idx.clone());
            if !next_index(&mut idx, &bounds) {
                return out;
            }
        }
    };
    let (bs, ms, ns, ks) = (tuples(0), tuples(1), tuples(2), tuples(3));
    let point = |b: &[usize], m: &[usize], n: &[usize], k: &[usize]| -> Vec<usize> {
        let mut pt = vec![0usize; p.ndims];
        for (r, idx) in [b, m, n, k].into_iter().enumerate() {
            for (j, &d) in roles[r].iter().enumerate() {
                pt[d] = idx[j];
            }
        }
        pt
    };
    // Distinct elements of each operand, enumerated (decides residency with the
    // template's capacity rule).
    let mut distinct = [HashSet::new(), HashSet::new()];
    for b in &bs {
        for m in &ms {
            for n in &ns {
                for k in &ks {
                    let pt = point(b, m, n, k);
                    distinct[0].insert(coords(&e.input, &pt));
                    distinct[1].insert(coords(&e.weight, &pt));
                }
            }
        }
    }
    let mut sram: Vec<Sram> = (0..2)
        .map(|o| Sram {
            resident: fits(t, ch[o].0, distinct[o].len() as u64, p.elem_bits),
            held: HashSet::new(),
        })
        .collect();
    let outputs = (bs.len() * ms.len() * ns.len()) as u64;
    let out_resident = fits(t, ch[2].0, outputs, p.elem_bits);
    let mut c = Counts {
        nlevels: t.levels.len(),
        ..Counts::default()
    };
    let (rows, cols) = (t.array.rows, t.array.cols);
    // (rows role, cols role, stream role) as GEMM role indices.
    let (rr, cr, sr) = match df {
        Dataflow::Os => (1, 2, 3),
        Dataflow::Ws => (3, 2, 1),
        Dataflow::Is => (3, 1, 2),
    };
    let by_role = |r: usize| -> &Vec<Vec<usize>> {
        match r {
            1 => &ms,
            2 => &ns,
            _ => &ks,
        }
    };
    let (row_items, col_items, stream_items) = (by_role(rr), by_role(cr), by_role(sr));
    let mut out = Tensor::zeros(&e.output.shape);
    let mut partial: HashMap<Vec<i64>, (f64, u64)> = HashMap::new();
    let mut folds = 0u64;
    let mut macs = 0u64;
    let mut used_pes = 0u64;
    let mut stream_steps = 0u64;
    let (isram, wsram, osram) = (ch[0].0, ch[1].0, ch[2].0);
    let deliver = |o: usize, key: &[i64], s: &mut Vec<Sram>, c: &mut Counts| {
        let l = ch[o].0;
        c.reads[l][o] += 1;
        if s[o].deliver(key) {
            c.reads[0][o] += 1;
            c.fills[l][o] += 1;
        }
    };
    for b in &bs {
        // Fold order: os walks row folds outside col folds; ws and is walk col folds
        // outside row folds (the reduction innermost, so partial sums stay in the SRAM).
        let (nr, nc) = (
            row_items.len().div_ceil(rows),
            col_items.len().div_ceil(cols),
        );
        let mut order = Vec::new();
        for x in 0..nr.max(nc) * nr.max(nc) {
            let (outer, inner) = (x / nr.max(nc), x % nr.max(nc));
            let (fr, fc) = match df {
                Dataflow::Os => (outer, inner),
                _ => (inner, outer),
            };
            if fr < nr && fc < nc {
                order.push((fr, fc));
            }
        }
        for (fr, fc) in order {
            folds += 1;
            let ri: Vec<&Vec<usize>> = row_items.iter().skip(fr * rows).take(rows).collect();
            let ci: Vec<&Vec<usize>> = col_items.iter().skip(fc * cols).take(cols).collect();
            used_pes = used_pes.max((ri.len() * ci.len()) as u64);
            // Assemble the loop point from (row item, col item, stream item).
            let pt_of = |r: &[usize], cl: &[usize], s: &[usize]| -> Vec<usize> {
                let mut idx: [&[usize]; 4] = [b, &[], &[], &[]];
                idx[rr] = r;
                idx[cr] = cl;
                idx[sr] = s;
                point(idx[0], idx[1], idx[2], idx[3])
            };
            // Preload the stationary operand (ws: weights, is: inputs) into the PEs.
            let stationary = match df {
                Dataflow::Ws => Some(1),
                Dataflow::Is => Some(0),
                Dataflow::Os => None,
            };
            if let Some(so) = stationary {
                for r in &ri {
                    for cl in &ci {
                        let pt = pt_of(r, cl, &stream_items[0]);
                        let op = if so == 0 { &e.input } else { &e.weight };
                        deliver(so, &coords(op, &pt), &mut sram, &mut c);
                        if let Some(l) = ch[so].1 {
                            c.fills[l][so] += 1;
                        }
                    }
                }
            }
            for s in stream_items {
                stream_steps += 1;
                // Edge deliveries: os streams inputs on rows and weights on cols; ws
                // streams inputs on rows; is streams weights on rows.
                match df {
                    Dataflow::Os => {
                        for r in &ri {
                            let pt = pt_of(r, &ci[0][..], s);
                            deliver(0, &coords(&e.input, &pt), &mut sram, &mut c);
                        }
                        for cl in &ci {
                            let pt = pt_of(&ri[0][..], cl, s);
                            deliver(1, &coords(&e.weight, &pt), &mut sram, &mut c);
                        }
                    }
                    Dataflow::Ws | Dataflow::Is => {
                        let so = if df == Dataflow::Ws { 0 } else { 1 };
                        let op = if so == 0 { &e.input } else { &e.weight };
                        for r in &ri {
                            let pt = pt_of(r, &ci[0][..], s);
                            deliver(so, &coords(op, &pt), &mut sram, &mut c);
                        }
                    }
                }
                // Every PE multiplies; ws/is columns reduce down the array into one
                // partial sum per column; os accumulates in each PE.
                for cl in &ci {
                    let mut column_sum = 0.0;
                    let mut okey = Vec::new();
                    for r in &ri {
                        let pt = pt_of(r, cl, s);
                        let i = value(&e.input, input, &coords(&e.input, &pt));
                        let w = value(&e.weight, weight, &coords(&e.weight, &pt));
                        macs += 1;
                        okey = coords(&e.output, &pt);
                        match df {
                            Dataflow::Os => {
                                let acc = partial.entry(okey.clone()).or_insert((0.0, 0));
                                if let Some(l) = ch[2].1 {
                                    c.updates[l][2] += 1;
                                    if acc.1 > 0 {
                                        c.reads[l][2] += 1;
                                    }
                                }
                                acc.0 += i * w;
                                acc.1 += 1;
                            }
                            _ => {
                                column_sum += i * w;
                                if let Some(l) = ch[if df == Dataflow::Ws { 1 } else { 0 }].1 {
                                    c.reads[l][if df == Dataflow::Ws { 1 } else { 0 }] += 1;
                                }
                            }
                        }
                    }
                    if df != Dataflow::Os {
                        // Read-modify-write of the partial sum in the output SRAM.
                        let acc = partial.entry(okey).or_insert((0.0, 0));
                        if acc.1 > 0 {
                            c.reads[osram][2] += 1;
                            if !out_resident {
                                c.reads[0][2] += 1;
                                c.fills[osram][2] += 1;
                            }
                        }
                        c.updates[osram][2] += 1;
                        if !out_resident {
                            c.updates[0][2] += 1;
                        }
                        acc.0 += column_sum;
                        acc.1 += 1;
                    }
                }
            }
        }
    }
    // os: each finished output drains once from its PE into the output SRAM.
    if df == Dataflow::Os {
        c.updates[osram][2] += partial.len() as u64;
        if !out_resident {
            c.updates[0][2] += partial.len() as u64;
        }
    }
    if out_resident {
        c.updates[0][2] += partial.len() as u64;
    }
    for (key, (v, _)) in &partial {
        let mut off = 0usize;
        for (&i, &len) in key.iter().zip(&e.output.shape) {
            if i < 0 || i as usize >= len {
                return Err(err(format!(
                    "output index {key:?} outside {:?}",
                    e.output.shape
                )));
            }
            off = off * len + i as usize;
        }
        out.data[off] = *v;
    }
    let _ = (isram, wsram);
    c.padded_macs = macs;
    c.used_pes = used_pes;
    c.temporal_steps = stream_steps;
    Ok(SystolicRun {
        output: out,
        counts: c,
        folds,
        macs,
    })
}

/// The model's folds for the same Einsum: what the executor's fold count must equal.
pub fn modeled_folds(p: &Problem, t: &Template) -> Result<u64, String> {
    let s = Systolic::new(p, t).map_err(|e| e.to_string())?;
    Ok(s.batch * s.row_folds() * s.col_folds())
}

/// Every read, fill and update per level and operand, and the MACs, that differ.
pub fn compare_counts(t: &Template, counted: &Counts, modeled: &Counts) -> Vec<Mismatch> {
    let mut v = Vec::new();
    if counted.padded_macs != modeled.padded_macs {
        v.push(Mismatch {
            level: "MAC".into(),
            operand: "-",
            what: "macs",
            counted: counted.padded_macs,
            modeled: modeled.padded_macs,
        });
    }
    for (l, lv) in t.levels.iter().enumerate() {
        for (o, name) in crate::arch::OPERANDS.iter().enumerate() {
            for (what, c, m) in [
                ("reads", counted.reads[l][o], modeled.reads[l][o]),
                ("fills", counted.fills[l][o], modeled.fills[l][o]),
                ("updates", counted.updates[l][o], modeled.updates[l][o]),
            ] {
                if c != m {
                    v.push(Mismatch {
                        level: lv.name.clone(),
                        operand: name,
                        what,
                        counted: c,
                        modeled: m,
                    });
                }
            }
        }
    }
    v
}

/// A systolic layer small enough to execute: the Einsum shrunk by `scale_down` (all
/// loops at the outermost level, so its bounds shrink with their structure), and the
/// array shrunk so the layer still folds as the full one does (one fold stays one fold;
/// several become at least two, the last one partial where the sizes allow), with each
/// SRAM kept resident or streaming as it is at full size.
pub fn scaled_run(
    e: &Einsum,
    t: &Template,
    max_macs: u64,
) -> Result<(Einsum, Template, super::scale::ScaleNote), CheckError> {
    let err = |message: String| CheckError::Einsum {
        einsum: e.name.clone(),
        message,
    };
    let p = Problem::from_einsum(e).map_err(|x| err(x.to_string()))?;
    let df = t
        .array
        .dataflow
        .ok_or_else(|| err("not a systolic template".into()))?;
    let ch = chains(t, df).map_err(err)?;
    let full = Systolic::new(&p, t).map_err(|x| err(x.to_string()))?;
    let trivial = crate::map::Mapping::trivial(&p, t);
    let scaled = super::scale::scale_down(e, t, &trivial, max_macs)?;
    let ps = Problem::from_einsum(&scaled.einsum).map_err(|x| err(x.to_string()))?;
    let small = Systolic::new(&ps, t).map_err(|x| err(x.to_string()))?;
    let (sr, sc, _) = small.roles();
    let fit = |extent: u64, full_folds: u64| -> usize {
        if full_folds <= 1 || extent <= 1 {
            extent.max(1) as usize
        } else {
            (extent / 2 + extent % 2).max(1) as usize
        }
    };
    let mut ts = t.clone();
    ts.array.rows = if small == full {
        t.array.rows
    } else {
        fit(sr, full.row_folds())
    };
    ts.array.cols = if small == full {
        t.array.cols
    } else {
        fit(sc, full.col_folds())
    };
    let mut bounds = [1u64; crate::map::MAX_DIMS];
    bounds[..p.ndims].copy_from_slice(&p.bounds[..p.ndims]);
    for (o, &(l, _)) in ch.iter().enumerate() {
        let elems = if o == 2 {
            full.batch * full.m * full.n
        } else {
            p.operands[o].footprint(&bounds)
        };
        ts.levels[l].size_words = Some(if fits(t, l, elems, p.elem_bits) {
            u64::MAX / 4
        } else {
            1
        });
    }
    Ok((scaled.einsum, ts, scaled.change))
}

use super::mapped::Mismatch;
