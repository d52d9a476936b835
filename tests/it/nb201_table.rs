//! The IR's cost model against the NAS-Bench-201 table: MACs and params of all 15,625 cells.

use crate::common;

use archproof::cells::table::Table;
use archproof::ir::Shape;
use rayon::prelude::*;

#[test]
#[cfg_attr(
    not(shared_data),
    ignore = "needs ../shared/data, absent when the tests were built"
)]
fn every_cell_matches_flops_and_params_of_the_table() {
    let data = common::shared_data();
    let table = Table::load(&data.join("nb201/nb201-cifar10.csv")).unwrap();
    assert_eq!(table.len(), 15_625);
    let rows: Vec<_> = table.iter().collect();
    let bad: Vec<String> = rows
        .par_iter()
        .filter_map(|(cell, row)| {
            let g = archproof::cells::nb201::network(cell, Shape::chw(3, 32, 32), 10).unwrap();
            let t = g.analyze().unwrap().totals;
            let (flops, params) = (row.values["flops_m"], row.values["params_m"]);
            let rel = |x: u64, m: f64| ((x as f64 / 1e6 - m) / m).abs();
            let (ef, ep) = (rel(t.macs, flops), rel(t.params, params));
            (ef > 1e-3 || ep > 1e-3).then(|| {
                format!(
                    "{cell}: macs {} vs {flops} M, params {} vs {params} M",
                    t.macs, t.params
                )
            })
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{} cells differ, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    // The published range of the space.
    let (lo, hi) = rows.iter().fold((f64::MAX, 0.0f64), |(lo, hi), (_, r)| {
        (lo.min(r.values["flops_m"]), hi.max(r.values["flops_m"]))
    });
    assert!(
        (lo - 7.78).abs() < 0.01 && (hi - 220.12).abs() < 0.01,
        "{lo} {hi}"
    );
    let (best, acc) = table.best_test();
    assert_eq!(table.get(&best).unwrap().values["index"], 6111.0);
    assert!((acc - 94.3733).abs() < 1e-3);
}
