//! `coex check` end to end on shipped workloads and templates: a representative subset
//! of layers (a stem conv, a strided downsample, a classifier, attention, an FFN, MoE
//! experts, a Mamba depthwise conv1d) on two templates, in table and JSON form; a
//! perturbed model that must fail naming the level and operand; and bad input.
//! The full sweep (every layer of five networks on every ASIC template) is run by hand
//! in release, see the `check` module docs.

use std::process::{Command, Output};

fn coex(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coex"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("coex binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

const TEMPLATES: [&str; 2] = [
    "accelerators/asic/eyeriss.toml",
    "accelerators/asic/systolic_ws.toml",
];

/// Runs `coex check` in JSON and returns the parsed result, asserting a clean pass.
fn passes(workload: &str, accel: &str, layers: &str) -> serde_json::Value {
    let out = coex(&[
        "check",
        "--workload",
        workload,
        "--accel",
        accel,
        "--layers",
        layers,
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{workload} on {accel}: {}\n{}",
        stderr(&out),
        stdout(&out)
    );
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let kernels = v["kernels"].as_array().unwrap();
    assert!(!kernels.is_empty());
    for k in kernels {
        let verdict = k["verdict"].as_str().unwrap();
        assert!(verdict == "ok" || verdict == "not_run", "{k}");
        if k["kind"] == "einsum" {
            assert_eq!(verdict, "ok", "{k}");
        }
    }
    v
}

#[test]
fn resnet18_stem_downsample_and_classifier_pass_on_two_templates() {
    for accel in TEMPLATES {
        let out = coex(&[
            "check",
            "-w",
            "workloads/resnet18.toml",
            "-a",
            accel,
            "--layers",
            "conv1,layer2.0.conv1,layer2.0.downsample,fc",
        ]);
        let text = stdout(&out);
        assert!(out.status.success(), "{accel}: {}\n{text}", stderr(&out));
        // One line per kernel (4 convs/linears + the fc bias), then the summary.
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1 + 5 + 1, "{text}");
        assert!(lines[1..6].iter().all(|l| l.contains(" ok ")), "{text}");
        assert!(lines[6].contains("0 MISMATCH"), "{text}");
        // The 7×7 stride-2 stem is too large to execute whole: it runs scaled down.
        assert!(lines[1].starts_with("conv1") && lines[1].contains("of the MACs"));
    }
}

#[test]
fn bert_attention_and_ffn_pass_in_json() {
    for accel in TEMPLATES {
        let v = passes(
            "workloads/bert_base.toml",
            accel,
            "encoder.0.attn.sdpa,encoder.0.ffn.fc1,encoder.0.norm1",
        );
        let kernels: Vec<&str> = v["kernels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kernel"].as_str().unwrap())
            .collect();
        assert!(kernels.contains(&"encoder.0.attn.sdpa.scores"));
        assert!(kernels.contains(&"encoder.0.attn.sdpa.context"));
        assert!(kernels.contains(&"encoder.0.norm1"));
    }
}

#[test]
fn mixtral_experts_and_mamba_conv_pass() {
    let v = passes(
        "workloads/mixtral_8x7b.toml",
        TEMPLATES[1],
        "layers.0.ffn.moe",
    );
    let experts = v["kernels"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["kind"] == "einsum")
        .count();
    assert!(experts > 8, "router + expert GEMMs: {experts}");
    passes(
        "workloads/mamba_130m.toml",
        TEMPLATES[0],
        "layers.0.conv1d,layers.0.x_proj.dt",
    );
}

#[test]
fn a_perturbed_model_fails_the_check_naming_level_and_operand() {
    let out = coex(&[
        "check",
        "-w",
        "workloads/resnet18.toml",
        "-a",
        TEMPLATES[0],
        "--layers",
        "layer1.0.conv1",
        "--model-fault",
        "GLB:I:fills:+1",
    ]);
    assert!(!out.status.success());
    let text = stdout(&out);
    assert!(text.contains("MISMATCH"), "{text}");
    assert!(text.contains("GLB I fills: counted"), "{text}");
    assert!(text.contains("1 MISMATCH"), "{text}");
    assert!(
        stderr(&out).contains("1 kernels MISMATCH"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_input_is_a_clean_error() {
    let out = coex(&[
        "check",
        "-w",
        "workloads/resnet18.toml",
        "-a",
        TEMPLATES[0],
        "--layers",
        "no_such_layer",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("no_such_layer") && err.contains("conv1"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let out = coex(&[
        "check",
        "-w",
        "workloads/resnet18.toml",
        "-a",
        TEMPLATES[0],
        "--model-fault",
        "NOPE:I:fills:1",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no level 'NOPE'"), "{}", stderr(&out));
}
