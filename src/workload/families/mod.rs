//! Network families: builder functions with documented parameters. A fixed network
//! is a family at fixed parameters; the same builders later span NAS search spaces.

mod cnn;
mod mamba;
mod mbconv;
mod mixer;
mod nasbench201;
mod net;
mod transformer;

pub use net::Net;

use super::params::{ParamDoc, ParamReader};
use super::tensor::DType;
use super::{Graph, WorkloadError};
use toml::Table;

/// Settings every workload file may give, whatever its family.
#[derive(Clone, Debug)]
pub struct Common {
    pub name: String,
    pub batch: usize,
    pub dtype: DType,
}

impl Default for Common {
    fn default() -> Self {
        Common {
            name: "network".into(),
            batch: 1,
            dtype: DType::Fp16,
        }
    }
}

pub type BuildFn = fn(&ParamReader, &Common) -> Result<Graph, WorkloadError>;

/// A family: its name, what it builds, its parameters (with defaults) and its builder.
pub struct Family {
    pub name: &'static str,
    pub about: &'static str,
    pub params: &'static [ParamDoc],
    pub build: BuildFn,
}

/// Every family coex knows, in the order `coex families` lists them.
pub fn all() -> Vec<&'static Family> {
    let mut v: Vec<&'static Family> = Vec::new();
    v.extend(cnn::FAMILIES);
    v.extend(mbconv::FAMILIES);
    v.extend(nasbench201::FAMILIES);
    v.extend(transformer::FAMILIES);
    v.extend(mixer::FAMILIES);
    v.extend(mamba::FAMILIES);
    v
}

pub fn find(name: &str) -> Option<&'static Family> {
    all().into_iter().find(|f| f.name == name)
}

/// Builds a family network from its `[params]` table.
pub fn build(name: &str, params: Table, common: &Common) -> Result<Graph, WorkloadError> {
    let family = find(name).ok_or_else(|| WorkloadError::UnknownFamily {
        family: name.to_string(),
        known: all().iter().map(|f| f.name).collect::<Vec<_>>().join(", "),
    })?;
    let reader = ParamReader::new(format!("family '{name}'"), params, family.params)?;
    (family.build)(&reader, common)
}

/// `coex families` text.
pub fn describe_all() -> String {
    let mut s = String::new();
    for f in all() {
        s.push_str(&format!("{}: {}\n", f.name, f.about));
        s.push_str(&super::params::describe(f.params));
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_builds_with_its_defaults() {
        for f in all() {
            let g = build(f.name, Table::new(), &Common::default());
            assert!(g.is_ok(), "{}: {:?}", f.name, g.err());
            assert!(g.unwrap().len() > 3, "{} builds a real network", f.name);
        }
    }

    #[test]
    fn unknown_family_and_param_are_named() {
        let e = build("resnot", Table::new(), &Common::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("resnot") && e.contains("resnet"), "{e}");
        let mut t = Table::new();
        t.insert("depthz".into(), toml::Value::Integer(3));
        let e = build("resnet", t, &Common::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("depthz") && e.contains("depths"), "{e}");
    }
}
