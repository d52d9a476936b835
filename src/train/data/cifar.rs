//! CIFAR-10 in its binary version: records of a label byte and 3x32x32 pixel bytes.

use std::path::Path;

use super::{file_err, read, DataError, Dataset, Malformed, Split};

/// Bytes of one record: the label and the 3x32x32 pixels.
const RECORD: usize = 1 + 3 * 32 * 32;

/// Parses one batch file's records onto `out` (pixels scaled to [0, 1]). The message says
/// what is wrong (the caller names the file); on an error `out` is left as it was.
pub fn parse_cifar_batch(b: &[u8], out: &mut Split) -> Result<(), Malformed> {
    if b.is_empty() || b.len() % RECORD != 0 {
        return Err(Malformed(format!(
            "{} bytes is not a whole number of {RECORD}-byte records",
            b.len()
        )));
    }
    if let Some((i, r)) = b.chunks(RECORD).enumerate().find(|(_, r)| r[0] > 9) {
        return Err(Malformed(format!("record {i}: label {} is over 9", r[0])));
    }
    for r in b.chunks(RECORD) {
        out.y.push(r[0] as u32);
        out.x.extend(r[1..].iter().map(|&p| p as f32 / 255.0));
    }
    Ok(())
}

/// CIFAR-10 in its binary version: `data_batch_1.bin` .. `data_batch_5.bin` (those present)
/// and `test_batch.bin` in `dir`.
pub fn cifar10_bin(dir: &Path) -> Result<Dataset, DataError> {
    let read_batch = |file: &Path, out: &mut Split| -> Result<(), DataError> {
        parse_cifar_batch(&read(file)?, out).map_err(|m| file_err(file, m.0))
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

#[cfg(test)]
mod tests {
    use super::{parse_cifar_batch, RECORD};
    use crate::train::Split;

    #[test]
    fn reads_records_and_refuses_bad_ones_whole() {
        let mut b = vec![0u8; 2 * RECORD];
        b[0] = 3;
        b[1] = 255;
        b[RECORD] = 9;
        let mut out = Split::default();
        parse_cifar_batch(&b, &mut out).unwrap();
        assert_eq!(out.y, vec![3, 9]);
        assert_eq!(out.x.len(), 2 * (RECORD - 1));
        assert_eq!(out.x[0], 1.0);
        // A label over 9 in the second record: nothing of the batch is kept.
        let mut bad = b.clone();
        bad[RECORD] = 10;
        let mut out2 = Split::default();
        let e = parse_cifar_batch(&bad, &mut out2).unwrap_err().0;
        assert!(e.contains("record 1"), "{e}");
        assert!(out2.is_empty() && out2.x.is_empty());
        // Not a whole number of records, and no records at all.
        assert!(parse_cifar_batch(&b[..RECORD + 1], &mut out2).is_err());
        assert!(parse_cifar_batch(&[], &mut out2).is_err());
    }
}
