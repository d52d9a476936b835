//! NumPy arrays: inputs and labels as `.npy` files, read through candle.

use std::path::Path;

use super::{file_err, DataError, Dataset, Split, MAX_CLASSES};

/// Reads one `.npy` file into its shape and values as `f32` (unsigned bytes scaled by 1/255).
pub fn read_npy(file: &Path) -> Result<(Vec<usize>, Vec<f32>), DataError> {
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
        let (xs, xv) = read_npy(&fx)?;
        let (ys, yv) = read_npy(&fy)?;
        if ys.len() != 1 || xs.is_empty() || xs[0] != ys[0] {
            return Err(file_err(
                &fy,
                format!("labels of shape {ys:?} for inputs of shape {xs:?}"),
            ));
        }
        let not_class = |v: &f32| !(*v >= 0.0 && v.fract() == 0.0 && *v < MAX_CLASSES as f32);
        if let Some(bad) = yv.iter().find(|v| not_class(v)) {
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
