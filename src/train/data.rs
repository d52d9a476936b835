//! Datasets for training: the embedded `shapes` images (generated, deterministic by seed), and
//! readers for the real formats: MNIST IDX, CIFAR-10 binary, CSV and NPY.
//!
//! Every dataset is a train and a test split of `f32` inputs of one shape (`[C, H, W]` for
//! images, `[F]` for vectors) with integer class labels. Image pixels are scaled to `[0, 1]`.

use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// A problem with a dataset file: which file and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file is missing, unreadable or malformed.
    #[error("{}: {msg}", file.display())]
    File {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// The dataset argument itself is wrong.
    #[error("{0}")]
    Spec(String),
}

fn file_err(file: &Path, msg: impl Into<String>) -> DataError {
    DataError::File {
        file: file.to_path_buf(),
        msg: msg.into(),
    }
}

/// One split: `x` holds `y.len()` inputs of the dataset's shape, row-major.
#[derive(Debug, Clone, Default)]
pub struct Split {
    /// Inputs, one after another.
    pub x: Vec<f32>,
    /// Class labels.
    pub y: Vec<u32>,
}

impl Split {
    /// Number of examples.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// Whether the split is empty.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// The `i`-th input.
    pub fn input(&self, i: usize) -> &[f32] {
        let d = self.x.len() / self.y.len().max(1);
        &self.x[i * d..(i + 1) * d]
    }

    /// `n` examples of the split, each class in its share of the split (stratified), the
    /// first ones of each class in the split's order; all of them when `n` is at least its
    /// length.
    pub fn spread(&self, n: usize) -> Split {
        let len = self.len();
        if n >= len {
            return self.clone();
        }
        let classes = self.y.iter().map(|&c| c as usize + 1).max().unwrap_or(0);
        let mut count = vec![0usize; classes];
        for &c in &self.y {
            count[c as usize] += 1;
        }
        // Each class's quota by largest remainders, so that the quotas sum to n.
        let mut quota: Vec<usize> = count.iter().map(|&k| k * n / len).collect();
        let mut rest: Vec<(usize, usize)> = count
            .iter()
            .enumerate()
            .map(|(c, &k)| ((k * n) % len, c))
            .collect();
        rest.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        let short = n - quota.iter().sum::<usize>();
        for &(_, c) in rest.iter().take(short) {
            quota[c] += 1;
        }
        let d = self.x.len() / len.max(1);
        let mut out = Split {
            x: Vec::with_capacity(n * d),
            y: Vec::with_capacity(n),
        };
        for i in 0..len {
            let c = self.y[i] as usize;
            if quota[c] > 0 {
                quota[c] -= 1;
                out.x.extend_from_slice(&self.x[i * d..(i + 1) * d]);
                out.y.push(self.y[i]);
            }
        }
        out
    }
}

/// A classification dataset.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The argument it was loaded from, e.g. `shapes` or `mnist-idx:data/mnist`.
    pub name: String,
    /// Shape of one input without the batch dimension.
    pub shape: Vec<usize>,
    /// Number of classes.
    pub classes: usize,
    /// Class names (numbers when the format has none).
    pub class_names: Vec<String>,
    /// Training split.
    pub train: Split,
    /// Test split.
    pub test: Split,
}

impl Dataset {
    /// At most `train` training and `test` test examples ([`Split::spread`], every class
    /// kept in its share): a shorter run on
    /// part of a dataset. `None` keeps a split whole; zero is refused.
    pub fn part(&self, train: Option<usize>, test: Option<usize>) -> Result<Dataset, DataError> {
        if train == Some(0) || test == Some(0) {
            return Err(DataError::Spec(
                "--train-examples and --test-examples must be at least 1".into(),
            ));
        }
        Ok(Dataset {
            name: self.name.clone(),
            shape: self.shape.clone(),
            classes: self.classes,
            class_names: self.class_names.clone(),
            train: train.map_or_else(|| self.train.clone(), |n| self.train.spread(n)),
            test: test.map_or_else(|| self.test.clone(), |n| self.test.spread(n)),
        })
    }

    /// The first `train` examples of the training split to fit on (all but the held-out ones
    /// when `train` is 0), and its last `valid` examples as the `test` split: a validation set
    /// for searches, which must never see the real test split.
    pub fn hold_out(&self, train: usize, valid: usize) -> Result<Dataset, DataError> {
        let n = self.train.len();
        if valid == 0 || valid >= n {
            return Err(DataError::Spec(format!(
                "{}: cannot hold out {valid} of {n} training examples for validation",
                self.name
            )));
        }
        let train = if train == 0 { n - valid } else { train };
        if train > n - valid {
            return Err(DataError::Spec(format!(
                "{}: {train} training plus {valid} validation examples is more than the {n} there are",
                self.name
            )));
        }
        let d = self.input_len();
        let part = |from: usize, to: usize| Split {
            x: self.train.x[from * d..to * d].to_vec(),
            y: self.train.y[from..to].to_vec(),
        };
        Ok(Dataset {
            train: part(0, train),
            test: part(n - valid, n),
            ..self.clone()
        })
    }
}

/// A summary for JSON output.
#[derive(Debug, Clone, Serialize)]
pub struct DatasetInfo {
    /// The argument it was loaded from.
    pub name: String,
    /// Input shape.
    pub shape: Vec<usize>,
    /// Number of classes.
    pub classes: usize,
    /// Training examples.
    pub train: usize,
    /// Test examples.
    pub test: usize,
}

impl Dataset {
    /// Numbers of values in one input.
    pub fn input_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// A summary.
    pub fn info(&self) -> DatasetInfo {
        DatasetInfo {
            name: self.name.clone(),
            shape: self.shape.clone(),
            classes: self.classes,
            train: self.train.len(),
            test: self.test.len(),
        }
    }

    fn check(self) -> Result<Dataset, DataError> {
        let d = self.input_len();
        for (what, s) in [("train", &self.train), ("test", &self.test)] {
            if s.is_empty() {
                return Err(DataError::Spec(format!(
                    "{}: the {what} split is empty",
                    self.name
                )));
            }
            if s.x.len() != d * s.len() {
                return Err(DataError::Spec(format!(
                    "{}: the {what} split has {} values for {} inputs of {d}",
                    self.name,
                    s.x.len(),
                    s.len()
                )));
            }
            if let Some(&c) = s.y.iter().find(|&&c| c as usize >= self.classes) {
                return Err(DataError::Spec(format!(
                    "{}: label {c} in the {what} split, but {} classes",
                    self.name, self.classes
                )));
            }
        }
        Ok(self)
    }
}

/// The dataset arguments the CLI accepts, for help texts.
pub const FORMATS: &str = "shapes[:SIZE] (embedded, 16 or 28 pixels), mnist-idx:DIR, \
cifar10-bin:DIR, csv:FILE (last column the label), npy:DIR (x_train.npy, y_train.npy, \
x_test.npy, y_test.npy)";

/// Loads a dataset from its argument: `shapes`, `shapes:28`, `mnist-idx:DIR`,
/// `cifar10-bin:DIR`, `csv:FILE` or `npy:DIR`.
pub fn load(spec: &str) -> Result<Dataset, DataError> {
    let (kind, arg) = spec.split_once(':').unwrap_or((spec, ""));
    let ds = match kind {
        "shapes" => {
            let size = if arg.is_empty() {
                16
            } else {
                arg.parse::<usize>().map_err(|_| {
                    DataError::Spec(format!("shapes:{arg}: the size must be 16 or 28"))
                })?
            };
            if size != 16 && size != 28 {
                return Err(DataError::Spec(format!(
                    "shapes:{size}: the size must be 16 or 28"
                )));
            }
            shapes(&ShapesConfig {
                size,
                ..ShapesConfig::default()
            })
        }
        "mnist-idx" => mnist_idx(Path::new(need(kind, arg)?))?,
        "cifar10-bin" => cifar10_bin(Path::new(need(kind, arg)?))?,
        "csv" => csv_file(Path::new(need(kind, arg)?))?,
        "npy" => npy_dir(Path::new(need(kind, arg)?))?,
        _ => {
            return Err(DataError::Spec(format!(
                "unknown dataset '{spec}'; known: {FORMATS}"
            )))
        }
    };
    Dataset {
        name: spec.to_string(),
        ..ds
    }
    .check()
}

fn need<'a>(kind: &str, arg: &'a str) -> Result<&'a str, DataError> {
    if arg.is_empty() {
        Err(DataError::Spec(format!("{kind} needs a path: {kind}:PATH")))
    } else {
        Ok(arg)
    }
}

/// Settings of the embedded `shapes` dataset.
#[derive(Debug, Clone)]
pub struct ShapesConfig {
    /// Image side in pixels.
    pub size: usize,
    /// Training images.
    pub train: usize,
    /// Test images.
    pub test: usize,
    /// Seed of the generator.
    pub seed: u64,
    /// Standard deviation of the added pixel noise.
    pub noise: f64,
}

impl Default for ShapesConfig {
    fn default() -> Self {
        ShapesConfig {
            size: 16,
            train: 12000,
            test: 1000,
            seed: 0,
            noise: 0.12,
        }
    }
}

/// The classes of `shapes`.
pub const SHAPE_CLASSES: [&str; 6] = ["disk", "square", "triangle", "cross", "ring", "bar"];

/// Whether the point `(u, v)` (in the shape's own frame, radius 1) is inside shape `class`.
fn inside(class: usize, u: f64, v: f64) -> bool {
    match class {
        0 => u * u + v * v <= 1.0,
        1 => u.abs() <= 0.8 && v.abs() <= 0.8,
        2 => {
            // An equilateral triangle with its corners on the unit circle.
            let h = 0.5;
            v >= -h && (3f64.sqrt() * u + v <= 1.0) && (-(3f64.sqrt()) * u + v <= 1.0)
        }
        3 => (u.abs() <= 0.3 && v.abs() <= 1.0) || (v.abs() <= 0.3 && u.abs() <= 1.0),
        4 => {
            let r2 = u * u + v * v;
            (0.36..=1.0).contains(&r2)
        }
        _ => u.abs() <= 1.0 && v.abs() <= 0.25,
    }
}

/// One standard normal draw (Box-Muller), as the `shapes` noise uses it.
pub fn standard_normal(rng: &mut ChaCha8Rng) -> f64 {
    let (a, b): (f64, f64) = (rng.random_range(1e-12..1.0), rng.random());
    (-2.0 * a.ln()).sqrt() * (2.0 * PI * b).cos()
}

/// Generates one shape image: random centre, scale, rotation and brightness, 2x2 supersampled,
/// plus Gaussian pixel noise, clipped to `[0, 1]`.
fn shape_image(class: usize, size: usize, noise: f64, rng: &mut ChaCha8Rng) -> Vec<f32> {
    let s = size as f64;
    let radius = s * rng.random_range(0.28..0.44);
    let margin = radius * 0.9;
    let cx = rng.random_range(margin..s - margin);
    let cy = rng.random_range(margin..s - margin);
    let angle = rng.random_range(0.0..2.0 * PI);
    let bright = rng.random_range(0.6..1.0);
    let (sin, cos) = angle.sin_cos();
    let mut img = vec![0f32; size * size];
    for py in 0..size {
        for px in 0..size {
            let mut hits = 0;
            for (dx, dy) in [(0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)] {
                let (x, y) = (
                    (px as f64 + dx - cx) / radius,
                    (py as f64 + dy - cy) / radius,
                );
                let (u, v) = (cos * x + sin * y, -sin * x + cos * y);
                hits += inside(class, u, v) as usize;
            }
            let n = standard_normal(rng);
            let value = bright * hits as f64 / 4.0 + noise * n;
            img[py * size + px] = value.clamp(0.0, 1.0) as f32;
        }
    }
    img
}

/// The embedded `shapes` dataset: balanced classes in a seeded order.
pub fn shapes(cfg: &ShapesConfig) -> Dataset {
    let split = |n: usize, stream: u64| {
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        rng.set_stream(stream);
        let mut out = Split::default();
        for i in 0..n {
            let class = i % SHAPE_CLASSES.len();
            out.x
                .extend(shape_image(class, cfg.size, cfg.noise, &mut rng));
            out.y.push(class as u32);
        }
        out
    };
    Dataset {
        name: if cfg.size == 16 {
            "shapes".into()
        } else {
            format!("shapes:{}", cfg.size)
        },
        shape: vec![1, cfg.size, cfg.size],
        classes: SHAPE_CLASSES.len(),
        class_names: SHAPE_CLASSES.iter().map(|s| s.to_string()).collect(),
        train: split(cfg.train, 1),
        test: split(cfg.test, 2),
    }
}

fn read(file: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(file).map_err(|e| file_err(file, e.to_string()))
}

fn be_u32(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
}

/// Reads one IDX file of unsigned bytes: its dimensions and data.
fn idx(file: &Path, dims: usize) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let b = read(file)?;
    let head = 4 + 4 * dims;
    if b.len() < head {
        return Err(file_err(file, "too short for an IDX header"));
    }
    let magic = be_u32(&b, 0);
    if magic != 0x0800 + dims as u32 {
        return Err(file_err(
            file,
            format!(
                "not an IDX file of unsigned bytes with {dims} dimensions (magic {magic:#010x}, expected {:#010x})",
                0x0800 + dims as u32
            ),
        ));
    }
    let shape: Vec<usize> = (1..=dims).map(|i| be_u32(&b, i) as usize).collect();
    let n: usize = shape.iter().product();
    if b.len() != head + n {
        return Err(file_err(
            file,
            format!(
                "the header says {shape:?} ({n} bytes) but the file has {} data bytes",
                b.len() - head
            ),
        ));
    }
    Ok((shape, b[head..].to_vec()))
}

fn idx_split(dir: &Path, images: &str, labels: &str) -> Result<(Split, [usize; 2]), DataError> {
    let (fi, fl) = (dir.join(images), dir.join(labels));
    let (shape, px) = idx(&fi, 3)?;
    let (lshape, lab) = idx(&fl, 1)?;
    if lshape[0] != shape[0] {
        return Err(file_err(
            &fl,
            format!("{} labels for {} images", lshape[0], shape[0]),
        ));
    }
    if let Some(bad) = lab.iter().find(|&&c| c > 9) {
        return Err(file_err(&fl, format!("label {bad} is not a digit")));
    }
    Ok((
        Split {
            x: px.iter().map(|&p| p as f32 / 255.0).collect(),
            y: lab.iter().map(|&c| c as u32).collect(),
        },
        [shape[1], shape[2]],
    ))
}

/// MNIST in its IDX files: `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
/// `t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte` in `dir`.
pub fn mnist_idx(dir: &Path) -> Result<Dataset, DataError> {
    let (train, hw) = idx_split(dir, "train-images-idx3-ubyte", "train-labels-idx1-ubyte")?;
    let (test, hw2) = idx_split(dir, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")?;
    if hw != hw2 {
        return Err(file_err(
            &dir.join("t10k-images-idx3-ubyte"),
            format!("images are {hw2:?}, the training images {hw:?}"),
        ));
    }
    Ok(Dataset {
        name: String::new(),
        shape: vec![1, hw[0], hw[1]],
        classes: 10,
        class_names: (0..10).map(|i| i.to_string()).collect(),
        train,
        test,
    })
}

/// CIFAR-10 in its binary version: `data_batch_1.bin` .. `data_batch_5.bin` (those present)
/// and `test_batch.bin` in `dir`; each record is a label byte and 3x32x32 pixel bytes.
pub fn cifar10_bin(dir: &Path) -> Result<Dataset, DataError> {
    const REC: usize = 1 + 3 * 32 * 32;
    let read_batch = |file: &Path, out: &mut Split| -> Result<(), DataError> {
        let b = read(file)?;
        if b.is_empty() || b.len() % REC != 0 {
            return Err(file_err(
                file,
                format!(
                    "{} bytes is not a whole number of {REC}-byte records",
                    b.len()
                ),
            ));
        }
        for (i, r) in b.chunks(REC).enumerate() {
            if r[0] > 9 {
                return Err(file_err(
                    file,
                    format!("record {i}: label {} is over 9", r[0]),
                ));
            }
            out.y.push(r[0] as u32);
            out.x.extend(r[1..].iter().map(|&p| p as f32 / 255.0));
        }
        Ok(())
    };
    let mut train = Split::default();
    let mut found = 0;
    for i in 1..=5 {
        let f = dir.join(format!("data_batch_{i}.bin"));
        if f.exists() {
            read_batch(&f, &mut train)?;
            found += 1;
        }
    }
    if found == 0 {
        return Err(file_err(
            &dir.join("data_batch_1.bin"),
            "no training batch (data_batch_1.bin .. data_batch_5.bin)",
        ));
    }
    let mut test = Split::default();
    read_batch(&dir.join("test_batch.bin"), &mut test)?;
    Ok(Dataset {
        name: String::new(),
        shape: vec![3, 32, 32],
        classes: 10,
        class_names: [
            "airplane",
            "automobile",
            "bird",
            "cat",
            "deer",
            "dog",
            "frog",
            "horse",
            "ship",
            "truck",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect(),
        train,
        test,
    })
}

/// A CSV file of numeric rows whose last column is the class label (an integer from 0); a
/// first row that is not numeric is a header. Every fifth row is held out for testing.
pub fn csv_file(file: &Path) -> Result<Dataset, DataError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(file)
        .map_err(|e| file_err(file, e.to_string()))?;
    let mut rows: Vec<(Vec<f32>, u32)> = Vec::new();
    let mut width = None;
    for (i, rec) in reader.records().enumerate() {
        let rec = rec.map_err(|e| file_err(file, e.to_string()))?;
        let fields: Vec<&str> = rec.iter().map(str::trim).collect();
        let parsed: Result<Vec<f64>, _> = fields.iter().map(|f| f.parse::<f64>()).collect();
        let Ok(vals) = parsed else {
            if i == 0 {
                continue; // a header
            }
            return Err(file_err(
                file,
                format!("row {}: a field is not a number", i + 1),
            ));
        };
        if vals.len() < 2 {
            return Err(file_err(
                file,
                format!("row {}: needs at least one feature and a label", i + 1),
            ));
        }
        if *width.get_or_insert(vals.len()) != vals.len() {
            return Err(file_err(
                file,
                format!(
                    "row {}: {} fields, earlier rows have {}",
                    i + 1,
                    vals.len(),
                    width.unwrap_or(0)
                ),
            ));
        }
        let label = vals[vals.len() - 1];
        if label < 0.0 || label.fract() != 0.0 || label > 1e6 {
            return Err(file_err(
                file,
                format!("row {}: label {label} is not a class number", i + 1),
            ));
        }
        if vals.iter().any(|v| !v.is_finite()) {
            return Err(file_err(
                file,
                format!("row {}: a value is not finite", i + 1),
            ));
        }
        rows.push((
            vals[..vals.len() - 1].iter().map(|&v| v as f32).collect(),
            label as u32,
        ));
    }
    if rows.len() < 2 {
        return Err(file_err(file, "needs at least two rows"));
    }
    let classes = rows.iter().map(|r| r.1).max().unwrap_or(0) as usize + 1;
    let (mut train, mut test) = (Split::default(), Split::default());
    for (i, (x, y)) in rows.into_iter().enumerate() {
        let s = if i % 5 == 4 { &mut test } else { &mut train };
        s.x.extend(x);
        s.y.push(y);
    }
    Ok(Dataset {
        name: String::new(),
        shape: vec![width.unwrap_or(1) - 1],
        classes,
        class_names: (0..classes).map(|i| i.to_string()).collect(),
        train,
        test,
    })
}

/// Reads one `.npy` file into its shape and values as `f32` (unsigned bytes scaled by 1/255).
fn npy(file: &Path) -> Result<(Vec<usize>, Vec<f32>), DataError> {
    let t = candle_core::Tensor::read_npy(file).map_err(|e| file_err(file, e.to_string()))?;
    let scale = if t.dtype() == candle_core::DType::U8 {
        1.0 / 255.0
    } else {
        1.0
    };
    let shape = t.dims().to_vec();
    let v: Vec<f32> = t
        .to_dtype(candle_core::DType::F64)
        .and_then(|t| t.flatten_all())
        .and_then(|t| t.to_vec1::<f64>())
        .map_err(|e| file_err(file, e.to_string()))?
        .into_iter()
        .map(|v| (v * scale) as f32)
        .collect();
    Ok((shape, v))
}

/// NumPy arrays: `x_train.npy`, `y_train.npy`, `x_test.npy`, `y_test.npy` in `dir`; inputs of
/// any shape `[N, ...]`, labels integers of shape `[N]`.
pub fn npy_dir(dir: &Path) -> Result<Dataset, DataError> {
    let split = |x: &str, y: &str| -> Result<(Vec<usize>, Split), DataError> {
        let (fx, fy) = (dir.join(x), dir.join(y));
        let (xs, xv) = npy(&fx)?;
        let (ys, yv) = npy(&fy)?;
        if ys.len() != 1 || xs.is_empty() || xs[0] != ys[0] {
            return Err(file_err(
                &fy,
                format!("labels of shape {ys:?} for inputs of shape {xs:?}"),
            ));
        }
        if let Some(bad) = yv.iter().find(|v| **v < 0.0 || v.fract() != 0.0) {
            return Err(file_err(&fy, format!("label {bad} is not a class number")));
        }
        if xv.iter().any(|v| !v.is_finite()) {
            return Err(file_err(&fx, "a value is not finite"));
        }
        Ok((
            xs[1..].to_vec(),
            Split {
                x: xv,
                y: yv.iter().map(|&v| v as u32).collect(),
            },
        ))
    };
    let (shape, train) = split("x_train.npy", "y_train.npy")?;
    let (shape2, test) = split("x_test.npy", "y_test.npy")?;
    if shape != shape2 {
        return Err(file_err(
            &dir.join("x_test.npy"),
            format!("inputs of shape {shape2:?}, the training inputs {shape:?}"),
        ));
    }
    let classes = train.y.iter().chain(&test.y).max().copied().unwrap_or(0) as usize + 1;
    Ok(Dataset {
        name: String::new(),
        shape,
        classes,
        class_names: (0..classes).map(|i| i.to_string()).collect(),
        train,
        test,
    })
}
