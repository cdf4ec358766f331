//! Separate read and write bandwidths (issue 13 §2): a level's transfer time is
//! max(reads ÷ read bandwidth, (fills + updates) ÷ write bandwidth) per instance, where
//! a shared port charges (reads + fills + updates) ÷ bandwidth. Checked on a layer
//! whose global buffer bounds the latency, against the plain arithmetic on the
//! model's own access counts (the counts are checked elsewhere: tests/exact_reuse.rs).

use coex::arch;
use coex::cost::network::map_einsum;
use coex::cost::{quick, NetworkOptions};
use coex::lower::{einsum_of_spec, Einsum};
use coex::map::mapper::SearchConfig;
use coex::map::{analyze, Problem};
use std::path::Path;

fn template(glb: &str) -> arch::Template {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("accelerators/asic/timeloop_simple_ws.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "read_bandwidth_bytes_per_cycle = 32    # read_bandwidth: 16 words of 16 bits\nwrite_bandwidth_bytes_per_cycle = 32   # write_bandwidth: 16 words (fills and updates)",
        glb,
    );
    assert!(text.contains(glb), "the shipped template's GLB ports moved");
    arch::load_str(&text, &path, &[]).unwrap()
}

fn einsum() -> Einsum {
    // A 1x1 conv with few MACs per byte: the global buffer, not compute, bounds it.
    einsum_of_spec("conv2d n=1 c=64 h=28 w=28 k=64 r=1 s=1 dtype=fp16").unwrap()
}

#[test]
fn separate_ports_take_the_slower_direction() {
    let narrow = "read_bandwidth_bytes_per_cycle = 2\nwrite_bandwidth_bytes_per_cycle = 4";
    let t = template(narrow);
    let glb = t.level_index("shared_glb").unwrap();
    // Without bypass search, so that the GLB carries every operand and bounds the layer.
    let opts = NetworkOptions {
        search: SearchConfig {
            bypass: false,
            ..SearchConfig::default()
        },
        ..NetworkOptions::default()
    };
    let (p, found): (Problem, _) = map_einsum(&einsum(), &t, &opts).unwrap();
    let c = analyze(&p, &t, &found.mapping);
    let (reads, writes) = (c.reads_per_instance(glb), c.writes_per_instance(glb));
    // 16-bit words: 1 word/cycle of reads, 2 of writes.
    let expected = (reads as f64 / 1.0).max(writes as f64 / 2.0);
    let q = quick(&p, &t, &c);
    assert_eq!(q.bound_level, Some(glb), "the GLB should bound this layer");
    assert_eq!(q.latency_cycles, expected);
    // A shared port of the same total (3 words/cycle) charges reads + writes together.
    let shared = template("bandwidth_bytes_per_cycle = 6");
    let qs = quick(&p, &shared, &c);
    assert_eq!(
        qs.latency_cycles,
        ((reads + writes) as f64 / 3.0).max(qs.compute_cycles)
    );
}
