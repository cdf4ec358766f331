//! The joint design space as genes: a point is one choice index per dimension.
//!
//! Network dimensions: a family's free parameters, or the workload file, or the six
//! NAS-Bench-201 cell edges. Hardware dimensions: the template (when more than one)
//! and, per template, its free keys (its `[space]` plus the sweep's extra keys, less
//! the keys the sweep fixes with `set`). A point is canonical when the keys of the
//! templates it does not use are at their first choice and (for `nb201-unique`) its
//! cell is its isomorphism class's representative; every evaluated point is canonical.

use super::sweep::{NetworkKind, Sweep, NB201_OPS};
use super::SearchError;
use crate::arch::{self, Accelerator};
use std::collections::HashMap;
use std::path::PathBuf;
use toml::{Table, Value};

pub type Point = Vec<u32>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    NetParam(String),
    NetFile,
    Nb201Edge(usize),
    Template,
    Hw { template: usize, key: String },
}

#[derive(Clone, Debug)]
pub struct Dim {
    /// The points.csv column: `net.<param>`, `net.file`, `net.edge<i>`, `accel`, `hw.<key>`.
    pub column: String,
    pub values: Vec<Value>,
    /// How each value prints in a CSV cell.
    pub labels: Vec<String>,
    pub role: Role,
}

impl Dim {
    pub fn is_network(&self) -> bool {
        matches!(
            self.role,
            Role::NetParam(_) | Role::NetFile | Role::Nb201Edge(_)
        )
    }
}

#[derive(Clone, Debug)]
pub struct TemplateInfo {
    pub path: PathBuf,
    pub name: String,
    pub asic: bool,
    pub text: String,
    /// The sweep's fixed overrides, as `--set` takes them.
    pub set: Vec<(String, String)>,
}

/// One NAS-Bench-201 row of the accuracy table.
#[derive(Clone, Debug)]
pub struct Nb201Arch {
    pub arch: String,
    /// The table's `unique_str`: archs that compute the same function share it.
    pub unique: String,
}

pub struct Space {
    pub dims: Vec<Dim>,
    pub templates: Vec<TemplateInfo>,
    pub sweep: Sweep,
    /// NB201: gene value → op index in `NB201_OPS`.
    nb201_ops: Vec<usize>,
    /// NB201 unique: arch (as op indices) → its class representative (the first arch
    /// in table order with the same `unique_str`).
    nb201_canon: Option<HashMap<[u8; 6], [u8; 6]>>,
}

/// Formats a TOML value for a CSV cell (strings unquoted).
pub fn label(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// The arch string of six edge ops (in the table's edge order: 1←0, 2←0, 2←1, 3←0,
/// 3←1, 3←2).
pub fn arch_string(edges: &[&str; 6]) -> String {
    format!(
        "|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|",
        edges[0], edges[1], edges[2], edges[3], edges[4], edges[5]
    )
}

/// Whether a NB201 cell's output is input-independent (every path to node 3 passes a
/// `none` edge): such a network trains to chance accuracy.
pub fn nb201_disconnected(edges: &[&str; 6]) -> bool {
    let on = |i: usize| edges[i] != "none";
    let n1 = on(0);
    let n2 = on(1) || (on(2) && n1);
    let n3 = on(3) || (on(4) && n1) || (on(5) && n2);
    !n3
}

/// Reads `arch_str` and `unique_str` of every row of a NB201 table, in table order.
pub fn read_nb201_archs(path: &std::path::Path) -> Result<Vec<Nb201Arch>, SearchError> {
    let bad = |message: String| SearchError::Table {
        path: path.to_path_buf(),
        message,
    };
    let mut r = csv::Reader::from_path(path).map_err(|e| bad(e.to_string()))?;
    let h = r.headers().map_err(|e| bad(e.to_string()))?.clone();
    let col = |name: &str| {
        h.iter()
            .position(|c| c == name)
            .ok_or_else(|| bad(format!("no column '{name}'")))
    };
    let (a, u) = (col("arch_str")?, col("unique_str")?);
    let mut v = Vec::new();
    for (i, rec) in r.records().enumerate() {
        let rec = rec.map_err(|e| bad(format!("line {}: {e}", i + 2)))?;
        v.push(Nb201Arch {
            arch: rec.get(a).unwrap_or_default().to_string(),
            unique: rec.get(u).unwrap_or_default().to_string(),
        });
    }
    Ok(v)
}

fn parse_edges(arch: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut i = 0;
    for tok in arch.split(['|', '+']).filter(|t| !t.is_empty()) {
        let (op, _) = tok.split_once('~')?;
        *out.get_mut(i)? = NB201_OPS.iter().position(|o| *o == op)? as u8;
        i += 1;
    }
    (i == 6).then_some(out)
}

impl Space {
    pub fn new(sweep: &Sweep) -> Result<Space, SearchError> {
        let mut dims = Vec::new();
        let mut nb201_ops = Vec::new();
        let mut nb201_canon = None;
        let net = &sweep.network;
        match &net.kind {
            NetworkKind::Family(_) => {}
            NetworkKind::Files(files) => {
                for f in files {
                    if !f.exists() {
                        return Err(SearchError::Key {
                            path: sweep.path.clone(),
                            key: "network.files".into(),
                            message: format!("{} does not exist", f.display()),
                        });
                    }
                }
                let values: Vec<Value> = files
                    .iter()
                    .map(|f| Value::String(f.display().to_string()))
                    .collect();
                dims.push(Dim {
                    column: "net.file".into(),
                    labels: values.iter().map(label).collect(),
                    values,
                    role: Role::NetFile,
                });
            }
            NetworkKind::Nb201 { unique, ops } => {
                nb201_ops = ops
                    .iter()
                    .map(|o| NB201_OPS.iter().position(|x| x == o).unwrap_or(0))
                    .collect();
                for e in 0..6 {
                    let values: Vec<Value> = ops.iter().map(|o| Value::String(o.clone())).collect();
                    dims.push(Dim {
                        column: format!("net.edge{e}"),
                        labels: values.iter().map(label).collect(),
                        values,
                        role: Role::Nb201Edge(e),
                    });
                }
                if *unique {
                    let file = match &sweep.accuracy {
                        super::sweep::AccuracySource::Table { file, .. } => file.clone(),
                        _ => super::sweep::default_table(),
                    };
                    let rows = read_nb201_archs(&file)?;
                    let mut first: HashMap<&str, [u8; 6]> = HashMap::new();
                    let mut canon = HashMap::new();
                    for r in &rows {
                        let e = parse_edges(&r.arch).ok_or_else(|| SearchError::Table {
                            path: file.clone(),
                            message: format!("arch_str '{}' is not a NB201 cell", r.arch),
                        })?;
                        let rep = *first.entry(r.unique.as_str()).or_insert(e);
                        canon.insert(e, rep);
                    }
                    nb201_canon = Some(canon);
                }
            }
        }
        for (k, vals) in &net.free {
            dims.push(Dim {
                column: format!("net.{k}"),
                labels: vals.iter().map(label).collect(),
                values: vals.clone(),
                role: Role::NetParam(k.clone()),
            });
        }

        // Hardware.
        let hw = &sweep.hardware;
        let all_set: Vec<(String, String)> = hw
            .set
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        let mut templates = Vec::new();
        let mut per_template: Vec<Vec<(String, Vec<Value>)>> = Vec::new();
        // A sweep key applies to every template that has it (a GPU has no array.rows);
        // a key no template takes is an error.
        let mut taken: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut refusals: HashMap<String, String> = HashMap::new();
        for path in &hw.templates {
            let text = std::fs::read_to_string(path).map_err(|source| SearchError::Io {
                path: path.clone(),
                source,
            })?;
            let takes = |k: &str, v: &str, refusals: &mut HashMap<String, String>| -> bool {
                match arch::load_accelerator(path, &[(k.to_string(), v.to_string())]) {
                    Ok(_) => true,
                    Err(e) => {
                        refusals.insert(k.to_string(), e.to_string());
                        false
                    }
                }
            };
            let set: Vec<(String, String)> = all_set
                .iter()
                .filter(|(k, v)| takes(k, v, &mut refusals))
                .cloned()
                .collect();
            taken.extend(set.iter().map(|(k, _)| k.clone()));
            let extra: Vec<(String, Vec<Value>)> = hw
                .free
                .iter()
                .filter(|(k, vals)| takes(k, &vals[0].to_string(), &mut refusals))
                .cloned()
                .collect();
            taken.extend(extra.iter().map(|(k, _)| k.clone()));
            let acc = arch::load_accelerator(path, &set).map_err(|e| SearchError::Key {
                path: sweep.path.clone(),
                key: "hardware".into(),
                message: e.to_string(),
            })?;
            let space = match &acc {
                Accelerator::Asic(t) => t.space.clone(),
                Accelerator::Fpga(f) => f.space.clone(),
                Accelerator::Gpu(g) => g.space.clone(),
            };
            // A swept parameter is listed here (each value is checked below): at most
            // MAX_CHOICES values, the rest of a huge range is refused, not truncated.
            const MAX_CHOICES: u64 = 4096;
            let mut free: Vec<(String, Vec<Value>)> = Vec::new();
            for p in space
                .into_iter()
                .filter(|p| !hw.set.iter().any(|(k, _)| *k == p.key))
                .filter(|p| !extra.iter().any(|(k, _)| *k == p.key))
            {
                if p.len() > MAX_CHOICES {
                    return Err(SearchError::Key {
                        path: sweep.path.clone(),
                        key: format!("hardware.space.{}", p.key),
                        message: format!(
                            "{} sweeps {} values of {}; a sweep takes at most {MAX_CHOICES} per parameter: narrow it in [hardware.space]",
                            path.display(),
                            p.len(),
                            p.key
                        ),
                    });
                }
                let values: Vec<Value> = p.values().collect();
                free.push((p.key, values));
            }
            free.extend(extra);
            // Every choice must load: check each value once, alone.
            for (k, vals) in &free {
                for v in vals {
                    let mut o = set.clone();
                    o.push((k.clone(), v.to_string()));
                    arch::load_accelerator(path, &o).map_err(|e| SearchError::Key {
                        path: sweep.path.clone(),
                        key: format!("hardware.space.{k}"),
                        message: format!("choice {v} on {}: {e}", path.display()),
                    })?;
                }
            }
            templates.push(TemplateInfo {
                path: path.clone(),
                name: acc.name().to_string(),
                asic: matches!(acc, Accelerator::Asic(_)),
                text,
                set: set.clone(),
            });
            per_template.push(free);
        }
        for k in all_set
            .iter()
            .map(|(k, _)| k)
            .chain(hw.free.iter().map(|(k, _)| k))
        {
            if !taken.contains(k) {
                let section = if hw.set.iter().any(|(s, _)| s == k) {
                    "hardware.set"
                } else {
                    "hardware.space"
                };
                return Err(SearchError::Key {
                    path: sweep.path.clone(),
                    key: format!("{section}.{k}"),
                    message: format!(
                        "no template takes it: {}",
                        refusals.get(k).cloned().unwrap_or_default()
                    ),
                });
            }
        }
        if templates.len() > 1 {
            let values: Vec<Value> = templates
                .iter()
                .map(|t| Value::String(t.path.display().to_string()))
                .collect();
            dims.push(Dim {
                column: "accel".into(),
                labels: values.iter().map(label).collect(),
                values,
                role: Role::Template,
            });
        }
        for (ti, free) in per_template.iter().enumerate() {
            for (k, vals) in free {
                let shared = per_template
                    .iter()
                    .enumerate()
                    .any(|(j, f)| j != ti && f.iter().any(|(k2, _)| k2 == k));
                let column = if shared {
                    format!("hw.{}.{k}", templates[ti].name)
                } else {
                    format!("hw.{k}")
                };
                dims.push(Dim {
                    column,
                    labels: vals.iter().map(label).collect(),
                    values: vals.clone(),
                    role: Role::Hw {
                        template: ti,
                        key: k.clone(),
                    },
                });
            }
        }
        Ok(Space {
            dims,
            templates,
            sweep: sweep.clone(),
            nb201_ops,
            nb201_canon,
        })
    }

    /// Number of points of the full product (canonical or not), saturating.
    pub fn product(&self) -> u128 {
        self.dims
            .iter()
            .fold(1u128, |a, d| a.saturating_mul(d.values.len() as u128))
    }

    pub fn template_of(&self, p: &Point) -> usize {
        self.dims
            .iter()
            .position(|d| d.role == Role::Template)
            .map(|i| p[i] as usize)
            .unwrap_or(0)
    }

    /// The canonical form of `p` (see the module notes).
    pub fn canonical(&self, p: &Point) -> Point {
        let mut q = p.clone();
        let t = self.template_of(p);
        for (i, d) in self.dims.iter().enumerate() {
            if let Role::Hw { template, .. } = d.role {
                if template != t {
                    q[i] = 0;
                }
            }
        }
        if let Some(canon) = &self.nb201_canon {
            let idx: Vec<usize> = (0..self.dims.len())
                .filter(|&i| matches!(self.dims[i].role, Role::Nb201Edge(_)))
                .collect();
            let mut e = [0u8; 6];
            for (k, &i) in idx.iter().enumerate() {
                e[k] = self.nb201_ops[q[i] as usize] as u8;
            }
            if let Some(rep) = canon.get(&e) {
                for (k, &i) in idx.iter().enumerate() {
                    // The representative's ops are in the allowed set when the class
                    // has one there; otherwise keep the point as is.
                    if let Some(g) = self.nb201_ops.iter().position(|&o| o == rep[k] as usize) {
                        q[i] = g as u32;
                    } else {
                        return self.canonical_hw_only(p);
                    }
                }
            }
        }
        q
    }

    fn canonical_hw_only(&self, p: &Point) -> Point {
        let mut q = p.clone();
        let t = self.template_of(p);
        for (i, d) in self.dims.iter().enumerate() {
            if let Role::Hw { template, .. } = d.role {
                if template != t {
                    q[i] = 0;
                }
            }
        }
        q
    }

    /// Which dims matter for `p` (the chosen template's keys and every network dim).
    pub fn active(&self, p: &Point) -> Vec<bool> {
        let t = self.template_of(p);
        self.dims
            .iter()
            .map(|d| match d.role {
                Role::Hw { template, .. } => template == t,
                _ => true,
            })
            .collect()
    }

    /// The point at mixed-radix index `i` of the full product (last dim fastest).
    pub fn nth(&self, mut i: u128) -> Point {
        let mut p = vec![0u32; self.dims.len()];
        for (k, d) in self.dims.iter().enumerate().rev() {
            let n = d.values.len() as u128;
            p[k] = (i % n) as u32;
            i /= n;
        }
        p
    }

    /// The network half of a point, as a key.
    pub fn net_key(&self, p: &Point) -> String {
        let mut s = String::new();
        for (i, d) in self.dims.iter().enumerate() {
            if d.is_network() {
                s.push_str(&p[i].to_string());
                s.push(',');
            }
        }
        s
    }

    /// The hardware half of a point, as a key (template and its free keys).
    pub fn hw_key(&self, p: &Point) -> String {
        let mut s = format!("{}:", self.template_of(p));
        for (i, d) in self.dims.iter().enumerate() {
            if matches!(d.role, Role::Hw { .. }) {
                s.push_str(&p[i].to_string());
                s.push(',');
            }
        }
        s
    }

    /// The NB201 edges of a point, when the space is NB201.
    pub fn nb201_edges(&self, p: &Point) -> Option<[&'static str; 6]> {
        let mut e = [""; 6];
        let mut n = 0;
        for (i, d) in self.dims.iter().enumerate() {
            if let Role::Nb201Edge(k) = d.role {
                e[k] = NB201_OPS[self.nb201_ops[p[i] as usize]];
                n += 1;
            }
        }
        (n == 6).then_some(e)
    }

    /// The workload of a point: `Ok(text)` for a TOML workload file's text, or
    /// `Err(path)` for a fixed file (used as is).
    pub fn workload(&self, p: &Point) -> Result<String, PathBuf> {
        let net = &self.sweep.network;
        let mut top = net.common.clone();
        let mut params = net.fixed.clone();
        for (i, d) in self.dims.iter().enumerate() {
            match &d.role {
                Role::NetFile => {
                    return Err(PathBuf::from(label(&d.values[p[i] as usize])));
                }
                Role::NetParam(k) => {
                    params.insert(k.clone(), d.values[p[i] as usize].clone());
                }
                _ => {}
            }
        }
        match &net.kind {
            NetworkKind::Family(f) => {
                top.entry("name").or_insert(Value::String(f.clone()));
                top.insert("family".into(), Value::String(f.clone()));
            }
            NetworkKind::Nb201 { .. } => {
                let edges = self.nb201_edges(p).unwrap_or(["none"; 6]);
                if nb201_disconnected(&edges) {
                    return Ok(nb201_zero_cell(&edges, &top, &params));
                }
                top.entry("name").or_insert(Value::String("nb201".into()));
                top.insert("family".into(), Value::String("nasbench201".into()));
                params.insert("arch".into(), Value::String(arch_string(&edges)));
            }
            NetworkKind::Files(_) => {}
        }
        if !params.is_empty() {
            top.insert("params".into(), Value::Table(params));
        }
        Ok(toml::to_string(&top).unwrap_or_default())
    }

    /// The hardware of a point: template index and overrides as `--set` takes them.
    pub fn hardware(&self, p: &Point) -> (usize, Vec<(String, String)>) {
        let t = self.template_of(p);
        let mut o = self.templates[t].set.clone();
        for (i, d) in self.dims.iter().enumerate() {
            if let Role::Hw { template, key } = &d.role {
                if *template == t {
                    o.retain(|(k, _)| k != key);
                    o.push((key.clone(), d.values[p[i] as usize].to_string()));
                }
            }
        }
        (t, o)
    }

    /// The accelerator file of a point: the template with every override written in
    /// and its `[space]` removed (a fixed design `coex eval` loads unchanged).
    pub fn accelerator_toml(&self, p: &Point) -> Result<String, String> {
        let (t, overrides) = self.hardware(p);
        let info = &self.templates[t];
        let mut table: Table = toml::from_str(&info.text).map_err(|e| e.to_string())?;
        for (k, v) in &overrides {
            let v = crate::workload::params::parse_literal(v)
                .unwrap_or_else(|| Value::String(v.clone()));
            arch::apply_override(&mut table, k, v)?;
        }
        table.remove("space");
        let mut s = format!(
            "# {} with {}\n# written by coex explore from {}\n",
            info.name,
            if overrides.is_empty() {
                "no overrides".to_string()
            } else {
                overrides
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            },
            info.path.display()
        );
        s.push_str(&toml::to_string(&table).map_err(|e| e.to_string())?);
        Ok(s)
    }

    /// Parses a points.csv cell back into a choice index of dim `i`.
    pub fn index_of(&self, i: usize, cell: &str) -> Option<u32> {
        self.dims[i]
            .labels
            .iter()
            .position(|l| l == cell)
            .map(|x| x as u32)
    }
}

/// A NB201 network whose cell output is zero: only the stem runs on the input (every
/// cell after it outputs a constant, and dead code is not built), and the classifier
/// head runs on the stem's channels. A layer-list workload `coex eval` accepts.
fn nb201_zero_cell(edges: &[&str; 6], top: &Table, params: &Table) -> String {
    let int = |k: &str, d: i64| params.get(k).and_then(Value::as_integer).unwrap_or(d);
    let (c, classes, size) = (
        int("channels", 16),
        int("classes", 10),
        params
            .get("image_size")
            .or(top.get("image_size"))
            .and_then(Value::as_integer)
            .unwrap_or(32),
    );
    let mut s = format!(
        "# NAS-Bench-201 cell {} outputs zero: the prediction is a constant (chance accuracy).\n\
         # What runs on the input: the stem; the classifier head is charged on the stem's channels.\n",
        arch_string(edges)
    );
    s.push_str("name = \"nb201-zero-cell\"\n");
    for k in ["dtype", "batch"] {
        if let Some(v) = top.get(k) {
            s.push_str(&format!("{k} = {v}\n"));
        }
    }
    s.push_str(&format!(
        "input = [3, {size}, {size}]\n\n\
         [[layer]]\nname = \"stem.conv\"\nop = \"conv2d k={c} kernel=3 pad=1\"\n\n\
         [[layer]]\nname = \"stem.bn\"\nop = \"batchnorm\"\n\n\
         [[layer]]\nname = \"global_pooling\"\nop = \"globalpool\"\n\n\
         [[layer]]\nname = \"flatten\"\nop = \"flatten\"\n\n\
         [[layer]]\nname = \"classifier\"\nop = \"linear out={classes} bias=true\"\n"
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disconnected_cells_are_341_of_15625() {
        let mut n = 0;
        let mut e = [""; 6];
        for i in 0..15625usize {
            let mut x = i;
            for slot in e.iter_mut() {
                *slot = NB201_OPS[x % 5];
                x /= 5;
            }
            n += nb201_disconnected(&e) as usize;
        }
        assert_eq!(n, 341);
        let best = [
            "nor_conv_3x3",
            "nor_conv_3x3",
            "avg_pool_3x3",
            "skip_connect",
            "nor_conv_3x3",
            "skip_connect",
        ];
        assert_eq!(
            arch_string(&best),
            "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
        );
        assert_eq!(parse_edges(&arch_string(&best)), Some([3, 3, 4, 1, 3, 1]));
    }

    #[test]
    fn zero_cell_workload_builds() {
        let text = nb201_zero_cell(&["none"; 6], &Table::new(), &Table::new());
        let g = crate::workload::file::parse(&text, "z", None).unwrap();
        assert!(g.len() >= 5);
    }
}
