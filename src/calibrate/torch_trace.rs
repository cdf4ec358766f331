//! PyTorch profiler traces as measurements (`--from torch-trace`).
//!
//! Input: the Chrome trace-event JSON that `torch.profiler.profile(activities=[CPU,
//! CUDA], record_shapes=True)` writes with `prof.export_chrome_trace(path)`
//! (PyTorch ≥ 1.8; `Concrete Inputs` for strides and paddings since 2.1). Each
//! `cpu_op` event carries its operator name, `Input Dims`, `Input type` and an
//! `External id`; each GPU `kernel` event carries the `External id` of the innermost
//! operator that launched it and its duration in µs.
//!
//! One call's time is the sum of its kernels' durations: GPU time, without the host
//! (a measurement in graph mode). Calls of one op spec become one row: the median,
//! `repeats` = the number of calls, `std` = their sample standard deviation.
//!
//! Operators read (the innermost ones that launch kernels): `aten::mm`, `aten::addmm`
//! (`gemm`); `aten::bmm`, `aten::baddbmm` (`bmm`); `aten::cudnn_convolution`,
//! `aten::convolution`, `aten::_convolution`, `aten::_conv_depthwise2d` (`conv2d`);
//! `aten::_scaled_dot_product_{flash,efficient,cudnn}_attention` (`attention`). Other
//! operators that launch kernels (element-wise, copies, reductions), and calls whose
//! shapes or kernel times cannot be a row, are listed as skipped, one entry per
//! operator and reason; a skipped entry's `line` is the first such event's position
//! in `traceEvents` (1-based), as JSON has no rows.

use super::measure::{Measurement, Metric, Skipped, Target};
use super::CalibrateError;
use crate::arch::gpu::Mode;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// One operator call: its event position, name, shapes, dtypes and concrete inputs.
struct Call<'a> {
    event: usize,
    name: &'a str,
    /// Each input's shape; `Err` holds the raw value when it is not a list of
    /// non-negative integers.
    dims: Vec<Result<Vec<u64>, String>>,
    types: Vec<&'a str>,
    concrete: Vec<&'a str>,
}

/// Reads a trace into tidy rows (one per op spec) and the operators it skipped.
pub fn import(path: &Path) -> Result<(Vec<Measurement>, Vec<Skipped>), CalibrateError> {
    let file_err = |message: String| CalibrateError::File {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_err(format!("cannot read: {e}")))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| {
        file_err(format!(
            "not JSON ({e}); expected a PyTorch profiler trace (prof.export_chrome_trace)"
        ))
    })?;
    let events = json
        .get("traceEvents")
        .or(Some(&json))
        .and_then(Value::as_array)
        .ok_or_else(|| file_err("no 'traceEvents' array: is this a PyTorch profiler trace (prof.export_chrome_trace)?".into()))?;
    let device = json
        .pointer("/deviceProperties/0/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();

    // GPU time per External id; a kernel with a duration that is not a positive
    // finite number of µs spoils its call, which is then left out.
    let mut gpu_us: BTreeMap<i64, f64> = BTreeMap::new();
    let mut bad_kernel: BTreeMap<i64, (usize, String)> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        if category(e) == "kernel" {
            let Some(id) = external_id(e) else { continue };
            match e.get("dur").and_then(Value::as_f64) {
                Some(dur) if dur.is_finite() && dur > 0.0 => {
                    *gpu_us.entry(id).or_default() += dur;
                }
                _ => {
                    let dur = e.get("dur").map_or("none".into(), |d| d.to_string());
                    bad_kernel.entry(id).or_insert((i + 1, dur));
                }
            }
        }
    }
    if gpu_us.is_empty() {
        return Err(file_err(
            "no GPU kernel events with an 'External id': profile with activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]".into(),
        ));
    }

    let mut by_spec: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut first_line: BTreeMap<String, u64> = BTreeMap::new();
    // (operator, reason) → (first event, calls).
    let mut skipped: BTreeMap<(String, String), (u64, usize)> = BTreeMap::new();
    let mut skip = |name: &str, event: usize, why: String| {
        let name = if name.is_empty() {
            "(unnamed op)"
        } else {
            name
        };
        let s = skipped
            .entry((name.to_string(), why))
            .or_insert((event as u64, 0));
        s.1 += 1;
    };
    let (mut matched, mut any_shapes) = (false, false);
    let mut seen_ids = std::collections::BTreeSet::new();
    for (i, e) in events.iter().enumerate() {
        if category(e) != "cpu_op" {
            continue;
        }
        let Some(id) = external_id(e) else { continue };
        let name = e.get("name").and_then(Value::as_str).unwrap_or("");
        if let Some((k, dur)) = bad_kernel.get(&id) {
            skip(
                name,
                i + 1,
                format!("its kernel (event {k}) has duration {dur} µs, not > 0"),
            );
            continue;
        }
        let Some(&us) = gpu_us.get(&id) else { continue };
        matched = true;
        if !seen_ids.insert(id) {
            skip(name, i + 1, format!("External id {id} is shared with an earlier operator event; its kernels are counted once"));
            continue;
        }
        if !us.is_finite() {
            skip(
                name,
                i + 1,
                "its kernels' durations sum past the largest number".into(),
            );
            continue;
        }
        let call = read_call(i + 1, e);
        any_shapes |= !call.dims.is_empty();
        match op_spec(&call).and_then(|spec| {
            crate::workload::spec::single_op_graph(&spec)
                .map(|_| spec)
                .map_err(|e| format!("coex cannot model the call: {e}"))
        }) {
            Ok(spec) => {
                first_line.entry(spec.clone()).or_insert(call.event as u64);
                by_spec.entry(spec).or_default().push(us);
            }
            Err(why) => skip(call.name, call.event, why),
        }
    }
    if !matched && bad_kernel.is_empty() {
        return Err(file_err(
            "no operator event shares an 'External id' with a GPU kernel event; export the trace from one torch.profiler session with CPU and CUDA activities".into(),
        ));
    }
    if !any_shapes && skipped.is_empty() {
        return Err(file_err(
            "the operator events have no 'Input Dims': profile with record_shapes=True".into(),
        ));
    }
    let rows = by_spec
        .into_iter()
        .map(|(spec, mut v)| {
            let n = v.len();
            v.sort_by(f64::total_cmp);
            let median = if n % 2 == 1 {
                v[n / 2]
            } else {
                (v[n / 2 - 1] + v[n / 2]) / 2.0
            };
            let mean = v.iter().sum::<f64>() / n as f64;
            let std = (n > 1).then(|| {
                (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
            });
            Measurement {
                line: first_line[&spec],
                group: super::measure::op_kind(&spec),
                target: Target::Op(spec),
                metric: Metric::LatencyUs,
                value: median,
                repeats: Some(n as u64),
                std,
                mode: Some(Mode::Graph),
                device: device.clone(),
                source: "PyTorch profiler trace (sum of the op's GPU kernel times)".into(),
            }
        })
        .collect::<Vec<_>>();
    let mut skipped: Vec<Skipped> = skipped
        .into_iter()
        .map(|((name, why), (line, count))| Skipped {
            line,
            why: format!(
                "{name} ({count} call{}): {why}",
                if count == 1 { "" } else { "s" }
            ),
        })
        .collect();
    skipped.sort_by_key(|s| s.line);
    if rows.is_empty() {
        let why: Vec<String> = skipped
            .iter()
            .take(8)
            .map(|s| format!("  event {}: {}", s.line, s.why))
            .collect();
        return Err(file_err(format!(
            "no call in the trace maps to a coex op (GEMM, bmm, conv, SDPA); left out:\n{}",
            why.join("\n")
        )));
    }
    Ok((rows, skipped))
}

/// The event's category, lower-cased (`cpu_op`, `kernel`; PyTorch 1.x wrote
/// `Operator` and `Kernel`).
fn category(e: &Value) -> String {
    let c = e.get("cat").and_then(Value::as_str).unwrap_or("");
    match c.to_ascii_lowercase().as_str() {
        "operator" => "cpu_op".into(),
        other => other.into(),
    }
}

fn external_id(e: &Value) -> Option<i64> {
    e.pointer("/args/External id").and_then(Value::as_i64)
}

fn read_call(event: usize, e: &Value) -> Call<'_> {
    let arr = |key: &str| {
        e.pointer(&format!("/args/{key}"))
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    };
    Call {
        event,
        name: e.get("name").and_then(Value::as_str).unwrap_or(""),
        dims: arr("Input Dims")
            .iter()
            .map(|d| {
                let a = d.as_array().ok_or_else(|| d.to_string())?;
                a.iter()
                    .map(Value::as_u64)
                    .collect::<Option<Vec<u64>>>()
                    .ok_or_else(|| d.to_string())
            })
            .collect(),
        types: arr("Input type")
            .iter()
            .map(|t| t.as_str().unwrap_or(""))
            .collect(),
        concrete: arr("Concrete Inputs")
            .iter()
            .map(|t| t.as_str().unwrap_or(""))
            .collect(),
    }
}

/// coex's name for a PyTorch scalar type.
fn dtype(torch: &str) -> Result<&'static str, String> {
    Ok(match torch {
        "c10::Half" | "Half" => "fp16",
        "c10::BFloat16" | "BFloat16" => "bf16",
        "float" | "Float" => "fp32",
        "signed char" | "c10::qint8" | "Char" => "int8",
        other => return Err(format!("input type '{other}' has no coex dtype")),
    })
}

/// The one-line op spec of a call, or why there is none.
fn op_spec(c: &Call) -> Result<String, String> {
    let shape = |i: usize, rank: usize| -> Result<&[u64], String> {
        match c.dims.get(i) {
            Some(Ok(d)) if d.len() == rank => Ok(d),
            Some(Ok(d)) => Err(format!("input {i} has shape {d:?}, expected rank {rank}")),
            Some(Err(raw)) => Err(format!(
                "input {i} has shape {raw}, not a list of non-negative integers"
            )),
            None => Err(format!("input {i} has no shape (record_shapes=True?)")),
        }
    };
    let agree = |what: &str, a: u64, b: u64| -> Result<(), String> {
        if a == b {
            Ok(())
        } else {
            Err(format!(
                "inconsistent shapes: {what} is {a} in one input and {b} in another"
            ))
        }
    };
    let ty = |i: usize| dtype(c.types.get(i).copied().unwrap_or(""));
    let ints = |i: usize| -> Result<Vec<u64>, String> {
        let s = c.concrete.get(i).copied().unwrap_or("");
        let v: Result<Vec<u64>, _> = s
            .trim_matches(|ch| ch == '[' || ch == ']')
            .split(',')
            .map(|x| x.trim().parse::<u64>())
            .collect();
        v.map_err(|_| {
            format!("concrete input {i} is '{s}', not integers (PyTorch >= 2.1 records them)")
        })
    };
    let same = |v: Vec<u64>, what: &str| -> Result<u64, String> {
        match v.as_slice() {
            [a] => Ok(*a),
            [a, b] if a == b => Ok(*a),
            _ => Err(format!(
                "{what} {v:?} differs per axis; coex specs take one value"
            )),
        }
    };
    match c.name {
        "aten::mm" | "aten::addmm" => {
            let o = usize::from(c.name == "aten::addmm");
            let (a, b) = (shape(o, 2)?, shape(o + 1, 2)?);
            agree("K", a[1], b[0])?;
            Ok(format!(
                "gemm m={} n={} k={} dtype={}",
                a[0],
                b[1],
                a[1],
                ty(o)?
            ))
        }
        "aten::bmm" | "aten::baddbmm" => {
            let o = usize::from(c.name == "aten::baddbmm");
            let (a, b) = (shape(o, 3)?, shape(o + 1, 3)?);
            agree("the batch", a[0], b[0])?;
            agree("K", a[2], b[1])?;
            Ok(format!(
                "bmm b={} m={} n={} k={} dtype={}",
                a[0],
                a[1],
                b[2],
                a[2],
                ty(o)?
            ))
        }
        "aten::cudnn_convolution"
        | "aten::convolution"
        | "aten::_convolution"
        | "aten::_conv_depthwise2d" => {
            let (x, w) = (shape(0, 4)?, shape(1, 4)?);
            // (padding, stride, dilation, groups) positions in each signature.
            let (stride, pad, dilation, groups) = match c.name {
                "aten::cudnn_convolution" => {
                    (ints(3)?, ints(2)?, ints(4)?, same(ints(5)?, "groups")?)
                }
                "aten::_conv_depthwise2d" => (ints(4)?, ints(5)?, ints(6)?, x[1]),
                _ => {
                    if c.concrete.get(6).map(|s| s.trim()) == Some("True") {
                        return Err("transposed convolution".into());
                    }
                    (ints(3)?, ints(4)?, ints(5)?, same(ints(8)?, "groups")?)
                }
            };
            if groups == 0 || x[1] != w[1] * groups || w[0] % groups != 0 {
                return Err(format!(
                    "inconsistent shapes: input channels {}, weight {:?}, groups {groups}",
                    x[1], w
                ));
            }
            Ok(format!(
                "conv2d n={} c={} h={} w={} k={} r={} s={} stride={} pad={} dilation={} groups={groups} dtype={}",
                x[0],
                x[1],
                x[2],
                x[3],
                w[0],
                w[2],
                w[3],
                same(stride, "stride")?,
                same(pad, "padding")?,
                same(dilation, "dilation")?,
                ty(0)?
            ))
        }
        "aten::_scaled_dot_product_flash_attention"
        | "aten::_scaled_dot_product_efficient_attention"
        | "aten::_scaled_dot_product_cudnn_attention" => {
            let (q, k, v) = (shape(0, 4)?, shape(1, 4)?, shape(2, 4)?);
            agree("the batch", q[0], k[0])?;
            agree("the head width", q[3], k[3])?;
            agree("the K/V length", k[2], v[2])?;
            agree("the K/V heads", k[1], v[1])?;
            if k[1] == 0 || q[1] % k[1] != 0 {
                return Err(format!(
                    "inconsistent shapes: {} query heads over {} K/V heads",
                    q[1], k[1]
                ));
            }
            let causal_at = if c.name.ends_with("flash_attention") {
                4
            } else {
                6
            };
            let causal = match c.concrete.get(causal_at).map(|s| s.trim()) {
                Some("True") => true,
                Some("False") => false,
                _ => {
                    return Err(format!(
                        "is_causal (concrete input {causal_at}) not recorded"
                    ))
                }
            };
            let kv_len = if k[2] == q[2] {
                String::new()
            } else {
                format!(" kv_len={}", k[2])
            };
            Ok(format!(
                "attention b={} heads={} kv_heads={} seq={}{kv_len} head_dim={} causal={causal} dtype={}",
                q[0],
                q[1],
                k[1],
                q[2],
                q[3],
                ty(0)?
            ))
        }
        _ => Err("no coex op spec for this operator".into()),
    }
}
