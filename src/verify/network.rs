//! The form every verification engine works on: a feed-forward chain of affine maps and ReLUs
//! over a flattened input, in f64.
//!
//! Loaders (ONNX, NNet, IR JSON) turn their files into this chain: Gemm, MatMul, Conv, folded
//! batch norm, additions and scalings by constants all become [`Affine`] layers; Flatten and
//! Reshape disappear (the data is flat already, in row-major C-H-W order).

use serde::{Deserialize, Serialize};

/// The linear part of an affine layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// A 2-D convolution over a `[C, H, W]` input (groups 1, dilation 1).
    Conv {
        /// Input shape `[C, H, W]`.
        input: [usize; 3],
        /// Output shape `[C, H, W]`.
        output: [usize; 3],
        /// Kernel height and width.
        kernel: [usize; 2],
        /// Stride.
        stride: [usize; 2],
        /// Padding (top/left; the same bottom/right).
        padding: [usize; 2],
        /// Weights `[out_c, in_c, kh, kw]`, row-major.
        w: Vec<f64>,
    },
    /// An element-wise scaling.
    Diag(Vec<f64>),
}

impl Linear {
    /// Input size.
    pub fn in_dim(&self) -> usize {
        match self {
            Linear::Dense { cols, .. } => *cols,
            Linear::Conv { input, .. } => input.iter().product(),
            Linear::Diag(d) => d.len(),
        }
    }

    /// Output size.
    pub fn out_dim(&self) -> usize {
        match self {
            Linear::Dense { rows, .. } => *rows,
            Linear::Conv { output, .. } => output.iter().product(),
            Linear::Diag(d) => d.len(),
        }
    }

    /// `W x` written into `out`.
    pub fn apply(&self, x: &[f64], out: &mut [f64]) {
        match self {
            Linear::Dense { rows, cols, w } => {
                for r in 0..*rows {
                    let row = &w[r * cols..(r + 1) * cols];
                    out[r] = dot(row, x);
                }
            }
            Linear::Diag(d) => {
                for i in 0..d.len() {
                    out[i] = d[i] * x[i];
                }
            }
            Linear::Conv { .. } => {
                out.iter_mut().for_each(|o| *o = 0.0);
                self.conv_for_each(|o, i, w| out[o] += w * x[i]);
            }
        }
    }

    /// `lambda^T W` (a row vector over the input) added into `out`.
    pub fn apply_transposed_add(&self, lambda: &[f64], out: &mut [f64]) {
        match self {
            Linear::Dense { rows, cols, w } => {
                for r in 0..*rows {
                    let l = lambda[r];
                    if l != 0.0 {
                        let row = &w[r * cols..(r + 1) * cols];
                        for (o, wv) in out.iter_mut().zip(row) {
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
            Linear::Conv { .. } => self.conv_for_each(|o, i, w| out[i] += w * lambda[o]),
        }
    }

    /// Calls `f(output index, input index, weight)` for every connection of a convolution.
    fn conv_for_each(&self, mut f: impl FnMut(usize, usize, f64)) {
        let Linear::Conv {
            input,
            output,
            kernel,
            stride,
            padding,
            w,
        } = self
        else {
            return;
        };
        let [ic, ih, iw] = *input;
        let [oc, oh, ow] = *output;
        let [kh, kw] = *kernel;
        for o in 0..oc {
            for y in 0..oh {
                for x in 0..ow {
                    let out_idx = (o * oh + y) * ow + x;
                    for c in 0..ic {
                        for ky in 0..kh {
                            let iy = (y * stride[0] + ky) as isize - padding[0] as isize;
                            if iy < 0 || iy >= ih as isize {
                                continue;
                            }
                            for kx in 0..kw {
                                let ix = (x * stride[1] + kx) as isize - padding[1] as isize;
                                if ix < 0 || ix >= iw as isize {
                                    continue;
                                }
                                let in_idx = (c * ih + iy as usize) * iw + ix as usize;
                                let wv = w[((o * ic + c) * kh + ky) * kw + kx];
                                f(out_idx, in_idx, wv);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The layer as a dense row-major matrix.
    pub fn to_dense(&self) -> Vec<f64> {
        let (rows, cols) = (self.out_dim(), self.in_dim());
        match self {
            Linear::Dense { w, .. } => w.clone(),
            _ => {
                let mut m = vec![0.0; rows * cols];
                let mut e = vec![0.0; rows];
                for r in 0..rows {
                    e.iter_mut().for_each(|v| *v = 0.0);
                    e[r] = 1.0;
                    self.apply_transposed_add(&e, &mut m[r * cols..(r + 1) * cols]);
                }
                m
            }
        }
    }
}

/// An affine layer `W x + b`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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

    /// The composition `other(self(x))` as one dense affine layer.
    pub fn then(&self, other: &Affine) -> Affine {
        let (n_in, n_mid, n_out) = (
            self.linear.in_dim(),
            self.linear.out_dim(),
            other.linear.out_dim(),
        );
        let a = self.linear.to_dense();
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
        Affine {
            linear: Linear::Dense {
                rows: n_out,
                cols: n_in,
                w,
            },
            bias: other.forward(&self.bias),
        }
    }
}

/// One layer of a [`Network`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Layer {
    /// `W x + b`.
    Affine(Affine),
    /// `max(x, 0)` element-wise.
    Relu,
}

/// A feed-forward ReLU network over a flattened input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    /// The input's shape before flattening, e.g. `[5]` or `[1, 28, 28]`.
    pub input_shape: Vec<usize>,
    /// Layers in order.
    pub layers: Vec<Layer>,
}

/// What goes wrong when a network is put together.
pub type BuildError = String;

impl Network {
    /// A network from layers; checks that sizes chain, and merges consecutive affine layers.
    pub fn new(input_shape: Vec<usize>, layers: Vec<Layer>) -> Result<Network, BuildError> {
        let mut dim: usize = input_shape.iter().product();
        if dim == 0 {
            return Err("the network's input is empty".into());
        }
        let mut merged: Vec<Layer> = Vec::with_capacity(layers.len());
        for (i, layer) in layers.into_iter().enumerate() {
            if let Layer::Affine(a) = &layer {
                if a.linear.in_dim() != dim {
                    return Err(format!(
                        "layer {i} takes {} inputs but receives {dim}",
                        a.linear.in_dim()
                    ));
                }
                if a.bias.len() != a.linear.out_dim() {
                    return Err(format!(
                        "layer {i} has {} biases for {} outputs",
                        a.bias.len(),
                        a.linear.out_dim()
                    ));
                }
                if a.bias.iter().any(|v| !v.is_finite()) || !linear_finite(&a.linear) {
                    return Err(format!(
                        "layer {i} has a weight that is not a finite number"
                    ));
                }
                dim = a.linear.out_dim();
                if let Some(Layer::Affine(prev)) = merged.last() {
                    // Two affine maps in a row: compose them unless that would densify a
                    // convolution (a conv then a bias-only or scaling step stays sparse).
                    let dense_ok = !matches!(prev.linear, Linear::Conv { .. })
                        && !matches!(a.linear, Linear::Conv { .. });
                    if dense_ok {
                        let composed = prev.then(a);
                        merged.pop();
                        merged.push(Layer::Affine(composed));
                        continue;
                    }
                }
            }
            merged.push(layer);
        }
        if !merged.iter().any(|l| matches!(l, Layer::Affine(_))) {
            return Err("the network has no affine layer".into());
        }
        Ok(Network {
            input_shape,
            layers: merged,
        })
    }

    /// Input size.
    pub fn input_dim(&self) -> usize {
        self.input_shape.iter().product()
    }

    /// Output size.
    pub fn output_dim(&self) -> usize {
        self.layers
            .iter()
            .rev()
            .find_map(|l| match l {
                Layer::Affine(a) => Some(a.linear.out_dim()),
                Layer::Relu => None,
            })
            .unwrap_or(self.input_dim())
    }

    /// A plain forward pass in f64.
    pub fn forward(&self, x: &[f64]) -> Vec<f64> {
        let mut v = x.to_vec();
        for layer in &self.layers {
            match layer {
                Layer::Affine(a) => v = a.forward(&v),
                Layer::Relu => v.iter_mut().for_each(|z| *z = z.max(0.0)),
            }
        }
        v
    }

    /// The gradient of `c^T f(x)` with respect to `x` (a ReLU's derivative at 0 taken as 0).
    pub fn gradient(&self, x: &[f64], c: &[f64]) -> Vec<f64> {
        // Forward, keeping each ReLU's input.
        let mut pre: Vec<Vec<f64>> = Vec::new();
        let mut v = x.to_vec();
        for layer in &self.layers {
            match layer {
                Layer::Affine(a) => v = a.forward(&v),
                Layer::Relu => {
                    pre.push(v.clone());
                    v.iter_mut().for_each(|z| *z = z.max(0.0));
                }
            }
        }
        let mut g = c.to_vec();
        for layer in self.layers.iter().rev() {
            match layer {
                Layer::Affine(a) => {
                    let mut back = vec![0.0; a.linear.in_dim()];
                    a.linear.apply_transposed_add(&g, &mut back);
                    g = back;
                }
                Layer::Relu => {
                    let z = pre.pop().expect("one input kept per relu");
                    for (gi, zi) in g.iter_mut().zip(&z) {
                        if *zi <= 0.0 {
                            *gi = 0.0;
                        }
                    }
                }
            }
        }
        g
    }

    /// Number of ReLU neurons.
    pub fn relu_count(&self) -> usize {
        let mut dim = self.input_dim();
        let mut n = 0;
        for l in &self.layers {
            match l {
                Layer::Affine(a) => dim = a.linear.out_dim(),
                Layer::Relu => n += dim,
            }
        }
        n
    }
}

fn linear_finite(l: &Linear) -> bool {
    match l {
        Linear::Dense { w, .. } | Linear::Conv { w, .. } | Linear::Diag(w) => {
            w.iter().all(|v| v.is_finite())
        }
    }
}

/// Dot product.
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv_layer() -> Linear {
        // 2 input channels 3x3, 2 output channels, 2x2 kernel, stride 1, padding 1 -> 4x4.
        let w: Vec<f64> = (0..16).map(|i| (i as f64 * 0.37).sin()).collect();
        Linear::Conv {
            input: [2, 3, 3],
            output: [2, 4, 4],
            kernel: [2, 2],
            stride: [1, 1],
            padding: [1, 1],
            w,
        }
    }

    #[test]
    fn conv_transpose_is_the_adjoint() {
        // <W x, y> = <x, W^T y> for random x, y.
        let l = conv_layer();
        let x: Vec<f64> = (0..18).map(|i| (i as f64 * 1.3).cos()).collect();
        let y: Vec<f64> = (0..32).map(|i| (i as f64 * 0.7).sin()).collect();
        let mut wx = vec![0.0; 32];
        l.apply(&x, &mut wx);
        let mut wty = vec![0.0; 18];
        l.apply_transposed_add(&y, &mut wty);
        assert!((dot(&wx, &y) - dot(&x, &wty)).abs() < 1e-12);
    }

    #[test]
    fn merged_affine_layers_compute_the_same_function() {
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
        let net = Network::new(
            vec![2],
            vec![Layer::Affine(a.clone()), Layer::Affine(b.clone())],
        )
        .unwrap();
        assert_eq!(net.layers.len(), 1);
        let x = [0.7, -0.3];
        let want = b.forward(&a.forward(&x));
        let got = net.forward(&x);
        for (w, g) in want.iter().zip(&got) {
            assert!((w - g).abs() < 1e-12);
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let a = Affine {
            linear: Linear::Dense {
                rows: 3,
                cols: 2,
                w: vec![1.0, -2.0, 0.5, 0.25, -1.0, 3.0],
            },
            bias: vec![0.1, -0.2, 0.3],
        };
        let b = Affine {
            linear: Linear::Dense {
                rows: 2,
                cols: 3,
                w: vec![0.3, -0.7, 1.1, 2.0, 0.4, -0.5],
            },
            bias: vec![0.0, 0.1],
        };
        let net = Network::new(
            vec![2],
            vec![Layer::Affine(a), Layer::Relu, Layer::Affine(b)],
        )
        .unwrap();
        let (x, c) = ([0.31, 0.17], [1.0, -2.0]);
        let g = net.gradient(&x, &c);
        let f = |x: &[f64]| dot(&net.forward(x), &c);
        for i in 0..2 {
            let mut xp = x;
            xp[i] += 1e-7;
            let fd = (f(&xp) - f(&x)) / 1e-7;
            assert!((fd - g[i]).abs() < 1e-5, "{fd} vs {}", g[i]);
        }
    }
}
