//! The `coex` command line: parse arguments, call the library, print.

use clap::{Args, Parser, Subcommand, ValueEnum};
use coex::check;
use coex::cost::{self, NetworkOptions, Objective};
use coex::map::file::MappingFile;
use coex::map::mapper::SearchConfig;
use coex::report;
use coex::workload::{self, families, spec};
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
        Ok(coex::arch::load_accelerator(
            &self.accel,
            &parse_sets(&self.set)?,
        )?)
    }
}

/// How the mapper searches (shared by eval and check, so both map alike).
#[derive(Args)]
struct Search {
    #[arg(long, value_enum, default_value = "edp")]
    objective: Objective,
    /// Mappings scored per distinct Einsum.
    #[arg(long, default_value_t = 3000)]
    budget: usize,
    /// Mapper seed: the same seed gives the same mappings.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl Search {
    fn options(&self, progress: bool) -> NetworkOptions {
        NetworkOptions {
            objective: self.objective,
            search: SearchConfig {
                budget: self.budget,
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
        op: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<(), Box<dyn std::error::Error>> {
    match cli.command {
        Command::Families => {
            print!("{}", families::describe_all());
            println!(
                "Op specs (inspect --op, [[layer]] op = ...): {}",
                spec::KINDS
            );
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
                    print!("{}", report::inspection_table(&ins));
                    if einsums {
                        for w in coex::lower::lower(&graph)? {
                            for e in w.einsums() {
                                println!("{}: {}", e.name, e.formula());
                            }
                        }
                    }
                }
                Format::Csv => print!("{}", report::inspection_csv(&ins)?),
                Format::Json => println!("{}", serde_json::to_string_pretty(&ins)?),
            }
        }
        Command::Eval {
            target,
            search,
            mapping,
            format,
        } => {
            let graph = target.graph()?;
            let acc = target.accelerator()?;
            let fixed = mapping.as_deref().map(MappingFile::load).transpose()?;
            let opts = search.options(matches!(format, Format::Table));
            let result = cost::evaluate(&graph, &acc, &opts, fixed.as_ref())?;
            let levels = report::access_levels(&result);
            match format {
                Format::Table => print!("{}", report::eval_table(&result, &levels)),
                Format::Csv => print!("{}", report::eval_csv(&result)?),
                Format::Json => println!("{}", serde_json::to_string_pretty(&result)?),
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
                CheckFormat::Table => print!("{}", result.table()),
                CheckFormat::Json => println!("{}", serde_json::to_string_pretty(&result)?),
            }
            let bad = result.count(|v| matches!(v, check::accel::Verdict::Mismatch));
            if bad > 0 {
                return Err(format!("{bad} kernels MISMATCH").into());
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
            let graph_spec =
                op.ok_or("give --op '<spec>' for the layer so the mapping can be checked")?;
            let g = spec::single_op_graph(&graph_spec)?;
            let work = coex::lower::lower(&g)?;
            let e = work
                .iter()
                .flat_map(|w| w.einsums())
                .next()
                .ok_or("the op spec has no Einsum to map")?;
            let p = coex::map::Problem::from_einsum(e)?;
            let m = coex::map::file::resolve(&raw, &p, &template)
                .map_err(|m| format!("{}: {m}", timeloop.display()))?;
            print!("{}", coex::map::file::to_toml(&layer, &m, &p, &template));
        }
    }
    Ok(())
}

/// `key=value` pairs from repeated --set flags.
fn parse_sets(sets: &[String]) -> Result<Vec<(String, String)>, String> {
    sets.iter()
        .map(|s| {
            s.split_once('=')
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .ok_or_else(|| format!("--set '{s}': expected KEY=VALUE"))
        })
        .collect()
}
