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
    /// Fit a GPU template's named parameters to measured kernels; report held-out error.
    Calibrate(coex::calibrate::cli::CalibrateArgs),
    /// Convert another tool's mapping into a coex mapping file (printed to stdout).
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
    },
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
                Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&result)?)?,
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
        Command::ImportMapping {
            timeloop,
            accel,
            layer,
            op,
        } => {
            let template = coex::arch::load(&accel, &[])?;
            let raw = coex::map::file::import_timeloop(&timeloop, &layer, &template)?;
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
