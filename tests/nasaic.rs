//! `coex explore-tasks` (NASAIC multi-task chips): the MILP against brute force on a
//! hand-made instance, and the shipped example end to end.

use coex::search::multitask::solve;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn milp_matches_enumeration() {
    // 3 tasks × 3 candidates: (accuracy, area, energy), chosen by hand so that the most
    // accurate candidate of every task does not fit together (5 + 4 + 6 = 15 > 10).
    let acc = vec![
        vec![90.0, 88.0, 80.0],
        vec![70.0, 66.0, 61.0],
        vec![50.0, 47.5, 40.0],
    ];
    let area = vec![
        vec![5.0, 3.0, 1.0],
        vec![4.0, 2.5, 1.0],
        vec![6.0, 3.0, 1.5],
    ];
    let energy = vec![vec![1.0, 2.0, 3.0]; 3];
    for budget in [3.0, 6.0, 8.5, 10.0, 12.0, 15.0, 20.0] {
        let mut best: Option<(f64, [usize; 3])> = None;
        for a in 0..3 {
            for b in 0..3 {
                for c in 0..3 {
                    if area[0][a] + area[1][b] + area[2][c] <= budget {
                        let s = acc[0][a] + acc[1][b] + acc[2][c];
                        if best.is_none_or(|(v, _)| s > v) {
                            best = Some((s, [a, b, c]));
                        }
                    }
                }
            }
        }
        let got = solve(&acc, &area, &energy, budget).unwrap();
        assert_eq!(
            got,
            best.map(|(_, p)| p.to_vec()),
            "budget {budget}: MILP vs enumeration"
        );
    }
    // Hand-checked: at 10 mm2, 88 + 70 + 47.5 = 205.5 (3 + 4 + 3 = 10) beats
    // 90 + 66 + 47.5 = 203.5 (5 + 2.5 + 3 = 10.5, over) and 90 + 61 + 47.5 = 198.5.
    assert_eq!(
        solve(&acc, &area, &energy, 10.0).unwrap(),
        Some(vec![1, 0, 1])
    );
    assert_eq!(solve(&acc, &area, &energy, 3.0).unwrap(), None);
}

#[test]
fn shipped_example_joint_meets_specs() {
    let out = std::env::temp_dir().join(format!("coex-nasaic-{}", std::process::id()));
    let o = Command::new(env!("CARGO_BIN_EXE_coex"))
        .args([
            "explore-tasks",
            &format!("{ROOT}/workloads/sweeps/nasaic_cifar.toml"),
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    // The comparison table (up to the per-choice notes) fits 80 columns.
    assert!(text
        .lines()
        .take_while(|l| !l.starts_with("  "))
        .all(|l| l.chars().count() <= 80));
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let budget = s["area_budget_mm2"].as_f64().unwrap();
    let joint = &s["joint"];
    assert!(joint["area_holds"].as_bool().unwrap());
    assert!(joint["area_mm2"].as_f64().unwrap() <= budget);
    assert!(joint["specs_hold"].as_bool().unwrap());
    for c in joint["choices"].as_array().unwrap() {
        assert!(c["specs_hold"].as_bool().unwrap(), "{c}");
        assert!(c["latency_s"].as_f64().unwrap() <= 0.65e-3);
    }
    let seq = &s["sequential"];
    // Measured: the sequential baseline needs 6.146 mm2 > 6 (the example's point).
    assert!(!seq["specs_hold"].as_bool().unwrap(), "{seq}");
    assert!(!seq["area_holds"].as_bool().unwrap());
    let csv = std::fs::read_to_string(out.join("tasks.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 * 2);
    std::fs::remove_dir_all(&out).ok();
}
