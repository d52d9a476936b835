//! The reference networks against their published sizes (torchvision's model cards).

use archproof::ir::Shape;

fn totals(name: &str) -> archproof::ir::Totals {
    archproof::models::build(name, None, None)
        .unwrap()
        .analyze()
        .unwrap()
        .totals
}

fn within(x: u64, published: f64, rel: f64) -> bool {
    ((x as f64 - published) / published).abs() <= rel
}

#[test]
fn resnet50_matches_torchvision() {
    let t = totals("resnet50");
    assert_eq!(t.params, 25_557_032);
    assert!(within(t.macs, 4.09e9, 0.01), "{}", t.macs);
}

#[test]
fn resnet18_and_34_match_torchvision() {
    let t = totals("resnet18");
    assert_eq!(t.params, 11_689_512);
    assert!(within(t.macs, 1.81e9, 0.01), "{}", t.macs);
    let t = totals("resnet34");
    assert_eq!(t.params, 21_797_672);
    assert!(within(t.macs, 3.66e9, 0.01), "{}", t.macs);
}

#[test]
fn mobilenet_v2_matches_torchvision() {
    let t = totals("mobilenet_v2");
    assert_eq!(t.params, 3_504_872);
    assert!(within(t.macs, 0.30e9, 0.02), "{}", t.macs);
}

#[test]
fn nb201_cell_9930_matches_the_benchmark() {
    // Published in the benchmark table: 184.73 MFLOPs, 1.2885 M params.
    let cell = "nb201:|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|";
    let t = archproof::models::build(cell, None, None)
        .unwrap()
        .analyze()
        .unwrap()
        .totals;
    assert!(within(t.macs, 184.73e6, 0.0005), "{}", t.macs);
    assert!(within(t.params, 1.2885e6, 0.0005), "{}", t.params);
}

#[test]
fn other_inputs_and_class_counts_change_the_head_and_maps() {
    let cell = "nb201:|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|";
    let g10 = archproof::models::build(cell, None, None).unwrap();
    let g = archproof::models::build(cell, Some(Shape::chw(3, 16, 16)), Some(120)).unwrap();
    let (a10, a) = (g10.analyze().unwrap(), g.analyze().unwrap());
    assert_eq!(a.output_shape(&g).dims(), &[120]);
    // The classifier grows by 64 * 110 weights + 110 biases; nothing else has parameters that
    // depend on the input or the class count.
    assert_eq!(a.totals.params - a10.totals.params, 64 * 110 + 110);
    // Every conv map has a quarter of the positions; the classifier grows by 64 * 110.
    let conv_macs_10 = a10.totals.macs - 64 * 10;
    assert_eq!(a.totals.macs, conv_macs_10 / 4 + 64 * 120);
}

#[test]
fn an_input_too_small_is_an_error_naming_the_node() {
    // 2x2 survives the first reduction (to 1x1), not the second one's 2x2 average pool.
    let cell = "nb201:|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|";
    let err = archproof::models::build(cell, Some(Shape::chw(3, 2, 2)), None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("node 'cells.11.downsample.pool'"), "{err}");
    assert!(err.contains("does not fit an input of 1"), "{err}");
}

#[test]
fn the_zoo_command_lists_every_model_with_published_sizes() {
    let out = crate::common::archproof(&["zoo", "--json"]);
    let entries = crate::common::ok_json(&out);
    let entries = entries.as_array().expect("a JSON array");
    let find = |name: &str| {
        entries
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing from `zoo --json`"))
    };
    assert_eq!(find("resnet18")["params"], 11_689_512);
    assert!(within(
        find("resnet18")["macs"].as_u64().unwrap(),
        1.81e9,
        0.01
    ));
    assert_eq!(find("mobilenet_v2")["params"], 3_504_872);
    // A model with an optional width is listed at its default; one whose widths are
    // required has no size.
    assert!(find("resnet-mini[:W]")["params"].as_u64().unwrap() > 0);
    assert!(find("mlp:<w1>-<w2>-...")["params"].is_null());
}
