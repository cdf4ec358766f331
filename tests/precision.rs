//! Precision on ASIC templates: every figure below is computed by hand from the op's
//! bytes and the template's file (word width, DRAM pJ/bit, bandwidth, MAC energies in
//! accelerators/tech/45nm.toml), not by the model.

use coex::arch::{self, Accelerator};
use coex::cost::{self, NetworkCost, NetworkOptions};
use coex::map::file::MappingFile;
use coex::workload::spec::single_op_graph;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn eval(spec: &str, accel: &Path, mapping: Option<&str>) -> Result<NetworkCost, String> {
    let g = single_op_graph(spec).map_err(|e| e.to_string())?;
    let acc = arch::load_accelerator(accel, &[]).map_err(|e| e.to_string())?;
    let fixed = mapping.map(|text| {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.toml");
        std::fs::write(&p, text).unwrap();
        let f = MappingFile::load(&p).unwrap();
        std::mem::forget(dir);
        f
    });
    cost::evaluate(&g, &acc, &NetworkOptions::default(), fixed.as_ref()).map_err(|e| e.to_string())
}

fn level_pj(r: &NetworkCost, level: &str) -> f64 {
    r.energy_by_level_pj
        .iter()
        .find(|(l, _)| l == level)
        .map(|(_, e)| *e)
        .unwrap()
}

fn systolic_ws() -> PathBuf {
    root().join("accelerators/asic/systolic_ws.toml")
}

/// fp16 GEMV on the 128×128 ws array: the weights alone are 4096·4096·2 bytes; with
/// the 4096-element input and output, 33,570,816 bytes cross DRAM at 64 B/cycle:
/// 524,544 cycles, above the 392,192 compute cycles; DRAM energy at 8 pJ/bit:
/// 33,570,816 · 8 · 8 = 2,148,532,224 pJ.
#[test]
fn fp16_gemv_on_systolic_ws_is_dram_bound_by_its_bytes() {
    let r = eval("gemm m=1 n=4096 k=4096 dtype=fp16", &systolic_ws(), None).unwrap();
    let k = &r.layers[0];
    assert_eq!(k.precision, "fp16");
    assert_eq!(k.latency_cycles, 524_544.0);
    assert_eq!(k.bound, "DRAM");
    assert_eq!(level_pj(&r, "DRAM"), 2_148_532_224.0);
    // MACs at the 16-bit MAC energy of the 45 nm table (1.5 pJ).
    assert_eq!(k.compute_cycles, 392_192.0);
}

/// int8: 16,785,408 bytes → 262,272 DRAM cycles, under the 32·32 folds × 383 cycles =
/// 392,192 compute cycles; DRAM energy 16,785,408 · 64 = 1,074,266,112 pJ.
#[test]
fn int8_gemv_on_systolic_ws_is_compute_bound() {
    let r = eval("gemm m=1 n=4096 k=4096 dtype=int8", &systolic_ws(), None).unwrap();
    let k = &r.layers[0];
    assert_eq!(k.precision, "int8");
    assert_eq!(k.latency_cycles, 392_192.0);
    assert_eq!(k.bound, "compute");
    assert_eq!(level_pj(&r, "DRAM"), 1_074_266_112.0);
}

#[test]
fn fp32_on_an_int8_fp16_datapath_is_refused_with_the_fix() {
    let err = eval("gemm m=1 n=64 k=64 dtype=fp32", &systolic_ws(), None).unwrap_err();
    assert!(err.contains("systolic_ws.toml"), "{err}");
    assert!(err.contains("int8, fp16, bf16"), "{err}");
    assert!(err.contains("[mac] precisions"), "{err}");
}

/// MAC energy follows the precision: on Eyeriss (65 nm table: 0.4 pJ per 8-bit MAC,
/// 1.0 pJ per 16-bit one), the energy not spent in any level or leaking is the padded
/// MACs × that width's MAC energy.
#[test]
fn mac_energy_follows_the_precision() {
    let path = root().join("accelerators/asic/eyeriss.toml");
    let t = arch::load(&path, &[]).unwrap();
    for (dtype, pj) in [("int8", 0.4), ("fp16", 1.0)] {
        let r = eval(&format!("gemm m=16 n=16 k=16 dtype={dtype}"), &path, None).unwrap();
        let k = &r.layers[0];
        let levels: f64 = r.energy_by_level_pj.iter().map(|(_, e)| e).sum();
        let leak = cost::leakage_pj(&t, k.latency_cycles);
        let mac = k.energy_pj - levels - leak;
        let expected = k.padded_macs as f64 * pj;
        assert!(
            (mac - expected).abs() < 1e-6 * expected,
            "{dtype}: {mac} vs {expected}"
        );
    }
}

/// On a 16-bit template (Eyeriss), a pinned mapping that keeps every operand in the
/// 108 KiB GLB moves each element across DRAM once; DRAM energy per element is
/// bits × 12.5 pJ/bit (65 nm table): int8 elements pack two to a 16-bit word (100 pJ
/// each), fp16 takes one word (200 pJ). fp32 is not an Eyeriss precision: refused.
#[test]
fn dram_energy_per_element_follows_its_bits_on_a_16_bit_template() {
    let path = root().join("accelerators/asic/eyeriss.toml");
    // gemm m=8 n=8 k=8: I 64, W 64, O 64 elements. The GLB keeps I and O; W goes from
    // DRAM straight to the per-PE weight scratchpads.
    let mapping = r#"
[[mapping]]
layer = "gemm"
spatial = { rows = "K8" }
levels = [{ name = "DRAM", loops = "" }, { name = "GLB", loops = "P8 C8" }]
"#;
    for (dtype, per_elem_pj) in [("int8", 100.0), ("fp16", 200.0)] {
        let r = eval(
            &format!("gemm m=8 n=8 k=8 dtype={dtype}"),
            &path,
            Some(mapping),
        )
        .unwrap();
        let acc = &r.layers[0].accesses;
        let dram: u64 = acc
            .iter()
            .filter(|a| a.level == "DRAM")
            .map(|a| a.reads + a.fills + a.updates)
            .sum();
        assert_eq!(level_pj(&r, "DRAM"), dram as f64 * per_elem_pj, "{dtype}");
        assert!(
            dram >= 64 * 3,
            "{dtype}: every element crosses DRAM at least once"
        );
    }
    let err = eval("gemm m=8 n=8 k=8 dtype=fp32", &path, None).unwrap_err();
    assert!(err.contains("not fp32"), "{err}");
}

/// Capacity is counted in packed words: a 64-word level holds 128 int8 elements or 64
/// fp16 ones (`arch::words_for`).
#[test]
fn packing_rule_by_hand() {
    assert_eq!(arch::words_for(128, 8, 16), 64);
    assert_eq!(arch::words_for(129, 8, 16), 65);
    assert_eq!(arch::words_for(64, 16, 16), 64);
    assert_eq!(arch::words_for(64, 32, 16), 128);
    assert_eq!(arch::words_for(3, 16, 8), 6);
    assert_eq!(arch::words_per_element(8, 16), 0.5);
    assert_eq!(arch::words_per_element(16, 8), 2.0);
    // 12-bit elements in 16-bit words do not pack: one per word.
    assert_eq!(arch::words_per_element(12, 16), 1.0);
}

/// FPGA engines are built for one precision; the report says which one ran.
#[test]
fn fpga_and_gpu_kernels_report_their_precision() {
    let g = single_op_graph("gemm m=64 n=64 k=64 dtype=fp16").unwrap();
    for (file, want) in [
        ("fpga/zcu102_tiled.toml", None),
        ("gpu/a100.toml", Some("fp16")),
    ] {
        let acc = arch::load_accelerator(&root().join("accelerators").join(file), &[]).unwrap();
        let r = cost::evaluate(&g, &acc, &NetworkOptions::default(), None).unwrap();
        let k = r.layers.iter().find(|l| l.kind == "einsum").unwrap();
        match (&acc, want) {
            (Accelerator::Fpga(f), _) => assert_eq!(k.precision, f.precision.static_name()),
            (_, Some(w)) => assert_eq!(k.precision, w),
            _ => unreachable!(),
        }
    }
}
