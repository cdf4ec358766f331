//! Reading FPGA files: raw TOML (unknown keys refused, with line numbers) →
//! `--set` overrides → checks that name the file and the key.

use super::*;
use crate::arch::ArchError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;
use toml::{Table, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    accelerator: RawAccel,
    device: RawDevice,
    engine: RawEngine,
    precision: BTreeMap<String, RawPrecision>,
    energy: RawEnergy,
    #[serde(default)]
    space: Table,
}

use crate::arch::Header as RawAccel;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDevice {
    part: String,
    dsp: f64,
    bram36: f64,
    #[serde(default)]
    uram: f64,
    lut: f64,
    ff: f64,
    clock_mhz: f64,
    offchip_gbps: f64,
    offchip_efficiency: f64,
    static_power_w: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    style: String,
    precision: String,
    vector_lanes: i64,
    lut_per_vector_lane: f64,
    ff_per_vector_lane: f64,
    lut_base: f64,
    ff_base: f64,
    #[serde(default = "one")]
    max_utilization: f64,
    // tiled
    tm: Option<i64>,
    tn: Option<i64>,
    input_buffer_depth: Option<i64>,
    weight_buffer_depth: Option<i64>,
    output_buffer_depth: Option<i64>,
    // dataflow
    folding: Option<String>,
    weight_memory: Option<String>,
    lut_per_stage: Option<f64>,
    ff_per_stage: Option<f64>,
    ilp_time_limit_s: Option<f64>,
}

fn one() -> f64 {
    1.0
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrecision {
    bits: i64,
    acc_bits: i64,
    macs_per_dsp: f64,
    lut_per_mac: f64,
    ff_per_mac: f64,
    mac_energy_pj: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnergy {
    dram_pj_per_byte: f64,
    vector_pj_per_op: f64,
}

/// Parses an FPGA file's text; `path` names it in errors.
pub fn load_str(
    text: &str,
    path: &Path,
    overrides: &[(String, String)],
) -> Result<Fpga, ArchError> {
    let parse_err = |message: String| ArchError::Parse {
        path: path.to_path_buf(),
        message,
    };
    let mut table: Table =
        toml::from_str(text).map_err(|e| parse_err(format!("malformed TOML: {e}")))?;
    // Structure first, on the text: serde's errors then carry line numbers.
    toml::from_str::<RawFile>(text)
        .map_err(|e| parse_err(crate::arch::file::with_line(text, &e.to_string())))?;
    for (key, value) in overrides {
        let v = crate::workload::params::parse_literal(value)
            .unwrap_or_else(|| Value::String(value.clone()));
        crate::arch::apply_override(&mut table, key, v)
            .map_err(|message| key_err(path, key, message))?;
    }
    let raw: RawFile = table
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| parse_err(format!("{e}")))?;
    let space = crate::arch::file::resolve_space(&table, &raw.space, path)?;
    build(raw, path, space)
}

fn key_err(path: &Path, key: impl Into<String>, message: impl Into<String>) -> ArchError {
    ArchError::Key {
        path: path.to_path_buf(),
        key: key.into(),
        message: message.into(),
    }
}

/// `v` must be finite and > 0 (or ≥ 0 with `zero_ok`).
fn check(path: &Path, key: &str, v: f64, zero_ok: bool) -> Result<f64, ArchError> {
    let ok = v.is_finite() && (v > 0.0 || zero_ok && v == 0.0);
    if !ok {
        let want = if zero_ok { "≥ 0" } else { "> 0" };
        return Err(key_err(path, key, format!("must be {want}, got {v}")));
    }
    Ok(v)
}

/// A whole count ≥ 1.
fn count(path: &Path, key: &str, v: i64) -> Result<u64, ArchError> {
    if v < 1 {
        return Err(key_err(
            path,
            key,
            format!("must be an integer ≥ 1, got {v}"),
        ));
    }
    Ok(v as u64)
}

/// A key only one engine style has: present, or an error that says which style needs it.
fn need<T>(path: &Path, key: &str, v: Option<T>, style: &str) -> Result<T, ArchError> {
    v.ok_or_else(|| key_err(path, key, format!("the {style} engine needs this key")))
}

fn build(raw: RawFile, path: &Path, space: Vec<SpaceParam>) -> Result<Fpga, ArchError> {
    if raw.accelerator.kind != "fpga" {
        return Err(key_err(
            path,
            "accelerator.kind",
            "an FPGA file has kind = \"fpga\"",
        ));
    }
    let d = &raw.device;
    let device = Device {
        part: d.part.clone(),
        resources: Resources {
            dsp: check(path, "device.dsp", d.dsp, false)?,
            bram36: check(path, "device.bram36", d.bram36, true)?,
            uram: check(path, "device.uram", d.uram, true)?,
            lut: check(path, "device.lut", d.lut, false)?,
            ff: check(path, "device.ff", d.ff, false)?,
        },
        clock_mhz: check(path, "device.clock_mhz", d.clock_mhz, false)?,
        offchip_gbps: check(path, "device.offchip_gbps", d.offchip_gbps, false)?,
        offchip_efficiency: check(
            path,
            "device.offchip_efficiency",
            d.offchip_efficiency,
            false,
        )?,
        static_power_w: check(path, "device.static_power_w", d.static_power_w, true)?,
    };
    if device.offchip_efficiency > 1.0 {
        return Err(key_err(
            path,
            "device.offchip_efficiency",
            "a fraction of the peak: at most 1",
        ));
    }
    let e = &raw.engine;
    let precision = build_precision(&raw.precision, &e.precision, path)?;
    let max_util = check(path, "engine.max_utilization", e.max_utilization, false)?;
    if max_util > 1.0 {
        return Err(key_err(
            path,
            "engine.max_utilization",
            "a fraction of the device: at most 1",
        ));
    }
    let common = Common {
        vector_lanes: count(path, "engine.vector_lanes", e.vector_lanes)?,
        lut_per_vector_lane: check(
            path,
            "engine.lut_per_vector_lane",
            e.lut_per_vector_lane,
            true,
        )?,
        ff_per_vector_lane: check(
            path,
            "engine.ff_per_vector_lane",
            e.ff_per_vector_lane,
            true,
        )?,
        lut_base: check(path, "engine.lut_base", e.lut_base, true)?,
        ff_base: check(path, "engine.ff_base", e.ff_base, true)?,
        max_utilization: max_util,
        dram_pj_per_byte: check(
            path,
            "energy.dram_pj_per_byte",
            raw.energy.dram_pj_per_byte,
            true,
        )?,
        vector_pj_per_op: check(
            path,
            "energy.vector_pj_per_op",
            raw.energy.vector_pj_per_op,
            true,
        )?,
    };
    let engine = match e.style.as_str() {
        "tiled" => Engine::Tiled(build_tiled(e, path)?),
        "dataflow" => Engine::Dataflow(build_dataflow(e, path, &device)?),
        s => {
            return Err(key_err(
                path,
                "engine.style",
                format!("'{s}' is not tiled or dataflow"),
            ))
        }
    };
    Ok(Fpga {
        name: raw.accelerator.name,
        about: raw.accelerator.about,
        sources: raw.accelerator.sources,
        path: path.to_path_buf(),
        device,
        common,
        engine,
        precision,
        space,
    })
}

fn build_precision(
    table: &BTreeMap<String, RawPrecision>,
    name: &str,
    path: &Path,
) -> Result<Precision, ArchError> {
    let p = table.get(name).ok_or_else(|| {
        let known: Vec<&str> = table.keys().map(String::as_str).collect();
        key_err(
            path,
            "engine.precision",
            format!(
                "no [precision.{name}] table in the file (it has: {})",
                known.join(", ")
            ),
        )
    })?;
    let k = |f: &str| format!("precision.{name}.{f}");
    Ok(Precision {
        name: name.to_string(),
        bits: count(path, &k("bits"), p.bits)? as u32,
        acc_bits: count(path, &k("acc_bits"), p.acc_bits)? as u32,
        macs_per_dsp: check(path, &k("macs_per_dsp"), p.macs_per_dsp, false)?,
        lut_per_mac: check(path, &k("lut_per_mac"), p.lut_per_mac, true)?,
        ff_per_mac: check(path, &k("ff_per_mac"), p.ff_per_mac, true)?,
        mac_energy_pj: check(path, &k("mac_energy_pj"), p.mac_energy_pj, true)?,
    })
}

fn build_tiled(e: &RawEngine, path: &Path) -> Result<Tiled, ArchError> {
    let get = |key: &str, v: Option<i64>| -> Result<u64, ArchError> {
        let full = format!("engine.{key}");
        count(path, &full, need(path, &full, v, "tiled")?)
    };
    Ok(Tiled {
        tm: get("tm", e.tm)?,
        tn: get("tn", e.tn)?,
        input_buffer_depth: get("input_buffer_depth", e.input_buffer_depth)?,
        weight_buffer_depth: get("weight_buffer_depth", e.weight_buffer_depth)?,
        output_buffer_depth: get("output_buffer_depth", e.output_buffer_depth)?,
    })
}

fn build_dataflow(e: &RawEngine, path: &Path, device: &Device) -> Result<Dataflow, ArchError> {
    let folding = match need(path, "engine.folding", e.folding.as_deref(), "dataflow")? {
        "ilp" => Folding::Ilp,
        "greedy" => Folding::Greedy,
        f => {
            return Err(key_err(
                path,
                "engine.folding",
                format!("'{f}' is not ilp or greedy"),
            ))
        }
    };
    let weight_memory = match e.weight_memory.as_deref().unwrap_or("auto") {
        "auto" => WeightMemory::Auto,
        "bram" => WeightMemory::Bram,
        "uram" if device.resources.uram > 0.0 => WeightMemory::Uram,
        "uram" => {
            return Err(key_err(
                path,
                "engine.weight_memory",
                format!(
                    "'{}' has no UltraRAM (device.uram = 0); use bram or auto",
                    device.part
                ),
            ))
        }
        m => {
            return Err(key_err(
                path,
                "engine.weight_memory",
                format!("'{m}' is not auto, bram or uram"),
            ))
        }
    };
    let f = |key: &str, v: Option<f64>| -> Result<f64, ArchError> {
        let full = format!("engine.{key}");
        check(path, &full, need(path, &full, v, "dataflow")?, true)
    };
    Ok(Dataflow {
        folding,
        weight_memory,
        lut_per_stage: f("lut_per_stage", e.lut_per_stage)?,
        ff_per_stage: f("ff_per_stage", e.ff_per_stage)?,
        ilp_time_limit_s: {
            let v = check(
                path,
                "engine.ilp_time_limit_s",
                e.ilp_time_limit_s.unwrap_or(10.0),
                false,
            )?;
            // A solver time limit beyond a day is a typo (and overflows a Duration).
            if v > 86_400.0 {
                return Err(key_err(
                    path,
                    "engine.ilp_time_limit_s",
                    format!("must be in (0, 86400] seconds, got {v}"),
                ));
            }
            v
        },
    })
}
