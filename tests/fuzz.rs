//! Mutation fuzzing of every input coex reads: shipped workloads, accelerator templates,
//! mapping files and op specs, mutated by seeded byte flips, truncation, line
//! duplication and numeric extremes. Each case runs the parsers and, for what parses,
//! a cheap evaluation, in a thread under a time limit: no panic and no hang.
//!
//! `fuzz_inputs` runs a few thousand cases; `fuzz_inputs_long` (ignored) runs
//! `COEX_FUZZ_CASES` of them (default 100,000), with `COEX_FUZZ_SEED` to vary the seed.

use coex::cost::{self, NetworkOptions};
use coex::map::file::MappingFile;
use coex::map::mapper::SearchConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

const TIME_LIMIT: Duration = Duration::from_secs(10);
/// Evaluations stay cheap: a small mapper budget, and only networks of modest size
/// (the mapper's cost grows with the loop bounds it tiles).
const EVAL_BUDGET: usize = 50;
const EVAL_MAX_NODES: usize = 3000;
const EVAL_MAX_MACS: u64 = 20_000_000_000_000;

/// Whether a graph is small enough for the cheap evaluation.
fn cheap(g: &coex::Graph) -> bool {
    g.len() <= EVAL_MAX_NODES
        && coex::lower::lower(g)
            .is_ok_and(|w| w.iter().map(|l| l.macs()).sum::<u64>() <= EVAL_MAX_MACS)
}

const EXTREMES: &[&str] = &[
    "0",
    "-1",
    "2147483648",
    "4294967296",
    "9223372036854775808",
    "18446744073709551615",
    "1e300",
    "-1e300",
    "nan",
    "inf",
];

const OP_SPECS: &[&str] = &[
    "gemm m=8192 n=8192 k=8192 dtype=fp16",
    "gemm m=64 n=64 k=64 b=4",
    "conv2d n=1 c=64 h=56 w=56 k=64 r=3 s=3 pad=1",
    "conv2d n=2 c=32 h=28 w=28 k=64 kernel=3 stride=2 pad=1 groups=2 bias=true",
    "dwconv2d n=1 c=32 h=112 w=112 kernel=3 pad=1",
    "conv1d n=1 c=64 l=128 kernel=4 causal=true depthwise=true",
    "linear tokens=128 in=768 out=3072",
    "matmul m=128 n=64 k=128 b=12 transpose_b=true",
    "attention b=1 heads=12 seq=128 head_dim=64 causal=true",
    "attention b=1 heads=32 kv_heads=8 seq=1 head_dim=128 kv_cache=1023",
    "layernorm b=1 seq=128 d=768",
    "softmax shape=1x12x128x128 axis=-1",
    "maxpool n=1 c=64 h=112 w=112 kernel=3 stride=2 pad=1",
    "globalpool n=1 c=512 h=7 w=7 pool=max",
    "squeeze_excite n=1 c=96 h=28 w=28 reduced=24",
    "embedding b=1 seq=128 vocab=50257 dim=768",
    "moe b=1 seq=64 d=512 experts=8 top_k=2 ffn=1024 skew=1.2 capacity=1.25",
    "selective_scan b=1 l=64 d_inner=256 d_state=16",
    "add shape=1x64x56x56",
    "gelu shape=4x128",
    "reshape shape=2x3x4",
];

/// Mapping files for the gemm and conv specs on the small output-stationary array.
const MAPPINGS: &[(&str, &str)] = &[
    (
        "gemm m=64 n=64 k=64",
        "[[mapping]]\nlayer = \"gemm\"\nlevels = [\n  { name = \"DRAM\", loops = \"P64 K64 C64\" },\n]\n",
    ),
    (
        "conv2d n=1 c=64 h=56 w=56 k=64 r=3 s=3 pad=1",
        "[[mapping]]\nlayer = \"conv2d\"\nspatial = { rows = \"\", cols = \"\" }\nlevels = [\n  { name = \"DRAM\", loops = \"K64 C64 P56 Q56 R3 S3\" },\n]\n",
    ),
];

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn toml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
    entries.sort_by_key(|e| e.path());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            toml_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "toml") {
            out.push(p);
        }
    }
}

/// One mutation of `text`.
fn mutate(text: &str, rng: &mut ChaCha8Rng) -> String {
    let mut s = text.to_string();
    for _ in 0..rng.random_range(1..=3) {
        s = match rng.random_range(0..4) {
            0 => flip_byte(&s, rng),
            1 => truncate(&s, rng),
            2 => duplicate_line(&s, rng),
            _ => extreme_number(&s, rng),
        };
    }
    s
}

fn flip_byte(s: &str, rng: &mut ChaCha8Rng) -> String {
    let mut b = s.as_bytes().to_vec();
    if b.is_empty() {
        return s.to_string();
    }
    let i = rng.random_range(0..b.len());
    const PUNCTUATION: &[u8] = b"=[]{}\",.x-0123456789 \n#";
    b[i] = match rng.random_range(0..3) {
        0 => rng.random(),
        1 => PUNCTUATION[rng.random_range(0..PUNCTUATION.len())],
        _ => b[i] ^ (1 << rng.random_range(0..8)),
    };
    String::from_utf8_lossy(&b).into_owned()
}

fn truncate(s: &str, rng: &mut ChaCha8Rng) -> String {
    let mut n = rng.random_range(0..=s.len());
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    s[..n].to_string()
}

fn duplicate_line(s: &str, rng: &mut ChaCha8Rng) -> String {
    let lines: Vec<&str> = s.lines().collect();
    if lines.is_empty() {
        return s.to_string();
    }
    let i = rng.random_range(0..lines.len());
    let mut out = lines.clone();
    out.insert(i, lines[i]);
    out.join("\n")
}

/// Replaces one run of digits (with its sign and fraction) by an extreme value.
fn extreme_number(s: &str, rng: &mut ChaCha8Rng) -> String {
    let b = s.as_bytes();
    let starts: Vec<usize> = (0..b.len())
        .filter(|&i| b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_alphanumeric()))
        .collect();
    if starts.is_empty() {
        return s.to_string();
    }
    let start = starts[rng.random_range(0..starts.len())];
    let mut end = start;
    while end < b.len() && (b[end].is_ascii_digit() || b[end] == b'.') {
        end += 1;
    }
    let start = if start > 0 && b[start - 1] == b'-' {
        start - 1
    } else {
        start
    };
    let v = EXTREMES[rng.random_range(0..EXTREMES.len())];
    format!("{}{v}{}", &s[..start], &s[end..])
}

fn options() -> NetworkOptions {
    NetworkOptions {
        search: SearchConfig {
            budget: EVAL_BUDGET,
            ..SearchConfig::default()
        },
        progress: false,
        ..NetworkOptions::default()
    }
}

/// Runs `f` in a thread; Err says it panicked or ran past the time limit.
fn guarded(f: impl FnOnce() + Send + 'static) -> Result<(), String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let r = std::panic::catch_unwind(AssertUnwindSafe(f));
        let _ = tx.send(r.is_ok());
    });
    match rx.recv_timeout(TIME_LIMIT) {
        Ok(true) => Ok(()),
        Ok(false) | Err(mpsc::RecvTimeoutError::Disconnected) => Err("panicked".into()),
        Err(mpsc::RecvTimeoutError::Timeout) => Err(format!("ran past {TIME_LIMIT:?}")),
    }
}

/// What one case feeds to coex.
#[derive(Clone, Debug)]
enum Case {
    Workload(String),
    Accelerator { kind_dir: String, text: String },
    Spec(String),
    Mapping { spec: String, text: String },
}

fn run_case(case: Case, scratch: PathBuf, i: usize) {
    let small = || coex::workload::spec::single_op_graph("gemm m=16 n=16 k=16").unwrap();
    match case {
        Case::Workload(text) => {
            if let Ok(g) = coex::workload::file::parse(&text, "fuzz", None) {
                if cheap(&g) {
                    let acc = coex::arch::load_accelerator(
                        &repo("accelerators/asic/systolic_os.toml"),
                        &[],
                    )
                    .unwrap();
                    let _ = cost::evaluate(&g, &acc, &options(), None);
                }
            }
        }
        Case::Accelerator { kind_dir, text } => {
            let path = scratch.join(kind_dir).join(format!("fuzzed{i}.toml"));
            std::fs::write(&path, text).unwrap();
            if let Ok(acc) = coex::arch::load_accelerator(&path, &[]) {
                let _ = cost::evaluate(&small(), &acc, &options(), None);
            }
        }
        Case::Spec(text) => {
            if let Ok(g) = coex::workload::spec::single_op_graph(&text)
                .map_err(|_| ())
                .and_then(|g| if cheap(&g) { Ok(g) } else { Err(()) })
            {
                let acc =
                    coex::arch::load_accelerator(&repo("accelerators/asic/systolic_os.toml"), &[])
                        .unwrap();
                let _ = cost::evaluate(&g, &acc, &options(), None);
            }
        }
        Case::Mapping { spec, text } => {
            let path = scratch.join(format!("mapping{i}.toml"));
            std::fs::write(&path, text).unwrap();
            if let Ok(m) = MappingFile::load(&path) {
                let g = coex::workload::spec::single_op_graph(&spec).unwrap();
                let acc =
                    coex::arch::load_accelerator(&repo("accelerators/asic/eyeriss.toml"), &[])
                        .unwrap();
                let _ = cost::evaluate(&g, &acc, &options(), Some(&m));
            }
        }
    }
}

/// The unmutated inputs.
fn corpus() -> Vec<Case> {
    let mut files = Vec::new();
    toml_files(&repo("workloads"), &mut files);
    let mut cases: Vec<Case> = files
        .iter()
        .map(|p| Case::Workload(std::fs::read_to_string(p).unwrap()))
        .collect();
    let mut accels = Vec::new();
    toml_files(&repo("accelerators"), &mut accels);
    for p in accels {
        let dir = p.parent().unwrap().file_name().unwrap().to_string_lossy();
        if dir == "tech" {
            continue;
        }
        cases.push(Case::Accelerator {
            kind_dir: dir.into_owned(),
            text: std::fs::read_to_string(&p).unwrap(),
        });
    }
    cases.extend(OP_SPECS.iter().map(|s| Case::Spec(s.to_string())));
    cases.extend(MAPPINGS.iter().map(|(spec, text)| Case::Mapping {
        spec: spec.to_string(),
        text: text.to_string(),
    }));
    cases
}

fn mutated(case: &Case, rng: &mut ChaCha8Rng) -> Case {
    match case {
        Case::Workload(t) => Case::Workload(mutate(t, rng)),
        Case::Accelerator { kind_dir, text } => Case::Accelerator {
            kind_dir: kind_dir.clone(),
            text: mutate(text, rng),
        },
        Case::Spec(t) => Case::Spec(mutate(t, rng)),
        Case::Mapping { spec, text } => Case::Mapping {
            spec: spec.clone(),
            text: mutate(text, rng),
        },
    }
}

/// A scratch folder with `tech/` beside the kind folders, so templates find their tech table.
fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["asic", "fpga", "gpu", "tech"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    for e in std::fs::read_dir(repo("accelerators/tech"))
        .unwrap()
        .flatten()
    {
        std::fs::copy(e.path(), dir.path().join("tech").join(e.file_name())).unwrap();
    }
    dir
}

fn fuzz(cases: usize, seed: u64) {
    let base = corpus();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut failures = Vec::new();
    // Each case writes its own file names, so a case left running never sees another's.
    let dir = scratch();
    for i in 0..cases {
        let case = mutated(&base[i % base.len()], &mut rng);
        let path = dir.path().to_path_buf();
        let shown = case.clone();
        if let Err(why) = guarded(move || run_case(case, path, i)) {
            failures.push(format!("case {i} {why}: {shown:?}"));
            // A case left running takes the CPU from the next ones: stop at the first hang.
            if why.starts_with("ran past") {
                break;
            }
        }
        if failures.len() >= 5 {
            break;
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing case(s) (seed {seed}):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn fuzz_inputs() {
    fuzz(5000, 9);
}

#[test]
#[ignore = "long: set COEX_FUZZ_CASES (default 100000) and COEX_FUZZ_SEED"]
fn fuzz_inputs_long() {
    let var = |k: &str, d: u64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    fuzz(
        var("COEX_FUZZ_CASES", 100_000) as usize,
        var("COEX_FUZZ_SEED", 1),
    );
}

/// Zero and negative sizes in op specs and workload files are errors, never a network.
#[test]
fn zero_and_negative_sizes_never_build() {
    let specs = [
        ("gemm m=64 n=64 k=64", ["m", "n", "k"]),
        ("conv2d n=1 c=64 h=56 w=56 k=64", ["c", "h", "k"]),
        (
            "attention b=1 heads=12 seq=128 head_dim=64",
            ["heads", "seq", "head_dim"],
        ),
        (
            "moe b=1 seq=64 d=512 experts=8 top_k=2 ffn=1024",
            ["d", "experts", "ffn"],
        ),
    ];
    for (spec, keys) in specs {
        for key in keys {
            for bad in ["0", "-1", "-9223372036854775808"] {
                let text: Vec<String> = spec
                    .split_whitespace()
                    .map(|w| match w.split_once('=') {
                        Some((k, _)) if k == key => format!("{k}={bad}"),
                        _ => w.to_string(),
                    })
                    .collect();
                let text = text.join(" ");
                assert!(
                    coex::workload::spec::single_op_graph(&text).is_err(),
                    "{text} built a network"
                );
            }
        }
    }
    let base = std::fs::read_to_string(repo("workloads/resnet18.toml")).unwrap();
    for bad in ["0", "-1"] {
        let text = format!("batch = {bad}\n{}", base.replace("batch = 1\n", ""));
        assert!(
            coex::workload::file::parse(&text, "r", None).is_err(),
            "batch = {bad}"
        );
    }
    let text = "input = [3, 0, 224]\n[[layer]]\nop = \"relu\"\n";
    assert!(coex::workload::file::parse(text, "z", None).is_err());
}
