//! Bad input of every kind ends in exit code 1 and a message naming the file (or flag),
//! the key or node, and what to do; never a panic, a hang or a silent overflow.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

fn coex(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coex"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("coex binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Exit code 1, no panic, and every needle in the message.
fn assert_error(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "expected exit 1; stderr: {err}");
    assert!(
        !err.contains("panicked"),
        "panic instead of an error: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "error should mention '{n}': {err}");
    }
}

/// A file named `name` holding `text`, in a temp dir kept alive by the returned guard.
fn temp_file(name: &str, text: &str) -> (PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (path, dir)
}

const CONV: &str = "conv2d n=1 c=64 h=56 w=56 k=64 r=3 s=3 pad=1";

/// `coex eval` of CONV on Eyeriss with a one-level mapping file holding `loops`.
fn eval_with_dram_loops(loops: &str) -> (Output, PathBuf, tempfile::TempDir) {
    let text = format!(
        "[[mapping]]\nlayer = \"conv2d\"\nlevels = [{{ name = \"DRAM\", loops = \"{loops}\" }}]\n"
    );
    let (path, dir) = temp_file("map.toml", &text);
    let out = coex(&[
        "eval",
        "--op",
        CONV,
        "-a",
        "accelerators/asic/eyeriss.toml",
        "--budget",
        "50",
        "--mapping",
        path.to_str().unwrap(),
    ]);
    (out, path, dir)
}

#[test]
fn mapping_file_repeating_a_dim_in_a_level_is_an_error() {
    let (out, path, _dir) = eval_with_dram_loops("K2 K2");
    assert_error(
        &out,
        &[
            path.to_str().unwrap(),
            "DRAM",
            "dim K appears twice",
            "once per level",
        ],
    );
}

#[test]
fn mapping_file_factor_beyond_the_bound_is_an_error() {
    let (out, path, _dir) = eval_with_dram_loops("K128 C64 P56 Q56 R3 S3");
    assert_error(
        &out,
        &[
            path.to_str().unwrap(),
            "dim K has bound 64",
            "128",
            "less than 128",
        ],
    );
}

#[test]
fn mapping_file_huge_factors_do_not_wrap() {
    // 4294967295 is u32::MAX: the product of such factors must not wrap to a valid cover.
    let (out, _path, _dir) = eval_with_dram_loops("K4294967295 C64 P56 Q56 R3 S3");
    assert_error(&out, &["dim K has bound 64"]);
}

#[test]
fn mapping_file_exact_cover_still_works() {
    let (out, _path, _dir) = eval_with_dram_loops("K64 C64 P56 Q56 R3 S3");
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn mapping_on_gpu_or_fpga_is_an_error() {
    let (path, _dir) = temp_file("map.toml", "[[mapping]]\nlayer = \"gemm\"\nlevels = []\n");
    for (accel, kind) in [
        ("accelerators/gpu/a100.toml", "GPU"),
        ("accelerators/fpga/zcu102_tiled.toml", "FPGA"),
    ] {
        let out = coex(&[
            "eval",
            "--op",
            "gemm m=64 n=64 k=64",
            "-a",
            accel,
            "--mapping",
            path.to_str().unwrap(),
        ]);
        assert_error(
            &out,
            &[
                "--mapping",
                path.to_str().unwrap(),
                accel,
                kind,
                "drop --mapping",
            ],
        );
    }
}

/// Runs coex with stdout into a pipe that is closed after `keep` bytes.
fn run_into_closed_pipe(args: &[&str], keep: usize) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_coex"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut buf = vec![0u8; keep];
    stdout.read_exact(&mut buf).unwrap();
    drop(stdout);
    child.wait_with_output().unwrap()
}

#[test]
fn a_closed_stdout_ends_the_program_quietly() {
    // Both outputs are far larger than a pipe's buffer, so coex writes into the closed pipe.
    for args in [
        &["inspect", "workloads/mixtral_8x7b.toml", "--format", "json"][..],
        &[
            "eval",
            "-w",
            "workloads/mixtral_8x7b.toml",
            "-a",
            "accelerators/gpu/a100.toml",
            "--format",
            "json",
        ][..],
    ] {
        let out = run_into_closed_pipe(args, 10);
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(!err.contains("error"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}

#[test]
fn budget_out_of_range_is_refused_by_the_cli() {
    for b in ["18446744073709551615", "0", "10000001"] {
        let out = coex(&[
            "eval",
            "--op",
            "gemm m=64 n=64 k=64",
            "-a",
            "accelerators/asic/eyeriss.toml",
            "--budget",
            b,
        ]);
        assert_error(&out, &["--budget", b, "1..=10000000"]);
    }
}

#[test]
fn import_mapping_requires_op() {
    let help = coex(&["import-mapping", "--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    let usage = text.lines().find(|l| l.starts_with("Usage:")).unwrap();
    assert!(
        usage.contains("--op <OP>") && !usage.contains("[--op"),
        "{usage}"
    );
    let out = coex(&[
        "import-mapping",
        "--timeloop",
        "x.yaml",
        "-a",
        "accelerators/asic/eyeriss.toml",
        "--layer",
        "conv1",
    ]);
    assert_error(&out, &["--op"]);
}

fn eval_with_set(set: &str) -> Output {
    coex(&[
        "eval",
        "--op",
        "gemm m=64 n=64 k=64",
        "-a",
        "accelerators/asic/eyeriss.toml",
        "--budget",
        "50",
        "--set",
        set,
    ])
}

#[test]
fn set_errors_name_the_given_key() {
    let file = "accelerators/asic/eyeriss.toml";
    assert_error(
        &eval_with_set("array.rows=twelve"),
        &[
            "--set array.rows=twelve",
            file,
            "'array.rows'",
            "expected a number",
        ],
    );
    assert_error(
        &eval_with_set("array=5"),
        &["--set array=5", "'array' is a section", "array.<key>"],
    );
    assert_error(
        &eval_with_set("level.GLB=5"),
        &[
            "--set level.GLB=5",
            "level.GLB needs a field",
            "level.GLB.size_kib",
        ],
    );
    assert_error(&eval_with_set("=5"), &["--set '=5'", "KEY=VALUE"]);
    assert_error(
        &eval_with_set("array.rows="),
        &["--set 'array.rows='", "KEY=VALUE"],
    );
    assert_error(
        &eval_with_set("level.Nope.size_kib=3"),
        &[
            "--set level.Nope.size_kib=3",
            "no level named 'Nope'",
            "GLB",
        ],
    );
    // A key the GPU file leaves to its default: typed only when the file is read.
    let gpu_set = |set: &str| {
        coex(&[
            "eval",
            "--op",
            "add shape=64x64 dtype=fp16",
            "-a",
            "accelerators/gpu/h200.toml",
            "--set",
            set,
        ])
    };
    assert_error(
        &gpu_set("model.vector_dram_efficiency=abc"),
        &["--set model.vector_dram_efficiency=abc", "h200.toml", "f64"],
    );
    // `NaN` and `Inf` (TOML spells them lower case) reach the range check.
    assert_error(
        &gpu_set("model.vector_dram_efficiency=NaN"),
        &["--set model.vector_dram_efficiency=NaN", "(0, 1]"],
    );
}

/// `coex inspect` on a workload file holding `text`.
fn inspect_text(text: &str) -> (Output, PathBuf, tempfile::TempDir) {
    let (path, dir) = temp_file("w.toml", text);
    let out = coex(&["inspect", path.to_str().unwrap()]);
    (out, path, dir)
}

#[test]
fn networks_too_big_to_build_are_refused_before_allocating() {
    // 2^31 - 1 blocks: the builder stops at the layer limit instead of growing to an abort.
    let (out, path, _dir) =
        inspect_text("family = \"resnet\"\n[params]\ndepths = [2, 2, 2, 2147483647]\n");
    assert_error(
        &out,
        &[
            path.to_str().unwrap(),
            "layer4",
            "more than 100000 layers",
            "depth",
        ],
    );
    // 2^32 is past the largest single size.
    let (out, path, _dir) =
        inspect_text("family = \"resnet\"\n[params]\ndepths = [2, 2, 2, 4294967296]\n");
    assert_error(
        &out,
        &[path.to_str().unwrap(), "'depths'", "at most 2147483648"],
    );
    // A tensor past 2^40 elements.
    let (out, path, _dir) =
        inspect_text("input = [1048576, 1048576, 4]\n[[layer]]\nname = \"big\"\nop = \"relu\"\n");
    assert_error(&out, &[path.to_str().unwrap(), "'input'", "2^40"]);
}

#[test]
fn size_arithmetic_overflow_is_an_error_naming_the_op() {
    let spec = "gemm m=4294967296 n=4294967296 k=4294967296";
    assert_error(&coex(&["inspect", "--op", spec]), &[spec, "'m'", "at most"]);
    // Each size fits, but the MACs (2^60) and the weights (2^40) are past the limits.
    let spec = "gemm m=1048576 n=1048576 k=1048576";
    assert_error(
        &coex(&["inspect", "--op", spec]),
        &[spec, "node 'gemm'", "MACs"],
    );
    let spec = "gemm m=1 n=2097152 k=2097152";
    assert_error(
        &coex(&["inspect", "--op", spec]),
        &[spec, "weights", "2^40"],
    );
    // Attention scores: b·heads·seq·keys elements overflow unless checked.
    let spec = "attention b=1 heads=1024 head_dim=1024 seq=1048576 kv_cache=2147483647";
    assert_error(
        &coex(&["inspect", "--op", spec]),
        &[spec, "attention", "2^56"],
    );
}

#[test]
fn softmax_axis_out_of_range_names_the_layer() {
    let (out, path, _dir) =
        inspect_text("input = [8, 768]\n[[layer]]\nname = \"sm\"\nop = \"softmax axis=-99\"\n");
    assert_error(
        &out,
        &[
            path.to_str().unwrap(),
            "layer 'sm'",
            "'axis'",
            "-99",
            "-3 to 2",
        ],
    );
    let spec = "softmax shape=2x3 axis=5";
    assert_error(
        &coex(&["inspect", "--op", spec]),
        &[spec, "axis 5", "-2 to 1"],
    );
}

#[test]
fn layer_list_errors_say_what_is_wrong() {
    let (out, path, _dir) = inspect_text("input = [8]\n[[layer]]\nname = \"x\"\nop = 42\n");
    let err = stderr(&out);
    assert_error(
        &out,
        &[
            path.to_str().unwrap(),
            "layer 'x'",
            "'op'",
            "string op spec",
            "42",
        ],
    );
    assert!(!err.contains("missing"), "{err}");

    let (out, path, _dir) = inspect_text(
        "input = [8]\n[[layer]]\nname = \"a\"\nop = \"relu\"\n[[layer]]\nname = \"a\"\nop = \"relu\"\n",
    );
    let err = stderr(&out);
    assert_error(
        &out,
        &[
            path.to_str().unwrap(),
            "layer 'a'",
            "#1 already has the name 'a'",
            "unique",
        ],
    );
    assert!(!err.contains("cycle"), "{err}");

    let (out, path, _dir) =
        inspect_text("input = [8]\n[[layer]]\nname = \"input\"\nop = \"relu\"\n");
    let err = stderr(&out);
    assert_error(
        &out,
        &[path.to_str().unwrap(), "'input' is reserved", "rename"],
    );
    assert!(!err.contains("cycle"), "{err}");
}

#[test]
fn gemm_works_as_a_layer_and_checks_its_sizes_against_the_input() {
    let (out, _path, _dir) = inspect_text(
        "input = [128, 768]\n[[layer]]\nname = \"qkv\"\nop = \"gemm m=128 n=2304 k=768\"\n\
         [[layer]]\nname = \"proj\"\nop = \"gemm n=768\"\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("1x128x2304"), "{text}");
    // 128·2304·768 MACs.
    assert!(text.contains("226.492 M"), "{text}");

    let (out, path, _dir) = inspect_text(
        "input = [128, 768]\n[[layer]]\nname = \"qkv\"\nop = \"gemm m=128 n=2304 k=512\"\n",
    );
    assert_error(
        &out,
        &[
            path.to_str().unwrap(),
            "layer 'qkv'",
            "'k'",
            "k must be 768",
            "left out",
        ],
    );
}

#[test]
fn every_op_kind_of_op_specs_is_known_in_a_layer_list() {
    let families = coex(&["families"]);
    let text = String::from_utf8_lossy(&families.stdout);
    let kinds: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("Op kinds"))
        .filter_map(|l| l.strip_prefix("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|k| {
            k.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
        })
        .collect();
    assert!(kinds.len() > 30, "{text}");
    for kind in kinds {
        let (out, _path, _dir) = inspect_text(&format!(
            "input = [8]\n[[layer]]\nname = \"x\"\nop = \"{kind}\"\n"
        ));
        let err = stderr(&out);
        assert!(!err.contains("unknown op"), "{kind}: {err}");
        assert!(!err.contains("panicked"), "{kind}: {err}");
    }
}

#[test]
fn families_lists_op_keys() {
    let out = coex(&["families"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let conv = text
        .lines()
        .find(|l| l.trim_start().starts_with("conv2d "))
        .unwrap();
    for key in ["k*", "stride", "pad", "groups", "c*", "h*", "w*"] {
        assert!(
            conv.split_whitespace()
                .any(|w| w.trim_end_matches(';') == key),
            "{conv}"
        );
    }
}

#[test]
fn unknown_op_key_lists_every_accepted_key_in_both_forms() {
    let spec = "conv2d n=1 c=64 h=56 w=56 k=64 bogus=1";
    let out = coex(&["inspect", "--op", spec]);
    assert_error(
        &out,
        &[spec, "'bogus'", "k, r, s", "stride", "n, c, h, w", "dtype"],
    );
    let (out, path, _dir) = inspect_text(
        "input = [64, 56, 56]\n[[layer]]\nname = \"c\"\nop = \"conv2d k=64 bogus=1\"\n",
    );
    assert_error(
        &out,
        &[
            path.to_str().unwrap(),
            "layer 'c'",
            "'bogus'",
            "k, r, s",
            "stride",
        ],
    );
}

#[test]
fn zero_and_negative_op_sizes_are_errors() {
    for spec in [
        "gemm m=0 n=8 k=8",
        "gemm m=-1 n=8 k=8",
        "conv2d n=1 c=0 h=8 w=8 k=8",
        "attention b=1 heads=-4 head_dim=8 seq=8",
        "relu shape=2x0x3",
    ] {
        assert_error(&coex(&["inspect", "--op", spec]), &[spec]);
    }
}

fn eval_out(accel: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "eval",
        "-w",
        "workloads/resnet18.toml",
        "-a",
        accel,
        "--budget",
        "50",
    ];
    args.extend_from_slice(extra);
    let out = coex(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn eval_table_fits_120_columns_with_units_and_integer_cycles() {
    for accel in [
        "accelerators/asic/eyeriss.toml",
        "accelerators/fpga/zcu102_tiled.toml",
        "accelerators/gpu/a100.toml",
    ] {
        let text = eval_out(accel, &[]);
        for line in text.lines() {
            assert!(
                line.chars().count() <= 120,
                "{accel}: {} wide: {line}",
                line.chars().count()
            );
            assert!(
                !line.contains("GpJ") && !line.contains(" pJ"),
                "{accel}: {line}"
            );
        }
        let total = text.lines().find(|l| l.starts_with("total:")).unwrap();
        assert!(total.contains(" mJ") || total.contains(" J"), "{total}");
        assert!(total.contains(" ms") || total.contains(" µs"), "{total}");
        // Cycles print as integers.
        let cycles = total
            .split("latency ")
            .nth(1)
            .unwrap()
            .split(' ')
            .next()
            .unwrap();
        assert!(cycles.parse::<u64>().is_ok(), "{total}");
        let header = text.lines().nth(1).unwrap();
        assert!(!header.contains("elems"), "accesses are opt-in: {header}");
        assert!(
            header.contains("prec"),
            "kernels say their precision: {header}"
        );
    }
    let wide = eval_out("accelerators/asic/eyeriss.toml", &["--accesses"]);
    assert!(
        wide.lines().nth(1).unwrap().contains("DRAM elems"),
        "{wide}"
    );
}

#[test]
fn fpga_table_says_area_is_in_resources_and_names_the_objective_truthfully() {
    let text = eval_out("accelerators/fpga/zcu102_tiled.toml", &[]);
    assert!(text.contains("area n/a: see resources"), "{text}");
    assert!(!text.contains("0.000 mm2"), "{text}");
    let first = text.lines().next().unwrap();
    assert!(
        first.contains("objective latency") && first.contains("not for edp"),
        "{first}"
    );
    let asic = eval_out("accelerators/asic/eyeriss.toml", &[]);
    assert!(
        asic.lines().next().unwrap().ends_with("(objective edp)"),
        "{asic}"
    );
}

#[test]
fn eval_csv_has_a_totals_row() {
    let text = eval_out("accelerators/asic/eyeriss.toml", &["--format", "csv"]);
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let headers = rdr.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    let (total, layers) = rows.split_last().unwrap();
    assert_eq!(&total[col("layer")], "total");
    let macs: u64 = layers
        .iter()
        .map(|r| r[col("macs")].parse::<u64>().unwrap())
        .sum();
    assert_eq!(total[col("macs")].parse::<u64>().unwrap(), macs);
    assert_eq!(macs, 1_814_073_344);
    let dram: u64 = layers
        .iter()
        .map(|r| r[col("DRAM.W.reads")].parse::<u64>().unwrap())
        .sum();
    assert_eq!(total[col("DRAM.W.reads")].parse::<u64>().unwrap(), dram);
}

#[test]
fn import_arch_names_the_file_and_what_is_missing() {
    let dir = std::env::temp_dir().join("coex_import_arch_test");
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("no_arch.yaml");
    std::fs::write(&f, "problem: {}\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_coex"))
        .args(["import-arch", "--timeloop", f.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no_arch.yaml") && err.contains("architecture"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
