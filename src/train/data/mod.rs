//! Datasets for training: the embedded `shapes` images (generated, deterministic by seed), and
//! readers for the real formats, one file each: MNIST IDX, CIFAR-10 binary, CSV and NPY. Each
//! reader parses bytes (or text) it is handed, so that hostile files can be tried against it
//! without touching the disk; this module reads the files and names them in errors.
//!
//! Every dataset is a train and a test split of `f32` inputs of one shape (`[C, H, W]` for
//! images, `[F]` for vectors) with integer class labels. Image pixels are scaled to `[0, 1]`.

mod cifar;
mod csv_rows;
mod idx;
mod npy;
mod shapes;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use cifar::{cifar10_bin, parse_cifar_batch};
pub use csv_rows::{csv_file, parse_csv};
pub use idx::{mnist_idx, parse_idx};
pub use npy::{npy_dir, read_npy};
pub use shapes::{shapes, standard_normal, ShapesConfig, SHAPE_CLASSES};

/// The most classes a label file may imply: a label past it is a corrupt file, not a class.
pub const MAX_CLASSES: usize = 1_000_000;

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

/// What is wrong inside a dataset file's bytes, as a parser that is handed the bytes sees it;
/// the reader that opened the file names it ([`DataError::File`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

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

fn read(file: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(file).map_err(|e| file_err(file, e.to_string()))
}
