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
        input_shapes: ins.iter().map(|t| shape_str(&t.shape)).collect::<Vec<_>>().join(" "),
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
    s.push_str(&w.iter().map(|&n| "-".repeat(n)).collect::<Vec<_>>().join("  "));
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
    s.push_str(&table(&["layer", "op", "inputs", "output", "MACs", "params", "out bytes"], &rows));
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
