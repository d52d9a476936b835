//! A CSV file of numeric rows whose last column is the class label.

use std::path::Path;

use super::{file_err, read, DataError, Dataset, Malformed, Split, MAX_CLASSES};

/// Parses CSV text: numeric rows whose last column is the class label (an integer from 0); a
/// first row that is not numeric is a header. Every fifth row is held out for testing. The
/// message says what is wrong and where (the caller names the file).
pub fn parse_csv(text: &[u8]) -> Result<Dataset, Malformed> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text);
    let mut rows: Vec<(Vec<f32>, u32)> = Vec::new();
    let mut width = None;
    for (i, rec) in reader.records().enumerate() {
        let row = i + 1;
        let rec = rec.map_err(|e| Malformed(e.to_string()))?;
        let parsed: Result<Vec<f64>, _> = rec.iter().map(|f| f.trim().parse::<f64>()).collect();
        let Ok(vals) = parsed else {
            if i == 0 {
                continue; // a header
            }
            return Err(Malformed(format!("row {row}: a field is not a number")));
        };
        if vals.len() < 2 {
            return Err(Malformed(format!(
                "row {row}: needs at least one feature and a label"
            )));
        }
        let w = *width.get_or_insert(vals.len());
        if w != vals.len() {
            return Err(Malformed(format!(
                "row {row}: {} fields, earlier rows have {w}",
                vals.len()
            )));
        }
        let label = vals[vals.len() - 1];
        if label < 0.0 || label.fract() != 0.0 || label >= MAX_CLASSES as f64 {
            return Err(Malformed(format!(
                "row {row}: label {label} is not a class number"
            )));
        }
        if vals.iter().any(|v| !v.is_finite()) {
            return Err(Malformed(format!("row {row}: a value is not finite")));
        }
        rows.push((
            vals[..vals.len() - 1].iter().map(|&v| v as f32).collect(),
            label as u32,
        ));
    }
    if rows.len() < 2 {
        return Err(Malformed("needs at least two rows".into()));
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

/// Reads a CSV dataset file ([`parse_csv`]).
pub fn csv_file(file: &Path) -> Result<Dataset, DataError> {
    parse_csv(&read(file)?).map_err(|m| file_err(file, m.0))
}

#[cfg(test)]
mod tests {
    use super::parse_csv;

    #[test]
    fn header_rows_and_labels() {
        let d = parse_csv(b"a,b,label\n0.5,1,0\n1,2,2\n3,4,1\n5,6,0\n7,8,1\n").unwrap();
        assert_eq!(d.shape, vec![2]);
        assert_eq!(d.classes, 3);
        // Every fifth row is held out.
        assert_eq!((d.train.len(), d.test.len()), (4, 1));
        assert_eq!(d.test.y, vec![1]);
    }

    #[test]
    fn refuses_what_is_not_a_dataset() {
        let e = |t: &[u8]| parse_csv(t).unwrap_err().0;
        assert!(e(b"1,2,0\n1,2\n").contains("row 2"));
        assert!(e(b"1,2,0\n1,2,x\n").contains("not a number"));
        assert!(e(b"1,2,0.5\n1,2,1\n").contains("not a class number"));
        assert!(e(b"1,2,1000000\n1,2,1\n").contains("not a class number"));
        assert!(e(b"1,inf,0\n1,2,1\n").contains("not finite"));
        assert!(e(b"1,0\n").contains("two rows"));
        assert!(e(b"").contains("two rows"));
    }
}
