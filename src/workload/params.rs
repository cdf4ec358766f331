//! Typed, documented parameters for family builders and op specs.
//!
//! Each family and op kind declares its parameters once (name, TOML default, meaning);
//! the same table drives `coex families`, the defaults a builder sees, and the
//! "unknown parameter" errors, so documentation and behaviour cannot drift apart.

use super::WorkloadError;
use toml::{Table, Value};

/// One documented parameter. `default` is a TOML literal (`"[2, 2, 2, 2]"`, `"64"`, `"\"relu\""`).
#[derive(Clone, Copy, Debug)]
pub struct ParamDoc {
    pub name: &'static str,
    pub default: &'static str,
    pub meaning: &'static str,
}

/// Shorthand for declaring parameter tables.
pub const fn p(name: &'static str, default: &'static str, meaning: &'static str) -> ParamDoc {
    ParamDoc {
        name,
        default,
        meaning,
    }
}

/// Reads parameters from a table, falling back to documented defaults.
pub struct ParamReader<'a> {
    context: String,
    table: Table,
    docs: &'a [ParamDoc],
}

impl<'a> ParamReader<'a> {
    /// Fails on the first key the docs do not declare.
    pub fn new(
        context: impl Into<String>,
        table: Table,
        docs: &'a [ParamDoc],
    ) -> Result<Self, WorkloadError> {
        let context = context.into();
        for key in table.keys() {
            if !docs.iter().any(|d| d.name == key) {
                return Err(WorkloadError::UnknownParam {
                    key: key.clone(),
                    context,
                    accepted: accepted(docs),
                });
            }
        }
        Ok(ParamReader {
            context,
            table,
            docs,
        })
    }

    pub fn context(&self) -> &str {
        &self.context
    }

    /// Whether the user gave this key (as opposed to the default applying).
    pub fn given(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    fn value(&self, key: &str) -> Result<Value, WorkloadError> {
        if let Some(v) = self.table.get(key) {
            return Ok(v.clone());
        }
        let doc = self.docs.iter().find(|d| d.name == key).unwrap_or_else(|| {
            panic!(
                "{}: builder reads undeclared parameter '{key}'",
                self.context
            )
        });
        if doc.default.is_empty() {
            return Err(WorkloadError::MissingKey {
                key: key.to_string(),
                message: format!("{} requires it ({})", self.context, doc.meaning),
            });
        }
        parse_literal(doc.default)
            .ok_or_else(|| panic!("{}: bad default for '{key}'", self.context))
    }

    fn bad(&self, key: &str, message: impl Into<String>) -> WorkloadError {
        WorkloadError::BadParam {
            key: key.to_string(),
            message: format!("{} ({})", message.into(), self.context),
        }
    }

    /// A size: integer from 1 to [`MAX_SIZE`].
    pub fn size(&self, key: &str) -> Result<usize, WorkloadError> {
        let v = self.value(key)?;
        as_size(&v).ok_or_else(|| {
            self.bad(
                key,
                format!("expected a positive integer (at most {MAX_SIZE}), got {v}"),
            )
        })
    }

    /// An integer from 0 to [`MAX_SIZE`] (counts that may be zero, such as a KV-cache length).
    pub fn count(&self, key: &str) -> Result<usize, WorkloadError> {
        let v = self.value(key)?;
        match v.as_integer() {
            Some(i) if (0..=MAX_SIZE as i64).contains(&i) => Ok(i as usize),
            _ => Err(self.bad(
                key,
                format!("expected an integer ≥ 0 (at most {MAX_SIZE}), got {v}"),
            )),
        }
    }

    pub fn sizes(&self, key: &str) -> Result<Vec<usize>, WorkloadError> {
        let v = self.value(key)?;
        let arr = match &v {
            Value::Array(a) => a.clone(),
            Value::Integer(_) => vec![v.clone()],
            _ => {
                return Err(self.bad(
                    key,
                    format!("expected a list of positive integers, got {v}"),
                ))
            }
        };
        if arr.is_empty() {
            return Err(self.bad(key, "expected a non-empty list"));
        }
        arr.iter()
            .map(|x| {
                as_size(x).ok_or_else(|| {
                    self.bad(
                        key,
                        format!(
                            "every entry must be a positive integer (at most {MAX_SIZE}), got {x}"
                        ),
                    )
                })
            })
            .collect()
    }

    /// One integer (any sign).
    pub fn int(&self, key: &str) -> Result<i64, WorkloadError> {
        let v = self.value(key)?;
        v.as_integer()
            .ok_or_else(|| self.bad(key, format!("expected an integer, got {v}")))
    }

    pub fn ints(&self, key: &str) -> Result<Vec<i64>, WorkloadError> {
        let v = self.value(key)?;
        match &v {
            Value::Array(a) => a
                .iter()
                .map(|x| {
                    x.as_integer()
                        .ok_or_else(|| self.bad(key, format!("expected integers, got {x}")))
                })
                .collect(),
            Value::Integer(i) => Ok(vec![*i]),
            _ => Err(self.bad(key, format!("expected a list of integers, got {v}"))),
        }
    }

    pub fn float(&self, key: &str) -> Result<f64, WorkloadError> {
        let v = self.value(key)?;
        let f = match &v {
            Value::Float(f) => *f,
            Value::Integer(i) => *i as f64,
            _ => return Err(self.bad(key, format!("expected a number, got {v}"))),
        };
        if !(0.0..=MAX_FLOAT).contains(&f) {
            return Err(self.bad(
                key,
                format!("expected a number from 0 to {MAX_FLOAT:e}, got {f}"),
            ));
        }
        Ok(f)
    }

    pub fn flag(&self, key: &str) -> Result<bool, WorkloadError> {
        let v = self.value(key)?;
        v.as_bool()
            .ok_or_else(|| self.bad(key, format!("expected true or false, got {v}")))
    }

    pub fn text(&self, key: &str) -> Result<String, WorkloadError> {
        let v = self.value(key)?;
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| self.bad(key, format!("expected a string, got {v}")))
    }

    /// A string that must be one of `choices`.
    pub fn choice(&self, key: &str, choices: &[&str]) -> Result<String, WorkloadError> {
        let s = self.text(key)?;
        if choices.contains(&s.as_str()) {
            Ok(s)
        } else {
            Err(self.bad(key, format!("'{s}' is not one of {}", choices.join(", "))))
        }
    }

    pub fn activation(&self, key: &str) -> Result<super::Activation, WorkloadError> {
        let s = self.text(key)?;
        super::Activation::parse(&s).ok_or_else(|| {
            let names: Vec<&str> = super::Activation::ALL.iter().map(|a| a.name()).collect();
            self.bad(
                key,
                format!("unknown activation '{s}'; use one of {}", names.join(", ")),
            )
        })
    }

    pub fn dtype(&self, key: &str) -> Result<super::DType, WorkloadError> {
        let s = self.text(key)?;
        super::DType::parse(&s).ok_or_else(|| {
            self.bad(
                key,
                format!(
                    "unknown dtype '{s}'; use one of {}",
                    super::DType::USER_CHOICES
                ),
            )
        })
    }
}

/// The largest single size or count a parameter may take (2^31). Builders multiply
/// two such values at most before the graph checks each tensor against
/// [`super::MAX_ELEMENTS`], so their arithmetic cannot wrap.
pub const MAX_SIZE: usize = 1 << 31;

/// The largest real-valued parameter (multipliers, capacity factors, skews).
pub const MAX_FLOAT: f64 = 1e6;

/// An integer from 1 to [`MAX_SIZE`].
pub fn as_size(v: &Value) -> Option<usize> {
    v.as_integer()
        .filter(|&i| (1..=MAX_SIZE as i64).contains(&i))
        .map(|i| i as usize)
}

/// Parses a TOML value literal such as `[1, 2]`, `3`, `"relu"`, `true`.
pub fn parse_literal(s: &str) -> Option<Value> {
    // TOML spells the special floats in lower case only; `NaN` or `Inf` is meant
    // as the same number (and then refused by range checks with a clear message).
    let special = ["nan", "+nan", "-nan", "inf", "+inf", "-inf"];
    let s = match special.iter().find(|w| s.trim().eq_ignore_ascii_case(w)) {
        Some(w) => w,
        None => s,
    };
    let t: Table = toml::from_str(&format!("v = {s}")).ok()?;
    t.get("v").cloned()
}

pub fn accepted(docs: &[ParamDoc]) -> String {
    docs.iter().map(|d| d.name).collect::<Vec<_>>().join(", ")
}

/// Human-readable parameter table (for `coex families` and spec help).
pub fn describe(docs: &[ParamDoc]) -> String {
    let w = docs.iter().map(|d| d.name.len()).max().unwrap_or(0);
    let dw = docs
        .iter()
        .map(|d| d.default.len())
        .max()
        .unwrap_or(0)
        .min(28);
    docs.iter()
        .map(|d| {
            let def = if d.default.is_empty() {
                "(required)"
            } else {
                d.default
            };
            format!(
                "    {:w$}  {:dw$}  {}\n",
                d.name,
                def,
                d.meaning,
                w = w,
                dw = dw
            )
        })
        .collect()
}
