//! Whole-network totals against published figures.
//!
//! Every shipped workload is loaded through the library (`workload::load`, then
//! `report::inspect`) and its total MACs and parameters are compared with a published
//! count, within 1%. The six networks of `../shared/reference/model_counts.csv` are read
//! from that file; the others carry their figure and its source below. Where nothing is
//! published (MACs of a language model at a chosen prompt length, AlexNet's exact
//! parameter count), coex is held to the count derived by hand from the architecture,
//! exactly, and the comment says so.

use coex::report::inspect;
use coex::workload::{file, load, WorkloadError};
use serde::Deserialize;
use std::path::Path;

const REFERENCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/reference");
const TOLERANCE: f64 = 0.01;

struct Counts {
    macs: u64,
    params: u64,
}

fn counts(workload: &str) -> Counts {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("workloads")
        .join(workload);
    let graph = load(&path, None).unwrap_or_else(|e| panic!("{workload}: {e}"));
    let ins = inspect(&graph).unwrap_or_else(|e| panic!("{workload}: {e}"));
    Counts {
        macs: ins.total.macs,
        params: ins.total.params,
    }
}

fn assert_within(what: &str, coex: u64, published: f64) {
    let off = (coex as f64 - published).abs() / published;
    assert!(
        off <= TOLERANCE,
        "{what}: coex {coex} vs published {published} ({:.2}% off, tolerance {:.0}%)",
        off * 100.0,
        TOLERANCE * 100.0
    );
}

fn reference_rows<T: for<'de> Deserialize<'de>>(file: &str) -> Vec<T> {
    let path = format!("{REFERENCE}/{file}");
    let mut reader = csv::Reader::from_path(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    reader
        .deserialize()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[derive(Deserialize)]
struct ModelCount {
    network: String,
    macs: f64,
    params: f64,
    source: String,
}

/// The shipped workload file for a network named in model_counts.csv.
fn workload_for(network: &str) -> Option<&'static str> {
    Some(match network {
        "resnet18" => "resnet18.toml",
        "resnet50" => "resnet50.toml",
        "mobilenet_v2" => "mobilenet_v2.toml",
        "vgg16" => "vgg16.toml",
        "vit_b_16" => "vit_b16.toml",
        "bert_base" => "bert_base.toml",
        _ => return None,
    })
}

#[test]
fn reference_table_networks_match_published_counts() {
    let rows: Vec<ModelCount> = reference_rows("model_counts.csv");
    let mut checked = 0;
    for row in &rows {
        let file = workload_for(&row.network).unwrap_or_else(|| {
            panic!(
                "model_counts.csv names '{}', which no workload maps to",
                row.network
            )
        });
        let c = counts(file);
        let what = format!("{} ({})", row.network, row.source);
        assert_within(&format!("{what} MACs"), c.macs, row.macs);
        assert_within(&format!("{what} params"), c.params, row.params);
        checked += 1;
    }
    assert_eq!(
        checked, 6,
        "model_counts.csv lists the six reference networks"
    );
}

/// A published figure for a shipped workload; `None` where nothing is published.
struct Published {
    workload: &'static str,
    macs: Option<f64>,
    params: Option<f64>,
}

const PUBLISHED: &[Published] = &[
    // torchvision MobileNet_V3_Large_Weights.IMAGENET1K_V1 model card: 0.217 GFLOPS
    // (multiply-adds), 5,483,032 params.
    Published {
        workload: "mobilenet_v3_large.toml",
        macs: Some(0.217e9),
        params: Some(5_483_032.0),
    },
    // torchvision MobileNet_V3_Small_Weights.IMAGENET1K_V1 model card: 0.057 GFLOPS, 2,542,856 params.
    Published {
        workload: "mobilenet_v3_small.toml",
        macs: Some(0.057e9),
        params: Some(2_542_856.0),
    },
    // torchvision EfficientNet_B0_Weights.IMAGENET1K_V1 model card: 0.386 GFLOPS, 5,288,548 params.
    Published {
        workload: "efficientnet_b0.toml",
        macs: Some(0.386e9),
        params: Some(5_288_548.0),
    },
    // timm mixer_b16_224 model card: 12.6 GMACs, 59.9 M params (59,880,472).
    Published {
        workload: "mlp_mixer_b16.toml",
        macs: Some(12.6e9),
        params: Some(59_880_472.0),
    },
    // mamba-130m (Gu & Dao 2023; state-spaces/mamba-130m): ~129.1 M params. No MAC figure.
    Published {
        workload: "mamba_130m.toml",
        macs: None,
        params: Some(129.1e6),
    },
    // Mixtral of Experts (Jiang et al. 2024): 46.7 B params. No MAC figure.
    Published {
        workload: "mixtral_8x7b.toml",
        macs: None,
        params: Some(46.7e9),
    },
    // GPT-2 small, openai-community/gpt2 model card: 124 M params. No MAC figure.
    Published {
        workload: "gpt2.toml",
        macs: None,
        params: Some(124e6),
    },
    Published {
        workload: "gpt2_decode.toml",
        macs: None,
        params: Some(124e6),
    },
    // Eyeriss (Chen et al., JSSC 2017): AlexNet's five conv layers are 666 M MACs per image
    // (2.66 G at batch 4, eyeriss_alexnet_silicon.csv); with fc6-8 (58.6 M) the network
    // is 724.4 M. The paper's "60 million parameters" is rounded: see `alexnet_*` below.
    Published {
        workload: "alexnet.toml",
        macs: Some(666e6 + 58_621_952.0),
        params: None,
    },
];

#[test]
fn shipped_networks_match_published_counts() {
    for p in PUBLISHED {
        let c = counts(p.workload);
        if let Some(macs) = p.macs {
            assert_within(&format!("{} MACs", p.workload), c.macs, macs);
        }
        if let Some(params) = p.params {
            assert_within(&format!("{} params", p.workload), c.params, params);
        }
    }
}

/// Language models have no published MAC count at a given prompt length; these are the
/// counts the architectures give by hand (linear and conv layers, attention products as
/// the dense rectangle coex lowers them to), checked exactly.
#[test]
fn language_model_macs_match_hand_counts() {
    // GPT-2 per token: 12 blocks of QKV 768·2304 + proj 768·768 + MLP 2·768·3072, tied head
    // 768·50257; attention per block 2·12 heads·S·keys·64.
    let gpt2_token = 12 * (768 * 2304 + 768 * 768 + 2 * 768 * 3072) + 768 * 50257;
    assert_eq!(
        counts("gpt2.toml").macs,
        1024 * gpt2_token + 12 * 2 * 1024 * 1024 * 768
    );
    assert_eq!(
        counts("gpt2_decode.toml").macs,
        gpt2_token + 12 * 2 * 1024 * 768
    );
    // Mixtral per token: 32 blocks of Q, O 4096² each, K, V 4096·1024 each, router 4096·8,
    // two SwiGLU experts 2·3·4096·14336; head 4096·32000. Attention 2·32 heads·512²·128.
    let mixtral_token: u64 =
        32 * (2 * 4096 * 4096 + 2 * 4096 * 1024 + 4096 * 8 + 2 * 3 * 4096 * 14336) + 4096 * 32000;
    assert_eq!(
        counts("mixtral_8x7b.toml").macs,
        512 * mixtral_token + 32 * 2 * 32 * 512 * 512 * 128
    );
    // Mamba per token: 24 blocks of in_proj 768·3072, conv 1536·4, x_proj 1536·80,
    // dt_proj 48·1536, out_proj 1536·768; tied head 768·50280. The scan is vector work.
    let mamba_token =
        24 * (768 * 3072 + 1536 * 4 + 1536 * 80 + 48 * 1536 + 1536 * 768) + 768 * 50280;
    assert_eq!(counts("mamba_130m.toml").macs, 1024 * mamba_token);
}

#[test]
fn mixtral_active_params_match_published() {
    // Mixtral of Experts: 12.9 B parameters active per token = all but 6 of 8 experts.
    let idle_experts = 32.0 * 6.0 * 3.0 * 4096.0 * 14336.0;
    let c = counts("mixtral_8x7b.toml");
    assert_within(
        "mixtral active params",
        (c.params as f64 - idle_experts) as u64,
        12.9e9,
    );
}

#[test]
fn alexnet_params_are_the_grouped_network_count() {
    // Krizhevsky et al. 2012 say "60 million"; the grouped network holds exactly
    // conv 2,334,080 + fc 58,631,144 = 60,965,224 (1.6% above the rounded figure).
    assert_eq!(counts("alexnet.toml").params, 60_965_224);
}

#[derive(Deserialize)]
struct EyerissRow {
    layer: String,
    batch: u64,
    gmacs: f64,
}

#[test]
fn alexnet_conv_layers_match_eyeriss() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/alexnet.toml");
    let ins = inspect(&load(&path, None).unwrap()).unwrap();
    let macs = |layer: &str| {
        ins.layers
            .iter()
            .find(|l| l.name == layer)
            .unwrap_or_else(|| panic!("alexnet has no layer {layer}"))
            .macs
    };
    let expected = [
        ("conv1", 105_415_200),
        ("conv2", 223_948_800),
        ("conv3", 149_520_384),
        ("conv4", 112_140_288),
        ("conv5", 74_760_192),
    ];
    for (layer, m) in expected {
        assert_eq!(macs(layer), m, "{layer}");
    }
    let rows: Vec<EyerissRow> = reference_rows("eyeriss_alexnet_silicon.csv");
    let conv_rows: Vec<&EyerissRow> = rows
        .iter()
        .filter(|r| r.layer.starts_with("CONV"))
        .collect();
    assert_eq!(conv_rows.len(), 5);
    for row in conv_rows {
        // The table gives GMACs for the batch to two decimals: agree to that rounding.
        let coex_gmacs = (macs(&row.layer.to_lowercase()) * row.batch) as f64 / 1e9;
        assert!(
            (coex_gmacs - row.gmacs).abs() <= 0.005 + 1e-9,
            "{}: coex {coex_gmacs:.4} GMACs at batch {}, Eyeriss {}",
            row.layer,
            row.batch,
            row.gmacs
        );
    }
}

#[derive(Deserialize)]
struct Nb201Row {
    arch_idx: usize,
    arch_str: String,
    n_none: usize,
    macs_cifar_derived: u64,
}

fn nb201_macs(arch: &str) -> Result<u64, WorkloadError> {
    nb201_macs_with(arch, "prune")
}

fn nb201_macs_with(arch: &str, dead_ops: &str) -> Result<u64, WorkloadError> {
    let text = format!(
        "family = \"nasbench201\"\n[params]\narch = \"{arch}\"\ndead_ops = \"{dead_ops}\"\n"
    );
    let graph = file::parse(&text, "nasbench201", None)?;
    Ok(inspect(&graph)?.total.macs)
}

/// NAS-Bench-201's best CIFAR-10 cell is a real row of the benchmark, and its MACs are
/// the table's `macs_cifar_derived` (conv and linear multiply-adds of the CIFAR network).
#[test]
fn nasbench201_best_matches_the_benchmark_table() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/nasbench201_best.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let toml: toml::Table = toml::from_str(&text).unwrap();
    let arch = toml["params"]["arch"].as_str().unwrap();
    let rows: Vec<Nb201Row> = reference_rows("nb201_accuracy.csv");
    let row = rows
        .iter()
        .find(|r| r.arch_str == arch)
        .unwrap_or_else(|| panic!("{arch} is not an arch string of nb201_accuracy.csv"));
    assert_eq!(row.arch_idx, 1);
    assert_within(
        "nasbench201_best MACs",
        counts("nasbench201_best.toml").macs,
        row.macs_cifar_derived as f64,
    );
}

/// Across the benchmark (every 10th arch): cells without `none` edges match the table
/// exactly. With `none` edges, coex leaves out convs that cannot reach the cell output
/// (the table counts them, as PyTorch's eager network runs them), so it may count less,
/// by whole convs: each dead 1x1 conv is 15 cells × 262,144 MACs, a 3x3 nine times that.
/// Archs whose cell output is always zero are refused.
#[test]
fn nasbench201_space_matches_the_benchmark_table() {
    let rows: Vec<Nb201Row> = reference_rows("nb201_accuracy.csv");
    assert_eq!(rows.len(), 15_625);
    let dead_1x1 = 15 * 262_144;
    let (mut exact, mut refused) = (0, 0);
    for row in rows.iter().step_by(10) {
        match nb201_macs(&row.arch_str) {
            Ok(macs) if row.n_none == 0 => {
                assert_eq!(macs, row.macs_cifar_derived, "{}", row.arch_str);
                exact += 1;
            }
            Ok(macs) => {
                let dead = row.macs_cifar_derived.checked_sub(macs);
                assert!(
                    dead.is_some_and(|d| d % dead_1x1 == 0),
                    "{}: coex {macs}",
                    row.arch_str
                );
                exact += usize::from(dead == Some(0));
            }
            Err(e) => {
                assert!(
                    row.n_none > 0 && e.to_string().contains("always outputs zero"),
                    "{}: {e}",
                    row.arch_str
                );
                refused += 1;
            }
        }
    }
    // Over the whole table (run once): 11,308 exact, 341 refused, 3,976 with dead convs.
    assert_eq!((exact, refused), (1138, 40), "of every 10th arch");
}

/// `dead_ops = "run"` builds the network as eager PyTorch runs it: every edge, so the
/// MAC count is the table's `macs_cifar_derived` on every arch (every 10th checked),
/// the all-zero cells included.
#[test]
fn nasbench201_run_dead_ops_matches_the_table_everywhere() {
    let rows: Vec<Nb201Row> = reference_rows("nb201_accuracy.csv");
    for row in rows.iter().step_by(10) {
        let macs = nb201_macs_with(&row.arch_str, "run")
            .unwrap_or_else(|e| panic!("{}: {e}", row.arch_str));
        assert_eq!(macs, row.macs_cifar_derived, "{}", row.arch_str);
    }
    let e = nb201_macs_with(&rows[0].arch_str, "keep")
        .unwrap_err()
        .to_string();
    assert!(e.contains("dead_ops") && e.contains("\"run\""), "{e}");
}
