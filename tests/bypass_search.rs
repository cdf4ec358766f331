//! The mapper searches bypass (issue 13 §3). On a fully connected layer of the
//! Timeloop "simple weight-stationary" design, weights are used once: holding them
//! in the global buffer only adds a fill and a read per weight. Timeloop's mapping
//! streams them past the buffer; coex's mapper, with bypass search, must find a
//! mapping at least as good (by coex's EDP) as the best it finds without it, and in
//! this case strictly better, with W bypassing the global buffer.

use coex::arch;
use coex::cost::{self, Objective};
use coex::lower::einsum_of_spec;
use coex::map::mapper::{search, SearchConfig};
use coex::map::Problem;
use std::path::Path;

fn problem(spec: &str) -> Problem {
    Problem::from_einsum(&einsum_of_spec(spec).unwrap()).unwrap()
}

#[test]
fn fully_connected_layer_bypasses_weights_at_the_global_buffer() {
    let t = arch::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("accelerators/asic/timeloop_simple_ws.toml"),
        &[],
    )
    .unwrap();
    let p = problem("conv2d n=1 c=512 h=1 w=1 k=1000 r=1 s=1");
    let run = |bypass: bool| {
        let cfg = SearchConfig {
            bypass,
            ..SearchConfig::default()
        };
        search(&p, &t, &cfg, cost::objective_fn(&p, &t, Objective::Edp)).unwrap()
    };
    let (with, without) = (run(true), run(false));
    let glb = t.level_index("shared_glb").unwrap();
    eprintln!(
        "FC 512x1000 EDP: {:.4e} without bypass search, {:.4e} with ({:.1}% lower); {}",
        without.score,
        with.score,
        (1.0 - with.score / without.score) * 100.0,
        with.mapping.compact(&p, &t)
    );
    for (name, f) in [("without", &without), ("with", &with)] {
        let q = cost::quick(&p, &t, &f.counts);
        eprintln!(
            "{name}: {} keep {:?}: {} cycles (compute {}), {:.4e} pJ",
            f.mapping.compact(&p, &t),
            &f.mapping.keep[..t.levels.len()],
            q.latency_cycles,
            q.compute_cycles,
            q.energy_pj
        );
    }
    assert!(with.score <= without.score);
    assert!(with.score < 0.99 * without.score, "bypass should pay here");
    assert!(!with.mapping.keep[glb][1], "W should bypass shared_glb");
}
