//! Figures: the data series drawn match the run's numbers.

use archproof::report::{cactus_points, cactus_svg, CactusSeries};

#[test]
fn cactus_series_are_sorted_cumulative_times() {
    let pts = cactus_points(&[3.0, 0.5, 1.5]);
    assert_eq!(pts, vec![(1, 0.5), (2, 2.0), (3, 5.0)]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.svg");
    let series = vec![
        CactusSeries {
            name: "bab".into(),
            solved_seconds: vec![0.1, 0.2, 4.0],
        },
        CactusSeries {
            name: "smt".into(),
            solved_seconds: vec![9.0],
        },
    ];
    cactus_svg(&path, "test", &series, 5).unwrap();
    let svg = std::fs::read_to_string(&path).unwrap();
    assert!(svg.contains("<svg"));
    assert!(svg.contains("bab (3 solved)") && svg.contains("smt (1 solved)"));
    assert!(svg.contains("instances solved"));
}
