//! `coex explore`: search quality (NSGA-II vs the exhaustive grid, by hypervolume),
//! reproducibility of `best/` with `coex eval`, predictor failures, resume after
//! SIGKILL, shards + merge, and NAS-Bench-201 cells with a zero output.

use coex::search::{self, Algorithm, RunOptions, Sweep};
use std::path::{Path, PathBuf};
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn accel(rel: &str) -> String {
    format!("{ROOT}/accelerators/{rel}")
}

fn write_sweep(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn coex() -> Command {
    Command::new(env!("CARGO_BIN_EXE_coex"))
}

/// A small joint space: 3^6 = 729 NB201 cells × 4 Eyeriss designs = 2,916 points.
fn small_space(dir: &Path) -> PathBuf {
    write_sweep(
        dir,
        "small.toml",
        &format!(
            r#"
name = "small"
objectives = ["max accuracy", "min latency", "min energy"]
specs = ["latency_ms <= 20"]
[network]
space = "nb201"
ops = ["none", "skip_connect", "nor_conv_3x3"]
[hardware]
templates = ["{}"]
set = {{ "level.GLB.size_kib" = 108 }}
mapper_budget = 100
[hardware.space]
"array.rows" = [8, 16]
"array.cols" = [8, 16]
[search]
algorithm = "grid"
budget = 100000
population = 40
seed = 3
"#,
            accel("asic/eyeriss.toml")
        ),
    )
}

/// Objectives of the feasible rows, minimized and normalized to [0, 1] by `lo..hi`.
fn normalized(rows: &[&search::output::Row], sw: &Sweep, lo: &[f64], hi: &[f64]) -> Vec<Vec<f64>> {
    rows.iter()
        .map(|r| {
            r.minimized(&sw.objectives)
                .iter()
                .enumerate()
                .map(|(k, v)| (v - lo[k]) / (hi[k] - lo[k]))
                .collect()
        })
        .collect()
}

#[test]
fn nsga2_front_reaches_95_percent_of_the_grid_hypervolume_with_under_20_percent_of_the_evaluations()
{
    let tmp = tempfile::tempdir().unwrap();
    let path = small_space(tmp.path());
    let sweep = Sweep::load(&path).unwrap();
    let grid = search::run(
        sweep.clone(),
        &RunOptions {
            out: tmp.path().join("grid"),
            algorithm: Some(Algorithm::Grid),
            ..RunOptions::default()
        },
    )
    .unwrap();
    assert_eq!(grid.rows.len(), 2916, "the grid is exhaustive");
    assert!(grid.rows.iter().all(|r| r.metrics.error.is_empty()));
    let budget = 2916 / 5 - 1; // < 20%
    let nsga = search::run(
        sweep.clone(),
        &RunOptions {
            out: tmp.path().join("nsga2"),
            algorithm: Some(Algorithm::Nsga2),
            budget: Some(budget),
            ..RunOptions::default()
        },
    )
    .unwrap();
    assert!(nsga.rows.len() <= budget && nsga.rows.len() * 5 < 2916);
    // Fixed normalization: the grid's feasible extremes; reference point 1.1 each.
    let feasible: Vec<&search::output::Row> = grid.rows.iter().filter(|r| r.feasible).collect();
    let m = sweep.objectives.len();
    let mut lo = vec![f64::INFINITY; m];
    let mut hi = vec![f64::NEG_INFINITY; m];
    for r in &feasible {
        for (k, v) in r.minimized(&sweep.objectives).into_iter().enumerate() {
            lo[k] = lo[k].min(v);
            hi[k] = hi[k].max(v);
        }
    }
    let reference = vec![1.1; m];
    let gf = search::output::pareto_rows(&grid.rows, &sweep.objectives);
    let nf = search::output::pareto_rows(&nsga.rows, &sweep.objectives);
    let hv_grid = search::hypervolume(&normalized(&gf, &sweep, &lo, &hi), &reference);
    let hv_nsga = search::hypervolume(&normalized(&nf, &sweep, &lo, &hi), &reference);
    let ratio = hv_nsga / hv_grid;
    eprintln!(
        "hypervolume: grid {hv_grid:.6} ({} front points, 2916 evaluations), NSGA-II {hv_nsga:.6} ({} front points, {} evaluations = {:.1}%): ratio {ratio:.4}",
        gf.len(),
        nf.len(),
        nsga.rows.len(),
        100.0 * nsga.rows.len() as f64 / 2916.0
    );
    assert!(hv_grid > 0.0);
    assert!(
        ratio >= 0.95,
        "NSGA-II reaches {ratio:.4} of the grid's hypervolume"
    );
    assert!(
        ratio <= 1.0 + 1e-12,
        "a subset cannot beat the exhaustive front"
    );
    // Same seed, same points: determinism.
    let _again = search::run(
        sweep,
        &RunOptions {
            out: tmp.path().join("nsga2-again"),
            algorithm: Some(Algorithm::Nsga2),
            budget: Some(budget),
            ..RunOptions::default()
        },
    )
    .unwrap();
    assert_eq!(
        std::fs::read(tmp.path().join("nsga2/points.csv")).unwrap(),
        std::fs::read(tmp.path().join("nsga2-again/points.csv")).unwrap()
    );
}

fn rel_close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-300)
}

#[test]
fn every_best_design_reproduces_its_row_with_coex_eval() {
    let tmp = tempfile::tempdir().unwrap();
    // Two ASIC templates (one with free keys, one fixed) and a GPU: a categorical choice.
    let path = write_sweep(
        tmp.path(),
        "mixed.toml",
        &format!(
            r#"
objectives = ["max accuracy", "min latency", "min area"]
specs = ["latency_ms <= 50"]
[network]
space = "nb201"
ops = ["none", "nor_conv_3x3", "avg_pool_3x3"]
[hardware]
templates = ["{}", "{}", "{}"]
set = {{ "level.GLB.size_kib" = 108 }}
mapper_budget = 50
[hardware.space]
"array.rows" = [8, 16]
"array.cols" = [14]
[search]
algorithm = "nsga2"
budget = 150
population = 30
"#,
            accel("asic/eyeriss.toml"),
            accel("asic/pe_buffer_ws.toml"),
            accel("gpu/t4.toml"),
        ),
    );
    // set and space keys apply to the templates that have them (not the GPU).
    let out = tmp.path().join("run");
    let o = coex()
        .args([
            "explore",
            path.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--best",
            "12",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let best = summary["best"].as_array().unwrap();
    assert!(!best.is_empty());
    let mut kinds = std::collections::HashSet::new();
    for b in best {
        let w = b["workload"].as_str().unwrap();
        let a = b["accelerator"].as_str().unwrap();
        kinds.insert(
            std::fs::read_to_string(a)
                .unwrap()
                .contains("kind = \"gpu\""),
        );
        let o = coex()
            .args([
                "eval",
                "--workload",
                w,
                "--accel",
                a,
                "--budget",
                "50",
                "--seed",
                "1",
                "--format",
                "json",
            ])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{w} on {a}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let t = &v["total"];
        let (lat, en, area) = (
            t["latency_s"].as_f64().unwrap(),
            t["energy_pj"].as_f64().unwrap() * 1e-12,
            t["area_mm2"].as_f64().unwrap(),
        );
        let id = b["id"].as_u64().unwrap();
        // The row in points.csv.
        let mut r = csv::Reader::from_path(out.join("points.csv")).unwrap();
        let h = r.headers().unwrap().clone();
        let col = |n: &str| h.iter().position(|c| c == n).unwrap();
        let row = r
            .records()
            .map(|x| x.unwrap())
            .find(|x| x[0].parse::<u64>().unwrap() == id)
            .unwrap();
        let f = |n: &str| row[col(n)].parse::<f64>().unwrap();
        assert!(
            rel_close(lat, f("latency_s")),
            "id {id}: latency {lat} vs {}",
            f("latency_s")
        );
        assert!(
            rel_close(en, f("energy_j")),
            "id {id}: energy {en} vs {}",
            f("energy_j")
        );
        assert!(
            rel_close(area, f("area_mm2")),
            "id {id}: area {area} vs {}",
            f("area_mm2")
        );
        assert_eq!(
            b["command"].as_str().unwrap().split_whitespace().nth(1),
            Some("eval")
        );
    }
    // pareto.csv rows are feasible and a subset of points.csv.
    let pareto = std::fs::read_to_string(out.join("pareto.csv")).unwrap();
    let points = std::fs::read_to_string(out.join("points.csv")).unwrap();
    for line in pareto.lines().skip(1) {
        assert!(points.contains(line), "{line}");
        assert!(line.contains(",true,"), "{line}");
    }
}

/// A predictor that answers `{"accuracy": ...}` on its first two runs and then, on the
/// third, does `mode` (crash | hang | garbage) after one good line.
fn predictor(dir: &Path, mode: &str) -> PathBuf {
    let p = dir.join(format!("pred_{mode}.py"));
    std::fs::write(
        &p,
        format!(
            r#"import sys, json, os, time
counter = os.path.join(os.path.dirname(os.path.abspath(__file__)), "calls_{mode}")
n = int(open(counter).read()) if os.path.exists(counter) else 0
open(counter, "w").write(str(n + 1))
lines = [json.loads(l) for l in sys.stdin if l.strip()]
for i, c in enumerate(lines):
    if n >= 2 and i == 1:
        if "{mode}" == "crash":
            sys.stderr.write("predictor: out of memory\n"); sys.exit(3)
        if "{mode}" == "hang":
            sys.stdout.flush(); time.sleep(60)
        if "{mode}" == "garbage":
            print("hello, not json"); sys.stdout.flush(); sys.exit(0)
    print(json.dumps({{"id": c["id"], "accuracy": 50.0 + c["macs"] / 1e7}}))
    sys.stdout.flush()
"#
        ),
    )
    .unwrap();
    p
}

#[test]
fn failing_predictors_name_the_candidate_and_keep_finished_points() {
    let tmp = tempfile::tempdir().unwrap();
    for (mode, says) in [
        ("crash", "exited with status 3"),
        ("hang", "no result within"),
        ("garbage", "not JSON"),
    ] {
        let script = predictor(tmp.path(), mode);
        let path = write_sweep(
            tmp.path(),
            &format!("{mode}.toml"),
            &format!(
                r#"
objectives = ["max accuracy", "min latency"]
[network]
space = "nb201"
[hardware]
templates = ["{}"]
mapper_budget = 30
[hardware.space]
"array.rows" = [12]
"array.cols" = [14]
"level.GLB.size_kib" = [108]
[accuracy]
source = "predictor"
command = ["python3", "{}"]
batch = 64
timeout_s = 3
[search]
algorithm = "random"
budget = 300
"#,
                accel("asic/eyeriss.toml"),
                script.display()
            ),
        );
        let out = tmp.path().join(format!("out_{mode}"));
        let t0 = std::time::Instant::now();
        let o = coex()
            .args([
                "explore",
                path.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{mode}: the sweep must fail");
        assert!(
            stderr.contains("candidate id") && stderr.contains("(arch |") && stderr.contains(says),
            "{mode}: {stderr}"
        );
        if mode == "crash" {
            assert!(
                stderr.contains("out of memory"),
                "the predictor's stderr is shown: {stderr}"
            );
        }
        assert!(
            t0.elapsed().as_secs() < 50,
            "{mode}: the timeout stops a hung predictor"
        );
        // The first batch of 128 points (2 predictor runs of 64) finished and is kept.
        let mut r = csv::Reader::from_path(out.join("points.csv")).unwrap();
        let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
        assert_eq!(rows.len(), 128, "{mode}: finished points are kept");
        let h = r.headers().unwrap().clone();
        let src = h.iter().position(|c| c == "accuracy_source").unwrap();
        assert!(rows
            .iter()
            .all(|x| &x[src] == "predictor" || &x[src] == "chance"));
        assert!(out.join("pareto.csv").exists() && out.join("summary.json").exists());
    }
}

/// The resume test's sweep: slow enough to kill halfway.
fn resumable(dir: &Path) -> PathBuf {
    write_sweep(
        dir,
        "resume.toml",
        &format!(
            r#"
objectives = ["max accuracy", "min latency", "min energy"]
specs = ["area_mm2 <= 6"]
[network]
space = "nb201-unique"
[hardware]
templates = ["{}"]
mapper_budget = 1500
[hardware.space]
"level.DRAM.bandwidth_bytes_per_cycle" = [4, 8, 16]
[search]
algorithm = "nsga2"
budget = 900
population = 30
seed = 7
"#,
            accel("asic/eyeriss.toml")
        ),
    )
}

fn data_rows(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count().saturating_sub(1))
        .unwrap_or(0)
}

#[test]
fn resume_after_sigkill_gives_the_same_pareto_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let sweep = resumable(tmp.path());
    let whole = tmp.path().join("whole");
    let o = coex()
        .args([
            "explore",
            sweep.to_str().unwrap(),
            "--out",
            whole.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let total = data_rows(&whole.join("points.csv"));
    assert_eq!(total, 900);

    let cut = tmp.path().join("cut");
    let mut child = coex()
        .args([
            "explore",
            sweep.to_str().unwrap(),
            "--out",
            cut.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while data_rows(&cut.join("points.csv")) < 200 && t0.elapsed().as_secs() < 120 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let status = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let _ = child.wait();
    let done = data_rows(&cut.join("points.csv"));
    assert!(
        done >= 200 && done < total,
        "killed halfway: {done} of {total} rows"
    );
    assert!(!cut.join("pareto.csv").exists(), "killed before the end");

    let o = coex()
        .args([
            "explore",
            sweep.to_str().unwrap(),
            "--out",
            cut.to_str().unwrap(),
            "--resume",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains(&format!("({} new,", total - done)),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(whole.join("pareto.csv")).unwrap(),
        std::fs::read_to_string(cut.join("pareto.csv")).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(whole.join("points.csv")).unwrap(),
        std::fs::read_to_string(cut.join("points.csv")).unwrap()
    );
}

#[test]
fn four_shards_merge_into_the_single_run() {
    let tmp = tempfile::tempdir().unwrap();
    let path = small_space(tmp.path());
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("budget = 100000", "budget = 700");
    std::fs::write(&path, text).unwrap();
    for algo in ["grid", "random"] {
        let one = tmp.path().join(format!("{algo}-one"));
        let o = coex()
            .args([
                "explore",
                path.to_str().unwrap(),
                "--algorithm",
                algo,
                "--out",
                one.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mut dirs = Vec::new();
        for i in 0..4 {
            let d = tmp.path().join(format!("{algo}-shard{i}"));
            let o = coex()
                .args([
                    "explore",
                    path.to_str().unwrap(),
                    "--algorithm",
                    algo,
                    "--shard",
                    &format!("{i}/4"),
                    "--out",
                    d.to_str().unwrap(),
                ])
                .output()
                .unwrap();
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            let n = data_rows(&d.join("points.csv"));
            assert!((174..=176).contains(&n), "shard {i} holds a quarter: {n}");
            dirs.push(d.to_str().unwrap().to_string());
        }
        let merged = tmp.path().join(format!("{algo}-merged"));
        let mut args = vec!["merge".to_string()];
        args.extend(dirs);
        args.extend(["--out".into(), merged.to_str().unwrap().into()]);
        let o = coex().args(&args).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        for f in ["points.csv", "pareto.csv"] {
            assert_eq!(
                std::fs::read_to_string(one.join(f)).unwrap(),
                std::fs::read_to_string(merged.join(f)).unwrap(),
                "{algo}: {f}"
            );
        }
    }
    // NSGA-II cannot be sharded.
    let o = coex()
        .args([
            "explore",
            path.to_str().unwrap(),
            "--algorithm",
            "nsga2",
            "--shard",
            "0/2",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--shard"));
}

#[test]
fn zero_output_nb201_cells_are_evaluated_not_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write_sweep(
        tmp.path(),
        "zero.toml",
        &format!(
            r#"
objectives = ["max accuracy", "min latency"]
[network]
space = "nb201"
ops = ["none", "avg_pool_3x3"]
[hardware]
templates = ["{}"]
mapper_budget = 30
[hardware.space]
"array.rows" = [12]
"array.cols" = [14]
"level.GLB.size_kib" = [108]
[search]
algorithm = "grid"
"#,
            accel("asic/eyeriss.toml")
        ),
    );
    let r = search::run(
        Sweep::load(&path).unwrap(),
        &RunOptions {
            out: tmp.path().join("out"),
            ..RunOptions::default()
        },
    )
    .unwrap();
    assert_eq!(r.rows.len(), 64);
    let zero: Vec<_> = r
        .rows
        .iter()
        .filter(|x| x.cells[3] == "none" && x.cells[4] == "none" && x.cells[5] == "none")
        .collect();
    assert_eq!(zero.len(), 8, "node 3 hears only `none` edges");
    for z in &zero {
        assert!(z.metrics.error.is_empty(), "{}", z.metrics.error);
        assert!(
            (z.metrics.accuracy - 10.0).abs() < 1.0,
            "chance accuracy: {}",
            z.metrics.accuracy
        );
        assert!(z.metrics.latency_s > 0.0, "the stem runs");
    }
    assert!(r.rows.iter().all(|x| x.metrics.error.is_empty()));
}

#[test]
fn bad_sweep_files_name_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    for (text, key) in [
        ("objectives = [\"maximize accuracy\"]\n[network]\nspace = \"nb201\"\n[hardware]\ntemplates = [\"x.toml\"]\n", "objectives"),
        ("objectives = [\"max accuracy\"]\nspecs = [\"speed < 3\"]\n[network]\nspace = \"nb201\"\n", "specs"),
        ("objectives = [\"max accuracy\"]\n[network]\nspace = \"nb301\"\n", "network.space"),
        ("objectives = [\"max accuracy\"]\n[network]\nfamily = \"resnet\"\n[hardware]\ntemplates = [\"a.toml\"]\n[accuracy]\nsource = \"table\"\n", "accuracy.source"),
        ("objectives = [\"max accuracy\"]\n[network]\nspace = \"nb201\"\n[hardware]\ntemplates = [\"a.toml\"]\n[search]\nalgorithm = \"annealing\"\n", "search.algorithm"),
    ] {
        let p = write_sweep(tmp.path(), "bad.toml", text);
        let o = coex()
            .args(["explore", p.to_str().unwrap(), "--out", tmp.path().join("o").to_str().unwrap()])
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success());
        assert!(e.contains("bad.toml") && e.contains(key), "{key}: {e}");
    }
}

#[test]
fn every_shipped_sweep_runs_and_evaluates_without_failed_points() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Path::new(ROOT).join("workloads/sweeps");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        // Multi-task files (`coex explore-tasks`, tests/nasaic.rs) list sweeps; they are
        // not sweeps themselves.
        if std::fs::read_to_string(&path).is_ok_and(|t| t.contains("[[task]]")) {
            continue;
        }
        let sweep = Sweep::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let r = search::run(
            sweep,
            &RunOptions {
                out: tmp.path().join(path.file_stem().unwrap()),
                budget: Some(3),
                ..RunOptions::default()
            },
        )
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(r.rows.len(), 3, "{}", path.display());
        for row in &r.rows {
            assert!(
                row.metrics.error.is_empty(),
                "{}: {}",
                path.display(),
                row.metrics.error
            );
            assert!(row.metrics.latency_s > 0.0 && row.metrics.accuracy.is_finite());
        }
        n += 1;
    }
    assert!(
        n >= 10,
        "one sweep per network and accelerator kind, and the default: {n}"
    );
}
