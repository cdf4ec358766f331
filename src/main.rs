//! The `coex` command line: parse arguments, call the library, print.

use clap::{Args, Parser, Subcommand, ValueEnum};
use coex::check;
use coex::cost::{self, NetworkOptions, Objective};
use coex::map::file::MappingFile;
use coex::map::mapper::SearchConfig;
use coex::report;
use coex::workload::{self, families, spec};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "coex",
    version,
    about = "Co-explore neural networks and the accelerators that run them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What to evaluate and on which accelerator (shared by eval and check).
#[derive(Args)]
struct Target {
    /// A workload file or ONNX model.
    #[arg(long, short)]
    workload: Option<PathBuf>,
    /// A one-line op spec instead of a workload.
    #[arg(long, conflicts_with = "workload")]
    op: Option<String>,
    /// An accelerator template (accelerators/**/*.toml).
    #[arg(long, short)]
    accel: PathBuf,
    /// Override a template key, e.g. --set array.rows=32 --set level.GLB.size_kib=256.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Override the workload's batch size.
    #[arg(long)]
    batch: Option<usize>,
}

impl Target {
    fn graph(&self) -> Result<coex::Graph, Box<dyn std::error::Error>> {
        match (&self.workload, &self.op) {
            (Some(path), None) => Ok(workload::load(path, self.batch)?),
            (None, Some(text)) => Ok(spec::single_op_graph(text)?),
            _ => Err("give --workload <file> or --op '<spec>'".into()),
        }
    }

    fn accelerator(&self) -> Result<coex::arch::Accelerator, Box<dyn std::error::Error>> {
        let sets = parse_sets(&self.set)?;
        coex::arch::load_accelerator(&self.accel, &sets).map_err(|e| {
            // Name the flag when the key came from --set.
            match &e {
                coex::arch::ArchError::Key { key, .. } => {
                    match sets.iter().find(|(k, _)| k == key) {
                        Some((k, v)) => format!("--set {k}={v}: {e}").into(),
                        None => e.into(),
                    }
                }
                // A key the file lacks is typed only when the file is read: the
                // reader's message names it.
                coex::arch::ArchError::Parse { message, .. } => {
                    let named = |k: &str| {
                        message.contains(&format!("'{k}'")) || message.contains(&format!("`{k}`"))
                    };
                    match sets.iter().find(|(k, _)| named(k)) {
                        Some((k, v)) => format!("--set {k}={v}: {e}").into(),
                        None => e.into(),
                    }
                }
                _ => e.into(),
            }
        })
    }
}

/// The largest `--budget`: about a minute of mapping per distinct Einsum.
const MAX_BUDGET: u64 = 10_000_000;

/// How the mapper searches (shared by eval and check, so both map alike).
#[derive(Args)]
struct Search {
    #[arg(long, value_enum, default_value = "edp")]
    objective: Objective,
    /// Mappings scored per distinct Einsum (1 to 10,000,000).
    #[arg(long, default_value_t = 3000, value_parser = clap::value_parser!(u64).range(1..=MAX_BUDGET))]
    budget: u64,
    /// Mapper seed: the same seed gives the same mappings.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl Search {
    fn options(&self, progress: bool) -> NetworkOptions {
        NetworkOptions {
            objective: self.objective,
            search: SearchConfig {
                budget: self.budget as usize,
                seed: self.seed,
                ..SearchConfig::default()
            },
            progress,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Csv,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum CheckFormat {
    Table,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Per-layer shapes, MACs, parameters and activation bytes of a network.
    Inspect {
        /// A workload file (workloads/*.toml) or an ONNX model (*.onnx).
        file: Option<PathBuf>,
        /// A one-line op spec instead of a file, e.g. 'gemm m=8192 n=8192 k=8192 dtype=fp16'.
        #[arg(long, conflicts_with = "file")]
        op: Option<String>,
        /// Override the batch size.
        #[arg(long)]
        batch: Option<usize>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Also print every Einsum's loop nest (table format).
        #[arg(long)]
        einsums: bool,
    },
    /// List the network families and their parameters.
    Families,
    /// Map every layer onto an accelerator and report latency, energy, area and accesses.
    Eval {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        search: Search,
        /// Use these mappings (coex mapping file) for the layers it names.
        #[arg(long)]
        mapping: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Table format: add the words moved per memory level (wide; CSV and JSON
        /// always carry accesses per level and operand).
        #[arg(long)]
        accesses: bool,
    },
    /// Re-execute every layer's mapped work on the reference engine and check that the
    /// access model's counts and the lowering's vector counts are what really happens.
    Check {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        search: Search,
        /// Only these layers (comma-separated node names, as `coex inspect` lists them).
        #[arg(long, value_delimiter = ',')]
        layers: Vec<String>,
        /// Scale each Einsum down to about this many MACs before executing it.
        #[arg(long, default_value_t = coex::check::accel::DEFAULT_MAX_MACS)]
        max_macs: u64,
        /// Seed of the executed data.
        #[arg(long, default_value_t = 1)]
        data_seed: u64,
        /// Which PEs share a read: broadcast (what the access model counts) or
        /// identical-data (Timeloop's rule; differs on convolution diagonals).
        #[arg(long, value_enum, default_value = "broadcast")]
        multicast: coex::check::mapped::MulticastRule,
        #[arg(long, value_enum, default_value = "table")]
        format: CheckFormat,
        /// Test-only: perturb one modeled count, LEVEL:OPERAND:reads|fills|updates:DELTA.
        #[arg(long, hide = true)]
        model_fault: Option<String>,
    },
    /// Draw a figure from coex's output files (PNG or SVG by the --out extension).
    Plot {
        #[command(subcommand)]
        kind: PlotKind,
    },
    /// Write one self-contained report.html of an explore or calibrate output folder.
    Report {
        /// The folder (`coex explore --out DIR`, `coex calibrate --out ...`).
        dir: PathBuf,
    },
    /// Joint network × accelerator search under specs (a sweep file; default:
    /// workloads/sweeps/default.toml). Writes points.csv, pareto.csv, best/, summary.json.
    Explore {
        /// The sweep file (TOML; see README "Explore").
        sweep: Option<PathBuf>,
        /// Output folder (default: runs/explore-<sweep name>).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Override the sweep's [search] algorithm.
        #[arg(long, value_enum)]
        algorithm: Option<coex::search::Algorithm>,
        /// Override the sweep's budget (distinct design points evaluated).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
        budget: Option<u64>,
        /// Override the sweep's seed.
        #[arg(long)]
        seed: Option<u64>,
        /// Continue a killed sweep in --out: points already in points.csv are not evaluated again.
        #[arg(long)]
        resume: bool,
        /// Evaluate shard i of N (grid and random sweeps), e.g. --shard 0/4.
        #[arg(long, value_name = "i/N")]
        shard: Option<String>,
        /// Most designs written to best/.
        #[arg(long, default_value_t = 8)]
        best: usize,
        /// Skip the standard figures (pareto.png/.svg) and report.html.
        #[arg(long)]
        no_plots: bool,
    },
    /// Multi-task chip (NASAIC): per-task sweeps, then a joint MILP choice under a chip
    /// area budget, compared with the sequential network-then-hardware baseline.
    ExploreTasks {
        /// The task file (TOML: [chip] area_mm2, [[task]] name/sweep/budget).
        tasks: PathBuf,
        /// Output folder (default: runs/tasks-<file stem>).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Combine the outputs of shard runs (coex explore --shard) into one.
    Merge {
        /// Run folders, each holding points.csv and summary.json.
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Fit a GPU, ASIC or FPGA template's named parameters to measurements; report held-out error.
    Calibrate(coex::calibrate::cli::CalibrateArgs),
    /// Convert another tool's mapping into a coex mapping file (printed to stdout).
    /// Converts a Timeloop/Accelergy architecture (with its mapspace constraints and
    /// energy/area tables) into a coex template, printed to stdout.
    ImportArch {
        /// A Timeloop spec with `architecture:` (and optionally
        /// `architecture_constraints:`), e.g. a mapper input or model dump.
        #[arg(long)]
        timeloop: PathBuf,
        /// Accelergy's energy reference table (ERT.yaml).
        #[arg(long)]
        ert: Option<PathBuf>,
        /// Accelergy's area reference table (ART.yaml).
        #[arg(long)]
        art: Option<PathBuf>,
    },
    ImportMapping {
        /// A Timeloop map.yaml (as timeloop-mapper writes it).
        #[arg(long)]
        timeloop: PathBuf,
        /// The template the mapping targets.
        #[arg(long, short)]
        accel: PathBuf,
        /// The layer (Einsum) name the mapping applies to.
        #[arg(long)]
        layer: String,
        /// The layer as an op spec, to check the mapping's coverage and capacity.
        #[arg(long)]
        op: String,
        /// Timeloop level names to the template's, e.g. `shared_glb=GLB,pe_spad=RF`.
        #[arg(long, value_delimiter = ',')]
        level_map: Vec<String>,
    },
}

/// Figure size, shared by every plot kind.
#[derive(Args)]
struct PlotSize {
    /// Width in pixels (PNG) or user units (SVG).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(200..=8000))]
    width: u32,
    #[arg(long, default_value_t = 700, value_parser = clap::value_parser!(u32).range(200..=8000))]
    height: u32,
}

impl PlotSize {
    fn size(&self) -> coex::plot::Size {
        coex::plot::Size {
            width: self.width,
            height: self.height,
        }
    }
}

#[derive(Subcommand)]
enum PlotKind {
    /// Two objectives of a sweep's points.csv, the Pareto front as a step line.
    Pareto {
        /// points.csv of `coex explore`.
        points: PathBuf,
        #[arg(long, default_value = "latency_s")]
        x: String,
        #[arg(long, default_value = "accuracy")]
        y: String,
        /// A third column shown as colour (with a colour bar).
        #[arg(long)]
        color: Option<String>,
        /// A spec limit drawn dashed, COLUMN=VALUE in the column's unit (e.g. latency_s=0.005).
        #[arg(long = "limit", value_name = "COLUMN=VALUE")]
        limits: Vec<String>,
        #[arg(long)]
        log_x: bool,
        #[arg(long)]
        log_y: bool,
        #[arg(long, short, default_value = "pareto.png")]
        out: PathBuf,
        #[command(flatten)]
        size: PlotSize,
    },
    /// A metric over two swept parameters of a sweep's points.csv.
    Heatmap {
        points: PathBuf,
        #[arg(long)]
        x: String,
        #[arg(long)]
        y: String,
        #[arg(long, default_value = "edp_js")]
        metric: String,
        #[arg(long, short, default_value = "heatmap.png")]
        out: PathBuf,
        #[command(flatten)]
        size: PlotSize,
    },
    /// Compute and bandwidth roofs and every kernel of `coex eval --format json`.
    Roofline {
        eval_json: PathBuf,
        /// Measured points: a CSV with `intensity` (MACs/byte) and `macs_per_s` columns.
        #[arg(long)]
        measured: Option<PathBuf>,
        #[arg(long, short, default_value = "roofline.png")]
        out: PathBuf,
        #[command(flatten)]
        size: PlotSize,
    },
    /// Energy per level and latency per layer of one or more `coex eval --format json`.
    Breakdown {
        #[arg(required = true)]
        eval_json: Vec<PathBuf>,
        /// Layers shown by name; the rest are summed as "other".
        #[arg(long, default_value_t = 8)]
        top: usize,
        #[arg(long, short, default_value = "breakdown.png")]
        out: PathBuf,
        #[command(flatten)]
        size: PlotSize,
    },
    /// Predicted against measured, before and after, from a `coex calibrate` report folder.
    Calibration {
        /// The folder `coex calibrate` wrote (--report-dir; default runs/calibrate-<name>).
        dir: PathBuf,
        #[arg(long, short, default_value = "calibration.png")]
        out: PathBuf,
        #[command(flatten)]
        size: PlotSize,
    },
}

fn plot(kind: PlotKind, out: &mut impl Write) -> Result<(), Box<dyn std::error::Error>> {
    let written = match kind {
        PlotKind::Pareto {
            points,
            x,
            y,
            color,
            limits,
            log_x,
            log_y,
            out,
            size,
        } => {
            let limits = limits
                .iter()
                .map(|l| {
                    let (k, v) = l
                        .split_once('=')
                        .ok_or_else(|| format!("--limit {l}: expected COLUMN=VALUE"))?;
                    let v: f64 = v
                        .trim()
                        .parse()
                        .map_err(|_| format!("--limit {l}: '{v}' is not a number"))?;
                    Ok::<_, String>((k.trim().to_string(), v))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let o = coex::plot::ParetoOptions {
                x,
                y,
                color,
                limits,
                log_x,
                log_y,
                size: size.size(),
            };
            coex::plot::pareto(&points, &out, &o)?;
            out
        }
        PlotKind::Heatmap {
            points,
            x,
            y,
            metric,
            out,
            size,
        } => {
            coex::plot::heatmap(&points, &out, &x, &y, &metric, size.size())?;
            out
        }
        PlotKind::Roofline {
            eval_json,
            measured,
            out,
            size,
        } => {
            coex::plot::roofline(&eval_json, &out, measured.as_deref(), size.size())?;
            out
        }
        PlotKind::Breakdown {
            eval_json,
            top,
            out,
            size,
        } => {
            let paths: Vec<&std::path::Path> = eval_json.iter().map(|p| p.as_path()).collect();
            coex::plot::breakdown(&paths, &out, top, size.size())?;
            out
        }
        PlotKind::Calibration { dir, out, size } => {
            coex::plot::calibration(&dir, &out, size.size())?;
            out
        }
    };
    writeln!(out, "wrote {}", written.display())?;
    Ok(())
}

fn main() -> ExitCode {
    // Usage errors exit 1 like every other error (help and --version exit 0).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let result = run(cli, &mut out);
    let flushed = out.flush();
    match result.and(flushed.map_err(Into::into)) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stops early (`| head`) closed stdout: stop quietly, as Unix tools do.
        Err(e) if is_broken_pipe(e.as_ref()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

fn run(cli: Cli, out: &mut impl Write) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Calibrate(args) => coex::calibrate::cli::run(args, out)?,
        Command::Families => {
            write!(out, "{}", families::describe_all())?;
            write!(out, "\n{}", spec::describe_kinds())?;
        }
        Command::Inspect {
            file,
            op,
            batch,
            format,
            einsums,
        } => {
            let graph = match (file, op) {
                (Some(path), None) => workload::load(&path, batch)?,
                (None, Some(text)) => spec::single_op_graph(&text)?,
                _ => {
                    return Err(
                        "give a workload file or --op '<spec>' (see `coex families`)".into(),
                    )
                }
            };
            let ins = report::inspect(&graph)?;
            match format {
                Format::Table => {
                    write!(out, "{}", report::inspection_table(&ins))?;
                    if einsums {
                        for w in coex::lower::lower(&graph)? {
                            for e in w.einsums() {
                                writeln!(out, "{}: {}", e.name, e.formula())?;
                            }
                        }
                    }
                }
                Format::Csv => write!(out, "{}", report::inspection_csv(&ins)?)?,
                Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&ins)?)?,
            }
        }
        Command::Eval {
            target,
            search,
            mapping,
            format,
            accesses,
        } => {
            let graph = target.graph()?;
            let acc = target.accelerator()?;
            if let (Some(file), false) = (&mapping, matches!(acc, coex::arch::Accelerator::Asic(_)))
            {
                return Err(format!(
                    "--mapping {}: mapping files apply to ASIC templates (levels and a PE array); \
                     {} is a {} template, which coex maps by its own model: drop --mapping",
                    file.display(),
                    target.accel.display(),
                    if matches!(acc, coex::arch::Accelerator::Gpu(_)) {
                        "GPU"
                    } else {
                        "FPGA"
                    }
                )
                .into());
            }
            let fixed = mapping.as_deref().map(MappingFile::load).transpose()?;
            let opts = search.options(matches!(format, Format::Table));
            let result = cost::evaluate(&graph, &acc, &opts, fixed.as_ref())?;
            let levels = report::access_levels(&result);
            match format {
                Format::Table => write!(
                    out,
                    "{}",
                    report::eval_table(&result, &levels, accesses, search.objective)
                )?,
                Format::Csv => write!(out, "{}", report::eval_csv(&result)?)?,
                Format::Json => {
                    // The roofs travel with the result, so `coex plot roofline` needs
                    // nothing but this file.
                    let mut v = serde_json::to_value(&result)?;
                    v["roofline"] = serde_json::to_value(cost::roofline(&acc, graph.dtype))?;
                    writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?
                }
            }
        }
        Command::Check {
            target,
            search,
            layers,
            max_macs,
            data_seed,
            multicast,
            format,
            model_fault,
        } => {
            let graph = target.graph()?;
            let coex::arch::Accelerator::Asic(t) = target.accelerator()? else {
                return Err(format!(
                    "{}: coex check runs ASIC templates (memory levels and a PE array); \
                     this file is another kind",
                    target.accel.display()
                )
                .into());
            };
            let model_fault = model_fault
                .map(|f| check::accel::ModelFault::parse(&f, &t))
                .transpose()?;
            let opts = check::accel::AccelCheckOptions {
                network: search.options(false),
                mapped: check::accel::MappedCheckOptions {
                    max_macs,
                    seed: data_seed,
                    exec: check::mapped::ExecOptions { multicast },
                    model_fault,
                },
                layers,
                vector_limit: 0,
            };
            let result = check::accel::check_accelerator(&graph, &t, &opts)?;
            match format {
                CheckFormat::Table => write!(out, "{}", result.table())?,
                CheckFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&result)?)?,
            }
            if !result.passed() {
                let bad = result.count(|v| matches!(v, check::accel::Verdict::Mismatch));
                let unmapped = result.count(|v| matches!(v, check::accel::Verdict::Unmappable));
                return Err(format!("{bad} kernels MISMATCH, {unmapped} cannot be mapped").into());
            }
        }
        Command::Plot { kind } => plot(kind, out)?,
        Command::Report { dir } => {
            let path = coex::plot::html::report(&dir)?;
            writeln!(out, "wrote {}", path.display())?;
        }
        Command::Explore {
            sweep,
            out: out_dir,
            algorithm,
            budget,
            seed,
            resume,
            shard,
            best,
            no_plots,
        } => {
            let dir = explore(
                sweep, out_dir, algorithm, budget, seed, resume, shard, best, out,
            )?;
            if !no_plots {
                let (png, svg, html) = explore_figures(&dir)?;
                let name = |p: &std::path::Path| {
                    p.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                };
                writeln!(
                    out,
                    "  {}, {}, {} (figures and the one-file report)",
                    name(&png),
                    name(&svg),
                    name(&html)
                )?;
            }
        }
        Command::ExploreTasks {
            tasks,
            out: out_dir,
        } => {
            let file = coex::search::multitask::TaskFile::load(&tasks)?;
            let dir = out_dir.unwrap_or_else(|| {
                let stem = tasks.file_stem().unwrap_or_default().to_string_lossy();
                PathBuf::from(format!("runs/tasks-{stem}"))
            });
            let r = coex::search::multitask::run(&file, &dir)?;
            write!(out, "{}", coex::search::multitask::table(&r, &file))?;
            writeln!(
                out,
                "{:.1} s; wrote {}/tasks.csv, summary.json",
                r.wall_s,
                dir.display()
            )?;
        }
        Command::Merge { dirs, out: out_dir } => {
            let n = coex::search::algo::merge(&dirs, &out_dir, 8)?;
            writeln!(
                out,
                "merged {n} points from {} folders into {}/points.csv, pareto.csv, best/, summary.json",
                dirs.len(),
                out_dir.display()
            )?;
        }
        Command::ImportArch { timeloop, ert, art } => {
            let text = coex::arch::timeloop::import(&timeloop, ert.as_deref(), art.as_deref())?;
            print!("{text}");
        }
        Command::ImportMapping {
            timeloop,
            accel,
            layer,
            op,
            level_map,
        } => {
            let template = coex::arch::load(&accel, &[])?;
            let mut renames = std::collections::HashMap::new();
            for pair in &level_map {
                let (from, to) = pair.split_once('=').ok_or_else(|| {
                    format!("--level-map '{pair}': write timeloop_name=coex_name")
                })?;
                renames.insert(from.trim().to_string(), to.trim().to_string());
            }
            let raw =
                coex::map::file::import_timeloop_renamed(&timeloop, &layer, &template, &renames)?;
            let g = spec::single_op_graph(&op)?;
            let work = coex::lower::lower(&g)?;
            let e = work
                .iter()
                .flat_map(|w| w.einsums())
                .next()
                .ok_or("the op spec has no Einsum to map")?;
            let p = coex::map::Problem::from_einsum(e)?;
            let m = coex::map::file::resolve(&raw, &p, &template)
                .map_err(|m| format!("{}: {m}", timeloop.display()))?;
            write!(
                out,
                "{}",
                coex::map::file::to_toml(&layer, &m, &p, &template)
            )?;
        }
    }
    Ok(())
}

/// `key=value` pairs from repeated --set flags.
fn parse_sets(sets: &[String]) -> Result<Vec<(String, String)>, String> {
    sets.iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() && !v.trim().is_empty() => {
                Ok((k.trim().to_string(), v.trim().to_string()))
            }
            _ => Err(format!(
                "--set '{s}': expected KEY=VALUE with a non-empty key and value, e.g. --set array.rows=16"
            )),
        })
        .collect()
}

/// `coex explore`: runs a sweep, prints the best designs and where the outputs are.
#[allow(clippy::too_many_arguments)]
fn explore(
    sweep: Option<PathBuf>,
    out_dir: Option<PathBuf>,
    algorithm: Option<coex::search::Algorithm>,
    budget: Option<u64>,
    seed: Option<u64>,
    resume: bool,
    shard: Option<String>,
    best: usize,
    out: &mut impl Write,
) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let path = sweep.unwrap_or_else(|| {
        let local = PathBuf::from("workloads/sweeps/default.toml");
        if local.exists() {
            local
        } else {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("workloads/sweeps/default.toml")
        }
    });
    let sw = coex::search::Sweep::load(&path)?;
    let shard = shard
        .map(|s| {
            s.split_once('/')
                .and_then(|(i, n)| Some((i.trim().parse().ok()?, n.trim().parse().ok()?)))
                .ok_or_else(|| format!("--shard '{s}': write i/N, e.g. --shard 0/4"))
        })
        .transpose()?;
    let out_dir = out_dir.unwrap_or_else(|| match shard {
        Some((i, n)) => PathBuf::from(format!("runs/explore-{}-shard{i}of{n}", sw.name)),
        None => PathBuf::from(format!("runs/explore-{}", sw.name)),
    });
    let opts = coex::search::RunOptions {
        out: out_dir.clone(),
        algorithm,
        budget: budget.map(|b| b as usize),
        seed,
        resume,
        shard,
        progress: true,
        max_best: best,
    };
    let r = coex::search::run(sw, &opts)?;
    let sw = &r.space.sweep;
    writeln!(
        out,
        "{}: {:?}, {} points ({} new, {} feasible) in {:.1} s",
        sw.name,
        sw.algorithm,
        r.rows.len(),
        r.evaluated,
        r.rows.iter().filter(|x| x.feasible).count(),
        r.wall_s,
    )?;
    writeln!(
        out,
        "layer cache: {} (shape, design) pairs mapped at budget {}, {} hits",
        r.layer_misses, sw.hardware.mapper_budget, r.layer_hits
    )?;
    writeln!(
        out,
        "objectives: {}",
        sw.objectives
            .iter()
            .map(|o| o.text())
            .collect::<Vec<_>>()
            .join(", ")
    )?;
    writeln!(
        out,
        "specs: {}",
        if sw.specs.is_empty() {
            "none".to_string()
        } else {
            sw.specs
                .iter()
                .map(|s| s.text.clone())
                .collect::<Vec<_>>()
                .join(", ")
        }
    )?;
    writeln!(out, "pareto front: {} designs; best:", r.pareto)?;
    writeln!(
        out,
        "{:>6} {:>6} {:>9} {:>9} {:>8}  hardware",
        "id", "acc%", "lat_ms", "energy_mJ", "area_mm2"
    )?;
    let hw_cols: Vec<usize> = r
        .space
        .dims
        .iter()
        .enumerate()
        .filter(|(_, d)| !d.is_network())
        .map(|(i, _)| i)
        .collect();
    for b in &r.best {
        let row = r.rows.iter().find(|x| x.id == b.id);
        let hw: String = row
            .map(|x| {
                hw_cols
                    .iter()
                    .map(|&i| x.cells[i].as_str())
                    .filter(|c| !c.is_empty())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .unwrap_or_default();
        let hw: String = hw.chars().take(80 - 44).collect();
        writeln!(
            out,
            "{:>6} {:>6.2} {:>9.4} {:>9.4} {:>8.3}  {}",
            b.id,
            b.accuracy,
            b.latency_s * 1e3,
            b.energy_j * 1e3,
            b.area_mm2,
            hw
        )?;
    }
    if !hw_cols.is_empty() {
        let names: Vec<&str> = hw_cols
            .iter()
            .map(|&i| r.space.dims[i].column.as_str())
            .collect();
        writeln!(out, "hardware: the values of, in order,")?;
        for n in &names {
            writeln!(out, "  {n}")?;
        }
    }
    writeln!(
        out,
        "outputs in {}/:\n  points.csv, pareto.csv, summary.json, best/ (sh best/commands.sh)",
        out_dir.display()
    )?;
    Ok(out_dir.to_path_buf())
}

/// The standard figures of a sweep folder: the Pareto front of its first two objectives
/// (accuracy on y when it is one), the third as colour, the specs dashed; then the
/// folder's report.html.
fn explore_figures(
    dir: &std::path::Path,
) -> Result<(PathBuf, PathBuf, PathBuf), Box<dyn std::error::Error>> {
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json"))?)?;
    let sw = coex::search::Sweep::load(std::path::Path::new(
        summary["sweep_file"]
            .as_str()
            .unwrap_or("workloads/sweeps/default.toml"),
    ))?;
    let mut cols: Vec<String> = sw
        .objectives
        .iter()
        .map(|o| o.metric.column().to_string())
        .collect();
    if let Some(i) = cols.iter().position(|c| c == "accuracy") {
        let acc = cols.remove(i);
        cols.insert(1.min(cols.len()), acc);
    }
    let x = cols.first().cloned().unwrap_or_else(|| "latency_s".into());
    let y = cols.get(1).cloned().unwrap_or_else(|| "energy_j".into());
    let o = coex::plot::ParetoOptions {
        x: x.clone(),
        y,
        color: cols.get(2).cloned(),
        limits: sw
            .specs
            .iter()
            .map(|s| (s.metric.column().to_string(), s.bound))
            .collect(),
        log_x: x != "accuracy",
        log_y: false,
        size: coex::plot::Size::default(),
    };
    let (png, svg) = (dir.join("pareto.png"), dir.join("pareto.svg"));
    coex::plot::pareto(&dir.join("points.csv"), &png, &o)?;
    coex::plot::pareto(&dir.join("points.csv"), &svg, &o)?;
    let html = coex::plot::html::report(dir)?;
    Ok((png, svg, html))
}
