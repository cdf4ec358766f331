//! `coex report DIR`: one self-contained `report.html` of an explore or calibrate
//! output folder: its figures inlined as data URIs (no network access needed), the
//! specs and whether each holds, the top designs and their parameters, and the run's
//! settings, so a sweep can be shared as one file.

use super::{PlotError, Table};
use base64::Engine;
use std::fmt::Write;
use std::path::{Path, PathBuf};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn read_err(path: &Path, e: impl std::fmt::Display) -> PlotError {
    PlotError::Read {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

/// Columns a reader looks at first: the metrics, then what the design is.
const FIRST: [&str; 7] = [
    "id",
    "accuracy",
    "latency_s",
    "energy_j",
    "area_mm2",
    "feasible",
    "accelerator",
];

/// An HTML table of the first `limit` rows of a CSV, metric columns first.
fn csv_table(t: &Table, limit: usize) -> String {
    let mut order: Vec<usize> = FIRST
        .iter()
        .filter_map(|c| t.header.iter().position(|h| h == c))
        .collect();
    let rest: Vec<usize> = (0..t.header.len()).filter(|i| !order.contains(i)).collect();
    order.extend(rest);
    let mut s = String::from("<div class=scroll><table><thead><tr>");
    for &i in &order {
        let _ = write!(s, "<th>{}</th>", esc(&t.header[i]));
    }
    s.push_str("</tr></thead><tbody>");
    for r in t.rows.iter().take(limit) {
        s.push_str("<tr>");
        for &i in &order {
            let _ = write!(
                s,
                "<td>{}</td>",
                esc(r.get(i).map(String::as_str).unwrap_or(""))
            );
        }
        s.push_str("</tr>");
    }
    s.push_str("</tbody></table></div>");
    if t.rows.len() > limit {
        let _ = write!(s, "<p>{} of {} rows shown.</p>", limit, t.rows.len());
    }
    s
}

/// Writes `DIR/report.html` and returns its path.
pub fn report(dir: &Path) -> Result<PathBuf, PlotError> {
    let entries = std::fs::read_dir(dir).map_err(|e| read_err(dir, e))?;
    let mut pngs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .collect();
    pngs.sort();
    let title = format!(
        "coex report: {}",
        dir.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let mut body = String::new();
    let _ = write!(body, "<h1>{}</h1>", esc(&title));
    let summary = dir.join("summary.json");
    let summary: Option<serde_json::Value> = if summary.is_file() {
        let text = std::fs::read_to_string(&summary).map_err(|e| read_err(&summary, e))?;
        Some(serde_json::from_str(&text).map_err(|e| read_err(&summary, e))?)
    } else {
        None
    };
    // Whether each spec holds: how many evaluated designs meet it (points.csv lists
    // the specs each design fails).
    let points = dir.join("points.csv");
    let failed: Option<Vec<String>> = if points.is_file() {
        Table::read(&points)?.strings("failed_specs").ok()
    } else {
        None
    };
    if let Some(s) = &summary {
        if let Some(specs) = s["specs"].as_array() {
            body.push_str("<h2>Specs</h2><ul>");
            for sp in specs {
                let text = sp
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| sp.to_string());
                let mark = match &failed {
                    Some(f) => {
                        let met = f
                            .iter()
                            .filter(|x| !x.split("; ").any(|y| y == text))
                            .count();
                        let class = if met > 0 { "ok" } else { "bad" };
                        format!(
                            "<span class={class}>met by {met} of {} designs</span>",
                            f.len()
                        )
                    }
                    None => String::new(),
                };
                let _ = write!(body, "<li><code>{}</code> {mark}</li>", esc(&text));
            }
            body.push_str("</ul>");
        }
    }
    for (name, limit) in [("pareto.csv", 20usize), ("points.csv", 10)] {
        let p = dir.join(name);
        if p.is_file() {
            let t = Table::read(&p)?;
            let heading = if name == "pareto.csv" {
                "Top designs (Pareto front)"
            } else {
                "Evaluated points"
            };
            let _ = write!(body, "<h2>{heading}</h2>{}", csv_table(&t, limit));
            if name == "pareto.csv" {
                break;
            }
        }
    }
    if !pngs.is_empty() {
        body.push_str("<h2>Figures</h2>");
    }
    for p in &pngs {
        let bytes = std::fs::read(p).map_err(|e| read_err(p, e))?;
        let data = base64::engine::general_purpose::STANDARD.encode(bytes);
        let name = p
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let _ = write!(
            body,
            "<figure><img alt=\"{n}\" src=\"data:image/png;base64,{data}\"><figcaption>{n}</figcaption></figure>",
            n = esc(&name)
        );
    }
    if let Some(s) = &summary {
        let pretty = serde_json::to_string_pretty(s).unwrap_or_default();
        let _ = write!(body, "<h2>Settings</h2><pre>{}</pre>", esc(&pretty));
    }
    let html = format!(
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{t}</title><style>\
body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;font-size:13px}}\
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}.scroll{{overflow-x:auto}}img{{max-width:100%;border:1px solid #eee}}\
.ok{{color:#1a7f37}}.bad{{color:#c62828}}pre{{background:#f6f8fa;padding:1em;overflow:auto}}</style></head>\
<body>{body}<script>\
// Marks the page at load: every figure decoded (a headless browser test reads it).\n\
window.addEventListener('load',()=>{{const ok=Array.from(document.images).every(i=>i.complete&&i.naturalWidth>0);\
document.body.dataset.images=ok?'ok':'broken';}});</script></body></html>",
        t = esc(&title)
    );
    let out = dir.join("report.html");
    std::fs::write(&out, html).map_err(|e| read_err(&out, e))?;
    Ok(out)
}
