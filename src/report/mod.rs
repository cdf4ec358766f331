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

/// A count for a table: whole digits up to 10¹⁵, then `1.830e300` (a value that
/// large is a sign of an extreme input, and must not flood the terminal).
pub fn count(x: f64) -> String {
    if x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        format!("{x:.3e}")
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
    if v.abs() >= 1e6 {
        format!("{x:.3e}")
    } else if u.is_empty() {
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
                // Numbers (with or without a unit: "3.512 ms", "115.606 M") align right.
                let number = c
                    .split(' ')
                    .next()
                    .is_some_and(|x| x.parse::<f64>().is_ok());
                if i == 0 || !number {
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

/// A quantity with an SI prefix and its unit, 4 significant digits: `33.56 mJ`, `139.7 ms`,
/// `2.610 µJ`. Tables print these; CSV and JSON keep raw numbers.
pub fn si_unit(x: f64, unit: &str) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x} {unit}");
    }
    const PREFIXES: [(f64, &str); 9] = [
        (1e12, "T"),
        (1e9, "G"),
        (1e6, "M"),
        (1e3, "k"),
        (1.0, ""),
        (1e-3, "m"),
        (1e-6, "µ"),
        (1e-9, "n"),
        (1e-12, "p"),
    ];
    let (scale, p) = PREFIXES
        .iter()
        .copied()
        .find(|&(f, _)| x.abs() >= f * 0.99995)
        .unwrap_or((1e-12, "p"));
    let v = x / scale;
    if v.abs() >= 1e6 {
        return format!("{x:.3e} {unit}");
    }
    let decimals = match v.abs() {
        a if a >= 99.995 => 1,
        a if a >= 9.9995 => 2,
        _ => 3,
    };
    format!("{v:.decimals$} {p}{unit}")
}

/// Energy given in picojoules, as `33.56 mJ`.
pub fn energy(pj: f64) -> String {
    si_unit(pj * 1e-12, "J")
}

/// The longest layer/kernel name a table prints before eliding its middle.
const NAME_WIDTH: usize = 36;

fn elide(s: &str, width: usize) -> String {
    let n = s.chars().count();
    if n <= width {
        return s.to_string();
    }
    let keep = width - 1;
    let head: String = s.chars().take(keep / 2).collect();
    let tail: String = s.chars().skip(n - (keep - keep / 2)).collect();
    format!("{head}…{tail}")
}

/// `coex eval` as a table that fits 120 columns: one row per kernel with cycles, time,
/// energy, utilization and bound, then totals. `accesses` adds the elements moved per
/// level (wide; CSV and JSON always carry them per level and operand). `requested` is
/// the objective the user asked for; models that size for another one say so.
pub fn eval_table(
    n: &crate::cost::NetworkCost,
    levels: &[String],
    accesses: bool,
    requested: crate::cost::Objective,
) -> String {
    let mut header: Vec<String> = [
        "kernel", "prec", "cycles", "time", "energy", "util", "bound",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    if accesses {
        header.extend(levels.iter().map(|l| format!("{l} elems")));
    }
    let clock_s = if n.total.latency_cycles > 0.0 {
        n.total.latency_s / n.total.latency_cycles
    } else {
        0.0
    };
    let rows: Vec<Vec<String>> = n
        .layers
        .iter()
        .map(|l| {
            let mut r = vec![
                elide(&l.kernel, NAME_WIDTH),
                l.precision.to_string(),
                count(l.latency_cycles),
                si_unit(l.latency_cycles * clock_s, "s"),
                energy(l.energy_pj),
                format!("{:.2}", l.utilization),
                l.bound.clone(),
            ];
            if accesses {
                for lv in levels {
                    let words: u64 = l
                        .accesses
                        .iter()
                        .filter(|a| &a.level == lv)
                        .map(|a| a.reads + a.fills + a.updates)
                        .sum();
                    r.push(if l.kind == "einsum" {
                        words.to_string()
                    } else {
                        "-".into()
                    });
                }
            }
            r
        })
        .collect();
    let hdr: Vec<&str> = header.iter().map(String::as_str).collect();
    let name = |o: crate::cost::Objective| format!("{o:?}").to_lowercase();
    let objective = if n.objective == requested {
        name(n.objective)
    } else {
        format!(
            "{}: this model sizes for it, not for {}",
            name(n.objective),
            name(requested)
        )
    };
    let mut s = format!(
        "network {} on {} (objective {objective})\n",
        n.network, n.accelerator
    );
    s.push_str(&table(&hdr, &rows));
    let t = &n.total;
    let area = if t.resources.is_empty() {
        format!("{:.3} mm2", t.area_mm2)
    } else {
        "n/a: see resources".to_string()
    };
    s.push_str(&format!(
        "total: latency {} cycles ({}), energy {}, area {area}\n       {} MACs, utilization {:.3}, DRAM round trips {}\n",
        count(t.latency_cycles),
        si_unit(t.latency_s, "s"),
        energy(t.energy_pj),
        si(t.macs as f64),
        t.utilization,
        t.dram_round_trips,
    ));
    if let Some(line) = resources_line(&t.resources) {
        s.push_str(&line);
    }
    if !n.energy_by_level_pj.is_empty() {
        s.push_str("energy by level: ");
        s.push_str(
            &n.energy_by_level_pj
                .iter()
                .map(|(l, e)| format!("{l} {}", energy(*e)))
                .collect::<Vec<_>>()
                .join(", "),
        );
        s.push('\n');
    }
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
        "precision",
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
            l.precision.to_string(),
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
    // Totals: layer and kernel "total", so a script can pick the row without JSON.
    let t = &n.total;
    let mut r = vec![
        n.network.clone(),
        n.accelerator.clone(),
        "total".into(),
        "total".into(),
        "total".into(),
        String::new(),
        String::new(),
        t.macs.to_string(),
        n.layers
            .iter()
            .map(|l| l.padded_macs)
            .sum::<u64>()
            .to_string(),
        n.layers
            .iter()
            .map(|l| l.compute_cycles)
            .sum::<f64>()
            .to_string(),
        t.latency_cycles.to_string(),
        t.energy_pj.to_string(),
        t.utilization.to_string(),
        String::new(),
    ];
    for (lv, op) in &slots {
        let matching = || {
            n.layers
                .iter()
                .flat_map(|l| &l.accesses)
                .filter(|a| &a.level == lv && &a.operand == op)
        };
        r.push(matching().map(|a| a.reads).sum::<u64>().to_string());
        r.push(matching().map(|a| a.fills).sum::<u64>().to_string());
        r.push(matching().map(|a| a.updates).sum::<u64>().to_string());
    }
    w.write_record(&r)?;
    let bytes = w.into_inner().map_err(|e| e.into_error())?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extreme_values_print_short() {
        assert_eq!(count(8666.0), "8666");
        assert_eq!(count(1.83e303), "1.830e303");
        assert_eq!(si_unit(4.735e-6, "s"), "4.735 µs");
        assert_eq!(si_unit(1e294, "s"), "1.000e294 s");
        assert_eq!(si(1.814e9), "1.814 G");
        assert_eq!(si(2e20), "2.000e20");
    }
}
