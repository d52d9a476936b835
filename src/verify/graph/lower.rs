//! Network layers in the verifier's operators: what the loaders (ONNX, the IR) call, so that
//! each layer's translation lives in one place.
//!
//! Linear layers become affine nodes (pooling by averages, padding and broadcasting as sparse
//! maps). Max pooling is a [`Max`] node. Other piecewise-linear layers are lowered to ReLUs,
//! which keeps them exact and splittable: `leaky_relu(x) = a x + (1 - a) relu(x)`,
//! `relu6(x) = relu(x) - relu(x - 6)`. SiLU and
//! hard-swish are products of `x` with a gate.

use super::{
    Add, Affine, Builder, Conv, GraphError, Linear, Max, Mul, NodeId, Op, Relu, Smooth, Sparse,
};

/// A window operation's geometry over a `[C, H, W]` map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride.
    pub stride: [usize; 2],
    /// Padding: top, left, bottom, right.
    pub pads: [usize; 4],
    /// Dilation.
    pub dilation: [usize; 2],
}

impl Window {
    /// The output height and width over an `h x w` map, or `None` when the window does not
    /// fit.
    pub fn output(&self, h: usize, w: usize) -> Option<[usize; 2]> {
        let span = |n: usize, k: usize, d: usize, p0: usize, p1: usize, s: usize| {
            let padded = n + p0 + p1;
            let reach = d * (k.max(1) - 1) + 1;
            (s > 0 && padded >= reach).then(|| (padded - reach) / s + 1)
        };
        Some([
            span(
                h,
                self.kernel[0],
                self.dilation[0],
                self.pads[0],
                self.pads[2],
                self.stride[0],
            )?,
            span(
                w,
                self.kernel[1],
                self.dilation[1],
                self.pads[1],
                self.pads[3],
                self.stride[1],
            )?,
        ])
    }

    /// For every output position of channel-major `[c, oh, ow]`, the input indices its window
    /// covers inside the map (padding excluded), and the window's full size.
    fn windows(&self, [c, h, w]: [usize; 3]) -> Option<(Vec<usize>, Vec<Vec<usize>>)> {
        let [oh, ow] = self.output(h, w)?;
        let mut all = Vec::with_capacity(c * oh * ow);
        for ch in 0..c {
            for y in 0..oh {
                for x in 0..ow {
                    let mut win = Vec::new();
                    for ky in 0..self.kernel[0] {
                        let iy = (y * self.stride[0] + ky * self.dilation[0]) as isize
                            - self.pads[0] as isize;
                        for kx in 0..self.kernel[1] {
                            let ix = (x * self.stride[1] + kx * self.dilation[1]) as isize
                                - self.pads[1] as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                win.push((ch * h + iy as usize) * w + ix as usize);
                            }
                        }
                    }
                    all.push(win);
                }
            }
        }
        Some((vec![c, oh, ow], all))
    }
}

fn chw(b: &Builder, x: NodeId, name: &str, what: &str) -> Result<[usize; 3], GraphError> {
    match *b.shape(x) {
        [c, h, w] => Ok([c, h, w]),
        ref s => Err(GraphError::Node {
            node: name.into(),
            kind: "window",
            msg: format!("{what} needs a [C, H, W] input, not {s:?}"),
        }),
    }
}

fn misfit(name: &str, msg: String) -> GraphError {
    GraphError::Node {
        node: name.into(),
        kind: "window",
        msg,
    }
}

impl Builder {
    /// `scale * x + shift` element-wise (`shift` may be empty for none).
    pub fn scale_shift(
        &mut self,
        name: &str,
        x: NodeId,
        scale: Vec<f64>,
        shift: Vec<f64>,
    ) -> Result<NodeId, GraphError> {
        let n = self.dim(x);
        let shape = self.shape(x).to_vec();
        let bias = if shift.is_empty() {
            vec![0.0; n]
        } else {
            shift
        };
        self.add(
            name,
            Op::Affine(Affine {
                linear: Linear::Diag(scale),
                bias,
            }),
            &[x],
            shape,
        )
    }

    /// `scale[c] * x + shift[c]` per channel of a `[C, ...]` tensor (a folded batch norm).
    pub fn channel_affine(
        &mut self,
        name: &str,
        x: NodeId,
        scale: &[f64],
        shift: &[f64],
    ) -> Result<NodeId, GraphError> {
        let n = self.dim(x);
        let c = self.shape(x).first().copied().unwrap_or(1);
        if scale.len() != c || shift.len() != c || c == 0 {
            return Err(misfit(
                name,
                format!("needs {c} values per parameter, one per channel"),
            ));
        }
        let per = n / c;
        self.scale_shift(
            name,
            x,
            (0..n).map(|i| scale[i / per]).collect(),
            (0..n).map(|i| shift[i / per]).collect(),
        )
    }

    /// A convolution with a per-channel bias; weights `[out_c, in_c / groups, kh, kw]`.
    pub fn conv(
        &mut self,
        name: &str,
        x: NodeId,
        out_channels: usize,
        window: Window,
        groups: usize,
        weights: Vec<f64>,
        bias: &[f64],
    ) -> Result<NodeId, GraphError> {
        let [c, h, w] = chw(self, x, name, "a convolution")?;
        let [kh, kw] = window.kernel;
        if groups == 0 || c % groups != 0 || out_channels % groups != 0 {
            return Err(misfit(
                name,
                format!(
                    "{groups} groups do not divide {c} input and {out_channels} output channels"
                ),
            ));
        }
        if weights.len() != out_channels * (c / groups) * kh * kw {
            return Err(misfit(
                name,
                format!(
                    "{} weights for {out_channels} x {} x {kh} x {kw}",
                    weights.len(),
                    c / groups
                ),
            ));
        }
        if bias.len() != out_channels {
            return Err(misfit(
                name,
                format!("{} biases for {out_channels} channels", bias.len()),
            ));
        }
        let [oh, ow] = window.output(h, w).ok_or_else(|| {
            misfit(
                name,
                format!("a {kh}x{kw} kernel does not fit a {h}x{w} map"),
            )
        })?;
        let per = oh * ow;
        self.add(
            name,
            Op::Affine(Affine {
                linear: Linear::Conv(Conv {
                    input: [c, h, w],
                    output: [out_channels, oh, ow],
                    kernel: window.kernel,
                    stride: window.stride,
                    padding: [window.pads[0], window.pads[1]],
                    dilation: window.dilation,
                    groups,
                    w: weights,
                }),
                bias: (0..out_channels * per).map(|i| bias[i / per]).collect(),
            }),
            &[x],
            vec![out_channels, oh, ow],
        )
    }

    /// A sparse linear map given by its rows, with a constant per output.
    fn sparse(
        &mut self,
        name: &str,
        x: NodeId,
        rows: &[Vec<(usize, f64)>],
        bias: Vec<f64>,
        shape: Vec<usize>,
    ) -> Result<NodeId, GraphError> {
        let cols = self.dim(x);
        self.add(
            name,
            Op::Affine(Affine {
                linear: Linear::Sparse(Sparse::from_rows(cols, rows)),
                bias,
            }),
            &[x],
            shape,
        )
    }

    /// Average pooling; padded positions count in the divisor when `count_include_pad`.
    pub fn avg_pool(
        &mut self,
        name: &str,
        x: NodeId,
        window: Window,
        count_include_pad: bool,
    ) -> Result<NodeId, GraphError> {
        let s = chw(self, x, name, "average pooling")?;
        let (shape, wins) = window
            .windows(s)
            .ok_or_else(|| misfit(name, "the window does not fit the map".into()))?;
        let full = (window.kernel[0] * window.kernel[1]) as f64;
        let rows: Vec<Vec<(usize, f64)>> = wins
            .iter()
            .map(|w| {
                let d = if count_include_pad {
                    full
                } else {
                    w.len().max(1) as f64
                };
                w.iter().map(|&i| (i, 1.0 / d)).collect()
            })
            .collect();
        let n = rows.len();
        self.sparse(name, x, &rows, vec![0.0; n], shape)
    }

    /// The mean over height and width: `[C, H, W] -> [C, 1, 1]`.
    pub fn global_avg_pool(&mut self, name: &str, x: NodeId) -> Result<NodeId, GraphError> {
        let [c, h, w] = chw(self, x, name, "global average pooling")?;
        let per = h * w;
        let rows: Vec<Vec<(usize, f64)>> = (0..c)
            .map(|ch| (0..per).map(|i| (ch * per + i, 1.0 / per as f64)).collect())
            .collect();
        self.sparse(name, x, &rows, vec![0.0; c], vec![c, 1, 1])
    }

    /// Constant padding of a `[C, H, W]` map: `pads` top, left, bottom, right.
    pub fn pad(
        &mut self,
        name: &str,
        x: NodeId,
        pads: [usize; 4],
        value: f64,
    ) -> Result<NodeId, GraphError> {
        let [c, h, w] = chw(self, x, name, "padding")?;
        let (oh, ow) = (h + pads[0] + pads[2], w + pads[1] + pads[3]);
        let mut rows = Vec::with_capacity(c * oh * ow);
        let mut bias = Vec::with_capacity(c * oh * ow);
        for ch in 0..c {
            for y in 0..oh {
                for xx in 0..ow {
                    let (iy, ix) = (
                        y as isize - pads[0] as isize,
                        xx as isize - pads[1] as isize,
                    );
                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                        rows.push(vec![((ch * h + iy as usize) * w + ix as usize, 1.0)]);
                        bias.push(0.0);
                    } else {
                        rows.push(Vec::new());
                        bias.push(value);
                    }
                }
            }
        }
        self.sparse(name, x, &rows, bias, vec![c, oh, ow])
    }

    /// A `[C, 1, 1]` tensor repeated over an `h x w` map.
    pub fn broadcast_channels(
        &mut self,
        name: &str,
        x: NodeId,
        h: usize,
        w: usize,
    ) -> Result<NodeId, GraphError> {
        let c = self.dim(x);
        let rows: Vec<Vec<(usize, f64)>> =
            (0..c * h * w).map(|i| vec![(i / (h * w), 1.0)]).collect();
        self.sparse(name, x, &rows, vec![0.0; c * h * w], vec![c, h, w])
    }

    /// Zeros of `x`'s shape (the `none` edge of cell spaces).
    pub fn zero(&mut self, name: &str, x: NodeId) -> Result<NodeId, GraphError> {
        let n = self.dim(x);
        let shape = self.shape(x).to_vec();
        self.sparse(name, x, &vec![Vec::new(); n], vec![0.0; n], shape)
    }

    /// `max(x, 0)`.
    pub fn relu(&mut self, name: &str, x: NodeId) -> Result<NodeId, GraphError> {
        let shape = self.shape(x).to_vec();
        self.add(name, Op::Relu(Relu), &[x], shape)
    }

    /// A sigmoid or tanh.
    pub fn smooth(&mut self, name: &str, x: NodeId, f: Smooth) -> Result<NodeId, GraphError> {
        let shape = self.shape(x).to_vec();
        self.add(name, Op::Smooth(f), &[x], shape)
    }

    /// `sum_k coeffs[k] * x_k`.
    pub fn sum(
        &mut self,
        name: &str,
        xs: &[NodeId],
        coeffs: Vec<f64>,
    ) -> Result<NodeId, GraphError> {
        let shape = xs
            .first()
            .map(|&x| self.shape(x).to_vec())
            .unwrap_or_default();
        self.add(name, Op::Add(Add { coeffs }), xs, shape)
    }

    /// `a * b` element-wise; `b` may be `[C, 1, 1]` against a `[C, H, W]` `a` (broadcast).
    pub fn product(&mut self, name: &str, a: NodeId, b: NodeId) -> Result<NodeId, GraphError> {
        let b = match (self.shape(a), self.shape(b)) {
            (&[c, h, w], &[cb, 1, 1]) | (&[c, h, w], &[cb]) if cb == c && h * w > 1 => {
                self.broadcast_channels(&format!("{name}.broadcast"), b, h, w)?
            }
            _ => b,
        };
        let shape = self.shape(a).to_vec();
        self.add(name, Op::Mul(Mul), &[a, b], shape)
    }

    /// Max pooling: one [`Max`] node over the windows; padded positions never win (they are
    /// left out of the window).
    pub fn max_pool(
        &mut self,
        name: &str,
        x: NodeId,
        window: Window,
    ) -> Result<NodeId, GraphError> {
        let s = chw(self, x, name, "max pooling")?;
        let (shape, windows) = window
            .windows(s)
            .ok_or_else(|| misfit(name, "the window does not fit the map".into()))?;
        if windows.iter().any(|w| w.is_empty()) {
            return Err(misfit(name, "a window lies entirely in the padding".into()));
        }
        let in_dim = self.dim(x);
        self.add(name, Op::Max(Max { in_dim, windows }), &[x], shape)
    }

    /// `x` for `x >= 0`, `alpha x` below, as `alpha x + (1 - alpha) relu(x)`.
    pub fn leaky_relu(&mut self, name: &str, x: NodeId, alpha: f64) -> Result<NodeId, GraphError> {
        let r = self.relu(&format!("{name}.relu"), x)?;
        self.sum(name, &[x, r], vec![alpha, 1.0 - alpha])
    }

    /// `min(max(x, lo), hi)` as `x + relu(lo - x) - relu(x - hi)`.
    pub fn clip(&mut self, name: &str, x: NodeId, lo: f64, hi: f64) -> Result<NodeId, GraphError> {
        if !(lo <= hi) {
            return Err(misfit(
                name,
                format!("clips to an empty range [{lo}, {hi}]"),
            ));
        }
        // x + relu(lo - x) - relu(x - hi): exact inside [lo, hi] whatever the bounds' size
        // (lo + relu(x - lo) - ... cancels in f64 when |lo| is huge, e.g. -FLT_MAX).
        let n = self.dim(x);
        let below = self.scale_shift(&format!("{name}.below"), x, vec![-1.0; n], vec![lo; n])?;
        let r_lo = self.relu(&format!("{name}.relu_lo"), below)?;
        let above = self.scale_shift(&format!("{name}.above"), x, vec![1.0; n], vec![-hi; n])?;
        let r_hi = self.relu(&format!("{name}.relu_hi"), above)?;
        self.sum(name, &[x, r_lo, r_hi], vec![1.0, 1.0, -1.0])
    }

    /// `min(max(x, 0), 6)`.
    pub fn relu6(&mut self, name: &str, x: NodeId) -> Result<NodeId, GraphError> {
        self.clip(name, x, 0.0, 6.0)
    }

    /// `x * sigmoid(x)`.
    pub fn silu(&mut self, name: &str, x: NodeId) -> Result<NodeId, GraphError> {
        let s = self.smooth(&format!("{name}.sigmoid"), x, Smooth::Sigmoid)?;
        self.product(name, x, s)
    }

    /// `x * relu6(x + 3) / 6`.
    pub fn hardswish(&mut self, name: &str, x: NodeId) -> Result<NodeId, GraphError> {
        let n = self.dim(x);
        let shifted = self.scale_shift(&format!("{name}.shift"), x, vec![1.0; n], vec![3.0; n])?;
        let r6 = self.relu6(&format!("{name}.relu6"), shifted)?;
        let gate = self.scale_shift(&format!("{name}.gate"), r6, vec![1.0 / 6.0; n], Vec::new())?;
        self.product(name, x, gate)
    }

    /// Channel concatenation of `[C_k, H, W]` maps (or flat vectors).
    pub fn concat_channels(&mut self, name: &str, xs: &[NodeId]) -> Result<NodeId, GraphError> {
        let inner: Vec<usize> = xs.iter().map(|&x| self.dim(x)).collect();
        let mut shape = xs
            .first()
            .map(|&x| self.shape(x).to_vec())
            .unwrap_or_default();
        if let Some(c) = shape.first_mut() {
            *c = xs
                .iter()
                .map(|&x| self.shape(x).first().copied().unwrap_or(0))
                .sum();
        }
        for &x in xs {
            if self.shape(x).get(1..) != shape.get(1..) {
                return Err(misfit(
                    name,
                    format!(
                        "concatenates maps of shapes {:?} and {:?}",
                        self.shape(xs[0]),
                        self.shape(x)
                    ),
                ));
            }
        }
        self.add(
            name,
            Op::Concat(super::Concat { outer: 1, inner }),
            xs,
            shape,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowered_max_pool_is_the_maximum() {
        // 2 channels of 5x5, 3x3 windows, stride 2, padding 1.
        let mut b = Builder::new(vec![2, 5, 5]);
        let win = Window {
            kernel: [3, 3],
            stride: [2, 2],
            pads: [1, 1, 1, 1],
            dilation: [1, 1],
        };
        let m = b.max_pool("pool", 0, win).unwrap();
        assert_eq!(b.shape(m), &[2, 3, 3]);
        let net = b.finish(m).unwrap();
        let x: Vec<f64> = (0..50)
            .map(|i| ((i * 37 % 23) as f64 - 11.0) * 0.3)
            .collect();
        let y = net.forward(&x);
        for ch in 0..2 {
            for oy in 0..3 {
                for ox in 0..3 {
                    let mut want = f64::NEG_INFINITY;
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let (iy, ix) = (2 * oy + ky, 2 * ox + kx);
                            if (1..=5).contains(&iy) && (1..=5).contains(&ix) {
                                want = want.max(x[(ch * 5 + iy - 1) * 5 + ix - 1]);
                            }
                        }
                    }
                    assert!((y[(ch * 3 + oy) * 3 + ox] - want).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn lowered_activations_compute_their_functions() {
        let mut b = Builder::new(vec![7]);
        let l = b.leaky_relu("leaky", 0, 0.1).unwrap();
        let r6 = b.relu6("r6", 0).unwrap();
        let hs = b.hardswish("hs", 0).unwrap();
        let si = b.silu("silu", 0).unwrap();
        let all = b.concat_channels("all", &[l, r6, hs, si]).unwrap();
        let net = b.finish(all).unwrap();
        let x = [-8.0, -3.5, -0.2, 0.0, 0.7, 5.0, 9.0];
        let y = net.forward(&x);
        for (i, &v) in x.iter().enumerate() {
            let r6 = v.clamp(0.0, 6.0);
            assert!((y[i] - if v > 0.0 { v } else { 0.1 * v }).abs() < 1e-12);
            assert!((y[7 + i] - r6).abs() < 1e-12);
            assert!((y[14 + i] - v * (v + 3.0).clamp(0.0, 6.0) / 6.0).abs() < 1e-12);
            assert!((y[21 + i] - v / (1.0 + (-v).exp())).abs() < 1e-12);
        }
    }
}
