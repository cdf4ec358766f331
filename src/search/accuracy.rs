//! Accuracy providers: a CSV table keyed by NAS-Bench-201 arch string, an external
//! predictor command, or an analytic proxy.
//!
//! **Predictor protocol.** coex starts the command once per batch, writes one JSON
//! object per candidate to its stdin (`{"id": 17, "network": {...workload file as
//! JSON...}, "arch": "|...|" or null, "macs": N, "params": N}`), closes stdin, and
//! reads one line per candidate from its stdout, in the same order: a JSON object
//! `{"accuracy": 93.1}` (percent; an `"id"` field, when present, must match) or a bare
//! number. A predictor that exits early, prints anything else, or takes longer than
//! `timeout_s` for the batch is an error naming the first candidate without a result.
//!
//! **Proxy.** `proxy_pct = chance + (95 − chance) · (1 − exp(−ln(1 + MACs/10⁶) / 3))`
//! with `chance = 100 / classes` (0 when the network has no `classes` parameter): a
//! saturating function of log MACs, labeled `proxy` in `accuracy_source`. It ranks
//! bigger networks higher and predicts nothing else; use a table or a predictor for
//! real accuracies.

use super::sweep::AccuracySource;
use super::SearchError;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// One network whose accuracy is asked for.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// The id of the first design point using this network.
    pub id: u64,
    /// How errors name it: `id 17 (arch |...|)`.
    pub label: String,
    pub network: serde_json::Value,
    pub arch: Option<String>,
    pub macs: u64,
    pub params: u64,
    /// Classes of the classifier, when known (chance accuracy = 100 / classes).
    pub classes: Option<u64>,
    /// A NB201 cell whose output is zero: chance accuracy whatever the provider.
    pub disconnected: bool,
}

pub struct Provider {
    source: AccuracySource,
    table: HashMap<String, f64>,
    column: String,
}

/// The analytic proxy (see the module notes), percent.
pub fn proxy_pct(macs: u64, classes: Option<u64>) -> f64 {
    let chance = classes.map(|c| 100.0 / c.max(1) as f64).unwrap_or(0.0);
    chance + (95.0 - chance) * (1.0 - (-(1.0 + macs as f64 / 1e6).ln() / 3.0).exp())
}

impl Provider {
    pub fn new(source: &AccuracySource) -> Result<Provider, SearchError> {
        let mut table = HashMap::new();
        let mut column = String::new();
        if let AccuracySource::Table { file, column: col } = source {
            let bad = |message: String| SearchError::Table {
                path: file.clone(),
                message,
            };
            let mut r = csv::Reader::from_path(file).map_err(|e| {
                bad(format!(
                    "{e}; ship data/nb201_accuracy.csv or set [accuracy] file = \"...\""
                ))
            })?;
            let h = r.headers().map_err(|e| bad(e.to_string()))?.clone();
            let find = |name: &str| {
                h.iter()
                    .position(|c| c == name)
                    .ok_or_else(|| bad(format!("no column '{name}'")))
            };
            let (a, c) = (find("arch_str")?, find(col)?);
            for (i, rec) in r.records().enumerate() {
                let rec = rec.map_err(|e| bad(format!("line {}: {e}", i + 2)))?;
                let v: f64 = rec.get(c).unwrap_or_default().parse().map_err(|_| {
                    bad(format!(
                        "line {}: column {col} is '{}', not a number",
                        i + 2,
                        rec.get(c).unwrap_or_default()
                    ))
                })?;
                table.insert(rec.get(a).unwrap_or_default().to_string(), v);
            }
            column = col.clone();
        }
        Ok(Provider {
            source: source.clone(),
            table,
            column,
        })
    }

    /// What the `accuracy_source` column says for results of this provider.
    pub fn label(&self) -> String {
        match &self.source {
            AccuracySource::Table { .. } => format!("table:{}", self.column),
            AccuracySource::Predictor { .. } => "predictor".into(),
            AccuracySource::Proxy => "proxy".into(),
        }
    }

    /// Accuracy (percent) and its source for every candidate, in order.
    pub fn predict(&self, cands: &[Candidate]) -> Result<Vec<(f64, String)>, SearchError> {
        let chance = |c: &Candidate| {
            (
                100.0 / c.classes.unwrap_or(10).max(1) as f64,
                "chance".to_string(),
            )
        };
        match &self.source {
            AccuracySource::Table { file, .. } => cands
                .iter()
                .map(|c| {
                    let arch = c.arch.as_deref().unwrap_or_default();
                    self.table
                        .get(arch)
                        .map(|&v| (v, self.label()))
                        .ok_or_else(|| SearchError::Table {
                            path: file.clone(),
                            message: format!("no row for arch '{arch}' (candidate {})", c.label),
                        })
                })
                .collect(),
            AccuracySource::Proxy => Ok(cands
                .iter()
                .map(|c| {
                    if c.disconnected {
                        chance(c)
                    } else {
                        (proxy_pct(c.macs, c.classes), "proxy".to_string())
                    }
                })
                .collect()),
            AccuracySource::Predictor {
                command,
                timeout_s,
                batch,
            } => {
                let mut out: Vec<Option<(f64, String)>> = cands
                    .iter()
                    .map(|c| c.disconnected.then(|| chance(c)))
                    .collect();
                let ask: Vec<usize> = (0..cands.len()).filter(|&i| out[i].is_none()).collect();
                for chunk in ask.chunks(*batch) {
                    let group: Vec<&Candidate> = chunk.iter().map(|&i| &cands[i]).collect();
                    let vals = run_predictor(command, *timeout_s, &group)?;
                    for (&i, v) in chunk.iter().zip(vals) {
                        out[i] = Some((v, "predictor".into()));
                    }
                }
                Ok(out.into_iter().map(|o| o.unwrap_or_default()).collect())
            }
        }
    }
}

/// Runs the predictor on one batch; see the module notes for the protocol.
fn run_predictor(
    command: &[String],
    timeout_s: f64,
    cands: &[&Candidate],
) -> Result<Vec<f64>, SearchError> {
    let shown = command.join(" ");
    let err = |c: &Candidate, message: String| SearchError::Predictor {
        command: shown.clone(),
        candidate: c.label.clone(),
        message,
    };
    let first = cands[0];
    let mut child = Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            err(
                first,
                format!("cannot start it: {e}; check [accuracy] command"),
            )
        })?;
    let mut input = String::new();
    for c in cands {
        let line = serde_json::json!({
            "id": c.id,
            "network": c.network,
            "arch": c.arch,
            "macs": c.macs,
            "params": c.params,
        });
        input.push_str(&line.to_string());
        input.push('\n');
    }
    let mut stdin = child.stdin.take();
    let writer = std::thread::spawn(move || {
        if let Some(s) = stdin.as_mut() {
            // A predictor that exits early closes the pipe: reported by the reader.
            let _ = s.write_all(input.as_bytes());
        }
        drop(stdin);
    });
    let stdout = child.stdout.take();
    let (tx, rx) = mpsc::channel::<Option<String>>();
    std::thread::spawn(move || {
        if let Some(out) = stdout {
            for line in BufReader::new(out).lines() {
                match line {
                    Ok(l) => {
                        if tx.send(Some(l)).is_err() {
                            return;
                        }
                    }
                    Err(_) => break,
                }
            }
        }
        let _ = tx.send(None);
    });
    let mut stderr = child.stderr.take();
    let mut stderr_tail = move || -> String {
        let mut s = String::new();
        if let Some(e) = stderr.as_mut() {
            let _ = e.take(64 * 1024).read_to_string(&mut s);
        }
        let s = s.trim();
        let tail: String = s
            .chars()
            .rev()
            .take(400)
            .collect::<String>()
            .chars()
            .rev()
            .collect();
        if tail.is_empty() {
            String::new()
        } else {
            format!("; its stderr ends: {tail}")
        }
    };
    let deadline = Instant::now() + Duration::from_secs_f64(timeout_s);
    let mut vals = Vec::with_capacity(cands.len());
    while vals.len() < cands.len() {
        let c = cands[vals.len()];
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Some(line)) => {
                let t = line.trim();
                if t.is_empty() {
                    continue;
                }
                match parse_result(t, c.id) {
                    Ok(v) => vals.push(v),
                    Err(why) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        let shown_line: String = t.chars().take(120).collect();
                        return Err(err(
                            c,
                            format!(
                                "result line {} is '{shown_line}': {why}; a predictor prints one JSON object {{\"accuracy\": PERCENT}} per input line, in order",
                                vals.len() + 1
                            ),
                        ));
                    }
                }
            }
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait();
                let _ = writer.join();
                let how = match status {
                    Ok(s) => match s.code() {
                        Some(code) => format!("exited with status {code}"),
                        None => "was killed by a signal".into(),
                    },
                    Err(e) => format!("could not be waited for ({e})"),
                };
                return Err(err(
                    c,
                    format!(
                        "the predictor {how} after {} of {} results{}",
                        vals.len(),
                        cands.len(),
                        stderr_tail()
                    ),
                ));
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(err(
                    c,
                    format!(
                        "no result within {timeout_s} s ({} of {} results arrived); the predictor was stopped: raise [accuracy] timeout_s or fix the predictor",
                        vals.len(),
                        cands.len()
                    ),
                ));
            }
        }
    }
    let _ = writer.join();
    let _ = child.wait();
    Ok(vals)
}

fn parse_result(line: &str, id: u64) -> Result<f64, String> {
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("not JSON ({e})"))?;
    let acc = match &v {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::Object(o) => {
            if let Some(got) = o.get("id") {
                if got.as_u64() != Some(id) {
                    return Err(format!("its id is {got}, expected {id}"));
                }
            }
            o.get("accuracy").and_then(|a| a.as_f64())
        }
        _ => None,
    };
    acc.filter(|a| a.is_finite())
        .ok_or_else(|| "no finite \"accuracy\" number".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_saturates_and_is_monotone() {
        let a = proxy_pct(1_000_000, Some(10));
        let b = proxy_pct(100_000_000, Some(10));
        let c = proxy_pct(100_000_000_000, Some(10));
        assert!(10.0 < a && a < b && b < c && c < 95.0, "{a} {b} {c}");
        assert!((proxy_pct(0, Some(10)) - 10.0).abs() < 1e-12);
    }

    #[test]
    fn results_parse() {
        assert_eq!(parse_result("{\"accuracy\": 91.5}", 3), Ok(91.5));
        assert_eq!(parse_result("{\"id\": 3, \"accuracy\": 91.5}", 3), Ok(91.5));
        assert!(parse_result("{\"id\": 4, \"accuracy\": 91.5}", 3).is_err());
        assert_eq!(parse_result("88", 3), Ok(88.0));
        assert!(parse_result("hello", 3).is_err());
        assert!(parse_result("{\"acc\": 1}", 3).is_err());
    }
}
