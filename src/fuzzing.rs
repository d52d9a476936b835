//! What each fuzz target does with its bytes, in one place for the cargo fuzz targets
//! (`fuzz/`) and for the regression tests that replay the inputs they found
//! (`tests/fuzz-cases/TARGET/`). Each harness hands the bytes to a parser of user files as the
//! CLI calls it and checks what a parsed value promises; an error is a good answer, a panic,
//! an abort or a runaway allocation is a bug.

use std::path::PathBuf;

use crate::verify::graph::Network;

/// The targets, by name: the files under `fuzz/fuzz_targets/` and `tests/fuzz-cases/`.
pub const TARGETS: [&str; 15] = [
    "onnx",
    "vnnlib",
    "nnet",
    "ir_json",
    "layer_list",
    "evonorm_layer",
    "deepmad_structure",
    "deepmad_space",
    "cell_space",
    "benchmark_table",
    "instance_list",
    "idx",
    "cifar",
    "csv_dataset",
    "npy",
];

/// Runs the harness of `target` on `data`; false for an unknown target.
pub fn run(target: &str, data: &[u8]) -> bool {
    match target {
        "onnx" => onnx(data),
        "vnnlib" => vnnlib(data),
        "nnet" => nnet(data),
        "ir_json" => ir_json(data),
        "layer_list" => layer_list(data),
        "evonorm_layer" => evonorm_layer(data),
        "deepmad_structure" => deepmad_structure(data),
        "deepmad_space" => deepmad_space(data),
        "cell_space" => cell_space(data),
        "benchmark_table" => benchmark_table(data),
        "instance_list" => instance_list(data),
        "idx" => idx(data),
        "cifar" => cifar(data),
        "csv_dataset" => csv_dataset(data),
        "npy" => npy(data),
        _ => return false,
    }
    true
}

/// Writes `data` to a file named `name` in a folder of this process's own (on tmpfs where
/// there is one), for the readers that take a path.
fn file_with(name: &str, data: &[u8]) -> PathBuf {
    let dir = scratch_dir();
    std::fs::create_dir_all(&dir).expect("a scratch folder");
    let path = dir.join(name);
    std::fs::write(&path, data).expect("a scratch file");
    path
}

/// The folder of this thread's scratch files (on tmpfs where there is one); the caller of
/// the harnesses may remove it when done.
pub fn scratch_dir() -> PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    // One per thread, so that tests running side by side never remove each other's files.
    let thread = format!("{:?}", std::thread::current().id());
    let thread: String = thread.chars().filter(char::is_ascii_digit).collect();
    base.join(format!("archproof-fuzz-{}-{thread}", std::process::id()))
}

/// A network that parses must evaluate at a point of its input box (the origin) to as many
/// outputs as it declares, when it is small enough for a fuzzing iteration.
fn exercise(net: &Network) {
    if net.input_dim() <= 4096 && net.nodes().len() <= 64 {
        let y = net.forward(&vec![0.0; net.input_dim()]);
        assert_eq!(y.len(), net.output_dim());
    }
}

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// ONNX models: the importer into the IR, then the lowering to the verifier's network.
pub fn onnx(data: &[u8]) {
    if let Ok(net) = crate::verify::onnx_network(data, "fuzz") {
        exercise(&net);
    }
}

/// VNN-LIB properties; a parsed spec is written back and must read again the same.
pub fn vnnlib(data: &[u8]) {
    let Some(t) = text(data) else { return };
    if let Ok(spec) = crate::verify::vnnlib::parse(t, "fuzz.vnnlib") {
        let again = crate::verify::vnnlib::write(&spec);
        let back = crate::verify::vnnlib::parse(&again, "again.vnnlib")
            .expect("a written spec reads back");
        assert_eq!(back.regions.len(), spec.regions.len());
    }
}

/// NNet networks (the ACAS Xu format).
pub fn nnet(data: &[u8]) {
    let Some(t) = text(data) else { return };
    if let Ok((net, _)) = crate::verify::nnet::parse(t) {
        exercise(&net);
    }
}

/// IR JSON graphs, and their lowering to the verifier's network.
pub fn ir_json(data: &[u8]) {
    let Some(t) = text(data) else { return };
    if let Ok(graph) = crate::ir::io::from_json(t) {
        if let Ok(net) = crate::verify::ir::from_graph(&graph) {
            exercise(&net);
        }
    }
}

/// The layer-list JSON networks of the verifier.
pub fn layer_list(data: &[u8]) {
    let Some(t) = text(data) else { return };
    if let Ok(net) = crate::verify::parse_layer_list(t) {
        exercise(&net);
    }
}

/// EvoNorm layer files (JSON graphs of primitive ops), as `--layer FILE` reads them.
pub fn evonorm_layer(data: &[u8]) {
    let path = file_with("layer.json", data);
    let _ = crate::evonorm::load(&path.to_string_lossy());
}

/// DeepMAD structure files (a block list, or the released-structures file).
pub fn deepmad_structure(data: &[u8]) {
    let path = file_with("structure.json", data);
    let _ = crate::deepmad::structure::read_with_resolution(&path.to_string_lossy());
}

/// DeepMAD search-space TOML files.
pub fn deepmad_space(data: &[u8]) {
    let _ = crate::deepmad::space::read(&file_with("space.toml", data));
}

/// Cell search-space TOML files (NAS-Bench-201, NASNet).
pub fn cell_space(data: &[u8]) {
    let path = file_with("space.toml", data);
    let _ = crate::cells::SpaceSpec::load(&path.to_string_lossy());
}

/// Benchmark tables (the NAS-Bench-201 CSV).
pub fn benchmark_table(data: &[u8]) {
    let _ = crate::cells::table::Table::from_reader(data, "fuzz.csv");
}

/// VNN-COMP instance lists, known-answer tables and published times.
pub fn instance_list(data: &[u8]) {
    let path = file_with("instances.csv", data);
    let _ = crate::verify::instances::read_list(&path);
    let _ = crate::verify::instances::read_expected(&path);
    let _ = crate::verify::instances::read_published(&path);
}

/// MNIST IDX files (images with three dimensions, labels with one).
pub fn idx(data: &[u8]) {
    for dims in [1, 3] {
        if let Ok((shape, body)) = crate::train::data::parse_idx(data, dims) {
            assert_eq!(shape.len(), dims);
            assert_eq!(shape.iter().product::<usize>(), body.len());
        }
    }
}

/// CIFAR-10 binary batches.
pub fn cifar(data: &[u8]) {
    let mut split = crate::train::data::Split::default();
    if crate::train::data::parse_cifar_batch(data, &mut split).is_ok() {
        assert_eq!(split.x.len(), split.len() * 3 * 32 * 32);
    }
}

/// CSV datasets (features, then a class label, per row).
pub fn csv_dataset(data: &[u8]) {
    if let Ok(d) = crate::train::data::parse_csv(data) {
        assert!(!d.train.is_empty());
    }
}

/// NPY arrays, as the dataset reader reads them.
pub fn npy(data: &[u8]) {
    let path = file_with("x.npy", data);
    if let Ok((shape, values)) = crate::train::data::read_npy(&path) {
        assert_eq!(shape.iter().product::<usize>(), values.len());
    }
}
