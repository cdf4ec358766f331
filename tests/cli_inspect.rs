//! End-to-end runs of `coex inspect` and `coex families` on shipped files, and the
//! errors users get for bad input: each names the file and the key or node, exits
//! non-zero, and never panics.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

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

/// Writes `text` to a temp file named `name` and runs `coex inspect` on it.
fn inspect_text(name: &str, text: &str) -> (Output, PathBuf, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    let out = coex(&["inspect", path.to_str().unwrap()]);
    (out, path, dir)
}

/// Bad input must fail cleanly: non-zero exit, no panic, and a message with every `needles`.
fn assert_clean_error(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr: {err}"
    );
    assert!(
        !err.contains("panicked"),
        "panic instead of an error: {err}"
    );
    for n in needles {
        assert!(err.contains(n), "error should mention '{n}': {err}");
    }
}

#[test]
fn inspect_json_has_the_documented_shape() {
    let out = coex(&["inspect", "workloads/resnet18.toml", "--format", "json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["network"], "resnet18");
    // torchvision model card: 11,689,512 parameters.
    assert_eq!(v["total"]["params"], 11_689_512);
    let layers = v["layers"].as_array().unwrap();
    let macs: u64 = layers.iter().map(|l| l["macs"].as_u64().unwrap()).sum();
    assert_eq!(
        v["total"]["macs"].as_u64().unwrap(),
        macs,
        "total = sum of layers"
    );
    let conv1 = layers.iter().find(|l| l["name"] == "conv1").unwrap();
    // 7x7x3 stem to 112x112x64: 112*112*64*147 multiply-adds.
    assert_eq!(conv1["macs"], 112 * 112 * 64 * 147);
    assert_eq!(conv1["output_shape"], "1x64x112x112");
}

#[test]
fn inspect_csv_and_batch_override() {
    let out = coex(&[
        "inspect",
        "workloads/resnet18.toml",
        "--format",
        "csv",
        "--batch",
        "4",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let headers = rdr.headers().unwrap().clone();
    assert!(headers.iter().any(|h| h == "macs"));
    let macs_col = headers.iter().position(|h| h == "macs").unwrap();
    let total: u64 = rdr
        .records()
        .map(|r| r.unwrap()[macs_col].parse::<u64>().unwrap())
        .sum();
    // MACs scale linearly with batch: 4 x 1,814,073,344.
    assert_eq!(total, 4 * 1_814_073_344);
}

#[test]
fn inspect_one_line_op_specs() {
    let out = coex(&[
        "inspect",
        "--op",
        "gemm m=8192 n=8192 k=8192 dtype=fp16",
        "--format",
        "json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["total"]["macs"].as_u64().unwrap(), 8192u64.pow(3));
    assert_eq!(v["dtype"], "fp16");
    let out = coex(&[
        "inspect",
        "--op",
        "attention b=1 heads=12 seq=128 head_dim=64 causal=true",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = coex(&[
        "inspect",
        "--op",
        "conv2d n=1 c=64 h=56 w=56 k=64 r=3 s=3 stride=1 pad=1 dtype=int8",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("115.606 M"));
}

#[test]
fn families_lists_every_family_with_parameters() {
    let out = coex(&["families"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for f in [
        "resnet",
        "vgg",
        "mobilenet_v2",
        "vit",
        "bert",
        "gpt",
        "moe_transformer",
    ] {
        assert!(text.contains(&format!("{f}:")), "missing {f}");
    }
    assert!(text.contains("depths") && text.contains("[2, 2, 2, 2]"));
}

#[test]
fn malformed_toml_names_file_and_line() {
    let (out, path, _d) = inspect_text(
        "broken.toml",
        "family = \"resnet\"\n[params\ndepths = [2]\n",
    );
    assert_clean_error(
        &out,
        &[path.file_name().unwrap().to_str().unwrap(), "line 2"],
    );
}

#[test]
fn unknown_family_lists_known_ones() {
    let (out, _, _d) = inspect_text("net.toml", "family = \"resnot\"\n");
    assert_clean_error(&out, &["net.toml", "resnot", "resnet"]);
}

#[test]
fn unknown_parameter_is_named_with_accepted_keys() {
    let (out, _, _d) = inspect_text(
        "net.toml",
        "family = \"resnet\"\n[params]\ndepht = [2, 2]\n",
    );
    assert_clean_error(&out, &["net.toml", "depht", "depths"]);
}

#[test]
fn zero_and_negative_sizes_are_rejected() {
    let (out, _, _d) = inspect_text(
        "z.toml",
        "family = \"resnet\"\n[params]\ndepths = [2, 0, 2, 2]\n",
    );
    assert_clean_error(&out, &["z.toml", "depths", "positive"]);
    let (out, _, _d) = inspect_text("neg.toml", "family = \"vit\"\n[params]\ndim = -768\n");
    assert_clean_error(&out, &["neg.toml", "dim"]);
    let (out, _, _d) = inspect_text("in.toml", "input = [3, 0, 8]\n[[layer]]\nop = \"relu\"\n");
    assert_clean_error(&out, &["in.toml", "input"]);
    let out = coex(&["inspect", "--op", "conv2d n=1 c=0 h=8 w=8 k=4"]);
    assert_clean_error(&out, &["conv2d", "'c'"]);
}

#[test]
fn shape_mismatch_names_the_layer() {
    let text = r#"
input = [8, 16]
[[layer]]
name = "a"
op = "linear out=32"
[[layer]]
name = "b"
op = "linear out=24"
inputs = ["input"]
[[layer]]
name = "sum"
op = "add"
inputs = ["a", "b"]
"#;
    let (out, _, _d) = inspect_text("mismatch.toml", text);
    assert_clean_error(&out, &["mismatch.toml", "'sum'", "broadcast"]);
}

#[test]
fn cycle_names_a_layer_on_it() {
    let text = r#"
input = [4, 8]
[[layer]]
name = "a"
op = "relu"
inputs = ["c"]
[[layer]]
name = "b"
op = "relu"
[[layer]]
name = "c"
op = "relu"
"#;
    let (out, _, _d) = inspect_text("cycle.toml", text);
    assert_clean_error(&out, &["cycle.toml", "cycle"]);
    let err = stderr(&out);
    assert!(
        ["'a'", "'b'", "'c'"].iter().any(|n| err.contains(n)),
        "{err}"
    );
}

#[test]
fn dangling_input_and_missing_op_are_named() {
    let (out, _, _d) = inspect_text(
        "d.toml",
        "input = [4]\n[[layer]]\nname = \"x\"\nop = \"relu\"\ninputs = [\"nope\"]\n",
    );
    assert_clean_error(&out, &["d.toml", "'x'", "'nope'"]);
    let (out, _, _d) = inspect_text("m.toml", "input = [4]\n[[layer]]\nname = \"x\"\n");
    assert_clean_error(&out, &["m.toml", "'x'", "op"]);
    let (out, _, _d) = inspect_text(
        "u.toml",
        "input = [4]\n[[layer]]\nname = \"x\"\nop = \"frobnicate\"\n",
    );
    assert_clean_error(&out, &["u.toml", "frobnicate", "known ops"]);
}

#[test]
fn missing_file_is_a_clean_error() {
    let out = coex(&["inspect", "workloads/does_not_exist.toml"]);
    assert_clean_error(&out, &["does_not_exist.toml"]);
    assert!(Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("workloads")
        .is_dir());
}
