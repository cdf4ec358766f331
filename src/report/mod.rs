//! Tidy rows out: per-layer summaries as tables for humans, CSV and JSON for tools.

use crate::lower::{self, LayerWork};
use crate::workload::tensor::shape_str;
use crate::workload::{Graph, WorkloadError};
use serde::Serialize;

/// One row of `coex inspect`.
#[derive(Clone, Debug, Serialize)]
pub struct LayerRow {
    pub name: String,
    pub op: String,
    pub input_shapes: String,
    pub output_shape: String,
    pub dtype: String,
    pub macs: u64,
    pub params: u64,
    pub input_bytes: u64,
    pub output_bytes: u64,
    pub einsums: usize,
    pub vector_ops: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct Totals {
    pub macs: u64,
    pub params: u64,
    pub layers: usize,
    /// Sum of every layer's output tensor (what a layer-by-layer run writes).
    pub activation_bytes: u64,
    pub param_bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Inspection {
    pub network: String,
    pub dtype: String,
    pub total: Totals,
    pub layers: Vec<LayerRow>,
}

/// Summarizes a network: per-layer shapes, MACs (from the lowered Einsums) and params.
pub fn inspect(graph: &Graph) -> Result<Inspection, WorkloadError> {
    let work = lower::lower(graph)?;
    let layers: Vec<LayerRow> = work.iter().map(|w| layer_row(graph, w)).collect();
    // Inputs and stored constants do no work and are not activations.
    let compute: Vec<&LayerRow> = layers
        .iter()
        .filter(|l| l.op != "input" && l.op != "constant")
        .collect();
    let params: u64 = layers.iter().map(|l| l.params).sum();
    Ok(Inspection {
        network: graph.name.clone(),
        dtype: graph.dtype.name().into(),
        total: Totals {
            macs: layers.iter().map(|l| l.macs).sum(),
            params,
            layers: compute.len(),
            activation_bytes: compute.iter().map(|l| l.output_bytes).sum(),
            param_bytes: params * graph.dtype.bytes(),
        },
        layers,
    })
}

fn layer_row(graph: &Graph, w: &LayerWork) -> LayerRow {
    let node = graph.node(w.node);
    let ins = graph.input_tensors(w.node);
    LayerRow {
        name: node.name.clone(),
        op: node.op.kind_name().into(),
        input_shapes: ins
            .iter()
            .map(|t| shape_str(&t.shape))
            .collect::<Vec<_>>()
            .join(" "),
        output_shape: shape_str(&node.output.shape),
        dtype: node.output.dtype.name().into(),
        macs: w.macs(),
        params: node.op.params(&ins),
        input_bytes: ins.iter().map(|t| t.bytes()).sum(),
        output_bytes: node.output.bytes(),
        einsums: w.einsums().count(),
        vector_ops: w.kernels.len() - w.einsums().count(),
    }
}

/// `1.81e9` → "1.814 G".
pub fn si(x: f64) -> String {
    let (v, u) = match x.abs() {
        a if a >= 1e12 => (x / 1e12, "T"),
        a if a >= 1e9 => (x / 1e9, "G"),
        a if a >= 1e6 => (x / 1e6, "M"),
        a if a >= 1e3 => (x / 1e3, "k"),
        _ => (x, ""),
    };
    if u.is_empty() {
        format!("{v}")
    } else {
        format!("{v:.3} {u}")
    }
}

/// A plain left/right-aligned text table.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| -> String {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = w[i] - c.chars().count();
                if i == 0 || c.parse::<f64>().is_err() && !c.ends_with(['k', 'M', 'G', 'T']) {
                    format!("{c}{}", " ".repeat(pad))
                } else {
                    format!("{}{c}", " ".repeat(pad))
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut s = line(header.iter().map(|h| h.to_string()).collect());
    s.push('\n');
    s.push_str(
        &w.iter()
            .map(|&n| "-".repeat(n))
            .collect::<Vec<_>>()
            .join("  "),
    );
    s.push('\n');
    for r in rows {
        s.push_str(&line(r.clone()));
        s.push('\n');
    }
    s
}

pub fn inspection_table(ins: &Inspection) -> String {
    let rows: Vec<Vec<String>> = ins
        .layers
        .iter()
        .map(|l| {
            vec![
                l.name.clone(),
                l.op.clone(),
                l.input_shapes.clone(),
                l.output_shape.clone(),
                si(l.macs as f64),
                si(l.params as f64),
                si(l.output_bytes as f64),
            ]
        })
        .collect();
    let mut s = format!("network {} ({})\n", ins.network, ins.dtype);
    s.push_str(&table(
        &[
            "layer",
            "op",
            "inputs",
            "output",
            "MACs",
            "params",
            "out bytes",
        ],
        &rows,
    ));
    s.push_str(&format!(
        "total: {} layers, {} MACs ({}), {} params ({}), {} activation bytes\n",
        ins.total.layers,
        si(ins.total.macs as f64),
        ins.total.macs,
        si(ins.total.params as f64),
        ins.total.params,
        si(ins.total.activation_bytes as f64),
    ));
    s
}

pub fn inspection_csv(ins: &Inspection) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for l in &ins.layers {
        w.serialize(l)?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// `coex eval` as a table: one row per kernel, words moved per level, then totals.
pub fn eval_table(n: &crate::cost::NetworkCost, levels: &[String]) -> String {
    let mut header: Vec<String> = [
        "layer",
        "kernel",
        "mapping",
        "latency_cycles",
        "energy_pj",
        "util",
        "bound",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    header.extend(levels.iter().map(|l| format!("{l} words")));
    let rows: Vec<Vec<String>> = n
        .layers
        .iter()
        .map(|l| {
            let mut r = vec![
                l.layer.clone(),
                l.kernel
                    .strip_prefix(&l.layer)
                    .unwrap_or(&l.kernel)
                    .trim_start_matches('.')
                    .to_string(),
                l.mapping.clone(),
                si(l.latency_cycles),
                si(l.energy_pj),
                format!("{:.2}", l.utilization),
                l.bound.clone(),
            ];
            for lv in levels {
                let words: u64 = l
                    .accesses
                    .iter()
                    .filter(|a| &a.level == lv)
                    .map(|a| a.reads + a.fills + a.updates)
                    .sum();
                r.push(if l.kind == "einsum" {
                    si(words as f64)
                } else {
                    "-".into()
                });
            }
            r
        })
        .collect();
    let hdr: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut s = format!(
        "network {} on {} (objective {:?})\n",
        n.network, n.accelerator, n.objective
    );
    s.push_str(&table(&hdr, &rows));
    let t = &n.total;
    s.push_str(&format!(
        "total: latency {} cycles ({:.4} ms), energy {} pJ ({:.4} mJ), area {:.3} mm2, {} MACs, utilization {:.3}, DRAM round trips {}\n",
        si(t.latency_cycles),
        t.latency_s * 1e3,
        si(t.energy_pj),
        t.energy_pj * 1e-9,
        t.area_mm2,
        si(t.macs as f64),
        t.utilization,
        t.dram_round_trips,
    ));
    if let Some(line) = resources_line(&t.resources) {
        s.push_str(&line);
    }
    s.push_str("energy by level: ");
    s.push_str(
        &n.energy_by_level_pj
            .iter()
            .map(|(l, e)| format!("{l} {}pJ", si(*e)))
            .collect::<Vec<_>>()
            .join(", "),
    );
    s.push('\n');
    s
}

/// "resources: DSP 1,792/2,520 (71.1%), …" from `<R>.used` / `<R>.available` pairs;
/// `None` when the result has no resources (ASIC).
pub fn resources_line(r: &[(String, f64)]) -> Option<String> {
    let parts: Vec<String> = r
        .iter()
        .filter_map(|(k, used)| {
            let name = k.strip_suffix(".used")?;
            let avail = r
                .iter()
                .find(|(k2, _)| k2.strip_suffix(".available") == Some(name))
                .map(|(_, a)| *a)?;
            if avail == 0.0 && *used == 0.0 {
                return None; // a resource the device does not have (URAM on 7-series)
            }
            let pct = if avail > 0.0 {
                format!(" ({:.1}%)", used / avail * 100.0)
            } else {
                String::new()
            };
            Some(format!(
                "{name} {}/{}{pct}",
                crate::cost::fpga::thousands(*used),
                crate::cost::fpga::thousands(avail)
            ))
        })
        .collect();
    (!parts.is_empty()).then(|| format!("resources: {}\n", parts.join(", ")))
}

/// Level names that appear in a result's accesses, in first-seen order.
pub fn access_levels(n: &crate::cost::NetworkCost) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    for l in &n.layers {
        for a in &l.accesses {
            if !v.contains(&a.level) {
                v.push(a.level.clone());
            }
        }
    }
    v
}

/// `coex eval` as tidy CSV: one row per kernel, accesses flattened to
/// `<level>.<operand>.<reads|fills|updates>` columns (the same columns for every row).
pub fn eval_csv(n: &crate::cost::NetworkCost) -> Result<String, csv::Error> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<String> = [
        "network",
        "accelerator",
        "layer",
        "kernel",
        "kind",
        "mapping",
        "macs",
        "padded_macs",
        "compute_cycles",
        "latency_cycles",
        "energy_pj",
        "utilization",
        "bound",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut slots: Vec<(String, String)> = Vec::new();
    for l in &n.layers {
        for a in &l.accesses {
            let key = (a.level.clone(), a.operand.clone());
            if !slots.contains(&key) {
                slots.push(key);
            }
        }
    }
    for (lv, op) in &slots {
        for what in ["reads", "fills", "updates"] {
            header.push(format!("{lv}.{op}.{what}"));
        }
    }
    w.write_record(&header)?;
    for l in &n.layers {
        let mut r = vec![
            n.network.clone(),
            n.accelerator.clone(),
            l.layer.clone(),
            l.kernel.clone(),
            l.kind.to_string(),
            l.mapping.clone(),
            l.macs.to_string(),
            l.padded_macs.to_string(),
            l.compute_cycles.to_string(),
            l.latency_cycles.to_string(),
            l.energy_pj.to_string(),
            l.utilization.to_string(),
            l.bound.clone(),
        ];
        for (lv, op) in &slots {
            let a = l
                .accesses
                .iter()
                .find(|a| &a.level == lv && &a.operand == op);
            for v in [a.map(|a| a.reads), a.map(|a| a.fills), a.map(|a| a.updates)] {
                r.push(v.unwrap_or(0).to_string());
            }
        }
        w.write_record(&r)?;
    }
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}
