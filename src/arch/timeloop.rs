//! `coex import-arch --timeloop`: a Timeloop/Accelergy architecture (with its mapspace
//! constraints, and the energy and area tables Accelergy wrote) as a coex template.
//!
//! What maps to what:
//! - every storage component of the tree, outermost first, becomes a `[[level]]`
//!   (`dummy_storage` is skipped); a component with more than one instance
//!   (`name[1..256]`) is per-PE; `depth × width ÷ datawidth` words of `datawidth` bits;
//!   class `DRAM` → `dram`, register classes → `regfile`, others → `sram`;
//! - `read_bandwidth` / `write_bandwidth` (words) → the byte-wide ports;
//! - per-word energies: the ERT's read, write and update energies ÷ the block size
//!   (`width ÷ datawidth` words, as Timeloop charges scalar accesses), leakage from the
//!   ERT's `leak`, area from the ART;
//! - the compute component's `compute` energy and area → `[mac]`; the per-PE
//!   components' `meshY × meshX` → the array; `global_cycle_seconds` → the clock;
//! - constraints: `bypass` targets → `keeps` (bypassed operands dropped) and
//!   `bypassable` (operands the target must `keep` left out); temporal `factors` with
//!   dims = 1 → `dims` (the others), with dims = n > 1 → `factors` (exactly n; 0,
//!   Timeloop's "the rest", is left to the mapper); a full temporal `permutation` (inner to outer)
//!   → `order` (outer to inner, the dims that may loop), a partial one (its dims
//!   pinned innermost) → `inner`; the spatial
//!   target's `factors`
//!   → the dims the array may unroll, on both axes. Timeloop's dim M is coex's K.
//!
//! Errors name the file and the component or key.

use serde_yaml_ng::Value;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

/// Timeloop's problem dims in coex's names.
fn dim(name: &str) -> Option<&'static str> {
    Some(match name {
        "M" => "K",
        "C" => "C",
        "R" => "R",
        "S" => "S",
        "P" => "P",
        "Q" => "Q",
        "N" => "N",
        "G" => "G",
        _ => return None,
    })
}

const DIMS: [&str; 8] = ["N", "G", "K", "C", "P", "Q", "R", "S"];

fn dataspace(name: &str) -> Option<&'static str> {
    Some(match name {
        "Inputs" => "I",
        "Weights" => "W",
        "Outputs" => "O",
        _ => return None,
    })
}

struct Component {
    name: String,
    class: String,
    instances: u64,
    attrs: BTreeMap<String, Value>,
}

fn read_yaml(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: not YAML: {e}", path.display()))
}

/// `name[1..256]` → ("name", 256).
fn split_name(full: &str) -> (String, u64) {
    match full.split_once('[') {
        Some((base, rest)) => {
            let n = rest
                .trim_end_matches(']')
                .split_once("..")
                .and_then(|(a, b)| Some(b.parse::<u64>().ok()? - a.parse::<u64>().ok()? + 1))
                .unwrap_or(1);
            (base.to_string(), n)
        }
        None => (full.to_string(), 1),
    }
}

/// Leaf components of the architecture tree, outermost first, and the tree's
/// top-level attributes.
fn components(node: &Value, out: &mut Vec<Component>, top: &mut BTreeMap<String, Value>) {
    if let Some(attrs) = node.get("attributes").and_then(|a| a.as_mapping()) {
        for (k, v) in attrs {
            if let Some(k) = k.as_str() {
                top.entry(k.to_string()).or_insert_with(|| v.clone());
            }
        }
    }
    for key in ["local", "subtree"] {
        for child in node
            .get(key)
            .and_then(|l| l.as_sequence())
            .into_iter()
            .flatten()
        {
            if child.get("class").is_some() {
                let (name, instances) = split_name(child["name"].as_str().unwrap_or(""));
                let attrs = child
                    .get("attributes")
                    .and_then(|a| a.as_mapping())
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| Some((k.as_str()?.to_string(), v.clone())))
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(Component {
                    name,
                    class: child["class"].as_str().unwrap_or("").to_string(),
                    instances,
                    attrs,
                });
            } else {
                components(child, out, top);
            }
        }
    }
}

fn num(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Per component (base name): action → energy, pJ (ERT) or area, µm² (ART, key "area").
fn table(
    path: &Path,
    top: &str,
    list: &str,
) -> Result<BTreeMap<String, BTreeMap<String, f64>>, String> {
    let v = read_yaml(path)?;
    let mut out = BTreeMap::new();
    let entries = v
        .get(top)
        .and_then(|t| t.get(list))
        .and_then(|t| t.as_sequence())
        .ok_or_else(|| {
            format!(
                "{}: no {top}.{list} list; is this an Accelergy {top}.yaml?",
                path.display()
            )
        })?;
    for e in entries {
        let full = e["name"].as_str().unwrap_or("");
        // `system_top_level.pe_spad[1..256]`: the last path element, without its range.
        let path_part = full.split('[').next().unwrap_or(full);
        let base = path_part
            .rsplit('.')
            .next()
            .unwrap_or(path_part)
            .to_string();
        let mut m = BTreeMap::new();
        if let Some(actions) = e.get("actions").and_then(|a| a.as_sequence()) {
            for a in actions {
                if let (Some(n), Some(en)) = (a["name"].as_str(), num(a.get("energy"))) {
                    m.insert(n.to_string(), en);
                }
            }
        }
        if let Some(area) = num(e.get("area")) {
            m.insert("area".into(), area);
        }
        out.insert(base, m);
    }
    Ok(out)
}

/// Parses `R=1,S=1,M=1` into coex dims forced to 1.
fn ones(s: &str) -> Vec<&'static str> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            (v.trim() == "1").then(|| dim(k.trim())).flatten()
        })
        .collect()
}

/// The dims a `factors` string fixes to a bound > 1 (`R=3` → (R, 3)); Timeloop
/// separates entries by spaces or commas.
fn exact(s: &str) -> Vec<(&'static str, u64)> {
    s.split(|c: char| c == ',' || c.is_whitespace())
        .filter_map(|kv| {
            let (k, v) = kv.trim().split_once('=')?;
            let n: u64 = v.trim().parse().ok()?;
            (n > 1).then(|| dim(k.trim()).map(|d| (d, n))).flatten()
        })
        .collect()
}

fn list(items: &[&str]) -> String {
    let q: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", q.join(", "))
}

/// The coex template text for a Timeloop architecture (`arch`, a model or mapper
/// spec with `architecture:` and optionally `architecture_constraints:`), with the
/// ERT and ART Accelergy wrote for it.
pub fn import(arch: &Path, ert: Option<&Path>, art: Option<&Path>) -> Result<String, String> {
    let spec = read_yaml(arch)?;
    let tree = spec
        .get("architecture")
        .ok_or_else(|| format!("{}: no `architecture:` key", arch.display()))?;
    let (mut comps, mut top) = (Vec::new(), BTreeMap::new());
    components(tree, &mut comps, &mut top);
    let ert = match ert {
        Some(p) => table(p, "ERT", "tables")?,
        None => BTreeMap::new(),
    };
    let art = match art {
        Some(p) => table(p, "ART", "tables")?,
        None => BTreeMap::new(),
    };
    // Constraints by target.
    let mut keeps_not: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut must_keep: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut dims_one: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut dims_fixed: BTreeMap<String, Vec<(&str, u64)>> = BTreeMap::new();
    let mut perm: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let mut spatial_one: Vec<&str> = Vec::new();
    // The spatial permutation and split: dims before the split go along X (meshX, the
    // array's columns), the rest along Y (rows).
    let mut spatial_split: Option<(Vec<&str>, usize)> = None;
    let targets = spec
        .get("architecture_constraints")
        .and_then(|c| c.get("targets"))
        .and_then(|t| t.as_sequence())
        .cloned()
        .unwrap_or_default();
    let names = |v: Option<&Value>| -> Vec<&'static str> {
        v.and_then(|l| l.as_sequence())
            .map(|l| l.iter().filter_map(|x| dataspace(x.as_str()?)).collect())
            .unwrap_or_default()
    };
    for t in &targets {
        let target = t["target"].as_str().unwrap_or("").to_string();
        match t["type"].as_str().unwrap_or("") {
            "bypass" => {
                keeps_not
                    .entry(target.clone())
                    .or_default()
                    .extend(names(t.get("bypass")));
                must_keep
                    .entry(target)
                    .or_default()
                    .extend(names(t.get("keep")));
            }
            "temporal" => {
                if let Some(f) = t.get("factors").and_then(|f| f.as_str()) {
                    dims_one.entry(target.clone()).or_default().extend(ones(f));
                    dims_fixed
                        .entry(target.clone())
                        .or_default()
                        .extend(exact(f));
                }
                if let Some(p) = t.get("permutation").and_then(|p| p.as_str()) {
                    perm.insert(
                        target,
                        p.chars()
                            .rev()
                            .filter_map(|c| dim(&c.to_string()))
                            .collect(),
                    );
                }
            }
            "spatial" => {
                if let Some(f) = t.get("factors").and_then(|f| f.as_str()) {
                    spatial_one.extend(ones(f));
                }
                if let (Some(p), Some(k)) = (
                    t.get("permutation").and_then(|p| p.as_str()),
                    num(t.get("split")),
                ) {
                    let dims: Vec<&str> = p.chars().filter_map(|c| dim(&c.to_string())).collect();
                    spatial_split = Some((dims, k as usize));
                }
            }
            _ => {}
        }
    }
    let cycle_s = num(top.get("global_cycle_seconds")).unwrap_or(1e-9);
    let tech = comps
        .iter()
        .find_map(|c| {
            c.attrs
                .get("technology")
                .and_then(|t| t.as_str())
                .filter(|t| t.ends_with("nm"))
        })
        .unwrap_or("45nm")
        .to_string();
    let storage: Vec<&Component> = comps
        .iter()
        .filter(|c| c.class != "dummy_storage" && !c.class.contains("mac") && c.class != "compute")
        .collect();
    let mac = comps
        .iter()
        .find(|c| c.class.contains("mac") || c.class == "compute");
    let pe = storage.iter().chain(mac.iter()).find(|c| c.instances > 1);
    let (rows, cols) = match pe {
        Some(c) => (
            num(c.attrs.get("meshY")).unwrap_or(1.0) as u64,
            num(c.attrs.get("meshX")).unwrap_or(c.instances as f64) as u64,
        ),
        None => (1, 1),
    };
    let mut s = String::new();
    let stem = arch
        .file_stem()
        .map(|x| x.to_string_lossy().into_owned())
        .unwrap_or_default();
    let _ = writeln!(
        s,
        "# Imported by `coex import-arch --timeloop {}`.",
        arch.display()
    );
    let _ = writeln!(
        s,
        "# Per-word energies: ERT energies / block size (width / datawidth words)."
    );
    let _ = writeln!(s, "[accelerator]");
    let _ = writeln!(s, "name = \"{}\"", stem.replace(['.', ' '], "_"));
    let _ = writeln!(s, "kind = \"asic\"");
    let _ = writeln!(
        s,
        "about = \"imported from Timeloop spec {}\"",
        arch.display()
    );
    let _ = writeln!(
        s,
        "clock_mhz = {:?}",
        (1.0 / cycle_s / 1e6 * 1e6).round() / 1e6
    );
    let word_bits = storage
        .iter()
        .find_map(|c| num(c.attrs.get("datawidth")))
        .unwrap_or(16.0) as u32;
    let _ = writeln!(s, "word_bits = {word_bits}");
    let _ = writeln!(s, "tech = \"{tech}\"");
    if storage.is_empty() {
        return Err(format!(
            "{}: no storage components in the architecture",
            arch.display()
        ));
    }
    for (i, c) in storage.iter().enumerate() {
        let err = |k: &str| format!("{}: component '{}': {k}", arch.display(), c.name);
        let dw = num(c.attrs.get("datawidth")).unwrap_or(word_bits as f64);
        let width = num(c.attrs.get("width")).unwrap_or(dw);
        let block = (width / dw).max(1.0);
        let kind = if c.class == "DRAM" || c.class.to_lowercase().contains("dram") {
            "dram"
        } else if c.class.contains("reg")
            || c.attrs.get("depth").and_then(|d| num(Some(d))) == Some(1.0)
        {
            "regfile"
        } else {
            "sram"
        };
        if i == 0 && kind != "dram" {
            return Err(err("the outermost storage must be DRAM"));
        }
        let _ = writeln!(s, "\n[[level]]\nname = \"{}\"\nkind = \"{kind}\"", c.name);
        if c.instances > 1 {
            let _ = writeln!(s, "per_pe = true");
        }
        let dropped = keeps_not.get(&c.name).cloned().unwrap_or_default();
        if !dropped.is_empty() {
            let keep: Vec<&str> = ["I", "W", "O"]
                .into_iter()
                .filter(|o| !dropped.contains(o))
                .collect();
            let _ = writeln!(s, "keeps = {}", list(&keep));
            let forced = must_keep.get(&c.name).cloned().unwrap_or_default();
            if c.instances == 1 && kind != "dram" {
                let free: Vec<&str> = keep
                    .iter()
                    .copied()
                    .filter(|o| !forced.contains(o))
                    .collect();
                let _ = writeln!(s, "bypassable = {}", list(&free));
            }
        }
        if kind != "dram" {
            let depth = num(c.attrs.get("depth")).ok_or_else(|| err("no depth"))?;
            let _ = writeln!(s, "size_words = {}", (depth * block) as u64);
        }
        if dw as u32 != word_bits {
            let _ = writeln!(s, "word_bits = {}", dw as u32);
        }
        if let Some(e) = ert.get(&c.name) {
            for (action, key) in [
                ("read", "read_energy_pj"),
                ("write", "write_energy_pj"),
                ("update", "update_energy_pj"),
            ] {
                if let Some(v) = e.get(action) {
                    let _ = writeln!(s, "{key} = {:?}", v / block);
                }
            }
            if let Some(v) = e.get("leak").filter(|v| **v > 0.0) {
                let _ = writeln!(s, "leakage_pj_per_cycle = {v:?}");
            }
        }
        for (attr, key) in [
            ("read_bandwidth", "read_bandwidth_bytes_per_cycle"),
            ("write_bandwidth", "write_bandwidth_bytes_per_cycle"),
        ] {
            if let Some(w) = num(c.attrs.get(attr)) {
                let _ = writeln!(s, "{key} = {:?}", w * dw / 8.0);
            }
        }
        if let Some(a) = art.get(&c.name).and_then(|a| a.get("area")) {
            let _ = writeln!(s, "area_um2 = {a:?}");
        }
        let ones = dims_one.get(&c.name).cloned().unwrap_or_default();
        if !ones.is_empty() {
            let allowed: Vec<&str> = DIMS.iter().copied().filter(|d| !ones.contains(d)).collect();
            let _ = writeln!(s, "dims = {}", list(&allowed));
        }
        if let Some(fixed) = dims_fixed.get(&c.name).filter(|f| !f.is_empty()) {
            let kv: Vec<String> = fixed.iter().map(|(d, n)| format!("{d} = {n}")).collect();
            let _ = writeln!(s, "factors = {{ {} }}", kv.join(", "));
        }
        // A full permutation fixes the whole order (outer to inner: reversed); a
        // partial one pins only its dims innermost (`inner`).
        if let Some(p) = perm.get(&c.name) {
            let full = ["C", "K", "R", "S", "N", "P", "Q"]
                .iter()
                .all(|d| p.contains(d));
            let looping: Vec<&str> = p.iter().copied().filter(|d| !ones.contains(d)).collect();
            if !looping.is_empty() {
                let key = if full { "order" } else { "inner" };
                let _ = writeln!(s, "{key} = {}", list(&looping));
            }
        }
    }
    let free = |d: &&str| !spatial_one.contains(d);
    let (along_y, along_x): (Vec<&str>, Vec<&str>) = match &spatial_split {
        Some((perm, k)) => {
            let k = (*k).min(perm.len());
            (
                perm[k..].iter().copied().filter(free).collect(),
                perm[..k].iter().copied().filter(free).collect(),
            )
        }
        None => {
            let all: Vec<&str> = ["C", "K", "N", "P", "Q", "R", "S", "G"]
                .into_iter()
                .filter(free)
                .collect();
            (all.clone(), all)
        }
    };
    let _ = writeln!(s, "\n[array]\nrows = {rows}\ncols = {cols}");
    let _ = writeln!(
        s,
        "spatial = {{ rows = {}, cols = {} }}",
        list(&along_y),
        list(&along_x)
    );
    if let Some(m) = mac {
        let mut lines = Vec::new();
        if let Some(e) = ert.get(&m.name).and_then(|e| e.get("compute")) {
            lines.push(format!("energy_pj = {e:?}"));
        }
        if let Some(a) = art.get(&m.name).and_then(|a| a.get("area")) {
            lines.push(format!("area_um2 = {a:?}"));
        }
        if !lines.is_empty() {
            let _ = writeln!(s, "\n[mac]\n{}", lines.join("\n"));
        }
    }
    Ok(s)
}
