//! Sliding windows as one candle operation (im2col) with its adjoint (col2im) as the backward
//! pass. Convolutions become matrix products of the windows, and pools reductions over them;
//! candle's own CPU convolution differentiates through a slow transposed convolution, and its
//! pools have no backward pass for overlapping windows.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor, WithDType};
use rayon::prelude::*;

/// The geometry of a window: kernel, stride, dilation, over a `[N, C, H, W]` input that is
/// already padded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Windows {
    /// Kernel height and width.
    pub kernel: [usize; 2],
    /// Stride along height and width.
    pub stride: [usize; 2],
    /// Dilation (both axes).
    pub dilation: usize,
    /// Lay the windows out channels first, `[C, N, Ho, Wo, kh * kw]`, rather than
    /// `[N, Ho, Wo, C, kh * kw]`.
    pub channels_first: bool,
}

impl Windows {
    /// The output height and width of an `h x w` input, or `None` when the window is larger.
    pub fn output(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        let span = |k: usize| self.dilation * (k - 1) + 1;
        if h < span(self.kernel[0]) || w < span(self.kernel[1]) || self.stride.contains(&0) {
            return None;
        }
        Some((
            (h - span(self.kernel[0])) / self.stride[0] + 1,
            (w - span(self.kernel[1])) / self.stride[1] + 1,
        ))
    }

    /// The windows of `x` (`[N, C, H, W]`).
    pub fn unfold(&self, x: &Tensor) -> Result<Tensor> {
        x.contiguous()?.apply_op1(Unfold(*self))
    }

    /// The adjoint of [`unfold`](Windows::unfold): windows laid out as `unfold` gives them,
    /// each element added back where it was read, into a tensor of dims `input`
    /// (`[N, C, H, W]`). Differentiable (its backward pass is `unfold`).
    pub fn fold(&self, cols: &Tensor, input: (usize, usize, usize, usize)) -> Result<Tensor> {
        let (n, c, h, w) = input;
        let Some((ho, wo)) = self.output(h, w) else {
            candle_core::bail!("fold: the window is larger than the input");
        };
        let want = n * c * ho * wo * self.kernel[0] * self.kernel[1];
        if cols.elem_count() != want {
            candle_core::bail!("fold: {} window elements, not {want}", cols.elem_count());
        }
        let kk = self.kernel[0] * self.kernel[1];
        let cols = if self.channels_first {
            cols.reshape((c, n, ho, wo, kk))?
        } else {
            cols.reshape((n, ho, wo, c, kk))?
        };
        cols.contiguous()?.apply_op1(Fold { g: *self, input })
    }
}

/// For every output element, in layout order: (its index, the input index it reads).
/// `f(out_index, in_index)` is called for each; `chunk` selects one leading block of the
/// layout (one `n` or one `c`) so that blocks can run in parallel.
fn for_each_tap(
    g: &Windows,
    (n, c, h, w): (usize, usize, usize, usize),
    block: usize,
    mut f: impl FnMut(usize, usize),
) {
    let (ho, wo) = g.output(h, w).expect("checked by the caller");
    let [kh, kw] = g.kernel;
    let kk = kh * kw;
    let mut o = 0;
    let mut tap = |ni: usize, ci: usize, oy: usize, ox: usize, o: &mut usize| {
        for ky in 0..kh {
            let iy = oy * g.stride[0] + ky * g.dilation;
            let row = ((ni * c + ci) * h + iy) * w;
            for kx in 0..kw {
                let ix = ox * g.stride[1] + kx * g.dilation;
                f(*o, row + ix);
                *o += 1;
            }
        }
    };
    if g.channels_first {
        let ci = block;
        for ni in 0..n {
            for oy in 0..ho {
                for ox in 0..wo {
                    tap(ni, ci, oy, ox, &mut o);
                }
            }
        }
    } else {
        let ni = block;
        for oy in 0..ho {
            for ox in 0..wo {
                for ci in 0..c {
                    tap(ni, ci, oy, ox, &mut o);
                }
            }
        }
    }
    debug_assert_eq!(o % kk, 0);
}

fn dims4(l: &Layout) -> Result<(usize, usize, usize, usize)> {
    l.shape().dims4()
}

fn contiguous<'a, T>(v: &'a [T], l: &Layout) -> Result<&'a [T]> {
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("unfold: the input must be contiguous"),
    }
}

struct Unfold(Windows);

impl Unfold {
    fn run<T: WithDType + Send + Sync>(&self, x: &[T], d: (usize, usize, usize, usize)) -> Vec<T> {
        let g = &self.0;
        let (n, c, h, w) = d;
        let (ho, wo) = g.output(h, w).expect("checked");
        let per_block = if g.channels_first { n } else { c } * ho * wo * g.kernel[0] * g.kernel[1];
        let blocks = if g.channels_first { c } else { n };
        let mut out = vec![T::zero(); blocks * per_block];
        out.par_chunks_mut(per_block.max(1))
            .enumerate()
            .for_each(|(b, chunk)| for_each_tap(g, d, b, |o, i| chunk[o] = x[i]));
        out
    }
}

impl CustomOp1 for Unfold {
    fn name(&self) -> &'static str {
        "unfold"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let (n, c, h, w) = dims4(l)?;
        let Some((ho, wo)) = self.0.output(h, w) else {
            candle_core::bail!("unfold: the window is larger than the input");
        };
        let kk = self.0.kernel[0] * self.0.kernel[1];
        let shape: Shape = if self.0.channels_first {
            (c, n, ho, wo, kk).into()
        } else {
            (n, ho, wo, c, kk).into()
        };
        let out = match s {
            CpuStorage::F32(v) => CpuStorage::F32(self.run(contiguous(v, l)?, (n, c, h, w))),
            CpuStorage::F64(v) => CpuStorage::F64(self.run(contiguous(v, l)?, (n, c, h, w))),
            _ => candle_core::bail!("unfold: f32 or f64 only"),
        };
        Ok((out, shape))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (n, c, h, w) = arg.dims4()?;
        let fold = Fold {
            g: self.0,
            input: (n, c, h, w),
        };
        Ok(Some(grad.contiguous()?.apply_op1(fold)?))
    }
}

/// The adjoint of [`Unfold`]: every window element added back where it was read.
struct Fold {
    g: Windows,
    input: (usize, usize, usize, usize),
}

impl Fold {
    fn run<T: WithDType + Send + Sync>(&self, grad: &[T]) -> Vec<T> {
        let (n, c, h, w) = self.input;
        let g = &self.g;
        let (ho, wo) = g.output(h, w).expect("checked");
        let kk = g.kernel[0] * g.kernel[1];
        let mut dx = vec![T::zero(); n * c * h * w];
        if g.channels_first {
            // Blocks are channels, which interleave in dx: add sequentially.
            let per_block = n * ho * wo * kk;
            for ci in 0..c {
                let chunk = &grad[ci * per_block..(ci + 1) * per_block];
                for_each_tap(g, self.input, ci, |o, i| dx[i] += chunk[o]);
            }
        } else {
            let per_block = c * ho * wo * kk;
            let image = c * h * w;
            dx.par_chunks_mut(image.max(1))
                .enumerate()
                .for_each(|(ni, d)| {
                    let chunk = &grad[ni * per_block..(ni + 1) * per_block];
                    for_each_tap(g, self.input, ni, |o, i| d[i - ni * image] += chunk[o]);
                });
        }
        dx
    }
}

impl CustomOp1 for Fold {
    fn name(&self) -> &'static str {
        "fold"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let out = match s {
            CpuStorage::F32(v) => CpuStorage::F32(self.run(contiguous(v, l)?)),
            CpuStorage::F64(v) => CpuStorage::F64(self.run(contiguous(v, l)?)),
            _ => candle_core::bail!("fold: f32 or f64 only"),
        };
        Ok((out, self.input.into()))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(self.g.unfold(grad)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// <unfold(x), y> = <x, fold(y)>: the backward pass is the adjoint of the forward pass.
    #[test]
    fn fold_is_the_adjoint_of_unfold() {
        let dev = Device::Cpu;
        for channels_first in [false, true] {
            for (k, s, d) in [
                ([3, 3], [1, 1], 1),
                ([1, 7], [2, 2], 1),
                ([3, 3], [2, 2], 2),
            ] {
                let g = Windows {
                    kernel: k,
                    stride: s,
                    dilation: d,
                    channels_first,
                };
                let x = Var::from_tensor(&Tensor::randn(0f64, 1.0, (2, 3, 9, 10), &dev).unwrap())
                    .unwrap();
                let u = g.unfold(x.as_tensor()).unwrap();
                let y = Tensor::randn(0f64, 1.0, u.shape(), &dev).unwrap();
                let lhs = (&u * &y)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap();
                let grads = (&u * &y).unwrap().sum_all().unwrap().backward().unwrap();
                let gx = grads.get(x.as_tensor()).unwrap();
                let rhs = (x.as_tensor() * gx)
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f64>()
                    .unwrap();
                assert!((lhs - rhs).abs() < 1e-9 * lhs.abs().max(1.0), "{lhs} {rhs}");
            }
        }
    }
}
