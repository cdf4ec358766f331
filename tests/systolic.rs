//! Systolic templates run one schedule: the folds the printed mapping names are the
//! folds the cycles count and the folds the accesses come from, and the fold-by-fold
//! executor (`check::systolic`, which counts every element it moves and multiplies real
//! numbers) agrees with the closed forms.

use coex::arch;
use coex::check::accel::{
    check_accelerator, check_systolic, AccelCheckOptions, MappedCheckOptions, ModelFault,
};
use coex::cost::{evaluate_network, NetworkOptions};
use coex::workload::{self, spec::single_op_graph};
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn template(name: &str, sets: &[(&str, &str)]) -> arch::Template {
    let sets: Vec<(String, String)> = sets
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    arch::load(
        &root().join(format!("accelerators/asic/{name}.toml")),
        &sets,
    )
    .unwrap()
}

const STEM: &str = "conv2d n=1 c=3 h=224 w=224 k=64 r=7 s=7 stride=2 pad=3 dtype=int8";

/// ResNet's stem on 128×128 ws: the 147 im2col rows fold twice; by hand, cycles =
/// 2 folds × (128 preload + 128 + 128 + 12,544 − 2) = 25,852 (SCALE-Sim: 25,851), and
/// the output SRAM takes 2 updates and 1 read-modify-write read per output
/// (112·112·64 = 802,816 outputs).
#[test]
fn the_stem_prints_the_folds_it_is_timed_and_counted_by() {
    let t = template("systolic_ws", &[]);
    let g = single_op_graph(STEM).unwrap();
    let r = evaluate_network(&g, &t, &NetworkOptions::default(), None).unwrap();
    let k = &r.layers[0];
    assert!(
        k.mapping.contains("rows[C3·R7·S7=147: 2 folds]"),
        "{}",
        k.mapping
    );
    assert!(k.mapping.contains("cols[K64: 1 fold]"), "{}", k.mapping);
    assert_eq!(k.compute_cycles, 25_852.0);
    let o = k.accesses.iter().find(|a| a.level == "ofmap_sram").unwrap();
    assert_eq!((o.updates, o.reads), (1_605_632, 802_816));
    // Each weight enters the array once; the input streams once per column fold.
    let w = k
        .accesses
        .iter()
        .find(|a| a.level == "filter_sram")
        .unwrap();
    assert_eq!(w.reads, 147 * 64);
    let i = k.accesses.iter().find(|a| a.level == "ifmap_sram").unwrap();
    assert_eq!(i.reads, 12_544 * 147);
}

/// The executor agrees with the model on every layer of ResNet-18 on every systolic
/// template, also with SRAMs too small to hold an operand (it then streams).
#[test]
fn resnet18_checks_on_every_systolic_template() {
    let g = workload::load(&root().join("workloads/resnet18.toml"), None).unwrap();
    for name in [
        "systolic_ws",
        "systolic_os",
        "systolic_is",
        "systolic_ws_edge",
    ] {
        for sets in [
            vec![],
            vec![
                ("level.ifmap_sram.size_kib", "1"),
                ("level.ofmap_sram.size_kib", "1"),
                ("level.filter_sram.size_kib", "1"),
            ],
        ] {
            let t = template(name, &sets);
            let c = check_accelerator(&g, &t, &AccelCheckOptions::default()).unwrap();
            assert!(c.passed(), "{name} {sets:?}:\n{}", c.table());
            assert!(c.einsum_runs >= 8, "{name}: {}", c.summary());
        }
    }
}

/// A model that is off by one access anywhere is caught, on each dataflow.
#[test]
fn a_perturbed_systolic_model_is_caught() {
    for (name, fault) in [
        ("systolic_ws", "ofmap_sram:O:reads:+1"),
        ("systolic_os", "accumulator:O:updates:-1"),
        ("systolic_is", "input_reg:I:fills:+1"),
        ("systolic_ws", "DRAM:I:reads:+1"),
    ] {
        let t = template(name, &[]);
        let g = single_op_graph("conv2d n=1 c=8 h=12 w=12 k=20 r=3 s=3 pad=1 dtype=int8").unwrap();
        let work = coex::lower::lower(&g).unwrap();
        let e = work.iter().flat_map(|w| w.einsums()).next().unwrap();
        let clean = check_systolic(e, &t, &MappedCheckOptions::default()).unwrap();
        assert!(clean.1.is_empty(), "{name}: {:?}", clean.1);
        let opts = MappedCheckOptions {
            model_fault: Some(ModelFault::parse(fault, &t).unwrap()),
            ..MappedCheckOptions::default()
        };
        let (_, problems) = check_systolic(e, &t, &opts).unwrap();
        assert!(!problems.is_empty(), "{name}: fault {fault} not caught");
    }
}
