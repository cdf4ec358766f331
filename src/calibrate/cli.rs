//! The `coex calibrate` command's arguments and output (kept here so that `main.rs`
//! only names the subcommand).

use super::measure::Format;
use super::{Config, Outcome, Split};
use clap::{Args, ValueEnum};
use std::io::Write;
use std::path::PathBuf;

#[derive(Clone, Copy, ValueEnum)]
pub enum OutFormat {
    Table,
    Json,
}

/// `coex calibrate --accel A.toml --measurements M.csv ...`
#[derive(Args)]
pub struct CalibrateArgs {
    /// The GPU, ASIC or FPGA template to fit (accelerators/{gpu,asic,fpga}/*.toml).
    #[arg(long, short, required_unless_present = "emit_bench")]
    pub accel: Option<PathBuf>,
    /// The measurement file: the tidy format (README, Calibration), or a reference
    /// table read with --from.
    #[arg(long, short, required_unless_present = "emit_bench")]
    pub measurements: Option<PathBuf>,
    /// Read --measurements as: tidy, deepbench-gemm, deepbench-conv, h200-kernels,
    /// eyeriss-silicon, torch-trace (a PyTorch profiler trace, record_shapes=True),
    /// nb201-latency:COLUMN (COLUMN = 1080ti_1, 1080ti_256, pixel3, raspi4).
    #[arg(long, default_value = "tidy")]
    pub from: String,
    /// Write the calibrated template here (same format; fitted values replaced).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// K-fold cross-validation (default 5).
    #[arg(long, conflicts_with = "holdout")]
    pub folds: Option<usize>,
    /// Hold out this fraction of rows instead of cross-validating.
    #[arg(long, conflicts_with = "train")]
    pub holdout: Option<f64>,
    /// Fit on this many random rows and report on all the others (e.g. 200 measured
    /// NAS-Bench-201 networks calibrate the template for the other 15,425).
    #[arg(long, conflicts_with = "folds")]
    pub train: Option<usize>,
    /// Parameters to fit, comma-separated. Default on a GPU: tensor_efficiency,
    /// unaligned_tensor_efficiency, cuda_efficiency, dram_efficiency, l2_efficiency,
    /// launch_overhead_us; conv_efficiency and unaligned_conv_efficiency if a row
    /// runs a conv; dispatch_overhead_us if a row runs eager. On one-op rows, also
    /// the floor of each op class the rows run (gemm_, conv_, attention_,
    /// vector_dispatch_overhead_us, when eager) and vector_dram_efficiency if a row
    /// is element-wise, softmax or a norm. ASIC: array.efficiency,
    /// accelerator.static_power_mw, mac.energy_pj. FPGA: device.clock_mhz,
    /// device.offchip_efficiency, device.static_power_w, the MAC energy.
    #[arg(long, value_delimiter = ',')]
    pub params: Vec<String>,
    /// What the fit minimizes: over ln(predicted/measured), ls (least squares,
    /// Levenberg-Marquardt), l1 (robust to rows the model cannot express) or minimax
    /// (worst row); or mape (the mean of |predicted/measured - 1|). l1, minimax and
    /// mape solve linear programs (good_lp).
    #[arg(long, default_value = "ls")]
    pub fit: String,
    /// Seed of the fold assignment and the bootstrap.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutFormat,
    /// Also write the rows, converted to the tidy format, to this CSV.
    #[arg(long)]
    pub write_measurements: Option<PathBuf>,
    /// Also write every row's measured, uncalibrated and held-out predictions to this CSV.
    #[arg(long)]
    pub write_predictions: Option<PathBuf>,
    /// Folder for report.json, predictions.csv, calibration.png/.svg and report.html
    /// (default: runs/calibrate-<template file name>).
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    /// Skip the report folder.
    #[arg(long)]
    pub no_plots: bool,
    /// Print a PyTorch benchmark script for this kind of device (gpu) instead of fitting.
    #[arg(long, value_name = "KIND")]
    pub emit_bench: Option<String>,
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// A rank correlation, or `-` where it is undefined (fewer than two rows, or every
/// prediction tied).
fn tau(x: f64) -> String {
    match x.is_finite() {
        true => format!("{x:.3}"),
        false => "-".into(),
    }
}

/// A human-readable report.
pub fn table(o: &Outcome) -> String {
    let mut s = String::new();
    let split = match o.split {
        Split::Folds(k) => format!("{k}-fold cross-validation"),
        Split::Holdout(f) => format!("{:.0}% held out", f * 100.0),
        Split::Train(k) => format!("fitted on {k} random rows, held out: the rest"),
    };
    s += &format!(
        "calibrate {} on {}\n{} rows, {split}, seed {}\n\n",
        o.accelerator, o.measurements, o.rows, o.seed
    );
    s += "                 MAPE     median APE  max APE   RMSE(ln)  Kendall  Spearman\n";
    for (name, st) in [
        ("before train", &o.before.train),
        ("before held-out", &o.before.heldout),
        ("after train", &o.after.train),
        ("after held-out", &o.after.heldout),
    ] {
        s += &format!(
            "{name:<16} {:<8} {:<11} {:<9} {:<9.3} {:<8} {}\n",
            pct(st.mape),
            pct(st.median_ape),
            pct(st.max_ape),
            st.rmse_log,
            tau(st.kendall_tau),
            tau(st.spearman_rho)
        );
    }
    s += &format!(
        "held-out MAPE, 90% bootstrap interval: before {}-{}, after {}-{}\n\n",
        pct(o.before.heldout_mape_90[0]),
        pct(o.before.heldout_mape_90[1]),
        pct(o.after.heldout_mape_90[0]),
        pct(o.after.heldout_mape_90[1])
    );
    s += "held-out by group   rows  median APE before -> after  MAPE before -> after tau\n";
    for (g, r) in &o.groups {
        s += &format!(
            "{g:<19} {:<5} {:>8} -> {:<15} {:>8} -> {:<8} {}\n",
            r.after.n,
            pct(r.before.median_ape),
            pct(r.after.median_ape),
            pct(r.before.mape),
            pct(r.after.mape),
            tau(r.after.kendall_tau)
        );
    }
    if o.groups.values().any(|r| r.host_bound_rows > 0) {
        s += "\nwithout the rows the calibrated template predicts on the eager host floor\n\
              (`floor`: their time is the dispatch overhead, so it cannot order them):\n\
              kernel-bound        rows  floor  median APE before -> after  tau before -> after\n";
        for (g, r) in &o.groups {
            let rows = r.after.n - r.host_bound_rows;
            let (mb, ma, tb, ta) = match &r.kernel_bound {
                Some(k) => (
                    pct(k.before.median_ape),
                    pct(k.after.median_ape),
                    tau(k.before.kendall_tau),
                    tau(k.after.kendall_tau),
                ),
                None => ("-".into(), "-".into(), "-".into(), "-".into()),
            };
            s += &format!(
                "{g:<19} {rows:<5} {:<6} {mb:>8} -> {ma:<15} {tb} -> {ta}\n",
                r.host_bound_rows
            );
        }
    }
    let fit_on = match o.split {
        Split::Train(_) => "fit on the training rows",
        _ => "fit on all rows",
    };
    let label = format!("parameter ({fit_on})");
    let w = o
        .params
        .keys()
        .map(|k| k.len())
        .fold(label.len(), usize::max);
    s += &format!("\n{label:<w$} before     after\n");
    let (mut unid, mut bound) = (String::new(), String::new());
    for (k, p) in &o.params {
        let fitted = p.status.starts_with("fitted");
        let at_bound = fitted && p.status != "fitted";
        s += &format!(
            "{k:<w$} {:<10.4} {:.4}{}\n",
            p.before,
            p.after,
            match (fitted, at_bound) {
                (false, _) => " (unchanged)",
                (true, true) => " (at bound)",
                _ => "",
            }
        );
        if !fitted {
            // "unidentifiable: <why>; left unchanged" → "<why>", on its own line.
            let reason = p.status.trim_start_matches("unidentifiable: ");
            let reason = reason.trim_end_matches("; left unchanged");
            unid += &format!("  {k}\n      {reason}\n");
        } else if at_bound {
            bound += &format!("  {k}\n");
        }
    }
    if !unid.is_empty() {
        s += &format!("left unchanged, not identified by these rows:\n{unid}");
    }
    if !bound.is_empty() {
        s += &format!("at a bound (the rows push past what is physical; check them):\n{bound}");
    }
    if !o.skipped.is_empty() {
        s += &format!("\nskipped {} entries of the input:\n", o.skipped.len());
        for k in &o.skipped {
            s += &format!("  line {}: {}\n", k.line, k.why);
        }
    }
    s
}

/// Runs the command.
pub fn run(a: CalibrateArgs, out: &mut impl Write) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(kind) = &a.emit_bench {
        return match kind.as_str() {
            "gpu" => Ok(write!(out, "{}", super::bench::PYTORCH_GPU)?),
            k => Err(format!("--emit-bench {k}: the one benchmark kind is 'gpu'").into()),
        };
    }
    let (Some(accel), Some(measurements)) = (a.accel, a.measurements) else {
        return Err("give --accel <template> and --measurements <csv>".into());
    };
    let format = Format::parse(&a.from).ok_or_else(|| {
        format!(
            "--from {}: unknown format; give one of {}",
            a.from,
            Format::NAMES
        )
    })?;
    let split = match (a.folds, a.holdout, a.train) {
        (_, _, Some(k)) => Split::Train(k),
        (_, Some(f), None) => Split::Holdout(f),
        (Some(k), None, None) => Split::Folds(k),
        (None, None, None) => Split::Folds(5),
    };
    let report_dir = a.report_dir.clone().unwrap_or_else(|| {
        let stem = accel
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "gpu".into());
        PathBuf::from("runs").join(format!("calibrate-{stem}"))
    });
    let loss = super::fit::Loss::parse(&a.fit)
        .ok_or_else(|| format!("--fit {}: give ls, l1, minimax or mape", a.fit))?;
    let cfg = Config {
        loss,
        accel,
        measurements,
        format,
        format_name: a.from.clone(),
        split,
        params: a.params,
        seed: a.seed,
    };
    if let Some(p) = &a.write_measurements {
        let (rows, _) = super::measure::import(format, &cfg.measurements)?;
        let f = std::fs::File::create(p).map_err(|e| format!("{}: {e}", p.display()))?;
        super::measure::write_tidy(&rows, f)?;
    }
    let o = super::run(&cfg)?;
    if let Some(p) = &a.out {
        std::fs::write(p, &o.calibrated_toml).map_err(|e| {
            format!(
                "--out {}: cannot write the calibrated template ({e}); does its folder exist?",
                p.display()
            )
        })?;
    }
    let write_predictions = |p: &std::path::Path| -> Result<(), Box<dyn std::error::Error>> {
        let mut w = csv::Writer::from_path(p).map_err(|e| format!("{}: {e}", p.display()))?;
        for r in &o.per_row {
            w.serialize(r)?;
        }
        w.flush()?;
        Ok(())
    };
    if let Some(p) = &a.write_predictions {
        write_predictions(p)?;
    }
    match a.format {
        OutFormat::Table => write!(out, "{}", table(&o))?,
        OutFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&o)?)?,
    }
    if !a.no_plots {
        let d = &report_dir;
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        std::fs::write(d.join("report.json"), serde_json::to_string_pretty(&o)?)
            .map_err(|e| format!("{}: {e}", d.display()))?;
        write_predictions(&d.join("predictions.csv"))?;
        for ext in ["png", "svg"] {
            let size = crate::plot::Size::default();
            crate::plot::calibration(d, &d.join(format!("calibration.{ext}")), size)?;
        }
        let html = crate::plot::html::report(d)?;
        if matches!(a.format, OutFormat::Table) {
            writeln!(
                out,
                "report: {} (figures {}/calibration.png, .svg; rows {}/predictions.csv)",
                html.display(),
                d.display(),
                d.display()
            )?;
        }
    }
    Ok(())
}
