//! Bad templates and mapping files: each is a clear error that names the file and the
//! key (or level), exits non-zero, and does not panic.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn coex(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coex"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

fn assert_clean_error(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected failure; stderr: {err}");
    assert!(!err.contains("panicked"), "panic: {err}");
    for n in needles {
        assert!(err.contains(n), "error should mention '{n}': {err}");
    }
}

/// The shipped pe_buffer_ws template with one text substitution, written beside the
/// real ones (so its `tech = "45nm"` resolves) under a unique name.
fn variant(name: &str, from: &str, to: &str) -> PathBuf {
    let src = std::fs::read_to_string(root().join("accelerators/asic/pe_buffer_ws.toml")).unwrap();
    assert!(src.contains(from), "fixture text '{from}' present");
    let dir = root().join("target/test-templates/asic");
    std::fs::create_dir_all(&dir).unwrap();
    let tech = root().join("target/test-templates/tech");
    std::fs::create_dir_all(&tech).unwrap();
    std::fs::copy(
        root().join("accelerators/tech/45nm.toml"),
        tech.join("45nm.toml"),
    )
    .unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, src.replacen(from, to, 1)).unwrap();
    path
}

const OP: &str = "conv2d n=1 c=16 h=8 w=8 k=16 r=3 s=3 pad=1";

/// Runs `coex eval` of `OP` on pe_buffer_ws with a mapping file `name` holding `text`.
fn eval_with_mapping(name: &str, text: &str, extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let m = dir.path().join(name);
    std::fs::write(&m, text).unwrap();
    let mut args = vec![
        "eval",
        "--op",
        OP,
        "--accel",
        "accelerators/asic/pe_buffer_ws.toml",
        "--mapping",
        m.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    coex(&args)
}

#[test]
fn zero_size_level() {
    let p = variant("zero_size", "size_kib = 256", "size_kib = 0");
    let out = coex(&["eval", "--op", OP, "--accel", p.to_str().unwrap()]);
    assert_clean_error(
        &out,
        &["zero_size.toml", "level.GLB.size_kib", "at least one word"],
    );
}

#[test]
fn array_unrolls_a_dim_no_operand_has() {
    let p = variant(
        "bad_dim",
        r#"rows = ["C", "R", "S"]"#,
        r#"rows = ["C", "Z"]"#,
    );
    let out = coex(&["eval", "--op", OP, "--accel", p.to_str().unwrap()]);
    assert_clean_error(&out, &["bad_dim.toml", "array.spatial.rows", "'Z'"]);
}

#[test]
fn buffer_too_small_for_any_tile() {
    // The PE-local buffer keeps I, W and O: it needs at least 3 words.
    let p = variant("tiny", "size_kib = 2\n", "size_words = 2\n");
    let out = coex(&["eval", "--op", OP, "--accel", p.to_str().unwrap()]);
    assert_clean_error(&out, &["tiny.toml", "pe_buffer", "holds 2 words"]);
}

#[test]
fn unknown_template_key_names_key_and_line() {
    let p = variant(
        "typo",
        "bandwidth_bytes_per_cycle = 128",
        "bandwith_bytes_per_cycle = 128",
    );
    let out = coex(&["eval", "--op", OP, "--accel", p.to_str().unwrap()]);
    assert_clean_error(&out, &["typo.toml", "bandwith_bytes_per_cycle", "line "]);
}

#[test]
fn override_of_a_missing_level() {
    let out = coex(&[
        "eval",
        "--op",
        OP,
        "--accel",
        "accelerators/asic/eyeriss.toml",
        "--set",
        "level.L3.size_kib=4",
    ]);
    assert_clean_error(
        &out,
        &["eyeriss.toml", "level.L3.size_kib", "no level named 'L3'"],
    );
}

#[test]
fn mapping_file_that_breaks_capacity() {
    // Everything at the PE-local buffer: its tile is the whole layer.
    let text = r#"[[mapping]]
layer = "conv2d"
levels = [{ name = "pe_buffer", loops = "K16 C16 P8 Q8 R3 S3" }]
"#;
    let out = eval_with_mapping("greedy.toml", text, &[]);
    assert_clean_error(&out, &["greedy.toml", "capacity of level 'pe_buffer'"]);
}

#[test]
fn mapping_file_for_a_layer_that_does_not_exist() {
    let out = eval_with_mapping(
        "other.toml",
        "[[mapping]]\nlayer = \"conv99\"\nlevels = []\n",
        &[],
    );
    assert_clean_error(&out, &["other.toml", "conv99"]);
}

#[test]
fn a_valid_mapping_file_is_used_as_written() {
    let text = r#"[[mapping]]
layer = "conv2d"
spatial = { rows = "C16", cols = "K16" }
levels = [{ name = "DRAM", loops = "P8 Q8" }, { name = "GLB", loops = "R3 S3" }]
"#;
    let out = eval_with_mapping("ok.toml", text, &["--format", "json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layer = &v["layers"][0];
    assert_eq!(
        layer["mapping"],
        "DRAM[P8 Q8] GLB[R3 S3] sp[K16c C16r] pe_buffer[] weight_reg[] acc_reg[]"
    );
    // 16x16 PEs all busy: one temporal step per (p, q, r, s) = 8*8*3*3 = 576 cycles of compute.
    assert_eq!(layer["compute_cycles"], 576.0);
}

/// Negative energies, areas, leakage and static power, and duplicate level names, are
/// refused at load with the file and the key (they used to give negative energy/area).
#[test]
fn negative_template_values_and_duplicate_levels_are_refused() {
    let path =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("accelerators/asic/eyeriss.toml");
    for (key, value, needle) in [
        ("level.GLB.area_um2", "-5", "level.GLB.area_um2"),
        (
            "level.GLB.update_energy_pj",
            "-1",
            "level.GLB.update_energy_pj",
        ),
        (
            "level.GLB.leakage_pj_per_cycle",
            "-1",
            "leakage_pj_per_cycle",
        ),
        ("static_power_mw", "-3", "static_power_mw"),
        ("vector.energy_pj_per_op", "-1", "vector.energy_pj_per_op"),
    ] {
        let err = coex::arch::load(&path, &[(key.to_string(), value.to_string())])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("eyeriss.toml") && err.contains(needle) && err.contains("≥ 0"),
            "{key}: {err}"
        );
    }
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text
        .split("[space]")
        .next()
        .unwrap()
        .replace("name = \"GLB\"", "name = \"DRAM\"");
    let err = coex::arch::load_str(&text, &path, &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("level.DRAM") && err.contains("two levels"),
        "{err}"
    );
}

/// Huge `[space]` entries are sized and indexed, never materialized: loading (and so
/// `eval`) of such a file is instant, and the space reports its size.
#[test]
fn huge_spaces_are_sized_without_being_materialized() {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("accelerators/asic/systolic_ws.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = format!(
        "{}[space]\n\"array.rows\" = {{ range = [0, 9223372036854775807, 1] }}\n\"array.cols\" = {{ pow2 = [1, 4611686018427387904] }}\n",
        text.split("[space]").next().unwrap()
    );
    let t = coex::arch::load_str(&text, &path, &[]).unwrap();
    let by = |k: &str| t.space.iter().find(|p| p.key == k).unwrap().clone();
    let (rows, cols) = (by("array.rows"), by("array.cols"));
    assert_eq!(rows.len(), 9_223_372_036_854_775_808);
    assert_eq!(
        rows.value(9_223_372_036_854_775_807),
        Some(toml::Value::Integer(i64::MAX))
    );
    assert_eq!(cols.len(), 63);
    assert_eq!(cols.value(62), Some(toml::Value::Integer(1 << 62)));
    assert_eq!(cols.value(63), None);
    // A bad entry is still an error naming the key.
    let bad = format!(
        "{}[space]\n\"array.rows\" = {{ pow2 = [0, 8] }}\n",
        text.split("[space]").next().unwrap()
    );
    let err = coex::arch::load_str(&bad, &path, &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("array.rows") && err.contains("pow2"), "{err}");
}

/// GPU files: negative energies, powers and throughputs are refused with the key; a
/// network's energy splits into DRAM, L2, compute and static parts that add up.
#[test]
fn gpu_fields_are_range_checked_and_energy_is_broken_down() {
    let path =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("accelerators/gpu/a100.toml");
    for (key, value) in [
        ("model.static_power_w", "-50"),
        ("model.dram_energy_pj_per_byte", "-1"),
        ("device.launch_overhead_us", "-2"),
        ("model.mac_energy_pj.fp16", "-0.5"),
        ("device.tensor_macs_per_sm_cycle.fp16", "0"),
        ("model.pipeline_stages", "0"),
        ("model.tensor_conv_tiles", "[]"),
        ("model.vector_dram_efficiency", "1.5"),
        ("model.tensor_conv_tiles", "[[128, 0, 32]]"),
        ("model.cta_tiles", "[[4294967295, 4294967295, 4294967295]]"),
    ] {
        let err = coex::arch::load_accelerator(&path, &[(key.to_string(), value.to_string())])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a100.toml") && err.contains(key.split('.').nth(1).unwrap()),
            "{key}: {err}"
        );
    }
    let acc = coex::arch::load_accelerator(&path, &[]).unwrap();
    let g = coex::workload::spec::single_op_graph("gemm m=512 n=512 k=512 dtype=fp16").unwrap();
    let r = coex::cost::evaluate(&g, &acc, &coex::cost::NetworkOptions::default(), None).unwrap();
    let names: Vec<&str> = r
        .energy_by_level_pj
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(names, ["DRAM", "L2", "compute", "static"]);
    let parts: f64 = r.energy_by_level_pj.iter().map(|(_, e)| e).sum();
    assert!(
        (parts - r.total.energy_pj).abs() <= 1e-9 * r.total.energy_pj,
        "{parts} vs {}",
        r.total.energy_pj
    );
}

/// Found by the long fuzz run: an ILP time limit of 1e300 s overflowed a Duration.
#[test]
fn fpga_ilp_time_limit_is_range_checked() {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("accelerators/fpga/zcu102_dataflow.toml");
    let err = coex::arch::load_accelerator(
        &path,
        &[("engine.ilp_time_limit_s".to_string(), "1e300".to_string())],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("ilp_time_limit_s") && err.contains("86400"),
        "{err}"
    );
}

#[test]
fn shared_and_separate_bandwidths_are_exclusive() {
    let p = variant(
        "two_ports",
        "bandwidth_bytes_per_cycle = 128",
        "bandwidth_bytes_per_cycle = 128\nread_bandwidth_bytes_per_cycle = 64",
    );
    let out = coex(&["eval", "--op", OP, "--accel", p.to_str().unwrap()]);
    assert_clean_error(
        &out,
        &["two_ports.toml", "bandwidth_bytes_per_cycle", "not both"],
    );
}

#[test]
fn bypassable_must_be_kept_operands() {
    let p = variant(
        "bypass_unkept",
        "keeps = [\"W\"]",
        "keeps = [\"W\"]\nbypassable = [\"O\"]",
    );
    let out = coex(&["eval", "--op", OP, "--accel", p.to_str().unwrap()]);
    assert_clean_error(
        &out,
        &["bypass_unkept.toml", "bypassable", "'O' is not kept"],
    );
}
