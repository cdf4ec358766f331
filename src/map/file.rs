//! Mapping files: coex's own TOML form, and import of Timeloop's `map.yaml`.
//!
//! ```toml
//! [[mapping]]
//! layer = "conv1"                      # which Einsum (layer or kernel name) it maps
//! spatial = { rows = "C3 K4", cols = "" }
//! levels = [                           # outermost first; loops written outer → inner
//!   { name = "DRAM", loops = "P4 Q28" },
//!   { name = "GLB",  loops = "Q4 S7 K2" },
//! ]
//! ```
//! Levels left out hold no loops. Loops are `<dim><factor>` with the Einsum dim names.

use super::{MapError, Mapping, Problem, MAX_DIMS};
use crate::arch::Template;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    mapping: Vec<RawMapping>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawMapping {
    pub layer: String,
    #[serde(default)]
    pub spatial: RawSpatial,
    pub levels: Vec<RawLevelLoops>,
}

#[derive(Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSpatial {
    #[serde(default)]
    pub rows: String,
    #[serde(default)]
    pub cols: String,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct RawLevelLoops {
    pub name: String,
    #[serde(default)]
    pub loops: String,
    /// Operands (I, W, O) this level bypasses in this mapping, beyond the template's.
    #[serde(default)]
    pub bypass: Vec<String>,
}

/// Mappings read from a file, by layer name; resolved against each Einsum on use.
pub struct MappingFile {
    pub path: std::path::PathBuf,
    pub by_layer: HashMap<String, RawMapping>,
}

impl MappingFile {
    pub fn load(path: &Path) -> Result<MappingFile, MapError> {
        let err = |message: String| MapError::File {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
        let raw: RawFile =
            toml::from_str(&text).map_err(|e| err(format!("malformed mapping file: {e}")))?;
        let by_layer = raw
            .mapping
            .into_iter()
            .map(|m| (m.layer.clone(), m))
            .collect();
        Ok(MappingFile {
            path: path.to_path_buf(),
            by_layer,
        })
    }

    /// The mapping for an Einsum named `name` (an exact layer/kernel name), checked.
    pub fn resolve(
        &self,
        name: &str,
        p: &Problem,
        t: &Template,
    ) -> Result<Option<Mapping>, MapError> {
        let Some(raw) = self.by_layer.get(name) else {
            return Ok(None);
        };
        resolve(raw, p, t)
            .map(Some)
            .map_err(|message| MapError::File {
                path: self.path.clone(),
                message: format!("mapping for '{name}': {message}"),
            })
    }
}

/// `"C3 K4"` → [(C, 3), (K, 4)].
fn parse_loops(s: &str, p: &Problem) -> Result<Vec<(usize, u32)>, String> {
    let mut out = Vec::new();
    for tok in s.split_whitespace() {
        let split = tok
            .find(|c: char| c.is_ascii_digit())
            .ok_or_else(|| format!("loop '{tok}' has no factor"))?;
        let (name, f) = tok.split_at(split);
        let f: u32 = f.parse().map_err(|_| format!("loop '{tok}': bad factor"))?;
        if f == 0 {
            return Err(format!("loop '{tok}': factor must be ≥ 1"));
        }
        match p.dim_index(name) {
            Some(d) => out.push((d, f)),
            None if f == 1 => {}
            None => {
                return Err(format!(
                    "loop '{tok}': '{name}' is not a dim of this Einsum ({})",
                    p.names[..p.ndims].join(" ")
                ))
            }
        }
    }
    Ok(out)
}

/// A dim's factors (all levels and the array) multiply to at least its bound, and to
/// less than twice it: at most one partly padded step. Larger products are typos
/// (`K128` for a bound of 64) and would only add padded work.
fn check_factor_products(m: &Mapping, p: &Problem) -> Result<(), String> {
    for d in 0..p.ndims {
        let mut factors = (0..m.nlevels as usize)
            .map(|l| m.factors[l][d])
            .chain([m.spatial_rows[d], m.spatial_cols[d]]);
        let product = factors.try_fold(1u64, |acc, f| acc.checked_mul(f as u64));
        let bound = p.bounds[d];
        if product.is_none_or(|x| x >= bound.saturating_mul(2)) {
            let shown = product.map_or("more than 2^64".to_string(), |x| x.to_string());
            return Err(format!(
                "dim {} has bound {bound} but its factors multiply to {shown}; \
                 make the product at least {bound} and less than {}",
                p.names[d],
                bound.saturating_mul(2)
            ));
        }
    }
    Ok(())
}

/// Builds and checks a mapping: coverage, array rules, and every buffer's capacity.
pub fn resolve(raw: &RawMapping, p: &Problem, t: &Template) -> Result<Mapping, String> {
    let mut m = Mapping::trivial(p, t);
    m.factors[0] = [1; MAX_DIMS];
    let mut seen = vec![false; t.levels.len()];
    for lv in &raw.levels {
        let l = t.level_index(&lv.name).ok_or_else(|| {
            let names: Vec<&str> = t.levels.iter().map(|l| l.name.as_str()).collect();
            format!(
                "level '{}' is not in template '{}' ({})",
                lv.name,
                t.name,
                names.join(", ")
            )
        })?;
        if std::mem::replace(&mut seen[l], true) {
            return Err(format!("level '{}' given twice", lv.name));
        }
        for b in &lv.bypass {
            let o = crate::arch::OPERANDS
                .iter()
                .position(|x| x == b)
                .ok_or_else(|| format!("level '{}': bypass '{b}' is not I, W or O", lv.name))?;
            m.keep[l][o] = false;
        }
        let loops = parse_loops(&lv.loops, p)?;
        for (k, &(d, _)) in loops.iter().enumerate() {
            if loops[..k].iter().any(|&(e, _)| e == d) {
                return Err(format!(
                    "level '{}': dim {} appears twice in loops \"{}\"; give each dim once per level \
                     with the product of its factors",
                    lv.name, p.names[d], lv.loops
                ));
            }
        }
        let mut order: Vec<u8> = loops.iter().map(|&(d, _)| d as u8).collect();
        for d in 0..p.ndims as u8 {
            if !order.contains(&d) {
                order.insert(0, d);
            }
        }
        for (k, &d) in order.iter().enumerate() {
            m.order[l][k] = d;
        }
        for (d, f) in loops {
            m.factors[l][d] = f;
        }
    }
    for (d, f) in parse_loops(&raw.spatial.rows, p)? {
        m.spatial_rows[d] = m.spatial_rows[d].saturating_mul(f);
    }
    for (d, f) in parse_loops(&raw.spatial.cols, p)? {
        m.spatial_cols[d] = m.spatial_cols[d].saturating_mul(f);
    }
    check_factor_products(&m, p)?;
    m.validate(p, t).map_err(|e| e.to_string())?;
    let c = super::analyze(p, t, &m);
    if let Some(l) = c.overflow {
        let lv = &t.levels[l];
        let copies = if lv.double_buffered { 2 } else { 1 };
        let used: u64 = c.tile_words[l].iter().map(|w| w * copies).sum();
        return Err(format!(
            "breaks the capacity of level '{}': tiles need {used} words, it holds {} (tiles I/W/O = {:?})",
            lv.name,
            lv.size_words.unwrap_or(0),
            c.tile_words[l]
        ));
    }
    Ok(m)
}

/// Writes a mapping in the file form above.
pub fn to_toml(layer: &str, m: &Mapping, p: &Problem, t: &Template) -> String {
    let loops = |fs: &[u32; MAX_DIMS], order: &[u8]| -> String {
        order
            .iter()
            .map(|&d| d as usize)
            .filter(|&d| fs[d] > 1)
            .map(|d| format!("{}{}", p.names[d], fs[d]))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let natural: Vec<u8> = (0..p.ndims as u8).collect();
    let mut s = format!("[[mapping]]\nlayer = \"{layer}\"\nspatial = {{ rows = \"{}\", cols = \"{}\" }}\nlevels = [\n",
        loops(&m.spatial_rows, &natural),
        loops(&m.spatial_cols, &natural));
    for l in 0..m.nlevels as usize {
        let bypass: Vec<String> = (0..3)
            .filter(|&o| t.levels[l].keeps[o] && !m.keep[l][o])
            .map(|o| format!("\"{}\"", crate::arch::OPERANDS[o]))
            .collect();
        let extra = if bypass.is_empty() {
            String::new()
        } else {
            format!(", bypass = [{}]", bypass.join(", "))
        };
        s.push_str(&format!(
            "  {{ name = \"{}\", loops = \"{}\"{extra} }},\n",
            t.levels[l].name,
            loops(&m.factors[l], &m.order[l][..p.ndims])
        ));
    }
    s.push_str("]\n");
    s
}

/// Timeloop dimension names → coex's (Timeloop's M is coex's K).
fn timeloop_dim(name: &str) -> &str {
    match name {
        "M" => "K",
        other => other,
    }
}

/// Imports a Timeloop `map.yaml` (as dumped by timeloop-mapper) into a coex mapping
/// for `layer`. Targets map to template levels by name; a dummy level that carries
/// only spatial loops is the array; Timeloop's Y axis is coex's rows, X the columns.
pub fn import_timeloop(path: &Path, layer: &str, t: &Template) -> Result<RawMapping, MapError> {
    import_timeloop_renamed(path, layer, t, &HashMap::new())
}

/// As [`import_timeloop`], with Timeloop level names renamed to the template's by
/// `level_map` (`timeloop_name → coex_name`; unnamed levels keep their names). A
/// target the map names but the template lacks is an error.
pub fn import_timeloop_renamed(
    path: &Path,
    layer: &str,
    t: &Template,
    level_map: &HashMap<String, String>,
) -> Result<RawMapping, MapError> {
    let err = |message: String| MapError::File {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot read: {e}")))?;
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).map_err(|e| err(format!("malformed YAML: {e}")))?;
    let entries = doc
        .get("mapping")
        .and_then(|m| m.as_sequence())
        .ok_or_else(|| err("no top-level 'mapping' list".into()))?;
    let mut levels: Vec<RawLevelLoops> = Vec::new();
    let mut spatial = RawSpatial::default();
    let mut bypasses: HashMap<String, Vec<String>> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        let field = |k: &str| e.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let target =
            field("target").ok_or_else(|| err(format!("mapping entry {i} has no target")))?;
        let target = match level_map.get(&target) {
            Some(to) if t.level_index(to).is_none() => {
                return Err(err(format!(
                    "--level-map sends '{target}' to '{to}', which is not a level of template '{}'",
                    t.name
                )))
            }
            Some(to) => to.clone(),
            None => target,
        };
        let kind = field("type").unwrap_or_default();
        match kind.as_str() {
            "datatype" => {
                let Some(l) = t.level_index(&target) else {
                    continue;
                };
                let keep: Vec<String> = e
                    .get("keep")
                    .and_then(|k| k.as_sequence())
                    .map(|s| {
                        s.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                let mut bypass = Vec::new();
                for (o, ds) in ["Inputs", "Weights", "Outputs"].iter().enumerate() {
                    let kept = keep.iter().any(|k| k == ds);
                    if kept && !t.levels[l].keeps[o] {
                        return Err(err(format!(
                            "Timeloop keeps {ds} at '{target}', which template '{}' bypasses",
                            t.name
                        )));
                    }
                    if !kept && t.levels[l].keeps[o] {
                        bypass.push(crate::arch::OPERANDS[o].to_string());
                    }
                }
                bypasses.insert(target, bypass);
            }
            "temporal" | "spatial" => {
                let factors = field("factors").unwrap_or_default();
                let perm = field("permutation").unwrap_or_default();
                let parsed: HashMap<String, u64> = factors
                    .split_whitespace()
                    .filter_map(|tok| {
                        let split = tok.find(|c: char| c.is_ascii_digit())?;
                        let (n, f) = tok.split_at(split);
                        Some((timeloop_dim(n).to_string(), f.parse().ok()?))
                    })
                    .collect();
                // Timeloop permutations list loops innermost first.
                let ordered: Vec<String> = perm
                    .chars()
                    .rev()
                    .map(|c| timeloop_dim(&c.to_string()).to_string())
                    .filter(|d| parsed.get(d).copied().unwrap_or(1) > 1)
                    .map(|d| format!("{d}{}", parsed[&d]))
                    .collect();
                if kind == "spatial" {
                    let split = e.get("split").and_then(|v| v.as_u64()).unwrap_or(0) as usize;
                    // Dims before `split` in the permutation go to X (cols), the rest to Y (rows).
                    let inner_first: Vec<String> = perm
                        .chars()
                        .map(|c| timeloop_dim(&c.to_string()).to_string())
                        .collect();
                    for (k, d) in inner_first.iter().enumerate() {
                        let f = parsed.get(d).copied().unwrap_or(1);
                        if f > 1 {
                            let slot = if k < split {
                                &mut spatial.cols
                            } else {
                                &mut spatial.rows
                            };
                            slot.push_str(&format!("{d}{f} "));
                        }
                    }
                } else if t.level_index(&target).is_some() {
                    levels.push(RawLevelLoops {
                        name: target,
                        loops: ordered.join(" "),
                        bypass: vec![],
                    });
                } else if !ordered.is_empty() {
                    return Err(err(format!(
                        "temporal loops at '{target}', which template '{}' has no level for",
                        t.name
                    )));
                }
            }
            other => return Err(err(format!("entry {i} ({target}): unknown type '{other}'"))),
        }
    }
    for lv in levels.iter_mut() {
        lv.bypass = bypasses.remove(&lv.name).unwrap_or_default();
    }
    for (name, bypass) in bypasses {
        levels.push(RawLevelLoops {
            name,
            loops: String::new(),
            bypass,
        });
    }
    Ok(RawMapping {
        layer: layer.to_string(),
        spatial,
        levels,
    })
}
