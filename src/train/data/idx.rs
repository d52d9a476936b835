//! MNIST in its IDX files: a big-endian header (magic, then one u32 per dimension) and the
//! data as unsigned bytes.

use std::path::Path;

use super::{file_err, read, DataError, Dataset, Malformed, Split};

/// Parses one IDX file of unsigned bytes with `dims` dimensions: its shape and data. The
/// message says what is wrong (the caller names the file).
pub fn parse_idx(b: &[u8], dims: usize) -> Result<(Vec<usize>, &[u8]), Malformed> {
    let head = 4 + 4 * dims;
    if b.len() < head {
        return Err(Malformed("too short for an IDX header".into()));
    }
    let be_u32 =
        |i: usize| u32::from_be_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
    let magic = be_u32(0);
    let expected = 0x0800 + dims as u32;
    if magic != expected {
        return Err(Malformed(format!(
            "not an IDX file of unsigned bytes with {dims} dimensions (magic {magic:#010x}, expected {expected:#010x})"
        )));
    }
    let shape: Vec<usize> = (1..=dims).map(|i| be_u32(i) as usize).collect();
    let data = b.len() - head;
    // A product past the file's length (or past usize) is a header that lies.
    let n = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .filter(|&n| n == data);
    match n {
        Some(_) => Ok((shape, &b[head..])),
        None => Err(Malformed(format!(
            "the header says {shape:?} but the file has {data} data bytes"
        ))),
    }
}

/// Reads one IDX file.
fn idx(file: &Path, dims: usize) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let b = read(file)?;
    let (shape, data) = parse_idx(&b, dims).map_err(|m| file_err(file, m.0))?;
    Ok((shape, data.to_vec()))
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

#[cfg(test)]
mod tests {
    use super::parse_idx;

    fn header(magic: u32, dims: &[u32]) -> Vec<u8> {
        let mut b = magic.to_be_bytes().to_vec();
        for d in dims {
            b.extend(d.to_be_bytes());
        }
        b
    }

    #[test]
    fn reads_a_well_formed_file() {
        let mut b = header(0x0803, &[2, 2, 3]);
        b.extend(0..12u8);
        let (shape, data) = parse_idx(&b, 3).unwrap();
        assert_eq!(shape, vec![2, 2, 3]);
        assert_eq!(data, &(0..12u8).collect::<Vec<_>>()[..]);
    }

    #[test]
    fn refuses_headers_that_lie() {
        // Dimensions whose product overflows usize: refused, not wrapped or panicking.
        let mut b = header(0x0803, &[u32::MAX, u32::MAX, u32::MAX]);
        b.extend([0u8; 5]);
        assert!(parse_idx(&b, 3).unwrap_err().0.contains("header says"));
        // One byte short, and one dimension short of a header.
        let mut b = header(0x0801, &[4]);
        b.extend([0u8; 3]);
        assert!(parse_idx(&b, 1).is_err());
        assert!(parse_idx(&header(0x0803, &[1, 1]), 3)
            .unwrap_err()
            .0
            .contains("too short"));
        // A float IDX file (type byte 0x0d) is not one of unsigned bytes.
        assert!(parse_idx(&header(0x0d01, &[0]), 1)
            .unwrap_err()
            .0
            .contains("magic"));
    }
}
