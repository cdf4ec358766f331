//! Mapspace constraints in template files (issue 13 §4): per level, `dims` (which
//! Einsum dims may have temporal loops there) and `order` (those loops first, outer
//! to inner). The mapper must honour them, mapping validation (`--mapping`, `check`)
//! must refuse mappings that break them, and an unsatisfiable set is a clear error.
//! Checked by reading the returned mappings' factors and loop orders directly.

use coex::arch;
use coex::cost::{self, Objective};
use coex::lower::einsum_of_spec;
use coex::map::mapper::{search, SearchConfig};
use coex::map::Problem;
use std::path::Path;

fn template(extra: &[(&str, &str)]) -> arch::Template {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("accelerators/asic/timeloop_simple_ws.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (level, lines) in extra {
        let head = format!("name = \"{level}\"\n");
        assert!(text.contains(&head), "{level}");
        text = text.replace(&head, &format!("{head}{lines}\n"));
    }
    arch::load_str(&text, &path, &[]).unwrap()
}

fn problem(spec: &str) -> Problem {
    Problem::from_einsum(&einsum_of_spec(spec).unwrap()).unwrap()
}

const SHAPES: [&str; 3] = [
    "conv2d n=1 c=64 h=28 w=28 k=64 r=3 s=3 pad=1",
    "conv2d n=2 c=32 h=14 w=14 k=128 r=1 s=1",
    "gemm m=96 n=80 k=72",
];

#[test]
fn the_mapper_honours_dims_and_order() {
    // pe_spad: only R, S, P, Q loops, R then S outermost; the weight register: none.
    let t = template(&[
        (
            "pe_spad",
            "dims = [\"R\", \"S\", \"P\", \"Q\"]\norder = [\"R\", \"S\"]",
        ),
        ("weight_reg", "dims = []"),
    ]);
    let (spad, wreg) = (
        t.level_index("pe_spad").unwrap(),
        t.level_index("weight_reg").unwrap(),
    );
    for spec in SHAPES {
        let p = problem(spec);
        let f = search(
            &p,
            &t,
            &SearchConfig::default(),
            cost::objective_fn(&p, &t, Objective::Edp),
        )
        .unwrap();
        let m = f.mapping;
        for d in 0..p.ndims {
            let name = p.names[d];
            if !["R", "S", "P", "Q"].contains(&name) {
                assert_eq!(m.factors[spad][d], 1, "{spec}: {name} loops at pe_spad");
            }
            assert_eq!(m.factors[wreg][d], 1, "{spec}: {name} loops at weight_reg");
        }
        // The looping dims at pe_spad, outer to inner: R before S before the rest.
        let seq: Vec<&str> = m.order[spad][..p.ndims]
            .iter()
            .map(|&d| d as usize)
            .filter(|&d| m.factors[spad][d] > 1)
            .map(|d| p.names[d])
            .collect();
        let rank = |n: &str| match n {
            "R" => 0,
            "S" => 1,
            _ => 2,
        };
        assert!(
            seq.windows(2).all(|w| rank(w[0]) <= rank(w[1])),
            "{spec}: pe_spad loops {seq:?}"
        );
        m.validate(&p, &t).unwrap();
    }
}

#[test]
fn validation_refuses_a_mapping_that_breaks_a_constraint() {
    let free = template(&[]);
    let t = template(&[("pe_spad", "dims = [\"R\", \"S\"]")]);
    let p = problem(SHAPES[0]);
    // A mapping found without the constraint that loops over more than R, S there.
    let f = search(
        &p,
        &free,
        &SearchConfig::default(),
        cost::objective_fn(&p, &free, Objective::Edp),
    )
    .unwrap();
    let spad = t.level_index("pe_spad").unwrap();
    let bad =
        (0..p.ndims).any(|d| !["R", "S"].contains(&p.names[d]) && f.mapping.factors[spad][d] > 1);
    assert!(
        bad,
        "the free mapping should loop over other dims at pe_spad"
    );
    let e = f.mapping.validate(&p, &t).unwrap_err().to_string();
    assert!(e.contains("pe_spad") && e.contains("dims"), "{e}");
}

#[test]
fn an_unsatisfiable_constraint_is_a_clear_error() {
    // No level may loop over K, and the array cannot unroll all 64 of it.
    let levels = [
        "DRAM",
        "shared_glb",
        "pe_spad",
        "weight_reg",
        "input_activation_reg",
        "output_activation_reg",
    ];
    let extra: Vec<(&str, &str)> = levels
        .iter()
        .map(|l| (*l, "dims = [\"N\", \"C\", \"P\", \"Q\", \"R\", \"S\"]"))
        .collect();
    let t = template(&extra);
    let p = problem("conv2d n=1 c=8 h=8 w=8 k=1000 r=1 s=1");
    let e = search(
        &p,
        &t,
        &SearchConfig::default(),
        cost::objective_fn(&p, &t, Objective::Edp),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("dims") && e.contains('K'), "{e}");
}

#[test]
fn constraint_names_are_checked() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("accelerators/asic/timeloop_simple_ws.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "name = \"pe_spad\"\n",
        "name = \"pe_spad\"\ndims = [\"R\"]\norder = [\"Z\"]\n",
    );
    let e = arch::load_str(&text, &path, &[]).err().unwrap().to_string();
    assert!(e.contains("order") && e.contains("'Z'"), "{e}");
    let text = text.replace("order = [\"Z\"]", "order = [\"S\"]");
    let e = arch::load_str(&text, &path, &[]).err().unwrap().to_string();
    assert!(e.contains("order") && e.contains("not among dims"), "{e}");
}
