//! NumPy arrays: inputs and labels as `.npy` files, read through candle.

use std::path::Path;

use super::{file_err, read, DataError, Dataset, Malformed, Split, MAX_CLASSES};

/// Reads one `.npy` file into its shape and values as `f32` (unsigned bytes scaled by 1/255).
pub fn read_npy(file: &Path) -> Result<(Vec<usize>, Vec<f32>), DataError> {
    check_sizes(&read(file)?).map_err(|m| file_err(file, m.0))?;
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

/// Refuses an NPY file whose header promises more data than the file holds, or that candle
/// would misread (big-endian data), before candle allocates what the header says: a corrupt
/// or hostile shape would otherwise exhaust memory.
pub fn check_sizes(b: &[u8]) -> Result<(), Malformed> {
    if b.len() < 10 || &b[..6] != b"\x93NUMPY" {
        return Err(Malformed("not an NPY file (no \\x93NUMPY magic)".into()));
    }
    let (len, start): (usize, usize) = match b[6] {
        1 => (u16::from_le_bytes([b[8], b[9]]) as usize, 10),
        2 if b.len() >= 12 => (u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize, 12),
        v => {
            return Err(Malformed(format!(
                "NPY format version {v} is not supported"
            )))
        }
    };
    let Some(header) = b.get(start..start.saturating_add(len)) else {
        return Err(Malformed("the NPY header is cut short".into()));
    };
    let header = String::from_utf8_lossy(header);
    // candle keeps the last of repeated keys, quoted or not: only one of each is trusted.
    if header.matches("descr").count() != 1 || header.matches("shape").count() != 1 {
        return Err(Malformed(
            "the NPY header must name descr and shape once each".into(),
        ));
    }
    let value_of = |key: &str| -> Option<&str> {
        let at = header.find(key)? + key.len();
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = value_of("'descr'")
        .and_then(|r| r.strip_prefix('\''))
        .and_then(|r| r.split('\'').next())
        .ok_or_else(|| Malformed("the NPY header has no descr".into()))?;
    if descr.starts_with('>') {
        return Err(Malformed(format!(
            "big-endian data ({descr}) is not supported: save it little-endian"
        )));
    }
    let item = match descr.trim_matches(|c| c == '=' || c == '<' || c == '|') {
        "B" | "u1" | "?" | "b1" => 1,
        "e" | "f2" | "h" | "i2" => 2,
        "f" | "f4" | "i" | "i4" | "I" | "u4" => 4,
        "d" | "f8" | "q" | "i8" => 8,
        other => {
            return Err(Malformed(format!(
                "NPY data type '{other}' is not supported"
            )))
        }
    };
    // candle reads the shape as the text between the first '(' and the last ')' of its part
    // of the header: with one of each, that is the tuple checked here.
    if header.matches('(').count() != 1 || header.matches(')').count() != 1 {
        return Err(Malformed(
            "the NPY header's shape must be one tuple of sizes, e.g. (60000, 28, 28)".into(),
        ));
    }
    let (dims, after) = value_of("'shape'")
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.split_once(')'))
        .ok_or_else(|| Malformed("the NPY header has no shape".into()))?;
    // candle takes the shape's text up to the next comma outside parentheses, less brackets
    // and commas at its ends: anything but the next key or the end of the header after the
    // tuple would become part of a size.
    if !matches!(
        after.trim_start().chars().next(),
        None | Some(',') | Some('}')
    ) {
        return Err(Malformed(format!(
            "the NPY header has text after its shape ({dims}): '{}'",
            after.trim().chars().take(20).collect::<String>()
        )));
    }
    let mut need: Option<usize> = Some(item);
    for d in dims.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let d: usize = d
            .parse()
            .map_err(|_| Malformed(format!("NPY shape ({dims}) is not a list of sizes")))?;
        need = need.and_then(|n| n.checked_mul(d));
    }
    let held = b.len() - (start + len);
    match need {
        Some(n) if n <= held => Ok(()),
        _ => Err(Malformed(format!(
            "the header's shape ({dims}) of {descr} needs more than the {held} bytes of data the file holds"
        ))),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn npy(descr: &str, shape: &str, body: &[u8]) -> Vec<u8> {
        let mut head =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        head.push_str(&" ".repeat(63 - (10 + head.len()) % 64));
        head.push('\n');
        let mut b = b"\x93NUMPY\x01\x00".to_vec();
        b.extend((head.len() as u16).to_le_bytes());
        b.extend(head.as_bytes());
        b.extend(body);
        b
    }

    #[test]
    fn sizes_are_checked_against_the_data() {
        assert!(check_sizes(&npy("<f4", "(2, 3)", &[0; 24])).is_ok());
        assert!(check_sizes(&npy("|u1", "()", &[7])).is_ok());
        // A shape past the data, one whose byte count overflows, big-endian data.
        let e = check_sizes(&npy("<f4", "(2, 3)", &[0; 23])).unwrap_err().0;
        assert!(e.contains("needs more than the 23 bytes"), "{e}");
        let huge = format!("({}, {})", usize::MAX, usize::MAX);
        assert!(check_sizes(&npy("<f8", &huge, &[0; 8])).is_err());
        assert!(check_sizes(&npy(">f4", "(1,)", &[0; 4]))
            .unwrap_err()
            .0
            .contains("big-endian"));
        assert!(check_sizes(b"\x93NUMPY\x01\x00\xff\xff{").is_err());
        // A second shape, which candle would take, is refused.
        assert!(check_sizes(&npy("<f4", "(1,), shape: (99999999999,)", &[0; 4])).is_err());
        // Parentheses after the tuple, which candle would read as one huge size (found by
        // fuzzing: candle then tried to allocate exabytes).
        assert!(check_sizes(&npy("<f2", "(,)((((777777777777777777", &[0; 4])).is_err());
        assert!(check_sizes(&npy("<f2", "(,)0000014347467612885", &[0; 4])).is_err());
        assert!(check_sizes(&npy("<f4", "(1,)", &[0; 4])).is_ok());
    }
}
