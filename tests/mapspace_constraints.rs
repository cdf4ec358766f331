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

/// The mapper's best mapping of `p` on `t` by EDP, or its error.
fn edp_search(p: &Problem, t: &arch::Template) -> Result<coex::map::mapper::Found, String> {
    search(
        p,
        t,
        &SearchConfig::default(),
        cost::objective_fn(p, t, Objective::Edp),
    )
    .map_err(|e| e.to_string())
}

/// The dims that loop at level `l`, outer to inner.
fn looping_dims(m: &coex::map::Mapping, p: &Problem, l: usize) -> Vec<&'static str> {
    m.order[l][..p.ndims]
        .iter()
        .map(|&d| d as usize)
        .filter(|&d| m.factors[l][d] > 1)
        .map(|d| p.names[d])
        .collect()
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
        let f = edp_search(&p, &t).unwrap();
        let m = f.mapping;
        for d in 0..p.ndims {
            let name = p.names[d];
            if !["R", "S", "P", "Q"].contains(&name) {
                assert_eq!(m.factors[spad][d], 1, "{spec}: {name} loops at pe_spad");
            }
            assert_eq!(m.factors[wreg][d], 1, "{spec}: {name} loops at weight_reg");
        }
        // The looping dims at pe_spad, outer to inner: R before S before the rest.
        let seq = looping_dims(&m, &p, spad);
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
    let f = edp_search(&p, &free).unwrap();
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
    let e = edp_search(&p, &t).unwrap_err();
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

/// `factors` fixes a dim's temporal loop at a level (Timeloop's `factors: R=3 S=3`).
/// Checked on the returned mappings' factors: the fixed ones exactly, the dim's
/// other factors elsewhere, coverage complete; a free mapping that breaks the fixed
/// bound is refused by validation; a fixed factor that cannot divide what is left
/// is an error naming the dim; bad values name the key.
#[test]
fn exact_factors_are_honoured_validated_and_checked() {
    let t = template(&[("pe_spad", "factors = { R = 3, S = 3, P = 2 }")]);
    let spad = t.level_index("pe_spad").unwrap();
    let p = problem("conv2d n=1 c=64 h=28 w=28 k=64 r=3 s=3 pad=1");
    let f = edp_search(&p, &t).unwrap();
    let m = f.mapping;
    for (name, want) in [("R", 3), ("S", 3), ("P", 2)] {
        let d = p.dim_index(name).unwrap();
        assert_eq!(m.factors[spad][d], want, "{name} at pe_spad");
    }
    // P's other 14 iterations live at other levels or on the array.
    let pd = p.dim_index("P").unwrap();
    let covered: u64 = (0..t.levels.len())
        .map(|l| m.factors[l][pd] as u64)
        .product::<u64>()
        * m.spatial(pd);
    assert!(covered >= 28, "P covered to {covered}");
    m.validate(&p, &t).unwrap();
    // The same mapping with pe_spad's P loop moved out to DRAM covers the same
    // iterations but breaks the fixed bound: validation refuses it.
    let mut moved = m;
    moved.factors[spad][pd] = 1;
    moved.factors[0][pd] *= 2;
    moved.validate_shape(&p, &t).unwrap();
    let e = moved.validate(&p, &t).unwrap_err().to_string();
    assert!(e.contains("pe_spad") && e.contains("fixes P = 2"), "{e}");
    // R = 3 on a 1x1 conv cannot be: the error names the dim and the constraint.
    let q = problem("conv2d n=1 c=8 h=8 w=8 k=8 r=1 s=1");
    let e = edp_search(&q, &template(&[("pe_spad", "factors = { R = 3 }")])).unwrap_err();
    assert!(e.contains("factors") && e.contains("dim R"), "{e}");
    // Bad values name the key.
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("accelerators/asic/timeloop_simple_ws.toml");
    let base = std::fs::read_to_string(&path).unwrap();
    for (bad, says) in [
        ("factors = { R = 0 }", "a loop bound >= 1"),
        ("factors = { Z = 3 }", "'Z' is not a dim"),
        ("dims = [\"S\"]\nfactors = { R = 3 }", "add it to dims"),
    ] {
        let text = base.replace(
            "name = \"pe_spad\"\n",
            &format!("name = \"pe_spad\"\n{bad}\n"),
        );
        let e = arch::load_str(&text, &path, &[]).err().unwrap().to_string();
        assert!(e.contains("factors") && e.contains(says), "{bad}: {e}");
    }
}

/// `inner` pins loops innermost (Timeloop's partial permutation): the mapper's
/// looping dims at the level end with them, in order; a mapping whose loops put
/// them elsewhere is refused; a dim both first (`order`) and last (`inner`) is an
/// error naming the key.
#[test]
fn inner_loops_are_honoured_and_checked() {
    let t = template(&[("pe_spad", "inner = [\"S\", \"R\"]")]);
    let spad = t.level_index("pe_spad").unwrap();
    for spec in SHAPES {
        let p = problem(spec);
        let m = edp_search(&p, &t).unwrap().mapping;
        let seq = looping_dims(&m, &p, spad);
        let pinned: Vec<&str> = ["S", "R"].into_iter().filter(|n| seq.contains(n)).collect();
        assert!(seq.ends_with(&pinned), "{spec}: loops {seq:?}");
        m.validate(&p, &t).unwrap();
    }
    // Put S and R outermost at pe_spad in a mapping that loops over them there.
    let p = problem(SHAPES[0]);
    let mut m = edp_search(&p, &t).unwrap().mapping;
    let (s, r) = (p.dim_index("S").unwrap(), p.dim_index("R").unwrap());
    if m.factors[spad][s] > 1 && m.factors[spad][r] > 1 {
        let rest: Vec<u8> = m.order[spad][..p.ndims]
            .iter()
            .copied()
            .filter(|&d| d as usize != s && d as usize != r)
            .collect();
        let mut order = vec![r as u8, s as u8];
        order.extend(rest);
        m.order[spad][..p.ndims].copy_from_slice(&order);
        let e = m.validate(&p, &t).unwrap_err().to_string();
        assert!(e.contains("pe_spad") && e.contains("inner"), "{e}");
    } else {
        panic!(
            "expected R and S loops at pe_spad for a 3x3 conv: {:?}",
            m.factors[spad]
        );
    }
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("accelerators/asic/timeloop_simple_ws.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "name = \"pe_spad\"\n",
        "name = \"pe_spad\"\norder = [\"R\"]\ninner = [\"R\"]\n",
    );
    let e = arch::load_str(&text, &path, &[]).err().unwrap().to_string();
    assert!(e.contains("inner") && e.contains("both order"), "{e}");
}
