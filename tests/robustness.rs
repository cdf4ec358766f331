//! Inputs that used to hang, allocate without bound or mislabel their failure.

use std::process::{Command, Output};

fn coex(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_coex"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

/// A billion-wide head dim used to fail a 1 GB allocation inside the access analysis;
/// gapped and aliased axes are now counted in closed form.
#[test]
fn a_billion_wide_attention_head_maps() {
    let out = coex(&[
        "eval",
        "--op",
        "attention b=1 heads=4 kv_heads=2 seq=16 head_dim=1000000000",
        "-a",
        "accelerators/asic/eyeriss.toml",
        "--format",
        "json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let energy = v["total"]["energy_pj"].as_f64().unwrap();
    let latency = v["total"]["latency_cycles"].as_f64().unwrap();
    assert!(energy.is_finite() && energy > 0.0 && latency >= 2.048e12 / 168.0);
}

/// `coex check` says a kernel could not be mapped, and exits 1, instead of calling it
/// a mismatch.
#[test]
fn check_reports_an_unmappable_kernel_as_such() {
    let out = coex(&[
        "check",
        "--op",
        "conv2d n=1 c=16 h=8 w=8 k=16 r=3 s=3 pad=1",
        "-a",
        "accelerators/asic/eyeriss.toml",
        "--set",
        "level.GLB.size_kib=0.002",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}{err}");
    assert!(
        text.contains("NO MAP") && !text.contains("MISMATCH  "),
        "{text}"
    );
    assert!(err.contains("cannot be mapped"), "{err}");
}

/// A template copied anywhere still finds its technology table: the shipped
/// `accelerators/tech/` is on the search path, and `COEX_TECH_DIR` comes first.
#[test]
fn a_copied_template_finds_the_shipped_tech_tables() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("my_eyeriss.toml");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("accelerators/asic/eyeriss.toml"),
        &copy,
    )
    .unwrap();
    let out = coex(&[
        "eval",
        "--op",
        "gemm m=16 n=16 k=16",
        "-a",
        copy.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_coex"))
        .args([
            "eval",
            "--op",
            "gemm m=16 n=16 k=16",
            "-a",
            copy.to_str().unwrap(),
        ])
        .env("COEX_TECH_DIR", dir.path())
        .output()
        .unwrap();
    // COEX_TECH_DIR holds no 65nm.toml: the shipped folder still answers.
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
