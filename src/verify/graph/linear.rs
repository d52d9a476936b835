//! Linear maps of the verifier's affine nodes, over flat row-major tensors.
//!
//! Every linear operator of a network becomes one of these: dense matrices (Gemm, MatMul,
//! composed chains), convolutions (groups, dilation, asymmetric padding), element-wise scalings
//! (folded batch norm, constant multiplications), and sparse maps for everything that only
//! picks, averages or broadcasts elements (pooling by averages, padding, slicing, broadcasting
//! a `[C, 1, 1]` gate, the gathers MaxPool is lowered to).

use rayon::prelude::*;

use super::rules::Rows;

/// The linear part of an affine node.
#[derive(Debug, Clone, PartialEq)]
pub enum Linear {
    /// A dense matrix, row-major, `rows = out`, `cols = in`.
    Dense {
        /// Output size.
        rows: usize,
        /// Input size.
        cols: usize,
        /// `rows * cols` weights, row-major.
        w: Vec<f64>,
    },
    /// A 2-D convolution over a `[C, H, W]` input.
    Conv(Conv),
    /// An element-wise scaling.
    Diag(Vec<f64>),
    /// A sparse matrix in compressed rows.
    Sparse(Sparse),
}

/// A 2-D convolution (cross-correlation, as ONNX and PyTorch define it).
#[derive(Debug, Clone, PartialEq)]
pub struct Conv {
    /// Input shape `[C, H, W]`.
    pub input: [usize; 3],
    /// Output shape `[C, H, W]`.
    pub output: [usize; 3],
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride.
    pub stride: [usize; 2],
    /// Zero padding at the top and left (the bottom and right follow from the output size).
    pub padding: [usize; 2],
    /// Dilation.
    pub dilation: [usize; 2],
    /// Channel groups (`groups == C` is depthwise).
    pub groups: usize,
    /// Weights `[out_c, in_c / groups, kh, kw]`, row-major.
    pub w: Vec<f64>,
}

impl Conv {
    /// Calls `f(output index, input index, weight)` for every connection.
    pub fn for_each(&self, f: impl FnMut(usize, usize, f64)) {
        self.for_each_of(|_| true, f)
    }

    /// `lambda^T W` added into `out`, visiting only the outputs whose coefficient is nonzero
    /// (back-substituted rows start as unit vectors, so most are zero early on).
    pub fn transposed_add(&self, lambda: &[f64], out: &mut [f64]) {
        self.for_each_of(|o| lambda[o] != 0.0, |o, i, w| out[i] += w * lambda[o]);
    }

    /// `W X` for rows `X` over the input (see [`Linear::apply_rows`]) written into `out`: at
    /// each output position, the input rows of the window are gathered into a matrix and
    /// multiplied by each group's weights, `[out_c / groups, in_c / groups * kh * kw]`.
    fn apply_rows(&self, x: &Rows, out: &mut Rows) {
        let cols = x.dim;
        let ic = self.input[0];
        let [oc, oh, ow] = self.output;
        let [kh, kw] = self.kernel;
        let (icg, ocg) = (ic / self.groups, oc / self.groups);
        let k = icg * kh * kw;
        let positions = oh * ow;
        // Positions in blocks, each block's results gathered before they are scattered.
        let block = 16;
        let results: Vec<Vec<f64>> = (0..positions.div_ceil(block))
            .into_par_iter()
            .map(|blk| {
                let span = blk * block..((blk + 1) * block).min(positions);
                let mut res = vec![0.0; span.len() * oc * cols];
                let mut a = vec![0.0; k * cols];
                for (q, p) in span.enumerate() {
                    let (y, xx) = (p / ow, p % ow);
                    for g in 0..self.groups {
                        a.iter_mut().for_each(|v| *v = 0.0);
                        self.window(g, y, xx, |tap, row| {
                            a[tap * cols..(tap + 1) * cols].copy_from_slice(x.row(row));
                        });
                        let dst = &mut res[(q * oc + g * ocg) * cols..][..ocg * cols];
                        // SAFETY: the weights of group g are ocg rows of k values, `a` holds
                        // k rows of cols values and `dst` ocg rows of cols values, row-major.
                        unsafe {
                            matrixmultiply::dgemm(
                                ocg,
                                k,
                                cols,
                                1.0,
                                self.w[g * ocg * k..].as_ptr(),
                                k as isize,
                                1,
                                a.as_ptr(),
                                cols as isize,
                                1,
                                0.0,
                                dst.as_mut_ptr(),
                                cols as isize,
                                1,
                            );
                        }
                    }
                }
                res
            })
            .collect();
        for (blk, res) in results.iter().enumerate() {
            for (q, chunk) in res.chunks(oc * cols).enumerate() {
                let p = blk * block + q;
                for o in 0..oc {
                    out.row_mut(o * positions + p)
                        .copy_from_slice(&chunk[o * cols..(o + 1) * cols]);
                }
            }
        }
    }

    /// Calls `f(tap, input index)` for every input element in the window of output position
    /// `(y, x)` of group `g` that is not padding; `tap = (c * kh + ky) * kw + kx` indexes the
    /// weights of one output channel (`c` the channel within the group).
    fn window(&self, g: usize, y: usize, x: usize, mut f: impl FnMut(usize, usize)) {
        let [ic, ih, iw] = self.input;
        let [kh, kw] = self.kernel;
        let icg = ic / self.groups;
        for c in 0..icg {
            let ci = g * icg + c;
            for ky in 0..kh {
                let iy = (y * self.stride[0] + ky * self.dilation[0]) as isize
                    - self.padding[0] as isize;
                if iy < 0 || iy >= ih as isize {
                    continue;
                }
                for kx in 0..kw {
                    let ix = (x * self.stride[1] + kx * self.dilation[1]) as isize
                        - self.padding[1] as isize;
                    if ix < 0 || ix >= iw as isize {
                        continue;
                    }
                    f(
                        (c * kh + ky) * kw + kx,
                        (ci * ih + iy as usize) * iw + ix as usize,
                    );
                }
            }
        }
    }

    /// [`Conv::for_each`] over the output channels-and-positions `o` with `keep(o)`.
    fn for_each_of(&self, keep: impl Fn(usize) -> bool, mut f: impl FnMut(usize, usize, f64)) {
        for o in 0..self.output[0] {
            self.for_each_in_channel(o, &keep, &mut f);
        }
    }

    /// [`Conv::for_each_of`] for the outputs of channel `o`.
    fn for_each_in_channel(
        &self,
        o: usize,
        keep: impl Fn(usize) -> bool,
        mut f: impl FnMut(usize, usize, f64),
    ) {
        let [oc, oh, ow] = self.output;
        let taps = self.w.len() / oc;
        let g = o / (oc / self.groups);
        for y in 0..oh {
            for x in 0..ow {
                let out_idx = (o * oh + y) * ow + x;
                if keep(out_idx) {
                    let base = o * taps;
                    self.window(g, y, x, |tap, in_idx| {
                        f(out_idx, in_idx, self.w[base + tap])
                    });
                }
            }
        }
    }
}

/// A sparse matrix: row `r` holds `(cols[k], vals[k])` for `k` in `starts[r]..starts[r + 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sparse {
    /// Input size.
    pub cols: usize,
    /// Row starts, `rows + 1` of them.
    pub starts: Vec<usize>,
    /// Column of each entry.
    pub index: Vec<usize>,
    /// Value of each entry.
    pub vals: Vec<f64>,
}

impl Sparse {
    /// A sparse matrix from its rows, each a list of `(column, value)`.
    pub fn from_rows(cols: usize, rows: &[Vec<(usize, f64)>]) -> Sparse {
        let mut s = Sparse {
            cols,
            starts: vec![0],
            index: Vec::new(),
            vals: Vec::new(),
        };
        for row in rows {
            for &(c, v) in row {
                s.index.push(c);
                s.vals.push(v);
            }
            s.starts.push(s.index.len());
        }
        s
    }

    /// Output size.
    pub fn rows(&self) -> usize {
        self.starts.len() - 1
    }

    /// The entries of row `r`.
    pub fn row(&self, r: usize) -> impl Iterator<Item = (usize, f64)> + '_ {
        let span = self.starts[r]..self.starts[r + 1];
        self.index[span.clone()]
            .iter()
            .copied()
            .zip(self.vals[span].iter().copied())
    }
}

impl Linear {
    /// Input size.
    pub fn in_dim(&self) -> usize {
        match self {
            Linear::Dense { cols, .. } => *cols,
            Linear::Conv(c) => c.input.iter().product(),
            Linear::Diag(d) => d.len(),
            Linear::Sparse(s) => s.cols,
        }
    }

    /// Output size.
    pub fn out_dim(&self) -> usize {
        match self {
            Linear::Dense { rows, .. } => *rows,
            Linear::Conv(c) => c.output.iter().product(),
            Linear::Diag(d) => d.len(),
            Linear::Sparse(s) => s.rows(),
        }
    }

    /// Multiply-adds of one product with a vector.
    pub fn connections(&self) -> usize {
        match self {
            Linear::Dense { rows, cols, .. } => rows * cols,
            Linear::Conv(c) => {
                c.output.iter().product::<usize>()
                    * (c.input[0] / c.groups)
                    * c.kernel[0]
                    * c.kernel[1]
            }
            Linear::Diag(d) => d.len(),
            Linear::Sparse(s) => s.vals.len(),
        }
    }

    /// The weights, for checks.
    pub fn weights(&self) -> &[f64] {
        match self {
            Linear::Dense { w, .. } | Linear::Diag(w) => w,
            Linear::Conv(c) => &c.w,
            Linear::Sparse(s) => &s.vals,
        }
    }

    /// `W x` written into `out`.
    pub fn apply(&self, x: &[f64], out: &mut [f64]) {
        match self {
            Linear::Dense { rows, cols, w } => {
                for r in 0..*rows {
                    out[r] = dot(&w[r * cols..(r + 1) * cols], x);
                }
            }
            Linear::Diag(d) => {
                for i in 0..d.len() {
                    out[i] = d[i] * x[i];
                }
            }
            Linear::Conv(c) => {
                out.iter_mut().for_each(|o| *o = 0.0);
                c.for_each(|o, i, w| out[o] += w * x[i]);
            }
            Linear::Sparse(s) => {
                for (r, o) in out.iter_mut().enumerate() {
                    *o = s.row(r).map(|(c, v)| v * x[c]).sum();
                }
            }
        }
    }

    /// `|W| r` for a nonnegative vector `r` (the radius of an interval's image).
    pub fn apply_abs(&self, r: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; self.out_dim()];
        match self {
            Linear::Dense { rows, cols, w } => {
                for i in 0..*rows {
                    out[i] = w[i * cols..(i + 1) * cols]
                        .iter()
                        .zip(r)
                        .map(|(a, b)| a.abs() * b)
                        .sum();
                }
            }
            Linear::Diag(d) => {
                for i in 0..d.len() {
                    out[i] = d[i].abs() * r[i];
                }
            }
            Linear::Conv(c) => c.for_each(|o, i, w| out[o] += w.abs() * r[i]),
            Linear::Sparse(s) => {
                for (i, o) in out.iter_mut().enumerate() {
                    *o = s.row(i).map(|(c, v)| v.abs() * r[c]).sum();
                }
            }
        }
        out
    }

    /// `lambda^T W` (a row vector over the input) added into `out`.
    pub fn apply_transposed_add(&self, lambda: &[f64], out: &mut [f64]) {
        match self {
            Linear::Dense { rows, cols, w } => {
                for r in 0..*rows {
                    let l = lambda[r];
                    if l != 0.0 {
                        for (o, wv) in out.iter_mut().zip(&w[r * cols..(r + 1) * cols]) {
                            *o += l * wv;
                        }
                    }
                }
            }
            Linear::Diag(d) => {
                for i in 0..d.len() {
                    out[i] += lambda[i] * d[i];
                }
            }
            Linear::Conv(c) => c.transposed_add(lambda, out),
            Linear::Sparse(s) => {
                for (r, l) in lambda.iter().enumerate() {
                    if *l != 0.0 {
                        for (c, v) in s.row(r) {
                            out[c] += l * v;
                        }
                    }
                }
            }
        }
    }

    /// `Lambda W` for `n` row vectors `Lambda` (`n x out`, row-major): `n x in`, row-major.
    /// Dense matrices go through a blocked matrix product.
    pub fn left_multiply(&self, n: usize, lambda: &[f64]) -> Vec<f64> {
        let (rows, cols) = (self.out_dim(), self.in_dim());
        let mut out = vec![0.0; n * cols];
        match self {
            Linear::Dense { w, .. } => {
                if n > 0 && rows > 0 && cols > 0 {
                    // SAFETY: the slices hold n*rows, rows*cols and n*cols values, row-major,
                    // as the strides say.
                    unsafe {
                        matrixmultiply::dgemm(
                            n,
                            rows,
                            cols,
                            1.0,
                            lambda.as_ptr(),
                            rows as isize,
                            1,
                            w.as_ptr(),
                            cols as isize,
                            1,
                            0.0,
                            out.as_mut_ptr(),
                            cols as isize,
                            1,
                        );
                    }
                }
            }
            _ => {
                for r in 0..n {
                    self.apply_transposed_add(
                        &lambda[r * rows..(r + 1) * rows],
                        &mut out[r * cols..(r + 1) * cols],
                    );
                }
            }
        }
        out
    }

    /// `W X` for rows `X` over this map's inputs: each output row is the weighted sum of the
    /// input rows its element depends on (how zonotopes go through affine maps). Dense maps
    /// and convolutions are blocked matrix products (a convolution's one per output position,
    /// over the input rows in its window); the others one axpy per weight.
    pub fn apply_rows(&self, x: &Rows) -> Rows {
        let cols = x.dim;
        let n_out = self.out_dim();
        let mut out = Rows::zeros(n_out, cols);
        let axpy = |o: &mut [f64], w: f64, v: &[f64]| {
            for (a, b) in o.iter_mut().zip(v) {
                *a += w * b;
            }
        };
        if n_out == 0 || cols == 0 {
            return out;
        }
        match self {
            Linear::Dense {
                rows,
                cols: n_in,
                w,
            } => {
                if *n_in > 0 {
                    // SAFETY: the slices hold rows*n_in, n_in*cols and rows*cols values,
                    // row-major, as the strides say.
                    unsafe {
                        matrixmultiply::dgemm(
                            *rows,
                            *n_in,
                            cols,
                            1.0,
                            w.as_ptr(),
                            *n_in as isize,
                            1,
                            x.data.as_ptr(),
                            cols as isize,
                            1,
                            0.0,
                            out.data.as_mut_ptr(),
                            cols as isize,
                            1,
                        );
                    }
                }
            }
            Linear::Diag(d) => {
                out.data
                    .par_chunks_mut(cols)
                    .zip(d.par_iter())
                    .enumerate()
                    .for_each(|(i, (o, w))| axpy(o, *w, x.row(i)));
            }
            Linear::Conv(c) => c.apply_rows(x, &mut out),
            Linear::Sparse(s) => {
                out.data
                    .par_chunks_mut(cols)
                    .enumerate()
                    .for_each(|(r, o)| {
                        for (c, v) in s.row(r) {
                            axpy(o, v, x.row(c));
                        }
                    });
            }
        }
        out
    }

    /// Calls `f(row, column, weight)` for every nonzero weight.
    pub fn for_each_nonzero(&self, mut f: impl FnMut(usize, usize, f64)) {
        match self {
            Linear::Dense { rows, cols, w } => {
                for r in 0..*rows {
                    for c in 0..*cols {
                        let v = w[r * cols + c];
                        if v != 0.0 {
                            f(r, c, v);
                        }
                    }
                }
            }
            Linear::Diag(d) => {
                for (i, v) in d.iter().enumerate() {
                    if *v != 0.0 {
                        f(i, i, *v);
                    }
                }
            }
            Linear::Conv(c) => c.for_each(|o, i, w| {
                if w != 0.0 {
                    f(o, i, w)
                }
            }),
            Linear::Sparse(s) => {
                for r in 0..s.rows() {
                    for (c, v) in s.row(r) {
                        if v != 0.0 {
                            f(r, c, v);
                        }
                    }
                }
            }
        }
    }

    /// The map as a dense row-major matrix.
    pub fn to_dense(&self) -> Vec<f64> {
        match self {
            Linear::Dense { w, .. } => w.clone(),
            _ => {
                let cols = self.in_dim();
                let mut m = vec![0.0; self.out_dim() * cols];
                self.for_each_nonzero(|r, c, v| m[r * cols + c] += v);
                m
            }
        }
    }
}

/// An affine map `W x + b`.
#[derive(Debug, Clone, PartialEq)]
pub struct Affine {
    /// `W`.
    pub linear: Linear,
    /// `b`, of the output size.
    pub bias: Vec<f64>,
}

impl Affine {
    /// `W x + b`.
    pub fn forward(&self, x: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; self.linear.out_dim()];
        self.linear.apply(x, &mut out);
        for (o, b) in out.iter_mut().zip(&self.bias) {
            *o += b;
        }
        out
    }

    /// `other(self(x))` as one map when that keeps it small: dense maps and scalings compose
    /// into one, and a convolution absorbs a per-channel scaling that follows it (a batch
    /// norm). `None` otherwise.
    pub fn fold(&self, other: &Affine) -> Option<Affine> {
        let small = |l: &Linear| matches!(l, Linear::Dense { .. } | Linear::Diag(_));
        if small(&self.linear) && small(&other.linear) {
            return Some(self.then(other));
        }
        let (Linear::Conv(c), Linear::Diag(d)) = (&self.linear, &other.linear) else {
            return None;
        };
        let per = c.output[1] * c.output[2];
        let per_channel = d.chunks(per).all(|ch| ch.iter().all(|v| *v == ch[0]));
        if !per_channel || per == 0 {
            return None;
        }
        let mut conv = c.clone();
        let per_out = conv.w.len() / c.output[0];
        for (o, chunk) in conv.w.chunks_mut(per_out).enumerate() {
            chunk.iter_mut().for_each(|v| *v *= d[o * per]);
        }
        Some(Affine {
            linear: Linear::Conv(conv),
            bias: other.forward(&self.bias),
        })
    }

    /// The composition `other(self(x))` as one dense affine map.
    pub fn then(&self, other: &Affine) -> Affine {
        let (n_in, n_mid, n_out) = (
            self.linear.in_dim(),
            self.linear.out_dim(),
            other.linear.out_dim(),
        );
        let a = self.linear.to_dense();
        let w = match &other.linear {
            Linear::Diag(d) => {
                let mut w = a;
                for (r, s) in d.iter().enumerate() {
                    w[r * n_in..(r + 1) * n_in].iter_mut().for_each(|v| *v *= s);
                }
                w
            }
            _ => {
                let b = other.linear.to_dense();
                let mut w = vec![0.0; n_out * n_in];
                for r in 0..n_out {
                    for k in 0..n_mid {
                        let bk = b[r * n_mid + k];
                        if bk != 0.0 {
                            for c in 0..n_in {
                                w[r * n_in + c] += bk * a[k * n_in + c];
                            }
                        }
                    }
                }
                w
            }
        };
        Affine {
            linear: match (&self.linear, &other.linear) {
                (Linear::Diag(_), Linear::Diag(_)) => {
                    Linear::Diag((0..n_in).map(|i| w[i * n_in + i]).collect())
                }
                _ => Linear::Dense {
                    rows: n_out,
                    cols: n_in,
                    w,
                },
            },
            bias: other.forward(&self.bias),
        }
    }
}

/// Dot product.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    // Eight independent partial sums, so that the compiler can keep them in vector registers
    // (a single running sum is one long dependency chain).
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    (acc[0] + acc[4]) + (acc[1] + acc[5]) + (acc[2] + acc[6]) + (acc[3] + acc[7]) + tail
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(groups: usize, dilation: [usize; 2]) -> Linear {
        // 4 input channels 5x5, 4 output channels, 2x2 kernel, padding 1.
        let icg = 4 / groups;
        let w: Vec<f64> = (0..4 * icg * 4).map(|i| (i as f64 * 0.37).sin()).collect();
        let span = |n: usize, d: usize| (n + 2 - (d + 1)) + 1;
        Linear::Conv(Conv {
            input: [4, 5, 5],
            output: [4, span(5, dilation[0]), span(5, dilation[1])],
            kernel: [2, 2],
            stride: [1, 1],
            padding: [1, 1],
            dilation,
            groups,
            w,
        })
    }

    #[test]
    fn transposes_are_adjoints_and_products_agree() {
        let sparse = Linear::Sparse(Sparse::from_rows(
            3,
            &[vec![(0, 1.0), (2, -2.0)], vec![], vec![(1, 0.5)]],
        ));
        let strided = Linear::Conv(Conv {
            input: [2, 5, 4],
            output: [4, 3, 2],
            kernel: [3, 3],
            stride: [2, 2],
            padding: [1, 1],
            dilation: [1, 1],
            groups: 2,
            w: (0..4 * 9).map(|i| (i as f64 * 0.53).cos()).collect(),
        });
        for l in [
            conv(1, [1, 1]),
            conv(2, [2, 1]),
            conv(4, [1, 1]),
            strided,
            sparse,
        ] {
            let (n_in, n_out) = (l.in_dim(), l.out_dim());
            let x: Vec<f64> = (0..n_in).map(|i| (i as f64 * 1.3).cos()).collect();
            let y: Vec<f64> = (0..n_out).map(|i| (i as f64 * 0.7).sin()).collect();
            let mut wx = vec![0.0; n_out];
            l.apply(&x, &mut wx);
            let mut wty = vec![0.0; n_in];
            l.apply_transposed_add(&y, &mut wty);
            assert!((dot(&wx, &y) - dot(&x, &wty)).abs() < 1e-12);
            let dense = Linear::Dense {
                rows: n_out,
                cols: n_in,
                w: l.to_dense(),
            };
            let mut dx = vec![0.0; n_out];
            dense.apply(&x, &mut dx);
            assert!(dx.iter().zip(&wx).all(|(a, b)| (a - b).abs() < 1e-12));
            // W applied to rows agrees with the dense matrix, column by column.
            let cols = 3;
            let rows = Rows {
                n: n_in,
                dim: cols,
                data: (0..n_in * cols).map(|i| (i as f64 * 0.91).sin()).collect(),
            };
            let got = l.apply_rows(&rows);
            for c in 0..cols {
                let col: Vec<f64> = (0..n_in).map(|r| rows.data[r * cols + c]).collect();
                let mut want = vec![0.0; n_out];
                dense.apply(&col, &mut want);
                for r in 0..n_out {
                    assert!((got.data[r * cols + c] - want[r]).abs() < 1e-12);
                }
            }
            let two: Vec<f64> = y.iter().chain(&y).map(|v| v * 2.0).collect();
            let prod = dense.left_multiply(2, &two);
            assert!(prod[..n_in]
                .iter()
                .chain(&prod[n_in..])
                .zip(wty.iter().chain(&wty))
                .all(|(a, b)| (a - 2.0 * b).abs() < 1e-12));
        }
    }

    #[test]
    fn composed_maps_compute_the_same_function() {
        let a = Affine {
            linear: Linear::Dense {
                rows: 3,
                cols: 2,
                w: vec![1.0, -2.0, 0.5, 0.25, -1.0, 3.0],
            },
            bias: vec![0.1, 0.2, 0.3],
        };
        let b = Affine {
            linear: Linear::Diag(vec![2.0, -1.0, 0.5]),
            bias: vec![1.0, 1.0, 1.0],
        };
        let x = [0.7, -0.3];
        let want = b.forward(&a.forward(&x));
        let got = a.then(&b).forward(&x);
        assert!(want.iter().zip(&got).all(|(w, g)| (w - g).abs() < 1e-12));
    }
}
