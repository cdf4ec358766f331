//! Reading template files: raw TOML → overrides → defaults from the tech table → checks.

use super::tech::Tech;
use super::*;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    accelerator: RawAccel,
    level: Vec<RawLevel>,
    array: RawArray,
    #[serde(default)]
    mac: RawMac,
    #[serde(default)]
    vector: RawVector,
    #[serde(default)]
    space: Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccel {
    name: String,
    kind: String,
    #[serde(default)]
    about: String,
    #[serde(default)]
    sources: Vec<String>,
    clock_mhz: f64,
    word_bits: u32,
    tech: String,
    #[serde(default)]
    static_power_mw: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLevel {
    name: String,
    kind: String,
    #[serde(default)]
    about: String,
    size_bytes: Option<f64>,
    size_kib: Option<f64>,
    size_words: Option<f64>,
    word_bits: Option<i64>,
    #[serde(default)]
    per_pe: bool,
    keeps: Option<Vec<String>>,
    bypassable: Option<Vec<String>>,
    dims: Option<Vec<String>>,
    order: Option<Vec<String>>,
    inner: Option<Vec<String>>,
    factors: Option<std::collections::BTreeMap<String, i64>>,
    read_energy_pj: Option<f64>,
    write_energy_pj: Option<f64>,
    update_energy_pj: Option<f64>,
    bandwidth_bytes_per_cycle: Option<f64>,
    read_bandwidth_bytes_per_cycle: Option<f64>,
    write_bandwidth_bytes_per_cycle: Option<f64>,
    #[serde(default)]
    double_buffered: bool,
    area_um2: Option<f64>,
    #[serde(default)]
    leakage_pj_per_cycle: f64,
    energy_scale: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpatial {
    rows: Vec<String>,
    cols: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArray {
    rows: i64,
    cols: i64,
    spatial: RawSpatial,
    dataflow: Option<String>,
    #[serde(default = "yes")]
    multicast: bool,
    #[serde(default = "yes")]
    spatial_reduction: bool,
    efficiency: Option<f64>,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMac {
    /// Energy of one MAC at the template's `word_bits`; other precisions scale with it.
    energy_pj: Option<f64>,
    area_um2: Option<f64>,
    precisions: Option<Vec<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawVector {
    lanes: Option<i64>,
    fuse_elementwise: Option<bool>,
    energy_pj_per_op: Option<f64>,
    area_um2: Option<f64>,
}

/// Einsum dimension names a template may unroll (see `lower`).
pub const DIM_NAMES: [&str; 9] = ["N", "G", "H", "K", "C", "P", "Q", "R", "S"];

/// Loads a template, applying `key=value` overrides (as `--set` gives them) first.
pub fn load(path: &Path, overrides: &[(String, String)]) -> Result<Template, ArchError> {
    let text = std::fs::read_to_string(path).map_err(|source| ArchError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load_str(&text, path, overrides)
}

/// Parses template text; `path` names the file in errors and locates `tech/`.
pub fn load_str(
    text: &str,
    path: &Path,
    overrides: &[(String, String)],
) -> Result<Template, ArchError> {
    let parse_err = |message: String| ArchError::Parse {
        path: path.to_path_buf(),
        message,
    };
    let mut table: Table =
        toml::from_str(text).map_err(|e| parse_err(format!("malformed TOML: {e}")))?;
    // Check the structure on the original text first: its errors carry line numbers.
    toml::from_str::<RawFile>(text).map_err(|e| parse_err(with_line(text, &e.to_string())))?;
    for (key, value) in overrides {
        let v = crate::workload::params::parse_literal(value)
            .unwrap_or_else(|| Value::String(value.clone()));
        apply_override(&mut table, key, v).map_err(|message| ArchError::Key {
            path: path.to_path_buf(),
            key: key.clone(),
            message,
        })?;
    }
    let raw: RawFile = table
        .clone()
        .try_into()
        .map_err(|e: toml::de::Error| parse_err(format!("{e}")))?;
    let tech = load_tech(path, &raw.accelerator.tech)?;
    let space = resolve_space(&table, &raw.space, path)?;
    build(raw, tech, path, space)
}

/// Adds "(line N)" to a serde message about an unknown field when toml gave no span
/// (fields inside arrays of tables), by finding the key at the start of a line.
pub(super) fn with_line(text: &str, message: &str) -> String {
    if message.contains("line ") {
        return message.to_string();
    }
    let field = message
        .split('`')
        .nth(1)
        .filter(|_| message.contains("unknown field"));
    let line = field.and_then(|f| {
        text.lines().position(|l| {
            l.trim_start()
                .strip_prefix(f)
                .map(|r| r.trim_start().starts_with('='))
                .unwrap_or(false)
        })
    });
    match line {
        Some(n) => format!("line {}: {message}", n + 1),
        None => message.to_string(),
    }
}

/// Sets `key` (dotted; `level.<name>.<field>` picks a level by name) in a template table.
pub fn apply_override(table: &mut Table, key: &str, value: Value) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').map(str::trim).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err("empty key or key part; write KEY=VALUE such as array.rows=16".into());
    }
    let section = |name: &str| {
        format!("'{name}' is a section, not a value; set one of its keys, e.g. {name}.<key>=VALUE")
    };
    // Bare accelerator fields are accepted without the section name.
    let parts: Vec<&str> = match parts.as_slice() {
        [one] if matches!(table.get(*one), Some(Value::Table(_) | Value::Array(_))) => {
            return Err(section(one))
        }
        [one] => vec!["accelerator", one],
        _ => parts,
    };
    let mut cur = table;
    let mut i = 0;
    while i + 1 < parts.len() {
        let part = parts[i];
        if part == "level" {
            let name = parts[i + 1];
            if i + 2 >= parts.len() {
                return Err(format!(
                    "level.{name} needs a field, e.g. level.{name}.size_kib=VALUE"
                ));
            }
            let levels = cur
                .get_mut("level")
                .and_then(Value::as_array_mut)
                .ok_or("the template has no [[level]] entries")?;
            let known: Vec<String> = levels
                .iter()
                .filter_map(|l| l.get("name").and_then(Value::as_str).map(str::to_string))
                .collect();
            let lvl = levels
                .iter_mut()
                .find(|l| l.get("name").and_then(Value::as_str) == Some(name))
                .ok_or_else(|| format!("no level named '{name}' (levels: {})", known.join(", ")))?;
            cur = lvl.as_table_mut().ok_or("level is not a table")?;
            i += 2;
            continue;
        }
        cur = cur
            .entry(part.to_string())
            .or_insert_with(|| Value::Table(Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("'{part}' is a value, not a section"))?;
        i += 1;
    }
    let last = parts[parts.len() - 1];
    // Keep the template's type: a number stays a number, a flag a flag.
    let number = |v: &Value| matches!(v, Value::Integer(_) | Value::Float(_));
    match cur.get(last) {
        Some(Value::Table(_) | Value::Array(_)) if !value.is_array() => return Err(section(key)),
        Some(old) if number(old) && !number(&value) => {
            return Err(format!(
                "expected a number (the template has {old}), got {value}"
            ))
        }
        Some(old @ Value::Boolean(_)) if !value.is_bool() => {
            return Err(format!(
                "expected true or false (the template has {old}), got {value}"
            ))
        }
        _ => {}
    }
    cur.insert(last.to_string(), value);
    Ok(())
}

/// Where technology tables are looked for, in order: `$COEX_TECH_DIR`, a `tech/`
/// folder beside the template or up to two folders above it, and the shipped
/// `accelerators/tech/` of this build.
pub fn tech_dirs(path: &Path) -> Vec<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut v: Vec<PathBuf> = std::env::var_os("COEX_TECH_DIR")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    v.extend(dir.ancestors().take(3).map(|d| d.join("tech")));
    v.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("accelerators/tech"));
    v
}

fn load_tech(path: &Path, node: &str) -> Result<Tech, ArchError> {
    let candidates: Vec<PathBuf> = tech_dirs(path)
        .into_iter()
        .map(|d| d.join(format!("{node}.toml")))
        .collect();
    let found = candidates.iter().find(|p| p.is_file()).ok_or_else(|| ArchError::Key {
        path: path.to_path_buf(),
        key: "accelerator.tech".into(),
        message: format!(
            "no technology table '{node}.toml' (looked at {}); set COEX_TECH_DIR to a folder holding it",
            candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        ),
    })?;
    let text = std::fs::read_to_string(found).map_err(|source| ArchError::Io {
        path: found.clone(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ArchError::Parse {
        path: found.clone(),
        message: format!("{e}"),
    })
}

fn key_err(path: &Path, key: impl Into<String>, message: impl Into<String>) -> ArchError {
    ArchError::Key {
        path: path.to_path_buf(),
        key: key.into(),
        message: message.into(),
    }
}

fn build(
    raw: RawFile,
    tech: Tech,
    path: &Path,
    space: Vec<SpaceParam>,
) -> Result<Template, ArchError> {
    let a = &raw.accelerator;
    let kind = match a.kind.as_str() {
        "asic" => Kind::Asic,
        "fpga" => Kind::Fpga,
        "gpu" => Kind::Gpu,
        k => {
            return Err(key_err(
                path,
                "accelerator.kind",
                format!("'{k}' is not asic, fpga or gpu"),
            ))
        }
    };
    positive(path, "accelerator.clock_mhz", a.clock_mhz)?;
    if a.word_bits == 0 {
        return Err(key_err(path, "accelerator.word_bits", "must be ≥ 1"));
    }
    let bits = a.word_bits;
    if raw.level.is_empty() {
        return Err(key_err(
            path,
            "level",
            "a template needs at least one [[level]] (DRAM first)",
        ));
    }
    let mut levels: Vec<Level> = Vec::with_capacity(raw.level.len());
    for l in &raw.level {
        if levels.iter().any(|x| x.name == l.name) {
            return Err(key_err(
                path,
                format!("level.{}", l.name),
                "two levels have this name; give each [[level]] its own name",
            ));
        }
        levels.push(build_level(l, &tech, bits, path)?);
    }
    nonnegative(path, "accelerator.static_power_mw", a.static_power_mw)?;
    let mut seen_pe = false;
    for l in &levels {
        if seen_pe && !l.per_pe {
            return Err(key_err(
                path,
                format!("level.{}.per_pe", l.name),
                "per-PE levels must be the innermost ones: a shared level cannot sit inside the array",
            ));
        }
        seen_pe |= l.per_pe;
    }
    for (o, name) in OPERANDS.iter().enumerate() {
        if !levels[0].keeps[o] {
            return Err(key_err(
                path,
                format!("level.{}.keeps", levels[0].name),
                format!("the outermost level must keep every operand; it bypasses {name}"),
            ));
        }
    }
    let ar = &raw.array;
    for (key, v) in [("array.rows", ar.rows), ("array.cols", ar.cols)] {
        if v < 1 {
            return Err(key_err(path, key, format!("must be ≥ 1, got {v}")));
        }
    }
    for (key, dims) in [
        ("array.spatial.rows", &ar.spatial.rows),
        ("array.spatial.cols", &ar.spatial.cols),
    ] {
        for d in dims {
            if !DIM_NAMES.contains(&d.as_str()) {
                return Err(key_err(
                    path,
                    key,
                    format!(
                        "'{d}' is not a dimension any operand has; use Einsum dims {}",
                        DIM_NAMES.join(", ")
                    ),
                ));
            }
        }
    }
    let dataflow = match ar.dataflow.as_deref() {
        None => None,
        Some("os") => Some(Dataflow::Os),
        Some("ws") => Some(Dataflow::Ws),
        Some("is") => Some(Dataflow::Is),
        Some(d) => {
            return Err(key_err(
                path,
                "array.dataflow",
                format!("'{d}' is not os, ws or is"),
            ))
        }
    };
    let (precisions, mac_energy, mac_area) = mac_datapath(&raw.mac, &tech, bits, path)?;
    for (k, v) in [
        ("vector.energy_pj_per_op", raw.vector.energy_pj_per_op),
        ("vector.area_um2", raw.vector.area_um2),
    ] {
        if let Some(v) = v {
            nonnegative(path, k, v)?;
        }
    }
    let lanes = raw.vector.lanes.unwrap_or(ar.cols);
    if lanes < 1 {
        return Err(key_err(path, "vector.lanes", "must be ≥ 1"));
    }
    Ok(Template {
        name: a.name.clone(),
        kind,
        about: a.about.clone(),
        sources: a.sources.clone(),
        path: path.to_path_buf(),
        clock_mhz: a.clock_mhz,
        word_bits: bits,
        tech: a.tech.clone(),
        levels,
        array: Array {
            rows: ar.rows as usize,
            cols: ar.cols as usize,
            spatial_rows: ar.spatial.rows.clone(),
            spatial_cols: ar.spatial.cols.clone(),
            dataflow,
            multicast: ar.multicast,
            spatial_reduction: ar.spatial_reduction,
            efficiency: match ar.efficiency {
                None => 1.0,
                Some(e) if e > 0.0 && e <= 1.0 => e,
                Some(e) => {
                    return Err(ArchError::Key {
                        path: path.to_path_buf(),
                        key: "array.efficiency".into(),
                        message: format!(
                            "{e}: the fraction of cycles the array issues MACs is in (0, 1]"
                        ),
                    })
                }
            },
        },
        precisions,
        mac_energy_pj: mac_energy,
        mac_area_um2: mac_area,
        vector: Vector {
            lanes: lanes as usize,
            fuse_elementwise: raw.vector.fuse_elementwise.unwrap_or(true),
            energy_pj_per_op: raw
                .vector
                .energy_pj_per_op
                .unwrap_or(tech.vector_energy_pj_per_op),
            area_um2: raw.vector.area_um2.unwrap_or(lanes as f64 * mac_area),
        },
        static_power_mw: a.static_power_mw,
        space,
    })
}

/// Bit width of a MAC operand at `dtype`.
pub fn dtype_bits(d: DType) -> u32 {
    d.bytes() as u32 * 8
}

/// The MAC datapath: the precisions it runs, the energy of one MAC at each, and its
/// area. Energy at a precision is the technology table's MAC of that width (Horowitz,
/// ISSCC 2014, via the tech table), scaled by `energy_pj / table(word_bits)` when the
/// file quotes its own energy at the template width. Area is the widest precision's MAC:
/// one unit serves every narrower precision.
#[allow(clippy::type_complexity)]
fn mac_datapath(
    mac: &RawMac,
    tech: &Tech,
    bits: u32,
    path: &Path,
) -> Result<(Vec<DType>, Vec<(DType, f64)>, f64), ArchError> {
    let choices = [DType::Int8, DType::Fp16, DType::Bf16, DType::Fp32];
    let precisions: Vec<DType> = match &mac.precisions {
        None => choices
            .into_iter()
            .filter(|&d| dtype_bits(d) <= bits)
            .collect(),
        Some(list) => {
            let mut v = Vec::new();
            for s in list {
                let d = DType::parse(s)
                    .filter(|d| choices.contains(d))
                    .ok_or_else(|| {
                        key_err(
                            path,
                            "mac.precisions",
                            format!("'{s}' is not one of {}", DType::USER_CHOICES),
                        )
                    })?;
                if !v.contains(&d) {
                    v.push(d);
                }
            }
            v
        }
    };
    if precisions.is_empty() {
        return Err(key_err(
            path,
            "mac.precisions",
            format!(
                "the datapath runs no precision; list some of {}",
                DType::USER_CHOICES
            ),
        ));
    }
    let missing = |what: &str, b: u32| {
        key_err(
            path,
            format!("mac.{what}"),
            format!(
                "tech '{}' has no {b}-bit MAC; give mac.{what} or drop the precision",
                tech.node
            ),
        )
    };
    let scale = match mac.energy_pj {
        Some(e) => {
            nonnegative(path, "mac.energy_pj", e)?;
            let base = tech
                .mac_energy(bits)
                .ok_or_else(|| missing("energy_pj", bits))?;
            e / base
        }
        None => 1.0,
    };
    let mut energy = Vec::new();
    for &d in &precisions {
        let b = dtype_bits(d);
        let e = match (mac.energy_pj, b == bits) {
            (Some(e), true) => e,
            _ => tech.mac_energy(b).ok_or_else(|| missing("energy_pj", b))? * scale,
        };
        energy.push((d, e));
    }
    let widest = precisions
        .iter()
        .map(|&d| dtype_bits(d))
        .max()
        .unwrap_or(bits);
    let area = match mac.area_um2 {
        Some(a) => {
            nonnegative(path, "mac.area_um2", a)?;
            a
        }
        None => tech
            .mac_area(widest)
            .ok_or_else(|| missing("area_um2", widest))?,
    };
    Ok((precisions, energy, area))
}

fn nonnegative(path: &Path, key: &str, v: f64) -> Result<(), ArchError> {
    if !(v.is_finite() && v >= 0.0) {
        return Err(key_err(path, key, format!("must be ≥ 0, got {v}")));
    }
    Ok(())
}

fn positive(path: &Path, key: &str, v: f64) -> Result<(), ArchError> {
    if !(v.is_finite() && v > 0.0) {
        return Err(key_err(path, key, format!("must be > 0, got {v}")));
    }
    Ok(())
}

fn build_level(l: &RawLevel, tech: &Tech, bits: u32, path: &Path) -> Result<Level, ArchError> {
    let key = |f: &str| format!("level.{}.{f}", l.name);
    let bits = match l.word_bits {
        None => bits,
        Some(b) if (1..=1024).contains(&b) => b as u32,
        Some(b) => {
            return Err(key_err(
                path,
                key("word_bits"),
                format!("must be in 1..=1024 bits, got {b}"),
            ))
        }
    };
    let word_bytes = bits as f64 / 8.0;
    let kind = match l.kind.as_str() {
        "dram" => LevelKind::Dram,
        "sram" => LevelKind::Sram,
        "regfile" => LevelKind::Regfile,
        k => {
            return Err(key_err(
                path,
                key("kind"),
                format!("'{k}' is not dram, sram or regfile"),
            ))
        }
    };
    let sizes = [
        ("size_bytes", l.size_bytes.map(|b| b / word_bytes)),
        ("size_kib", l.size_kib.map(|k| k * 1024.0 / word_bytes)),
        ("size_words", l.size_words),
    ];
    let given: Vec<_> = sizes.iter().filter(|(_, v)| v.is_some()).collect();
    if given.len() > 1 {
        return Err(key_err(
            path,
            key(given[1].0),
            "give one of size_bytes, size_kib, size_words",
        ));
    }
    let size_words = match given.first() {
        Some((k, Some(w))) => {
            if !(w.is_finite() && *w >= 1.0) {
                return Err(key_err(
                    path,
                    key(k),
                    format!(
                        "a level must hold at least one word, got {w} words; give a positive size"
                    ),
                ));
            }
            Some(w.floor() as u64)
        }
        _ if kind == LevelKind::Dram => None,
        _ => {
            return Err(key_err(
                path,
                key("size_kib"),
                "an on-chip level needs a size (size_bytes, size_kib or size_words)",
            ))
        }
    };
    let operand_set = |name: &str, list: &[String]| -> Result<[bool; 3], ArchError> {
        let mut k = [false; 3];
        for s in list {
            let i = OPERANDS
                .iter()
                .position(|o| o == s)
                .ok_or_else(|| key_err(path, key(name), format!("'{s}' is not I, W or O")))?;
            k[i] = true;
        }
        Ok(k)
    };
    let keeps = match &l.keeps {
        None => [true; 3],
        Some(list) => operand_set("keeps", list)?,
    };
    // What the mapper may bypass: by default a shared level may let any operand it
    // keeps stream past it; a per-PE level feeds its MACs and may not. DRAM never.
    let bypassable = match &l.bypassable {
        None if l.per_pe || kind == LevelKind::Dram => [false; 3],
        None => keeps,
        Some(list) => {
            let b = operand_set("bypassable", list)?;
            if let Some(o) = (0..3).find(|&o| b[o] && !keeps[o]) {
                return Err(key_err(
                    path,
                    key("bypassable"),
                    format!("'{}' is not kept here, so it cannot be bypassed; list only operands of keeps", OPERANDS[o]),
                ));
            }
            if kind == LevelKind::Dram && b.iter().any(|&x| x) {
                return Err(key_err(
                    path,
                    key("bypassable"),
                    "DRAM holds every operand; it cannot bypass one",
                ));
            }
            b
        }
    };
    // Mapspace constraints: which dims may have temporal loops here, and the order
    // (outer to inner) of those that do.
    let dim_list = |name: &str, list: &Option<Vec<String>>| -> Result<Vec<String>, ArchError> {
        let list = list.clone().unwrap_or_default();
        for d in &list {
            if !DIM_NAMES.contains(&d.as_str()) {
                return Err(key_err(
                    path,
                    key(name),
                    format!("'{d}' is not a dim; use {}", DIM_NAMES.join(", ")),
                ));
            }
        }
        Ok(list)
    };
    let temporal_dims = match &l.dims {
        None => None,
        Some(_) => Some(dim_list("dims", &l.dims)?),
    };
    let loop_order = dim_list("order", &l.order)?;
    let loop_inner = dim_list("inner", &l.inner)?;
    if let Some(d) = loop_inner.iter().find(|d| loop_order.contains(d)) {
        return Err(key_err(
            path,
            key("inner"),
            format!("'{d}' is in both order (outermost) and inner (innermost); keep it in one"),
        ));
    }
    // Ordered dims (outermost or innermost) must be dims that may loop here.
    for (name, list) in [("order", &loop_order), ("inner", &loop_inner)] {
        if let (Some(dims), Some(d)) = (
            &temporal_dims,
            list.iter()
                .find(|d| !temporal_dims.as_ref().is_some_and(|x| x.contains(d))),
        ) {
            return Err(key_err(
                path,
                key(name),
                format!("'{d}' is ordered but not among dims = {dims:?}"),
            ));
        }
    }
    // Exact temporal factors (Timeloop's `factors: R=3`): the dim's loop at this level
    // has exactly that bound.
    let mut temporal_factors = Vec::new();
    for (d, &f) in l.factors.iter().flatten() {
        if !DIM_NAMES.contains(&d.as_str()) {
            return Err(key_err(
                path,
                key("factors"),
                format!("'{d}' is not a dim; use {}", DIM_NAMES.join(", ")),
            ));
        }
        if f < 1 || f > u32::MAX as i64 {
            return Err(key_err(
                path,
                key("factors"),
                format!("{d} = {f}: a factor is a loop bound >= 1; leave {d} out to let the mapper choose it"),
            ));
        }
        if f > 1 && temporal_dims.as_ref().is_some_and(|x| !x.contains(d)) {
            return Err(key_err(
                path,
                key("factors"),
                format!(
                    "{d} = {f}, but dims = {:?} does not let {d} loop here; add it to dims",
                    temporal_dims.as_deref().unwrap_or_default()
                ),
            ));
        }
        temporal_factors.push((d.clone(), f as u32));
    }
    let bytes = size_words.map(|w| w as f64 * word_bytes).unwrap_or(0.0);
    let (read_default, write_default, area_default) = match kind {
        LevelKind::Dram => (tech.dram_word(bits), tech.dram_word(bits), 0.0),
        LevelKind::Sram => {
            let r = tech.sram_read(bytes, bits);
            (r, r * tech.sram_write_ratio, tech.sram_area(bytes))
        }
        LevelKind::Regfile => (
            tech.regfile_read(bits),
            tech.regfile_write(bits),
            tech.regfile_area_um2_per_byte * bytes,
        ),
    };
    let scale = l.energy_scale.unwrap_or(1.0);
    nonnegative(path, &key("energy_scale"), scale)?;
    let read = l.read_energy_pj.unwrap_or(read_default) * scale;
    let write = l.write_energy_pj.unwrap_or(write_default) * scale;
    let update = l.update_energy_pj.map(|u| u * scale).unwrap_or(write);
    let area = l.area_um2.unwrap_or(area_default);
    for (k, v) in [
        ("read_energy_pj", read),
        ("write_energy_pj", write),
        ("update_energy_pj", update),
        ("area_um2", area),
        ("leakage_pj_per_cycle", l.leakage_pj_per_cycle),
    ] {
        nonnegative(path, &key(k), v)?;
    }
    let words_per_cycle = |k: &str, v: Option<f64>| -> Result<Option<f64>, ArchError> {
        match v {
            Some(b) => {
                positive(path, &key(k), b)?;
                Ok(Some(b / word_bytes))
            }
            None => Ok(None),
        }
    };
    let bandwidth = words_per_cycle("bandwidth_bytes_per_cycle", l.bandwidth_bytes_per_cycle)?;
    let read_bandwidth = words_per_cycle(
        "read_bandwidth_bytes_per_cycle",
        l.read_bandwidth_bytes_per_cycle,
    )?;
    let write_bandwidth = words_per_cycle(
        "write_bandwidth_bytes_per_cycle",
        l.write_bandwidth_bytes_per_cycle,
    )?;
    if bandwidth.is_some() && (read_bandwidth.is_some() || write_bandwidth.is_some()) {
        return Err(ArchError::Key {
            path: path.to_path_buf(),
            key: key("bandwidth_bytes_per_cycle"),
            message: "give one shared port (bandwidth_bytes_per_cycle) or separate read_bandwidth_bytes_per_cycle / write_bandwidth_bytes_per_cycle, not both".into(),
        });
    }
    let _ = &l.about;
    Ok(Level {
        name: l.name.clone(),
        kind,
        word_bits: bits,
        size_words,
        per_pe: l.per_pe,
        keeps,
        bypassable,
        temporal_dims,
        loop_order,
        loop_inner,
        temporal_factors,
        read_energy_pj: read,
        write_energy_pj: write,
        update_energy_pj: update,
        bandwidth_words_per_cycle: bandwidth,
        read_bandwidth_words_per_cycle: read_bandwidth,
        write_bandwidth_words_per_cycle: write_bandwidth,
        double_buffered: l.double_buffered,
        area_um2: area,
        leakage_pj_per_cycle: l.leakage_pj_per_cycle,
        energy_scale: scale,
    })
}

/// `[space]` entries: a list of values, `{ pow2 = [lo, hi] }` or `{ range = [lo, hi, step] }`.
/// Each key must name something an override can set.
pub(super) fn resolve_space(
    table: &Table,
    space: &Table,
    path: &Path,
) -> Result<Vec<SpaceParam>, ArchError> {
    let mut out = Vec::new();
    for (key, spec) in space {
        let k = format!("space.\"{key}\"");
        let domain =
            match spec {
                Value::Array(a) if !a.is_empty() => Domain::List(a.clone()),
                Value::Table(t) if t.contains_key("pow2") => {
                    let lohi = int_list(t.get("pow2"))
                        .filter(|v| v.len() == 2 && v[0] >= 1 && v[0] <= v[1]);
                    let [lo, hi] = lohi
                        .map(|v| [v[0], v[1]])
                        .ok_or_else(|| key_err(path, &k, "pow2 = [lo, hi] with 1 ≤ lo ≤ hi"))?;
                    Domain::Pow2 { lo, hi }
                }
                Value::Table(t) if t.contains_key("range") => {
                    let r = int_list(t.get("range"))
                        .filter(|v| v.len() == 3 && v[2] >= 1 && v[0] <= v[1]);
                    let r = r.ok_or_else(|| {
                        key_err(path, &k, "range = [lo, hi, step] with lo ≤ hi, step ≥ 1")
                    })?;
                    Domain::Range {
                        lo: r[0],
                        hi: r[1],
                        step: r[2],
                    }
                }
                _ => return Err(key_err(
                    path,
                    &k,
                    "expected a non-empty list, { pow2 = [lo, hi] } or { range = [lo, hi, step] }",
                )),
            };
        let param = SpaceParam {
            key: key.clone(),
            domain,
        };
        // The key must name something an override can set; its values are checked when
        // a design uses them (the template's own checks then name the key).
        let mut probe = table.clone();
        let first = param.value(0).unwrap_or(Value::Integer(0));
        apply_override(&mut probe, key, first).map_err(|m| key_err(path, &k, m))?;
        out.push(param);
    }
    Ok(out)
}

fn int_list(v: Option<&Value>) -> Option<Vec<i64>> {
    v?.as_array()?.iter().map(Value::as_integer).collect()
}
