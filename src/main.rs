//! The `coex` command line: parse arguments, call the library, print.

use clap::{Parser, Subcommand, ValueEnum};
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

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Csv,
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
    }
    Ok(())
}
