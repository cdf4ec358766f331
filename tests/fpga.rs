//! FPGA engines: the shipped device files, the tiled engine against hand arithmetic
//! and against Zhang et al. (FPGA'15), the dataflow folding (ILP vs greedy), errors
//! that name what overflows, and monotonicity properties.

use coex::arch::fpga::{Dataflow, Engine, Fpga, Precision, Resources, Tiled};
use coex::arch::{load_accelerator, Accelerator};
use coex::cost::fpga::fold::{self, Candidate};
use coex::cost::fpga::tiled::{best_tiling, tile_cost, Layer, Order, Tiling};
use coex::cost::fpga::{dataflow, FpgaError};
use coex::cost::{self, CostError, NetworkOptions};
use coex::lower::Kernel;
use coex::map::Problem;
use coex::workload::{self, spec::single_op_graph, Graph};
use proptest::prelude::*;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fpga(file: &str, sets: &[(&str, &str)]) -> Fpga {
    let sets: Vec<(String, String)> = sets
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    match load_accelerator(&root().join("accelerators/fpga").join(file), &sets).unwrap() {
        Accelerator::Fpga(f) => f,
        _ => panic!("{file} is not an FPGA file"),
    }
}

fn network(file: &str) -> Graph {
    workload::load(&root().join("workloads").join(file), None).unwrap()
}

fn eval(g: &Graph, f: &Fpga) -> Result<cost::NetworkCost, CostError> {
    cost::evaluate(
        g,
        &Accelerator::Fpga(f.clone()),
        &NetworkOptions::default(),
        None,
    )
}

fn problem(spec: &str) -> Problem {
    let g = single_op_graph(spec).unwrap();
    let e = coex::lower::lower(&g)
        .unwrap()
        .into_iter()
        .flat_map(|w| w.kernels)
        .find_map(|k| match k {
            Kernel::Einsum(e) => Some(e),
            _ => None,
        })
        .unwrap();
    Problem::from_einsum(&e).unwrap()
}

fn int8() -> Precision {
    Precision {
        name: "int8".into(),
        bits: 8,
        acc_bits: 32,
        macs_per_dsp: 2.0,
        lut_per_mac: 20.0,
        ff_per_mac: 30.0,
        mac_energy_pj: 1.5,
    }
}

#[test]
fn every_shipped_file_loads() {
    let dir = root().join("accelerators/fpga");
    let mut n = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            let name = p.file_name().unwrap().to_str().unwrap().to_string();
            let f = fpga(&name, &[]);
            assert!(f.device.resources.dsp > 0.0, "{name}");
            assert!(!f.sources.is_empty(), "{name} cites its sources");
            n += 1;
        }
    }
    assert!(n >= 5);
}

/// Datasheet numbers (DS190, DS891, DS962) as the files carry them.
#[test]
fn device_resources_match_the_datasheets() {
    let z = fpga("zynq7020_tiled.toml", &[]).device.resources;
    assert_eq!(
        z.as_array(),
        [220.0, 140.0, 0.0, 53_200.0, 106_400.0],
        "XC7Z020 (DS190)"
    );
    let zu = fpga("zcu102_tiled.toml", &[]).device.resources;
    assert_eq!(
        zu.as_array(),
        [2_520.0, 912.0, 0.0, 274_080.0, 548_160.0],
        "XCZU9EG (DS891)"
    );
    let u = fpga("u250_dataflow.toml", &[]).device.resources;
    assert_eq!(
        u.as_array(),
        [12_288.0, 2_688.0, 1_280.0, 1_728_000.0, 3_456_000.0],
        "XCU250 (DS962)"
    );
}

/// One conv layer on a small tiled engine, by hand (Zhang et al. FPGA'15, eqs. for
/// the tiled loop nest: each (Tm, Tn) step computes Tr·Tc·K·K cycles; total compute
/// ⌈M/Tm⌉·⌈N/Tn⌉·R·C·K²).
///
/// Layer: C = 16 in, K = 32 out, 8×8 output, 3×3 filter, pad 1, int8 (1 B), acc 4 B.
/// Engine: Tm = 16, Tn = 8; buffers: input 100 words (a 10×10 patch), weight 9, output
/// 64 (8×8). DRAM: 4 B/cycle. Tiling: os, Tr = Tc = 8 (one spatial tile).
///
/// ```text
/// steps: ⌈32/16⌉·⌈16/8⌉ = 4, each 8·8·9 = 576 compute cycles
/// (Zhang: ⌈M/Tm⌉⌈N/Tn⌉·R·C·K² = 2·2·8·8·9 = 2304 = 4·576)
/// loads per step: input 8 ch × 100 = 800 B, weights 16·8·9 = 1152 B → 1952 B = 488 cyc
/// the last n step of each m block also stores 16·64 = 1024 B → 2976 B = 744 cyc
/// Σ max(compute, transfer) = 576 + 744 + 576 + 744 = 2640
/// + first load 1952 B (488) + last store 1024 B (256) = 3384 cycles
/// DRAM bytes = 4·1952 + 2·1024 = 9856
/// ```
#[test]
fn tiled_latency_by_hand() {
    let p = problem("conv2d n=1 c=16 h=8 w=8 k=32 kernel=3 pad=1 dtype=int8");
    let l = Layer::new(&p);
    let e = Tiled {
        tm: 16,
        tn: 8,
        input_buffer_depth: 100,
        weight_buffer_depth: 9,
        output_buffer_depth: 64,
    };
    let os = Tiling {
        order: Order::Os,
        tr: 8,
        tc: 8,
    };
    let c = tile_cost(&l, &e, &int8(), 4.0, &os).unwrap();
    assert_eq!(c.compute_cycles, 2304.0);
    assert_eq!(c.latency_cycles, 3384.0);
    assert_eq!(c.dram_bytes, 9856.0);
    assert_eq!(c.steps, 4);
    // Input reuse would need both m blocks' outputs on chip: 2·64 > 64 words.
    let ir = Tiling {
        order: Order::Ir,
        ..os
    };
    assert!(tile_cost(&l, &e, &int8(), 4.0, &ir).is_none());
    // Weight reuse spills 4-byte partial sums after n block 0 and reads them back:
    // per m block (800+1152+4096)/4 + (800+1152+4096+1024)/4 = 1512 + 1768;
    // 2·3280 + 488 + 256 = 7304.
    let wr = Tiling {
        order: Order::Wr,
        ..os
    };
    assert_eq!(
        tile_cost(&l, &e, &int8(), 4.0, &wr).unwrap().latency_cycles,
        7304.0
    );
    // The search finds nothing better than the hand-picked os tiling.
    let (t, best, _) = best_tiling(&l, &e, &int8(), 4.0).unwrap();
    assert!(best.latency_cycles <= 3384.0, "{t:?} {best:?}");
}

/// Zhang et al., FPGA'15 (VC707, fp32, Tm = 64, Tn = 7, 100 MHz) report 61.62 GFLOPS
/// over AlexNet's five conv layers (1.33 GFLOP). Their cycle model for the unified
/// (64, 7) design is Σ_layers groups·⌈M/64⌉·⌈N/7⌉·R·C·K²:
///
/// ```text
/// conv1 2·1·55·55·121 = 732,050;  conv2 2·(2·7·27·27·25) = 510,300;
/// conv3 6·37·13·13·9 = 337,662;   conv4 2·(3·28·169·9) = 255,528;
/// conv5 2·(2·28·169·9) = 170,352; Σ = 2,005,892 cycles = 20.06 ms → 66.4 GFLOPS
/// ```
///
/// coex must reproduce that cycle count exactly, and its latency must be within 15%
/// of the measured figure (the model has no per-tile control overhead). No coefficient
/// of vc707_zhang15.toml was tuned to this figure.
#[test]
fn zhang_fpga15_alexnet() {
    let f = fpga("vc707_zhang15.toml", &[]);
    let r = eval(&network("alexnet.toml"), &f).unwrap();
    let conv: Vec<_> = r
        .layers
        .iter()
        .filter(|l| l.kind == "einsum" && l.kernel.starts_with("conv"))
        .collect();
    assert_eq!(conv.len(), 5);
    let compute: f64 = conv.iter().map(|l| l.compute_cycles).sum();
    assert_eq!(compute, 2_005_892.0);
    let cycles: f64 = conv.iter().map(|l| l.latency_cycles).sum();
    let flops = 2.0 * conv.iter().map(|l| l.macs).sum::<u64>() as f64;
    let gflops = flops / (cycles * f.device.cycle_s()) / 1e9;
    let err = gflops / 61.62 - 1.0;
    eprintln!(
        "AlexNet conv on vc707_zhang15: {gflops:.2} GFLOPS vs 61.62 published ({:+.1}%)",
        err * 100.0
    );
    assert!(err.abs() < 0.15, "{gflops} GFLOPS");
    // Their design: 448 fp32 MACs on 2,240 DSPs.
    let dsp = r
        .total
        .resources
        .iter()
        .find(|(k, _)| k == "DSP.used")
        .unwrap()
        .1;
    assert_eq!(dsp, 2240.0);
}

/// The ILP folding is never slower than the greedy one and fits the device, on
/// several networks and devices.
#[test]
fn ilp_folding_never_slower_than_greedy() {
    let cases = [
        ("nasbench201_best.toml", "zcu102_dataflow.toml"),
        ("mobilenet_v2.toml", "u250_dataflow.toml"),
        ("nasbench201_best.toml", "u250_dataflow.toml"),
        ("mobilenet_v3_small.toml", "zcu102_dataflow.toml"),
        ("resnet50.toml", "u250_dataflow.toml"),
    ];
    for (net, dev) in cases {
        let f = fpga(dev, &[]);
        let Engine::Dataflow(d) = &f.engine else {
            panic!()
        };
        let g = network(net);
        let plan = dataflow::plan(&g, &f, d, true).unwrap();
        let (gr, ilp) = (plan.greedy.unwrap(), plan.ilp.unwrap());
        let budget = f.common.budget(&f.device);
        assert!(gr.used.fits_in(&budget), "{net} on {dev}: greedy fits");
        assert!(ilp.used.fits_in(&budget), "{net} on {dev}: ILP fits");
        assert!(
            ilp.t <= gr.t,
            "{net} on {dev}: ILP T {} > greedy T {}",
            ilp.t,
            gr.t
        );
        let lat = |fo| dataflow::pipeline_latency(&plan.stages, fo, plan.images);
        eprintln!(
            "{net} on {dev}: T greedy {} / ILP {} cycles ({}), latency greedy {} / ILP {}",
            gr.t,
            ilp.t,
            ilp.status,
            lat(&gr),
            lat(&ilp)
        );
    }
}

/// A stage's candidates as (cycles, DSP, BRAM36).
type Stages = Vec<Vec<(f64, f64, f64)>>;

/// Random small folding problems: stages, a DSP budget, extra DSPs.
fn fold_case() -> impl Strategy<Value = (Stages, f64, f64)> {
    let cand = (1u32..200, 0u32..8, 0u32..8).prop_map(|(c, d, b)| (c as f64, d as f64, b as f64));
    let stage = prop::collection::vec(cand, 1..5);
    (
        prop::collection::vec(stage, 1..5),
        4.0..30.0f64,
        0.0..10.0f64,
    )
}

fn candidates(s: &[Vec<(f64, f64, f64)>]) -> Vec<Vec<Candidate>> {
    s.iter()
        .map(|st| {
            st.iter()
                .map(|&(c, d, b)| Candidate {
                    cycles: c,
                    res: Resources {
                        dsp: d,
                        bram36: b,
                        ..Resources::default()
                    },
                    lanes: 1,
                    label: String::new(),
                })
                .collect()
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Larger budgets never make the optimal folding slower.
    #[test]
    fn more_budget_never_slower((stages, dsp, extra) in fold_case()) {
        let st = candidates(&stages);
        let fill = vec![0.0; st.len()];
        let p = |dsp: f64| fold::Problem {
            stages: &st,
            fill: &fill,
            fixed: Resources::default(),
            budget: Resources { dsp, bram36: 20.0, ..Resources::default() },
            floor: 0.0,
        };
        let small = fold::ilp(&p(dsp), None, 30.0);
        let big = fold::ilp(&p(dsp + extra), None, 30.0);
        if let Ok(s) = &small {
            let b = big.as_ref().expect("a larger budget stays feasible");
            prop_assert!(b.t <= s.t, "{} > {}", b.t, s.t);
            // and never slower than its own greedy
            if let Ok(g) = fold::greedy(&p(dsp)) {
                prop_assert!(s.t <= g.t);
            }
        }
    }

    /// Larger Tm or Tn never increase compute cycles; more bandwidth never increases
    /// latency; energy never drops below MACs × MAC energy.
    #[test]
    fn tiled_monotone(
        c in 1usize..40, k in 1usize..40, hw in 3usize..20, r in 1usize..4,
        tm in 1u64..32, tn in 1u64..16, dm in 0u64..16, dn in 0u64..8,
        bw in 0.5f64..64.0, dbw in 0.0f64..64.0,
    ) {
        let p = problem(&format!("conv2d n=1 c={c} h={hw} w={hw} k={k} kernel={r} dtype=int8"));
        let l = Layer::new(&p);
        let eng = |tm, tn| Tiled {
            tm, tn, input_buffer_depth: 4096, weight_buffer_depth: 16, output_buffer_depth: 4096,
        };
        let small = best_tiling(&l, &eng(tm, tn), &int8(), bw).unwrap().1;
        let big = best_tiling(&l, &eng(tm + dm, tn + dn), &int8(), bw).unwrap().1;
        prop_assert!(big.compute_cycles <= small.compute_cycles);
        let fast = best_tiling(&l, &eng(tm, tn), &int8(), bw + dbw).unwrap().1;
        prop_assert!(fast.latency_cycles <= small.latency_cycles + 1e-6);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Energy is never below MACs × MAC energy, on either engine, for random convs.
    #[test]
    fn energy_never_below_mac_energy(
        c in 1usize..64, k in 1usize..64, hw in 3usize..24, r in 1usize..4, g in 0usize..2,
    ) {
        let groups = if g == 1 && c == k { c } else { 1 };
        let spec = format!("conv2d n=1 c={c} h={hw} w={hw} k={k} kernel={r} groups={groups} bias=true dtype=int8");
        let graph = single_op_graph(&spec).unwrap();
        for file in ["zynq7020_tiled.toml", "zcu102_dataflow.toml"] {
            let f = fpga(file, &[]);
            let res = eval(&graph, &f).unwrap();
            for l in &res.layers {
                prop_assert!(l.energy_pj >= l.macs as f64 * f.precision.mac_energy_pj);
            }
            prop_assert!(res.total.energy_pj >= res.total.macs as f64 * f.precision.mac_energy_pj);
            prop_assert!(res.total.macs > 0);
        }
    }
}

/// Network level: more off-chip bandwidth never increases latency; more DSP lanes
/// never increase compute; energy ≥ MACs × MAC energy on every row.
#[test]
fn network_monotone_and_energy_floor() {
    let g = network("resnet18.toml");
    let base = fpga("zcu102_tiled.toml", &[]);
    let r0 = eval(&g, &base).unwrap();
    for gbps in ["25", "50", "100"] {
        let r = eval(
            &g,
            &fpga("zcu102_tiled.toml", &[("device.offchip_gbps", gbps)]),
        )
        .unwrap();
        assert!(r.total.latency_cycles <= r0.total.latency_cycles);
    }
    let wider = eval(&g, &fpga("zcu102_tiled.toml", &[("engine.tm", "80")])).unwrap();
    let comp = |r: &cost::NetworkCost| r.layers.iter().map(|l| l.compute_cycles).sum::<f64>();
    assert!(comp(&wider) <= comp(&r0));
    for (r, f) in [(&r0, &base)] {
        for l in &r.layers {
            assert!(l.energy_pj >= l.macs as f64 * f.precision.mac_energy_pj);
        }
    }
    let f = fpga("u250_dataflow.toml", &[]);
    let r = eval(&network("nasbench201_best.toml"), &f).unwrap();
    for l in &r.layers {
        assert!(l.energy_pj >= l.macs as f64 * f.precision.mac_energy_pj);
    }
    assert!(r.total.energy_pj >= r.total.macs as f64 * f.precision.mac_energy_pj);
}

/// A tiled engine too big for the device names the resource and the overflow.
#[test]
fn oversized_tiled_engine_names_the_resource() {
    let f = fpga(
        "zcu102_tiled.toml",
        &[("engine.tm", "128"), ("engine.tn", "64")],
    );
    let e = eval(&network("nasbench201_best.toml"), &f).unwrap_err();
    let CostError::Fpga(FpgaError::DoesNotFit { overflows, .. }) = &e else {
        panic!("{e}")
    };
    let dsp = overflows.iter().find(|o| o.resource == "DSP").unwrap();
    assert_eq!(dsp.needed, 4096.0); // 128·64 int8 MACs at 2 per DSP48E2
    assert!(
        e.to_string()
            .contains("DSP: needs 4,096, device has 2,520 (+62.5%)"),
        "{e}"
    );
}

/// ResNet-50's weights on a ZCU102 dataflow engine: a clean error naming BRAM.
#[test]
fn resnet50_dataflow_on_zcu102_does_not_fit() {
    let f = fpga("zcu102_dataflow.toml", &[]);
    let e = eval(&network("resnet50.toml"), &f).unwrap_err();
    let s = e.to_string();
    assert!(s.contains("zcu102_dataflow.toml"), "{s}");
    assert!(s.contains("BRAM36: needs"), "{s}");
    assert!(s.contains("budget 775.2 (85% of the device's 912)"), "{s}");
}

fn variant(name: &str, from: &str, to: &str) -> PathBuf {
    let src = std::fs::read_to_string(root().join("accelerators/fpga/zcu102_tiled.toml")).unwrap();
    assert!(src.contains(from), "fixture text '{from}'");
    let dir = root().join("target/test-templates/fpga");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, src.replacen(from, to, 1)).unwrap();
    path
}

fn load_err(p: &Path, sets: &[(String, String)]) -> String {
    match load_accelerator(p, sets) {
        Ok(_) => panic!("{} loaded", p.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_device_files_name_file_and_key() {
    let p = variant("neg_dsp", "dsp = 2520", "dsp = -4");
    let e = load_err(&p, &[]);
    assert!(
        e.contains("neg_dsp.toml") && e.contains("device.dsp"),
        "{e}"
    );
    let p = variant("typo", "tm = 64", "tmm = 64");
    let e = load_err(&p, &[]);
    assert!(
        e.contains("typo.toml") && e.contains("tmm") && e.contains("line"),
        "{e}"
    );
    let p = variant("no_tm", "tm = 64\n", "");
    let e = load_err(&p, &[]);
    assert!(
        e.contains("engine.tm") && e.contains("tiled engine needs"),
        "{e}"
    );
    let p = variant("style", "style = \"tiled\"", "style = \"systolic\"");
    let e = load_err(&p, &[]);
    assert!(
        e.contains("engine.style") && e.contains("tiled or dataflow"),
        "{e}"
    );
    let p = variant("prec", "precision = \"int8\"", "precision = \"int4\"");
    let e = load_err(&p, &[]);
    assert!(
        e.contains("engine.precision") && e.contains("fp16, fp32, int8"),
        "{e}"
    );
    let ok = root().join("accelerators/fpga/zcu102_tiled.toml");
    let e = load_err(&ok, &[("device.clock_mhz".into(), "0".into())]);
    assert!(e.contains("device.clock_mhz") && e.contains("> 0"), "{e}");
    let e = load_err(
        &ok,
        &[
            ("engine.weight_memory".into(), "uram".into()),
            ("engine.style".into(), "dataflow".into()),
            ("engine.folding".into(), "ilp".into()),
            ("engine.lut_per_stage".into(), "1".into()),
            ("engine.ff_per_stage".into(), "1".into()),
        ],
    );
    assert!(
        e.contains("engine.weight_memory") && e.contains("no UltraRAM"),
        "{e}"
    );
}

#[test]
fn space_keys_resolve() {
    let f = fpga("zcu102_tiled.toml", &[]);
    let keys: Vec<&str> = f.space.iter().map(|s| s.key.as_str()).collect();
    assert!(keys.contains(&"engine.tm"));
    let f = fpga("zcu102_tiled.toml", &[("engine.tm", "32")]);
    let Engine::Tiled(t) = &f.engine else {
        panic!()
    };
    assert_eq!(t.tm, 32);
    let _: Option<&Dataflow> = None;
}

/// `coex eval` prints the same columns for an FPGA file as for an ASIC one, plus a
/// resources line.
#[test]
fn cli_eval_prints_the_asic_columns() {
    let run = |accel: &str, net: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_coex"))
            .args([
                "eval",
                "--workload",
                net,
                "--accel",
                accel,
                "--budget",
                "50",
            ])
            .current_dir(root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let header = |s: &str| {
        s.lines()
            .nth(1)
            .unwrap()
            .split_whitespace()
            .take(7)
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let asic = run(
        "accelerators/asic/systolic_ws.toml",
        "workloads/nasbench201_best.toml",
    );
    let tiled = run(
        "accelerators/fpga/zcu102_tiled.toml",
        "workloads/resnet50.toml",
    );
    let flow = run(
        "accelerators/fpga/u250_dataflow.toml",
        "workloads/mobilenet_v2.toml",
    );
    assert_eq!(header(&asic), header(&tiled));
    assert_eq!(header(&asic), header(&flow));
    for s in [&tiled, &flow] {
        assert!(s.contains("resources: DSP "), "{s}");
        assert!(s.contains("total: latency"), "{s}");
    }
    assert!(!asic.contains("resources:"));
}
