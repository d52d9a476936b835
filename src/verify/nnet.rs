//! The NNet text format (Julian, 2016) used by ACAS Xu: `//` comments; a line with the number
//! of layers, the input size, the output size and the largest layer; the layer sizes; an
//! unused flag; input minimums, maximums, means (inputs then output) and ranges; then per layer
//! the weight rows and the biases, one value per comma-separated field.
//!
//! The network is loaded as it computes, in the normalised space that VNN-LIB specs and the
//! ONNX versions of the same networks use; the normalisation constants are returned beside it.

use super::graph::{Affine, Linear, Network};
use super::ParseError;

/// Normalisation constants of an NNet file.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalization {
    /// Input minimums (physical units).
    pub min: Vec<f64>,
    /// Input maximums.
    pub max: Vec<f64>,
    /// Means: one per input, then the output's.
    pub mean: Vec<f64>,
    /// Ranges: one per input, then the output's.
    pub range: Vec<f64>,
}

impl Normalization {
    /// A physical input mapped into the network's space (clamped to min/max first).
    pub fn normalize_input(&self, x: &[f64]) -> Vec<f64> {
        x.iter()
            .enumerate()
            .map(|(i, v)| (v.clamp(self.min[i], self.max[i]) - self.mean[i]) / self.range[i])
            .collect()
    }
}

/// Parses NNet text; errors carry the line number (the caller adds the file name).
pub fn parse(text: &str) -> Result<(Network, Normalization), ParseError> {
    // Every non-comment line, with its number, split into numeric fields.
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//") && !l.trim().is_empty());
    let mut fields = |what: &str| -> Result<(usize, Vec<f64>), ParseError> {
        let (i, l) = lines.next().ok_or_else(|| {
            ParseError(format!(
                "the file ends before the {what} (it may be truncated)"
            ))
        })?;
        let v = l
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| {
                        ParseError(format!("line {}: '{s}' is not a number ({what})", i + 1))
                    })
            })
            .collect::<Result<Vec<f64>, ParseError>>()?;
        Ok((i + 1, v))
    };
    let (line, head) = fields("header")?;
    if head.len() < 3 || head[..3].iter().any(|v| *v < 1.0 || v.fract() != 0.0) {
        return Err(ParseError(format!(
            "line {line}: the header must give the number of layers, the input size and the output size"
        )));
    }
    let (n_layers, n_in, n_out) = (head[0] as usize, head[1] as usize, head[2] as usize);
    if n_layers > 10_000 || n_in > 10_000_000 || n_out > 10_000_000 {
        return Err(ParseError(format!(
            "line {line}: implausible sizes in the header"
        )));
    }
    let (line, sizes) = fields("layer sizes")?;
    if sizes
        .iter()
        .any(|v| *v < 1.0 || v.fract() != 0.0 || *v > 10_000_000.0)
    {
        return Err(ParseError(format!(
            "line {line}: layer sizes are positive whole numbers, got {sizes:?}"
        )));
    }
    let sizes: Vec<usize> = sizes.iter().map(|v| *v as usize).collect();
    if sizes.len() != n_layers + 1 {
        return Err(ParseError(format!(
            "line {line}: {} layer sizes given, the header's {n_layers} layers need {}",
            sizes.len(),
            n_layers + 1
        )));
    }
    if sizes[0] != n_in || sizes[n_layers] != n_out {
        return Err(ParseError(format!(
            "line {line}: the layer sizes run from {} to {}, the header says from {n_in} to {n_out}",
            sizes[0], sizes[n_layers]
        )));
    }
    fields("symmetric flag")?;
    let (line, min) = fields("input minimums")?;
    let (_, max) = fields("input maximums")?;
    let (_, mean) = fields("means")?;
    let (_, range) = fields("ranges")?;
    if min.len() != n_in || max.len() != n_in || mean.len() != n_in + 1 || range.len() != n_in + 1 {
        return Err(ParseError(format!(
            "line {line}: normalisation needs {n_in} minimums and maximums and {} means and ranges",
            n_in + 1
        )));
    }
    let mut layers = Vec::new();
    for k in 0..n_layers {
        let (cols, rows) = (sizes[k], sizes[k + 1]);
        // Reserved as the rows arrive: the sizes line alone does not prove the file holds them.
        let mut w = Vec::with_capacity(rows.saturating_mul(cols).min(1 << 20));
        for r in 0..rows {
            let (line, row) = fields(&format!("weights of layer {}", k + 1))?;
            if row.len() != cols {
                return Err(ParseError(format!(
                    "line {line}: weight row {} of layer {} has {} values, expected {cols}",
                    r + 1,
                    k + 1,
                    row.len()
                )));
            }
            w.extend(row);
        }
        let mut bias = Vec::with_capacity(rows.min(1 << 20));
        for _ in 0..rows {
            let (line, b) = fields(&format!("biases of layer {}", k + 1))?;
            if b.len() != 1 {
                return Err(ParseError(format!(
                    "line {line}: a bias line holds one value, not {}",
                    b.len()
                )));
            }
            bias.push(b[0]);
        }
        layers.push((
            Affine {
                linear: Linear::Dense { rows, cols, w },
                bias,
            },
            k + 1 < n_layers,
        ));
    }
    if let Some((i, _)) = lines.next() {
        return Err(ParseError(format!(
            "line {}: unexpected data after the last layer",
            i + 1
        )));
    }
    let net = Network::chain(vec![n_in], layers).map_err(|e| ParseError(e.to_string()))?;
    Ok((
        net,
        Normalization {
            min,
            max,
            mean,
            range,
        },
    ))
}
