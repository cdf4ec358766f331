//! Workload files (`workloads/*.toml`): a family with parameters, or a list of layers.
//!
//! ```toml
//! family = "resnet"          # a builder from `coex families` ...
//! batch = 1                  # optional, every file
//! dtype = "fp16"             # optional: int8 | fp16 | bf16 | fp32
//! image_size = 224           # optional, image families
//! [params]
//! depths = [2, 2, 2, 2]
//! ```
//! or
//! ```toml
//! name = "alexnet"
//! input = [3, 224, 224]      # one input, per-sample shape (batch is prepended)
//! [[layer]]
//! name = "conv1"
//! op = "conv2d k=64 kernel=11 stride=4 pad=2"   # a one-line op spec
//! inputs = ["input"]         # optional: defaults to the previous layer
//! ```

use super::families::{self, Common};
use super::spec;
use super::tensor::DType;
use super::{Graph, WorkloadError};
use std::collections::HashMap;
use std::path::Path;
use toml::{Table, Value};

const TOP_KEYS: &str = "name, family, params, batch, dtype, image_size, seq_len, input, layer";

pub fn load(path: &Path, batch: Option<usize>) -> Result<Graph, WorkloadError> {
    let text = std::fs::read_to_string(path).map_err(|source| WorkloadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "network".into());
    parse(&text, &stem, batch).map_err(|e| match e {
        WorkloadError::Toml { message, .. } => WorkloadError::Toml {
            path: path.to_path_buf(),
            message,
        },
        e => e.in_file(path),
    })
}

/// Parses a workload file's text; `default_name` names the network if the file does not.
pub fn parse(
    text: &str,
    default_name: &str,
    batch_override: Option<usize>,
) -> Result<Graph, WorkloadError> {
    let mut top: Table = toml::from_str(text).map_err(|e| WorkloadError::Toml {
        path: default_name.into(),
        message: e.to_string(),
    })?;
    for key in top.keys() {
        if !TOP_KEYS.split(", ").any(|k| k == key) {
            return Err(WorkloadError::UnknownParam {
                key: key.clone(),
                context: "the top level of a workload file".into(),
                accepted: TOP_KEYS.into(),
            });
        }
    }
    let name = match top.remove("name") {
        Some(Value::String(s)) => s,
        Some(v) => return Err(bad("name", format!("expected a string, got {v}"))),
        None => default_name.to_string(),
    };
    let batch = match (batch_override, top.remove("batch")) {
        (Some(0), _) => return Err(bad("batch", "--batch must be ≥ 1".into())),
        (Some(b), _) => b,
        (None, Some(v)) => match v.as_integer() {
            Some(b) if b >= 1 => b as usize,
            _ => {
                return Err(bad(
                    "batch",
                    format!("expected a positive integer, got {v}"),
                ))
            }
        },
        (None, None) => 1,
    };
    let dtype = match top.remove("dtype") {
        Some(v) => {
            let s = v.as_str().unwrap_or_default().to_string();
            DType::parse(&s)
                .filter(|d| *d != DType::Int32)
                .ok_or_else(|| {
                    bad(
                        "dtype",
                        format!("unknown dtype {v}; use one of {}", DType::USER_CHOICES),
                    )
                })?
        }
        None => DType::Fp16,
    };
    let common = Common {
        name: name.clone(),
        batch,
        dtype,
    };
    match (top.remove("family"), top.contains_key("layer")) {
        (Some(_), true) => Err(bad(
            "family",
            "a file either names a family or lists [[layer]]s, not both".into(),
        )),
        (Some(Value::String(family)), false) => {
            let mut params = match top.remove("params") {
                Some(Value::Table(t)) => t,
                Some(v) => return Err(bad("params", format!("expected a table [params], got {v}"))),
                None => Table::new(),
            };
            for key in ["image_size", "seq_len"] {
                if let Some(v) = top.remove(key) {
                    params.insert(key.into(), v);
                }
            }
            if let Some(k) = top.keys().next() {
                return Err(bad(k, "not used by family files; put family parameters under [params]".into()));
            }
            families::build(&family, params, &common)
        }
        (Some(v), false) => Err(bad("family", format!("expected a family name string, got {v}"))),
        (None, true) => layers(top, &common),
        (None, false) => Err(WorkloadError::MissingKey {
            key: "family".into(),
            message: "a workload file needs `family = \"...\"` (see `coex families`) or [[layer]] entries".into(),
        }),
    }
}

fn bad(key: &str, message: String) -> WorkloadError {
    WorkloadError::BadParam {
        key: key.to_string(),
        message,
    }
}

struct LayerEntry {
    name: String,
    spec: spec::Spec,
    inputs: Vec<String>,
}

fn layers(mut top: Table, common: &Common) -> Result<Graph, WorkloadError> {
    let mut g = Graph::new(common.name.clone(), common.dtype);
    // Inputs: `input = [3, 224, 224]` or `[input.NAME] shape = [...]`.
    let mut first_input = None;
    match top.remove("input") {
        Some(Value::Array(a)) => {
            let shape = sizes("input", &a)?;
            let mut full = vec![common.batch];
            full.extend(shape);
            first_input = Some(g.input("input", &full)?);
        }
        Some(Value::Table(t)) => {
            for (iname, v) in t {
                let key = format!("input.{iname}");
                let tv = v
                    .as_table()
                    .ok_or_else(|| bad(&key, "expected a table with `shape`".into()))?;
                let shape = match tv.get("shape") {
                    Some(Value::Array(a)) => sizes(&key, a)?,
                    _ => return Err(bad(&key, "needs `shape = [...]` (per-sample)".into())),
                };
                let dtype = match tv.get("dtype").and_then(|d| d.as_str()) {
                    Some(s) => {
                        DType::parse(s).ok_or_else(|| bad(&key, format!("unknown dtype '{s}'")))?
                    }
                    None => common.dtype,
                };
                let mut full = vec![common.batch];
                full.extend(shape);
                let idx = g.input_typed(&iname, &full, dtype)?;
                first_input.get_or_insert(idx);
            }
        }
        Some(v) => {
            return Err(bad(
                "input",
                format!("expected a shape list or [input.NAME] tables, got {v}"),
            ))
        }
        None => {
            return Err(WorkloadError::MissingKey {
                key: "input".into(),
                message: "a layer-list file needs `input = [C, H, W]` (per-sample shape)".into(),
            })
        }
    }
    let entries = match top.remove("layer") {
        Some(Value::Array(a)) => a,
        _ => return Err(bad("layer", "expected [[layer]] tables".into())),
    };
    let mut parsed = Vec::with_capacity(entries.len());
    let mut numbers: HashMap<String, usize> = HashMap::new();
    let mut prev = g.node(first_input.expect("input created")).name.clone();
    for (i, v) in entries.into_iter().enumerate() {
        let number = i + 1;
        let wrap = |name: &str, e: WorkloadError| WorkloadError::InLayer {
            layer: name.to_string(),
            number,
            source: Box::new(e),
        };
        let Value::Table(mut t) = v else {
            return Err(bad("layer", format!("[[layer]] #{number} is not a table")));
        };
        let name = match t.remove("name") {
            Some(Value::String(s)) => s,
            None => format!("layer{number}"),
            Some(v) => {
                return Err(wrap(
                    &format!("#{number}"),
                    bad("name", format!("expected a string, got {v}")),
                ))
            }
        };
        let op_text = match t.remove("op") {
            Some(Value::String(s)) => s,
            Some(v) => {
                return Err(wrap(
                    &name,
                    bad(
                        "op",
                        format!(
                            "expected a string op spec such as \"conv2d k=64 r=3\" (see `coex families`), got {v}"
                        ),
                    ),
                ))
            }
            None => {
                return Err(wrap(
                    &name,
                    WorkloadError::MissingKey {
                        key: "op".into(),
                        message: "each layer needs op = \"<kind> key=value ...\"".into(),
                    },
                ))
            }
        };
        let inputs = match t.remove("inputs") {
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| wrap(&name, bad("inputs", "expected layer names".into())))
                })
                .collect::<Result<Vec<_>, _>>()?,
            Some(Value::String(s)) => vec![s],
            Some(_) => {
                return Err(wrap(
                    &name,
                    bad("inputs", "expected a list of layer names".into()),
                ))
            }
            None => vec![prev.clone()],
        };
        let mut spec = spec::parse(&op_text).map_err(|e| wrap(&name, e))?;
        // Table form: extra keys are op parameters.
        for (k, v) in t {
            spec.params.insert(k, v);
        }
        if g.find(&name).is_some() {
            return Err(wrap(
                &name,
                bad(
                    "name",
                    format!("'{name}' is reserved for a network input; rename the layer"),
                ),
            ));
        }
        if let Some(first) = numbers.insert(name.clone(), number) {
            return Err(wrap(
                &name,
                bad(
                    "name",
                    format!(
                        "[[layer]] #{first} already has the name '{name}'; layer names must be unique"
                    ),
                ),
            ));
        }
        prev = name.clone();
        parsed.push(LayerEntry { name, spec, inputs });
    }
    insert_in_dependency_order(&mut g, parsed)?;
    Ok(g)
}

/// Adds layers so that every layer comes after its inputs; a cycle or a dangling
/// input name is an error naming the layer.
fn insert_in_dependency_order(
    g: &mut Graph,
    entries: Vec<LayerEntry>,
) -> Result<(), WorkloadError> {
    let index: HashMap<&str, usize> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.name.as_str(), i))
        .collect();
    let mut deps = petgraph::graph::DiGraph::<usize, ()>::new();
    let nodes: Vec<_> = (0..entries.len()).map(|i| deps.add_node(i)).collect();
    for (i, e) in entries.iter().enumerate() {
        for inp in &e.inputs {
            if let Some(&j) = index.get(inp.as_str()) {
                deps.add_edge(nodes[j], nodes[i], ());
            } else if g.find(inp).is_none() {
                return Err(WorkloadError::UnknownInput {
                    layer: e.name.clone(),
                    input: inp.clone(),
                });
            }
        }
    }
    if let Err(c) = petgraph::algo::toposort(&deps, None) {
        return Err(WorkloadError::Cycle {
            node: entries[deps[c.node_id()]].name.clone(),
        });
    }
    // Acyclic: insert in file order, deferring a layer until its inputs exist, so the
    // network reads in the order its author wrote it.
    let mut done = vec![false; entries.len()];
    while done.iter().any(|d| !d) {
        for (i, e) in entries.iter().enumerate() {
            if done[i] || e.inputs.iter().any(|n| g.find(n).is_none()) {
                continue;
            }
            let wrap = |err: WorkloadError| WorkloadError::InLayer {
                layer: e.name.clone(),
                number: i + 1,
                source: Box::new(err),
            };
            let inputs: Vec<_> = e.inputs.iter().filter_map(|n| g.find(n)).collect();
            let first = inputs.first().map(|&x| g.node(x).output.clone());
            let op = spec::op_in_graph(&e.spec, first.as_ref()).map_err(wrap)?;
            g.add(&e.name, op, &inputs).map_err(wrap)?;
            done[i] = true;
        }
    }
    Ok(())
}

fn sizes(key: &str, a: &[Value]) -> Result<Vec<usize>, WorkloadError> {
    a.iter()
        .map(|v| match v.as_integer() {
            Some(i) if i >= 1 => Ok(i as usize),
            _ => Err(bad(
                key,
                format!("every dimension must be a positive integer, got {v}"),
            )),
        })
        .collect()
}
