//! `coex check`: a network's work on an accelerator template, re-executed and compared
//! with the models.
//!
//! Every Einsum of the chosen layers is mapped exactly as `coex eval` maps it
//! (`cost::network::map_einsum`: the same search configuration and objective), scaled
//! down when it is too large to execute ([`super::scale`]), run by the mapped executor
//! on small integers (so every sum is exact in f64 and outputs compare for equality),
//! and checked twice: its output against the plain Einsum executor, and its counted
//! accesses against `map::analyze` on the same scaled problem and mapping, per level
//! and operand, exactly. Every VectorOp the vector unit model runs is checked against
//! the lowering's element and byte counts ([`super::vector`]).
//!
//! Einsums of the same shape get the same mapping, so each distinct shape runs once
//! and every layer that has it reports that verdict.

use super::data::DataGen;
use super::einsum;
use super::mapped::{compare, execute_mapped, Counted, ExecOptions, Mismatch};
use super::scale::{scale_down, ScaleNote};
use super::tensor::Tensor;
use super::vector::{check_vector, VectorVerdict};
use super::CheckError;
use crate::arch::{Template, OPERANDS};
use crate::cost::network::map_einsum;
use crate::cost::NetworkOptions;
use crate::lower::{self, Einsum, Kernel};
use crate::map::{analyze, Counts, Mapping, Problem};
use crate::workload::Graph;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use std::time::Instant;

/// Largest Einsum (MACs, padded iterations included) executed at full size; larger
/// ones are scaled down to about this size.
pub const DEFAULT_MAX_MACS: u64 = 400_000;

/// Largest vector op (tensor elements, inputs and output) the vector unit model runs.
pub const DEFAULT_VECTOR_LIMIT: u64 = 16_000_000;

/// A deliberate error in the modeled counts, to show that the checker notices one:
/// `delta` added to one count of one level and operand after `map::analyze`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModelFault {
    pub level: usize,
    pub operand: usize,
    /// "reads", "fills" or "updates".
    pub what: &'static str,
    pub delta: i64,
}

impl ModelFault {
    /// Parses `LEVEL:OPERAND:reads|fills|updates:DELTA`, e.g. `GLB:I:fills:+1`.
    pub fn parse(text: &str, t: &Template) -> Result<ModelFault, String> {
        let parts: Vec<&str> = text.split(':').collect();
        let [level, operand, what, delta] = parts[..] else {
            return Err(format!(
                "fault '{text}': expected LEVEL:OPERAND:reads|fills|updates:DELTA"
            ));
        };
        let level = t
            .level_index(level)
            .ok_or_else(|| format!("fault '{text}': no level '{level}' in '{}'", t.name))?;
        let operand = OPERANDS
            .iter()
            .position(|o| *o == operand)
            .ok_or_else(|| format!("fault '{text}': operand must be I, W or O"))?;
        let what = ["reads", "fills", "updates"]
            .into_iter()
            .find(|w| *w == what)
            .ok_or_else(|| format!("fault '{text}': count must be reads, fills or updates"))?;
        let delta = delta
            .trim_start_matches('+')
            .parse()
            .map_err(|_| format!("fault '{text}': DELTA must be an integer"))?;
        Ok(ModelFault {
            level,
            operand,
            what,
            delta,
        })
    }

    /// Applies the fault to modeled counts.
    pub fn apply(&self, c: &mut Counts) {
        let slot = match self.what {
            "reads" => &mut c.reads[self.level][self.operand],
            "fills" => &mut c.fills[self.level][self.operand],
            _ => &mut c.updates[self.level][self.operand],
        };
        *slot = slot.saturating_add_signed(self.delta);
    }
}

/// How one mapped Einsum is checked.
#[derive(Clone, Debug)]
pub struct MappedCheckOptions {
    /// Scale the layer down to about this many MACs when it is larger.
    pub max_macs: u64,
    /// Data seed.
    pub seed: u64,
    pub exec: ExecOptions,
    /// Test-only: perturb the modeled counts.
    pub model_fault: Option<ModelFault>,
}

impl Default for MappedCheckOptions {
    fn default() -> Self {
        MappedCheckOptions {
            max_macs: DEFAULT_MAX_MACS,
            seed: 1,
            exec: ExecOptions::default(),
            model_fault: None,
        }
    }
}

/// The verdict on one mapped Einsum.
#[derive(Clone, Debug, Serialize)]
pub struct MappedVerdict {
    pub scale: ScaleNote,
    /// What the executor counted on the (scaled) layer.
    #[serde(skip)]
    pub counted: Counted,
    /// `map::analyze` on the same (scaled) problem and mapping.
    #[serde(skip)]
    pub modeled: Counts,
    /// Wrong outputs or MAC counts, and executor errors.
    pub problems: Vec<String>,
    pub mismatches: Vec<Mismatch>,
}

impl MappedVerdict {
    pub fn ok(&self) -> bool {
        self.problems.is_empty() && self.mismatches.is_empty()
    }
}

/// Small integers in −3..=3 for an operand: every product and sum stays exact in f64.
fn integers(gen: &DataGen, key: &str, shape: &[usize]) -> Tensor {
    let mut t = gen.ids(key, shape, 7);
    for x in &mut t.data {
        *x -= 3.0;
    }
    t
}

/// Elements where two outputs differ, as a problem line.
fn output_problem(reference: &Tensor, mapped: &Tensor) -> Option<String> {
    if reference.shape != mapped.shape {
        return Some(format!(
            "mapped output has shape {:?}, the Einsum {:?}",
            mapped.shape, reference.shape
        ));
    }
    let diff: Vec<f64> = reference
        .data
        .iter()
        .zip(&mapped.data)
        .map(|(a, b)| (a - b).abs())
        .filter(|d| *d != 0.0)
        .collect();
    (!diff.is_empty()).then(|| {
        format!(
            "mapped output differs from the Einsum executor at {} of {} elements (max |Δ| {})",
            diff.len(),
            reference.len(),
            diff.iter().fold(0.0f64, |m, d| m.max(*d))
        )
    })
}

/// Scales `e` under mapping `m` down if needed, runs it on the mapped executor, and
/// compares the output with the Einsum executor and the counts with `map::analyze`.
pub fn check_mapping(
    e: &Einsum,
    t: &Template,
    m: &Mapping,
    opts: &MappedCheckOptions,
) -> Result<MappedVerdict, CheckError> {
    let scaled = scale_down(e, t, m, opts.max_macs)?;
    let (e, m) = (&scaled.einsum, &scaled.mapping);
    let gen = DataGen::new(opts.seed);
    let input = integers(&gen, &format!("{}.input", e.name), &e.input.shape);
    let weight = integers(&gen, &format!("{}.weight", e.name), &e.weight.shape);
    let run = execute_mapped(e, t, m, &input, &weight, opts.exec)?;
    let (reference, macs) = einsum::execute(e, &input, &weight)?;
    let mut problems: Vec<String> = output_problem(&reference, &run.output)
        .into_iter()
        .collect();
    if run.counted.real_macs != macs {
        problems.push(format!(
            "executed {} MACs inside the bounds, the Einsum has {macs}",
            run.counted.real_macs
        ));
    }
    let p = Problem::from_einsum(e).map_err(|x| CheckError::Einsum {
        einsum: e.name.clone(),
        message: x.to_string(),
    })?;
    let mut modeled = analyze(&p, t, m);
    if let Some(f) = &opts.model_fault {
        f.apply(&mut modeled);
    }
    let mismatches = compare(t, &run.counted, &modeled);
    Ok(MappedVerdict {
        scale: scaled.change,
        counted: run.counted,
        modeled,
        problems,
        mismatches,
    })
}

/// What `coex check` does.
#[derive(Clone, Debug, Default)]
pub struct AccelCheckOptions {
    /// Mapping search and objective: as `coex eval` is given them.
    pub network: NetworkOptions,
    pub mapped: MappedCheckOptions,
    /// Layers (graph nodes) to check, by name; empty: all.
    pub layers: Vec<String>,
    /// Largest vector op the vector unit model runs (tensor elements).
    pub vector_limit: u64,
}

/// The verdict on one kernel of one layer.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Ok,
    Mismatch,
    /// A vector kernel the vector unit model does not run.
    NotRun,
    /// An Einsum the template cannot run (no mapping fits, or an unsupported
    /// precision): nothing was executed, so nothing was compared.
    Unmappable,
}

/// One line of `coex check`.
#[derive(Clone, Debug, Serialize)]
pub struct KernelCheck {
    pub layer: String,
    pub kernel: String,
    /// "einsum" or "vector".
    pub kind: &'static str,
    /// The full-size mapping (compact), or the vector unit.
    pub mapping: String,
    /// How the Einsum was scaled down to run ("full size" when it was not).
    pub scale: String,
    pub verdict: Verdict,
    /// What mismatched, one entry each.
    pub problems: Vec<String>,
    /// Another kernel of the same shape, whose run this verdict is.
    pub same_shape_as: Option<String>,
}

/// `coex check`'s result for one network on one template.
#[derive(Clone, Debug, Serialize)]
pub struct AccelCheck {
    pub network: String,
    pub accelerator: String,
    pub kernels: Vec<KernelCheck>,
    /// Distinct Einsum shapes executed.
    pub einsum_runs: usize,
    pub seconds: f64,
}

impl AccelCheck {
    pub fn count(&self, v: fn(&Verdict) -> bool) -> usize {
        self.kernels.iter().filter(|k| v(&k.verdict)).count()
    }

    /// No mismatch, and every Einsum could be mapped and run.
    pub fn passed(&self) -> bool {
        self.count(|v| matches!(v, Verdict::Mismatch | Verdict::Unmappable)) == 0
    }

    /// `42 kernels: 30 einsums (12 shapes run) and 8 vector ops ok, 4 vector ops not run, 0 MISMATCH (3.1 s)`.
    pub fn summary(&self) -> String {
        let ok = |kind: &str| {
            self.kernels
                .iter()
                .filter(|k| k.kind == kind && matches!(k.verdict, Verdict::Ok))
                .count()
        };
        format!(
            "{} on {}: {} kernels: {} einsums ({} shapes run) and {} vector ops ok, {} vector ops not run, {} cannot map, {} MISMATCH ({:.1} s)",
            self.network,
            self.accelerator,
            self.kernels.len(),
            ok("einsum"),
            self.einsum_runs,
            ok("vector"),
            self.count(|v| matches!(v, Verdict::NotRun)),
            self.count(|v| matches!(v, Verdict::Unmappable)),
            self.count(|v| matches!(v, Verdict::Mismatch)),
            self.seconds
        )
    }
}

impl AccelCheck {
    /// One line per kernel: layer, kernel, verdict, mapping, scale, what mismatched.
    pub fn table(&self) -> String {
        let w = |f: fn(&KernelCheck) -> usize| self.kernels.iter().map(f).max().unwrap_or(0);
        let (wl, wk) = (w(|k| k.layer.len()).max(5), w(|k| k.kernel.len()).max(6));
        let mut s = format!(
            "{:<wl$}  {:<wk$}  {:<8}  mapping  [scale]  problems\n",
            "layer", "kernel", "verdict"
        );
        for k in &self.kernels {
            let verdict = match k.verdict {
                Verdict::Ok => "ok",
                Verdict::Mismatch => "MISMATCH",
                Verdict::NotRun => "not run",
                Verdict::Unmappable => "NO MAP",
            };
            let mut line = format!(
                "{:<wl$}  {:<wk$}  {verdict:<8}  {}  [{}]",
                k.layer, k.kernel, k.mapping, k.scale
            );
            if let Some(other) = &k.same_shape_as {
                line.push_str(&format!(" (as {other})"));
            }
            if !k.problems.is_empty() {
                line.push_str("  ");
                line.push_str(&k.problems.join("; "));
            }
            s.push_str(line.trim_end());
            s.push('\n');
        }
        s.push_str(&self.summary());
        s.push('\n');
        s
    }
}

/// The layers to check: all, or the named ones (an unknown name is an error that
/// lists some known ones).
fn selected(
    graph: &Graph,
    work: &[lower::LayerWork],
    names: &[String],
) -> Result<Vec<usize>, CheckError> {
    let all: Vec<usize> = (0..work.len())
        .filter(|&i| !work[i].kernels.is_empty())
        .collect();
    if names.is_empty() {
        return Ok(all);
    }
    let name_of = |i: usize| graph.node(work[i].node).name.as_str();
    if let Some(unknown) = names.iter().find(|n| all.iter().all(|&i| name_of(i) != *n)) {
        let known: Vec<&str> = all.iter().take(12).map(|&i| name_of(i)).collect();
        return Err(CheckError::Node {
            node: unknown.clone(),
            message: format!(
                "no layer of '{}' has this name; layers include {}",
                graph.name,
                known.join(", ")
            ),
        });
    }
    Ok(all
        .into_iter()
        .filter(|&i| names.iter().any(|n| n == name_of(i)))
        .collect())
}

/// The verdict and mapping of one distinct Einsum shape.
struct ShapeRun {
    mapping: String,
    scale: String,
    verdict: Verdict,
    problems: Vec<String>,
}

/// Checks a systolic layer: the fold-by-fold executor against `map::systolic`'s counts
/// and fold count, and its output against the plain Einsum executor.
pub fn check_systolic(
    e: &Einsum,
    t: &Template,
    opts: &MappedCheckOptions,
) -> Result<(String, Vec<String>), CheckError> {
    let (small, ts, note) = super::systolic::scaled_run(e, t, opts.max_macs)?;
    let gen = DataGen::new(opts.seed);
    let input = integers(&gen, &format!("{}.input", small.name), &small.input.shape);
    let weight = integers(&gen, &format!("{}.weight", small.name), &small.weight.shape);
    let run = super::systolic::execute_systolic(&small, &ts, &input, &weight)?;
    let (reference, macs) = einsum::execute(&small, &input, &weight)?;
    let mut problems: Vec<String> = output_problem(&reference, &run.output)
        .into_iter()
        .collect();
    if run.macs != macs {
        problems.push(format!("executed {} MACs, the Einsum has {macs}", run.macs));
    }
    let p = Problem::from_einsum(&small).map_err(|x| CheckError::Einsum {
        einsum: small.name.clone(),
        message: x.to_string(),
    })?;
    let s = crate::map::systolic::Systolic::new(&p, &ts).map_err(|x| CheckError::Einsum {
        einsum: small.name.clone(),
        message: x.to_string(),
    })?;
    let ch = crate::map::systolic::chains(&ts, s.dataflow).map_err(|m| CheckError::Einsum {
        einsum: small.name.clone(),
        message: m,
    })?;
    let mut modeled = s.counts(&p, &ts, &ch);
    if let Some(f) = &opts.model_fault {
        f.apply(&mut modeled);
    }
    let folds = s.batch * s.row_folds() * s.col_folds();
    if run.folds != folds {
        problems.push(format!(
            "executed {} folds, the model has {folds}",
            run.folds
        ));
    }
    problems.extend(
        super::systolic::compare_counts(&ts, &run.counts, &modeled)
            .iter()
            .map(Mismatch::to_string),
    );
    let scale = if note.is_scaled() {
        format!(
            "{}, array {}x{}",
            note.describe(),
            ts.array.rows,
            ts.array.cols
        )
    } else {
        note.describe()
    };
    Ok((scale, problems))
}

fn run_shape(e: &Einsum, t: &Template, opts: &AccelCheckOptions) -> ShapeRun {
    if t.array.dataflow.is_some() {
        let mapping = match crate::cost::network::schedule_einsum(e, t, &opts.network) {
            Ok((p, s, _)) => match s {
                crate::cost::network::Schedule::Systolic(s) => s.describe(&p),
                crate::cost::network::Schedule::Nest(m) => m.compact(&p, t),
            },
            Err(err) => {
                return ShapeRun {
                    mapping: "-".into(),
                    scale: "-".into(),
                    verdict: Verdict::Unmappable,
                    problems: vec![format!("cannot run: {err}")],
                }
            }
        };
        return match check_systolic(e, t, &opts.mapped) {
            Ok((scale, problems)) => ShapeRun {
                mapping,
                scale,
                verdict: if problems.is_empty() {
                    Verdict::Ok
                } else {
                    Verdict::Mismatch
                },
                problems,
            },
            Err(err) => ShapeRun {
                mapping,
                scale: "-".into(),
                verdict: Verdict::Mismatch,
                problems: vec![format!("executor: {err}")],
            },
        };
    }
    let mapped = match map_einsum(e, t, &opts.network) {
        Ok((p, found)) => (found.mapping.compact(&p, t), found.mapping),
        Err(err) => {
            return ShapeRun {
                mapping: "-".into(),
                scale: "-".into(),
                verdict: Verdict::Unmappable,
                problems: vec![format!("no mapping: {err}")],
            }
        }
    };
    let (compact, m) = mapped;
    match check_mapping(e, t, &m, &opts.mapped) {
        Ok(v) => ShapeRun {
            mapping: compact,
            scale: v.scale.describe(),
            verdict: if v.ok() {
                Verdict::Ok
            } else {
                Verdict::Mismatch
            },
            problems: v
                .problems
                .iter()
                .cloned()
                .chain(v.mismatches.iter().map(Mismatch::to_string))
                .collect(),
        },
        Err(err) => ShapeRun {
            mapping: compact,
            scale: "-".into(),
            verdict: Verdict::Mismatch,
            problems: vec![format!("executor: {err}")],
        },
    }
}

fn shape_key(e: &Einsum) -> Einsum {
    Einsum {
        name: String::new(),
        ..e.clone()
    }
}

/// Checks every Einsum and VectorOp of the chosen layers of `graph` on `t`.
pub fn check_accelerator(
    graph: &Graph,
    t: &Template,
    opts: &AccelCheckOptions,
) -> Result<AccelCheck, CheckError> {
    let start = Instant::now();
    let work = lower::lower(graph)?;
    let chosen = selected(graph, &work, &opts.layers)?;
    let mut first_of: HashMap<Einsum, usize> = HashMap::new();
    let mut shapes: Vec<&Einsum> = Vec::new();
    for &i in &chosen {
        for e in work[i].einsums() {
            first_of.entry(shape_key(e)).or_insert_with(|| {
                shapes.push(e);
                shapes.len() - 1
            });
        }
    }
    let runs: Vec<ShapeRun> = shapes.par_iter().map(|e| run_shape(e, t, opts)).collect();
    let gen = DataGen::new(opts.mapped.seed);
    let limit = if opts.vector_limit == 0 {
        DEFAULT_VECTOR_LIMIT
    } else {
        opts.vector_limit
    };
    let mut kernels = Vec::new();
    for &i in &chosen {
        let layer = graph.node(work[i].node).name.clone();
        for k in &work[i].kernels {
            kernels.push(match k {
                Kernel::Einsum(e) => {
                    let s = first_of[&shape_key(e)];
                    let r = &runs[s];
                    KernelCheck {
                        layer: layer.clone(),
                        kernel: e.name.clone(),
                        kind: "einsum",
                        mapping: r.mapping.clone(),
                        scale: r.scale.clone(),
                        verdict: r.verdict.clone(),
                        problems: r.problems.clone(),
                        same_shape_as: (shapes[s].name != e.name).then(|| shapes[s].name.clone()),
                    }
                }
                Kernel::Vector(v) => {
                    let verdict = check_vector(graph, work[i].node, v, &gen, limit);
                    vector_line(&layer, v, t, verdict)
                }
            });
        }
    }
    Ok(AccelCheck {
        network: graph.name.clone(),
        accelerator: t.name.clone(),
        kernels,
        einsum_runs: shapes.len(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn vector_line(
    layer: &str,
    v: &lower::VectorOp,
    t: &Template,
    verdict: Result<VectorVerdict, CheckError>,
) -> KernelCheck {
    let (verdict, problems) = match verdict {
        Ok(VectorVerdict::NotRun { why }) => (Verdict::NotRun, vec![why]),
        Ok(ran) => {
            let p = ran.problems();
            (
                if p.is_empty() {
                    Verdict::Ok
                } else {
                    Verdict::Mismatch
                },
                p,
            )
        }
        Err(err) => (Verdict::Mismatch, vec![format!("vector unit: {err}")]),
    };
    KernelCheck {
        layer: layer.to_string(),
        kernel: v.name.clone(),
        kind: "vector",
        mapping: format!("vector[{}]", t.vector.lanes),
        scale: "full size".into(),
        verdict,
        problems,
        same_shape_as: None,
    }
}
