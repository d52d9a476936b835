//! The kernels of the training engine: each operator's forward pass and the adjoint of it, on
//! contiguous `f32` buffers in `[N, C, H, W]` order. Backward kernels add into the input
//! gradients (`+=`), so a tensor read by several operators collects all its gradients, or,
//! for the first gradient a tensor receives in a pass, assign it (`set`), which spares a
//! zeroing pass over every gradient buffer.
//!
//! Work is split over images (convolutions, pools, element-wise maps) or channels (batch
//! statistics) with rayon. Sums that cross images (weight gradients) are taken per fixed chunk
//! of images and added in chunk order, so results do not depend on the number of threads.

use rayon::prelude::*;

use super::gemm::{matmul, View};
use crate::ir::Activation;

/// Chunks a batch is cut into for the reductions over images: fixed, so that gradients are
/// the same whatever the number of threads.
pub const CHUNKS: usize = 8;
/// Elements per task of the element-wise maps.
const MAP_CHUNK: usize = 1 << 14;

/// Images per chunk of a batch of `n`.
pub fn chunk_images(n: usize) -> usize {
    n.div_ceil(CHUNKS).max(1)
}

/// Per-chunk scratch memory, allocated once per engine at the largest size any layer needs.
#[derive(Default)]
pub struct Scratch {
    /// The windows of one image (im2col), `[C * kh * kw, Ho * Wo]`.
    pub col: Vec<f32>,
    /// Their gradient.
    pub dcol: Vec<f32>,
    /// This chunk's share of a weight gradient.
    pub dw: Vec<f32>,
    /// This chunk's share of a bias gradient.
    pub db: Vec<f32>,
}

/// The geometry of a convolution over one image (padding applied on the fly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conv {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: [usize; 2],
    pub pad: [usize; 2],
    pub dil: [usize; 2],
    pub ho: usize,
    pub wo: usize,
    /// One filter per channel (`groups = C = O`); otherwise `groups = 1`.
    pub depthwise: bool,
}

impl Conv {
    pub fn in_len(&self) -> usize {
        self.c * self.h * self.w
    }
    pub fn out_len(&self) -> usize {
        self.o * self.ho * self.wo
    }
    /// Columns of the weight matrix: `C * kh * kw` (`kh * kw` for a depthwise one).
    pub fn taps(&self) -> usize {
        let kk = self.kh * self.kw;
        if self.depthwise {
            kk
        } else {
            self.c * kk
        }
    }
    pub fn weight_len(&self) -> usize {
        self.o * self.taps()
    }
    /// The im2col buffer's length (0 for a depthwise or pointwise convolution).
    pub fn col_len(&self) -> usize {
        if self.depthwise || self.pointwise() {
            0
        } else {
            self.taps() * self.ho * self.wo
        }
    }
    /// Stride 1 and an output as large as the input ("same" padding): each tap's window is
    /// the plane shifted by one offset.
    fn same_stride_one(&self) -> bool {
        self.stride == [1, 1] && self.ho == self.h && self.wo == self.w
    }

    /// A 1x1 convolution with stride 1 and no padding: the image is its own window matrix.
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == [1, 1] && self.pad == [0, 0]
    }
}

/// Output positions `o` in `0..out` whose input `o * s + off` lies in `0..len`, as a range.
fn valid(out: usize, s: usize, off: isize, len: usize) -> (usize, usize) {
    let lo = if off < 0 {
        ((-off) as usize).div_ceil(s)
    } else {
        0
    };
    let hi = if (len as isize) > off {
        ((len as isize - off) as usize).div_ceil(s)
    } else {
        0
    };
    let lo = lo.min(out);
    (lo, hi.clamp(lo, out))
}

/// One tap `(ky, kx)` of a window: its index, the output rows and columns whose input lies
/// inside the plane, and the input offsets.
#[derive(Clone, Copy)]
struct Tap {
    index: usize,
    ys: (usize, usize),
    xs: (usize, usize),
    offy: isize,
    offx: isize,
}

/// The taps of plane geometry `g`, computed once per call rather than per channel (the ranges
/// take divisions).
fn tap_table(g: &Conv) -> Vec<Tap> {
    let mut taps = Vec::with_capacity(g.kh * g.kw);
    for ky in 0..g.kh {
        let offy = (ky * g.dil[0]) as isize - g.pad[0] as isize;
        let ys = valid(g.ho, g.stride[0], offy, g.h);
        for kx in 0..g.kw {
            let offx = (kx * g.dil[1]) as isize - g.pad[1] as isize;
            let xs = valid(g.wo, g.stride[1], offx, g.w);
            taps.push(Tap {
                index: ky * g.kw + kx,
                ys,
                xs,
                offy,
                offx,
            });
        }
    }
    taps
}

/// The windows of one image: `col[(ci * kk + tap) * HoWo + oy * Wo + ox]`. Rows are short
/// (a feature map's width), so they are written element by element, which the compiler
/// vectorises, rather than through `memcpy` calls.
fn im2col(g: &Conv, x: &[f32], col: &mut [f32]) {
    let (hw, howo, kk) = (g.h * g.w, g.ho * g.wo, g.kh * g.kw);
    let (wo, sx) = (g.wo, g.stride[1]);
    let same = g.same_stride_one();
    let taps = tap_table(g);
    for ci in 0..g.c {
        let plane = &x[ci * hw..(ci + 1) * hw];
        for &Tap {
            index: tap,
            ys: (ylo, yhi),
            xs: (xlo, xhi),
            offy,
            offx,
        } in &taps
        {
            let row = (ci * kk + tap) * howo;
            let dst = &mut col[row..row + howo];
            if same {
                // The tap's window is the plane shifted by one offset: one copy, then the
                // columns that wrapped around from the next row are set to zero.
                let shift = offy * g.w as isize + offx;
                let (lo, hi) = shifted_range(ylo * wo, yhi * wo, shift, hw);
                dst[..lo].fill(0.0);
                dst[hi..].fill(0.0);
                let from = (lo as isize + shift) as usize;
                dst[lo..hi].copy_from_slice(&plane[from..from + (hi - lo)]);
                zero_edges(dst, wo, (ylo, yhi), (xlo, xhi));
                continue;
            }
            for v in &mut dst[..ylo * wo] {
                *v = 0.0;
            }
            for v in &mut dst[yhi * wo..] {
                *v = 0.0;
            }
            for oy in ylo..yhi {
                let d = &mut dst[oy * wo..(oy + 1) * wo];
                let iy = ((oy * g.stride[0]) as isize + offy) as usize;
                let src = &plane[iy * g.w..(iy + 1) * g.w];
                for v in &mut d[..xlo] {
                    *v = 0.0;
                }
                for v in &mut d[xhi..] {
                    *v = 0.0;
                }
                if sx == 1 {
                    let ix0 = (xlo as isize + offx) as usize;
                    for (v, s) in d[xlo..xhi].iter_mut().zip(&src[ix0..]) {
                        *v = *s;
                    }
                } else {
                    // Every `sx`-th input: fixed-size chunks (which compile to strided loads)
                    // up to the last, which may end the row.
                    let ix0 = ((xlo * sx) as isize + offx) as usize;
                    if xhi > xlo {
                        let n = xhi - xlo - 1;
                        let run = &src[ix0..ix0 + n * sx];
                        for (v, s) in d[xlo..xhi - 1].iter_mut().zip(run.chunks_exact(sx)) {
                            *v = s[0];
                        }
                        d[xhi - 1] = src[ix0 + n * sx];
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds the windows' gradients into the image's.
/// `col` is used as scratch: its entries for positions outside the input are set to zero.
fn col2im(g: &Conv, col: &mut [f32], dx: &mut [f32]) {
    let (hw, howo, kk) = (g.h * g.w, g.ho * g.wo, g.kh * g.kw);
    let sx = g.stride[1];
    let same = g.same_stride_one();
    let taps = tap_table(g);
    for ci in 0..g.c {
        let plane = &mut dx[ci * hw..(ci + 1) * hw];
        for &Tap {
            index: tap,
            ys: (ylo, yhi),
            xs: (xlo, xhi),
            offy,
            offx,
        } in &taps
        {
            let row = (ci * kk + tap) * howo;
            if same {
                let src = &mut col[row..row + howo];
                zero_edges(src, g.wo, (ylo, yhi), (xlo, xhi));
                let shift = offy * g.w as isize + offx;
                let (lo, hi) = shifted_range(ylo * g.wo, yhi * g.wo, shift, hw);
                let from = (lo as isize + shift) as usize;
                for (a, b) in plane[from..from + (hi - lo)].iter_mut().zip(&src[lo..hi]) {
                    *a += b;
                }
                continue;
            }
            let src = &col[row..row + howo];
            for oy in ylo..yhi {
                let iy = ((oy * g.stride[0]) as isize + offy) as usize;
                let d = &mut plane[iy * g.w..(iy + 1) * g.w];
                let s = &src[oy * g.wo + xlo..oy * g.wo + xhi];
                if sx == 1 {
                    let ix0 = (xlo as isize + offx) as usize;
                    for (a, b) in d[ix0..].iter_mut().zip(s) {
                        *a += b;
                    }
                } else {
                    let ix0 = ((xlo * sx) as isize + offx) as usize;
                    if let Some((last, body)) = s.split_last() {
                        let n = body.len();
                        let run = &mut d[ix0..ix0 + n * sx];
                        for (a, b) in run.chunks_exact_mut(sx).zip(body) {
                            a[0] += b;
                        }
                        d[ix0 + n * sx] += last;
                    }
                }
            }
        }
    }
}

/// The part of `lo..hi` whose positions shifted by `shift` fall inside `0..len`.
fn shifted_range(lo: usize, hi: usize, shift: isize, len: usize) -> (usize, usize) {
    let lo = lo.max((-shift).max(0) as usize);
    let hi = hi.min((len as isize - shift).max(0) as usize);
    (lo.min(hi), hi)
}

/// Sets to zero, in rows `ylo..yhi` of a `[Ho, wo]` block, the columns outside `xlo..xhi`.
fn zero_edges(
    block: &mut [f32],
    wo: usize,
    (ylo, yhi): (usize, usize),
    (xlo, xhi): (usize, usize),
) {
    if (xlo == 0 && xhi == wo) || ylo >= yhi {
        return;
    }
    // Column by column, one element per row: the runs are a padding wide, too short for a
    // `memset` call per row to pay.
    let rows = &mut block[ylo * wo..yhi * wo];
    for x in (0..xlo).chain(xhi..wo) {
        for v in rows[x..].iter_mut().step_by(wo) {
            *v = 0.0;
        }
    }
}

/// `y = conv(x, w) + b` for a batch of `n` images: one matrix product per image (images side
/// by side in one wider product measured slower on these networks' small maps).
pub fn conv_forward(
    g: &Conv,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    y: &mut [f32],
    n: usize,
    scratch: &mut [Scratch],
) {
    let (il, ol, howo, k) = (g.in_len(), g.out_len(), g.ho * g.wo, g.taps());
    let per = chunk_images(n);
    y[..n * ol]
        .par_chunks_mut(per * ol)
        .zip(x[..n * il].par_chunks(per * il))
        .zip(scratch.par_iter_mut())
        .for_each(|((yc, xc), s)| {
            for (yn, xn) in yc.chunks_mut(ol).zip(xc.chunks(il)) {
                if g.depthwise {
                    depthwise_forward(g, xn, w, yn);
                } else {
                    let cols: &[f32] = if g.pointwise() {
                        xn
                    } else {
                        im2col(g, xn, &mut s.col);
                        &s.col[..g.col_len()]
                    };
                    matmul(
                        yn,
                        (g.o, howo, k),
                        View::rows(w, k),
                        View::rows(cols, howo),
                        false,
                    );
                }
                if let Some(b) = b {
                    for (row, &bo) in yn.chunks_mut(howo).zip(b) {
                        row.iter_mut().for_each(|v| *v += bo);
                    }
                }
            }
        });
}

/// Gradients of a convolution: `dw += `, `db += `, and `dx += ` when the input needs one.
#[allow(clippy::too_many_arguments)]
pub fn conv_backward(
    g: &Conv,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dx: Option<(&mut [f32], bool)>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    n: usize,
    scratch: &mut [Scratch],
) {
    let (il, ol, howo, k) = (g.in_len(), g.out_len(), g.ho * g.wo, g.taps());
    let set = dx.as_ref().is_some_and(|d| d.1);
    let dx = dx.map(|d| d.0);
    let per = chunk_images(n);
    let chunks = n.div_ceil(per);
    let mut dxs: Vec<Option<&mut [f32]>> = match dx {
        Some(dx) => dx[..n * il].chunks_mut(per * il).map(Some).collect(),
        None => (0..chunks).map(|_| None).collect(),
    };
    let jobs: Vec<_> = dxs
        .iter_mut()
        .zip(scratch.iter_mut())
        .enumerate()
        .map(|(i, (dx, s))| (i, dx.take(), s))
        .collect();
    jobs.into_par_iter().for_each(|(ci, mut dxc, s)| {
        s.dw[..g.weight_len()].fill(0.0);
        s.db[..g.o].fill(0.0);
        let first = ci * per;
        let last = ((ci + 1) * per).min(n);
        for dyn_ in dy[first * ol..last * ol].chunks(ol) {
            for (row, dbo) in dyn_.chunks(howo).zip(s.db.iter_mut()) {
                *dbo += row.iter().sum::<f32>();
            }
        }
        for img in first..last {
            let xn = &x[img * il..(img + 1) * il];
            let dyn_ = &dy[img * ol..(img + 1) * ol];
            let j = img - first;
            let mut dxn = dxc.as_deref_mut().map(|d| &mut d[j * il..(j + 1) * il]);
            let pointwise = g.pointwise() && !g.depthwise;
            if set && !pointwise {
                // Kernels below add into the input gradient: start it at zero, in cache.
                if let Some(d) = dxn.as_deref_mut() {
                    d.fill(0.0);
                }
            }
            if g.depthwise {
                depthwise_backward(g, xn, w, dyn_, dxn, &mut s.dw);
                continue;
            }
            if pointwise {
                matmul(
                    &mut s.dw,
                    (g.o, k, howo),
                    View::rows(dyn_, howo),
                    View::rows_t(xn, howo),
                    true,
                );
                if let Some(dxn) = dxn {
                    matmul(
                        dxn,
                        (k, howo, g.o),
                        View::rows_t(w, k),
                        View::rows(dyn_, howo),
                        !set,
                    );
                }
                continue;
            }
            im2col(g, xn, &mut s.col);
            matmul(
                &mut s.dw,
                (g.o, k, howo),
                View::rows(dyn_, howo),
                View::rows_t(&s.col[..g.col_len()], howo),
                true,
            );
            if let Some(dxn) = dxn {
                let dcol = &mut s.dcol[..g.col_len()];
                matmul(
                    dcol,
                    (k, howo, g.o),
                    View::rows_t(w, k),
                    View::rows(dyn_, howo),
                    false,
                );
                col2im(g, dcol, dxn);
            }
        }
    });
    let wl = g.weight_len();
    for s in &scratch[..chunks] {
        add_into(dw, &s.dw[..wl]);
    }
    if let Some(db) = db {
        for s in &scratch[..chunks] {
            add_into(db, &s.db[..g.o]);
        }
    }
}

fn depthwise_forward(g: &Conv, x: &[f32], w: &[f32], y: &mut [f32]) {
    let (hw, howo, kk) = (g.h * g.w, g.ho * g.wo, g.kh * g.kw);
    let taps = tap_table(g);
    for ch in 0..g.c {
        let plane = &x[ch * hw..(ch + 1) * hw];
        let out = &mut y[ch * howo..(ch + 1) * howo];
        out.fill(0.0);
        let wc = &w[ch * kk..(ch + 1) * kk];
        for &Tap {
            index: tap,
            ys: (ylo, yhi),
            xs: (xlo, xhi),
            offy,
            offx,
        } in &taps
        {
            let wt = wc[tap];
            for oy in ylo..yhi {
                let iy = ((oy * g.stride[0]) as isize + offy) as usize;
                let src = &plane[iy * g.w..(iy + 1) * g.w];
                let d = &mut out[oy * g.wo..(oy + 1) * g.wo];
                for ox in xlo..xhi {
                    d[ox] += wt * src[((ox * g.stride[1]) as isize + offx) as usize];
                }
            }
        }
    }
}

#[allow(clippy::needless_range_loop)] // ox indexes the output row and the input column
fn depthwise_backward(
    g: &Conv,
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    mut dx: Option<&mut [f32]>,
    dw: &mut [f32],
) {
    let (hw, howo, kk) = (g.h * g.w, g.ho * g.wo, g.kh * g.kw);
    let taps = tap_table(g);
    for ch in 0..g.c {
        let plane = &x[ch * hw..(ch + 1) * hw];
        let d = &dy[ch * howo..(ch + 1) * howo];
        let wc = &w[ch * kk..(ch + 1) * kk];
        let dwc = &mut dw[ch * kk..(ch + 1) * kk];
        let mut dplane = dx.as_deref_mut().map(|dx| &mut dx[ch * hw..(ch + 1) * hw]);
        for &Tap {
            index: tap,
            ys: (ylo, yhi),
            xs: (xlo, xhi),
            offy,
            offx,
        } in &taps
        {
            let mut acc = 0.0f32;
            for oy in ylo..yhi {
                let iy = ((oy * g.stride[0]) as isize + offy) as usize;
                let drow = &d[oy * g.wo..(oy + 1) * g.wo];
                for ox in xlo..xhi {
                    let ix = iy * g.w + ((ox * g.stride[1]) as isize + offx) as usize;
                    acc += drow[ox] * plane[ix];
                    if let Some(dp) = dplane.as_deref_mut() {
                        dp[ix] += wc[tap] * drow[ox];
                    }
                }
            }
            dwc[tap] += acc;
        }
    }
}

/// A fully connected layer: `y = x w^T + b` over `n` rows of `i` features, `o` outputs.
pub fn linear_forward(
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    y: &mut [f32],
    (n, i, o): (usize, usize, usize),
) {
    matmul(y, (n, o, i), View::rows(x, i), View::rows_t(w, i), false);
    if let Some(b) = b {
        for row in y[..n * o].chunks_mut(o) {
            add_into(row, b);
        }
    }
}

/// Gradients of a fully connected layer.
#[allow(clippy::too_many_arguments)]
pub fn linear_backward(
    x: &[f32],
    w: &[f32],
    dy: &[f32],
    dx: Option<(&mut [f32], bool)>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    (n, i, o): (usize, usize, usize),
) {
    matmul(dw, (o, i, n), View::rows_t(dy, o), View::rows(x, i), true);
    if let Some(db) = db {
        for row in dy[..n * o].chunks(o) {
            add_into(db, row);
        }
    }
    if let Some((dx, set)) = dx {
        matmul(dx, (n, i, o), View::rows(dy, o), View::rows(w, i), !set);
    }
}

/// Per-channel sums over a batch `[n, c, hw]`: `f(channel, row)` for each row of a channel,
/// summed in f64 per channel, channels in parallel.
fn channel_sums(
    n: usize,
    c: usize,
    hw: usize,
    f: impl Fn(usize, usize) -> [f64; 2] + Sync,
) -> Vec<[f64; 2]> {
    (0..c)
        .into_par_iter()
        .map(|ch| {
            let mut acc = [0.0f64; 2];
            for img in 0..n {
                let r = f(ch, (img * c + ch) * hw);
                acc[0] += r[0];
                acc[1] += r[1];
            }
            acc
        })
        .collect()
}

/// Batch normalization in training mode: normalizes with the batch's statistics and returns
/// per channel (mean, 1 / sqrt(var + eps), biased var).
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train(
    x: &[f32],
    y: &mut [f32],
    (n, c, hw): (usize, usize, usize),
    gamma: &[f32],
    beta: &[f32],
    eps: f64,
    mean: &mut [f32],
    invstd: &mut [f32],
    var: &mut [f32],
) {
    let m = (n * hw) as f64;
    let sums = channel_sums(n, c, hw, |_, at| {
        let row = &x[at..at + hw];
        [row.iter().sum::<f32>() as f64, 0.0]
    });
    for ch in 0..c {
        mean[ch] = (sums[ch][0] / m) as f32;
    }
    let sq = channel_sums(n, c, hw, |ch, at| {
        let mu = mean[ch];
        let row = &x[at..at + hw];
        [
            row.iter().map(|v| (v - mu) * (v - mu)).sum::<f32>() as f64,
            0.0,
        ]
    });
    for ch in 0..c {
        let v = sq[ch][0] / m;
        var[ch] = v as f32;
        invstd[ch] = (1.0 / (v + eps).sqrt()) as f32;
    }
    batch_norm_apply(x, y, (n, c, hw), gamma, beta, mean, invstd);
}

/// `y = (x - mean) * invstd * gamma + beta` per channel.
pub fn batch_norm_apply(
    x: &[f32],
    y: &mut [f32],
    (n, c, hw): (usize, usize, usize),
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    invstd: &[f32],
) {
    let scale: Vec<f32> = (0..c).map(|ch| gamma[ch] * invstd[ch]).collect();
    let shift: Vec<f32> = (0..c).map(|ch| beta[ch] - mean[ch] * scale[ch]).collect();
    y[..n * c * hw]
        .par_chunks_mut(c * hw)
        .zip(x[..n * c * hw].par_chunks(c * hw))
        .for_each(|(yn, xn)| {
            for ch in 0..c {
                let (a, b) = (scale[ch], shift[ch]);
                for (o, i) in yn[ch * hw..(ch + 1) * hw]
                    .iter_mut()
                    .zip(&xn[ch * hw..(ch + 1) * hw])
                {
                    *o = i * a + b;
                }
            }
        });
}

/// Gradients of batch normalization in training mode (the batch statistics differentiated).
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward(
    x: &[f32],
    dy: &[f32],
    dx: Option<(&mut [f32], bool)>,
    (n, c, hw): (usize, usize, usize),
    gamma: &[f32],
    mean: &[f32],
    invstd: &[f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let m = (n * hw) as f32;
    let sums = channel_sums(n, c, hw, |ch, at| {
        let mu = mean[ch];
        let (xr, dr) = (&x[at..at + hw], &dy[at..at + hw]);
        let s: f32 = dr.iter().sum();
        let sx: f32 = xr.iter().zip(dr).map(|(v, d)| (v - mu) * d).sum();
        [s as f64, sx as f64]
    });
    // Per channel: sum dy, and sum dy * xhat.
    let sdy: Vec<f32> = sums.iter().map(|s| s[0] as f32).collect();
    let sdx: Vec<f32> = sums
        .iter()
        .zip(invstd)
        .map(|(s, is)| s[1] as f32 * is)
        .collect();
    add_into(dbeta, &sdy);
    add_into(dgamma, &sdx);
    let Some((dx, set)) = dx else { return };
    dx[..n * c * hw]
        .par_chunks_mut(c * hw)
        .zip(x[..n * c * hw].par_chunks(c * hw))
        .zip(dy[..n * c * hw].par_chunks(c * hw))
        .for_each(|((dxn, xn), dyn_)| {
            for ch in 0..c {
                let k = gamma[ch] * invstd[ch];
                let (mb, mg) = (sdy[ch] / m, sdx[ch] / m);
                let (mu, is) = (mean[ch], invstd[ch]);
                let r = ch * hw..(ch + 1) * hw;
                let it = dxn[r.clone()].iter_mut().zip(&xn[r.clone()]).zip(&dyn_[r]);
                if set {
                    for ((d, v), g) in it {
                        *d = k * (g - mb - (v - mu) * is * mg);
                    }
                } else {
                    for ((d, v), g) in it {
                        *d += k * (g - mb - (v - mu) * is * mg);
                    }
                }
            }
        });
}

/// `out[i] = f(a[i])` in parallel.
pub fn map(out: &mut [f32], a: &[f32], f: impl Fn(f32) -> f32 + Sync) {
    out.par_chunks_mut(MAP_CHUNK)
        .zip(a.par_chunks(MAP_CHUNK))
        .for_each(|(o, a)| o.iter_mut().zip(a).for_each(|(o, &a)| *o = f(a)));
}

/// `out[i] += f(a[i], b[i])` in parallel, or `out[i] = f(a[i], b[i])` when `set`.
pub fn acc_map(
    out: &mut [f32],
    set: bool,
    a: &[f32],
    b: &[f32],
    f: impl Fn(f32, f32) -> f32 + Sync,
) {
    out.par_chunks_mut(MAP_CHUNK)
        .zip(a.par_chunks(MAP_CHUNK))
        .zip(b.par_chunks(MAP_CHUNK))
        .for_each(|((o, a), b)| {
            let it = o.iter_mut().zip(a.iter().zip(b));
            if set {
                it.for_each(|(o, (&a, &b))| *o = f(a, b));
            } else {
                it.for_each(|(o, (&a, &b))| *o += f(a, b));
            }
        });
}

/// `out = a` when `set`, else `out += a`.
pub fn put(out: &mut [f32], a: &[f32], set: bool) {
    if set {
        out.copy_from_slice(a);
    } else {
        add_into(out, a);
    }
}

/// `out = a + b` in parallel.
pub fn sum2(out: &mut [f32], a: &[f32], b: &[f32]) {
    out.par_chunks_mut(MAP_CHUNK)
        .zip(a.par_chunks(MAP_CHUNK))
        .zip(b.par_chunks(MAP_CHUNK))
        .for_each(|((o, a), b)| {
            o.iter_mut()
                .zip(a.iter().zip(b))
                .for_each(|(o, (a, b))| *o = a + b)
        });
}

/// `out += a` in parallel.
pub fn add_into(out: &mut [f32], a: &[f32]) {
    if out.len() < MAP_CHUNK {
        out.iter_mut().zip(a).for_each(|(o, a)| *o += a);
        return;
    }
    out.par_chunks_mut(MAP_CHUNK)
        .zip(a.par_chunks(MAP_CHUNK))
        .for_each(|(o, a)| o.iter_mut().zip(a).for_each(|(o, a)| *o += a));
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// An activation function's value.
pub fn act(f: Activation, x: f32) -> f32 {
    match f {
        Activation::Relu => x.max(0.0),
        Activation::Relu6 => x.clamp(0.0, 6.0),
        Activation::Silu => x * sigmoid(x),
        Activation::Gelu => 0.5 * x * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2)),
        Activation::Sigmoid => sigmoid(x),
        Activation::Tanh => x.tanh(),
        Activation::Hardswish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
    }
}

/// An activation function's derivative at `x`.
pub fn act_grad(f: Activation, x: f32) -> f32 {
    match f {
        Activation::Relu => (x > 0.0) as u8 as f32,
        Activation::Relu6 => (x > 0.0 && x < 6.0) as u8 as f32,
        Activation::Silu => {
            let s = sigmoid(x);
            s + x * s * (1.0 - s)
        }
        Activation::Gelu => {
            let cdf = 0.5 * (1.0 + libm::erff(x * std::f32::consts::FRAC_1_SQRT_2));
            let pdf = (-0.5 * x * x).exp() / (2.0 * std::f32::consts::PI).sqrt();
            cdf + x * pdf
        }
        Activation::Sigmoid => {
            let s = sigmoid(x);
            s * (1.0 - s)
        }
        Activation::Tanh => 1.0 - x.tanh().powi(2),
        Activation::Hardswish => {
            if x <= -3.0 {
                0.0
            } else if x >= 3.0 {
                1.0
            } else {
                (2.0 * x + 3.0) / 6.0
            }
        }
    }
}

/// The geometry of a pooling window over one plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub pad: [usize; 2],
    pub ho: usize,
    pub wo: usize,
    /// Average pooling divides by the window's size rather than by its taps inside the input.
    pub count_include_pad: bool,
}

impl Pool {
    fn as_conv(&self) -> Conv {
        Conv {
            c: 1,
            h: self.h,
            w: self.w,
            o: 1,
            kh: self.kernel[0],
            kw: self.kernel[1],
            stride: self.stride,
            pad: self.pad,
            dil: [1, 1],
            ho: self.ho,
            wo: self.wo,
            depthwise: true,
        }
    }
}

/// Max pooling (padding counts as -inf); records each output's source index in its plane.
pub fn max_pool_forward(g: &Pool, x: &[f32], y: &mut [f32], arg: &mut [u32], planes: usize) {
    let (hw, howo) = (g.h * g.w, g.ho * g.wo);
    let taps = tap_table(&g.as_conv());
    y[..planes * howo]
        .par_chunks_mut(howo)
        .zip(arg[..planes * howo].par_chunks_mut(howo))
        .zip(x[..planes * hw].par_chunks(hw))
        .for_each(|((yp, ap), xp)| {
            yp.fill(f32::NEG_INFINITY);
            ap.fill(u32::MAX);
            for &Tap {
                ys: (ylo, yhi),
                xs: (xlo, xhi),
                offy,
                offx,
                ..
            } in &taps
            {
                for oy in ylo..yhi {
                    let iy = ((oy * g.stride[0]) as isize + offy) as usize;
                    for ox in xlo..xhi {
                        let ix = iy * g.w + ((ox * g.stride[1]) as isize + offx) as usize;
                        let o = oy * g.wo + ox;
                        if xp[ix] > yp[o] || ap[o] == u32::MAX {
                            yp[o] = xp[ix];
                            ap[o] = ix as u32;
                        }
                    }
                }
            }
        });
}

/// Gradient of max pooling: each output's gradient goes to its recorded source.
pub fn max_pool_backward(
    g: &Pool,
    dy: &[f32],
    arg: &[u32],
    (dx, set): (&mut [f32], bool),
    planes: usize,
) {
    let (hw, howo) = (g.h * g.w, g.ho * g.wo);
    dx[..planes * hw]
        .par_chunks_mut(hw)
        .zip(dy[..planes * howo].par_chunks(howo))
        .zip(arg[..planes * howo].par_chunks(howo))
        .for_each(|((dp, d), a)| {
            if set {
                dp.fill(0.0);
            }
            for (&i, &v) in a.iter().zip(d) {
                if i != u32::MAX {
                    dp[i as usize] += v;
                }
            }
        });
}

/// The divisor of each output of an average pool.
pub fn avg_pool_divisors(g: &Pool) -> Vec<f32> {
    if g.count_include_pad {
        return vec![(g.kernel[0] * g.kernel[1]) as f32; g.ho * g.wo];
    }
    let mut d = vec![0.0f32; g.ho * g.wo];
    let taps = tap_table(&g.as_conv());
    for &Tap {
        ys: (ylo, yhi),
        xs: (xlo, xhi),
        ..
    } in &taps
    {
        for oy in ylo..yhi {
            for v in &mut d[oy * g.wo + xlo..oy * g.wo + xhi] {
                *v += 1.0;
            }
        }
    }
    d
}

/// Average pooling (padding counts as 0).
pub fn avg_pool_forward(g: &Pool, div: &[f32], x: &[f32], y: &mut [f32], planes: usize) {
    let (hw, howo) = (g.h * g.w, g.ho * g.wo);
    let taps = tap_table(&g.as_conv());
    y[..planes * howo]
        .par_chunks_mut(howo)
        .zip(x[..planes * hw].par_chunks(hw))
        .for_each(|(yp, xp)| {
            yp.fill(0.0);
            for &Tap {
                ys: (ylo, yhi),
                xs: (xlo, xhi),
                offy,
                offx,
                ..
            } in &taps
            {
                for oy in ylo..yhi {
                    let iy = ((oy * g.stride[0]) as isize + offy) as usize;
                    let src = &xp[iy * g.w..(iy + 1) * g.w];
                    let d = &mut yp[oy * g.wo..(oy + 1) * g.wo];
                    for ox in xlo..xhi {
                        d[ox] += src[((ox * g.stride[1]) as isize + offx) as usize];
                    }
                }
            }
            yp.iter_mut().zip(div).for_each(|(v, d)| *v /= d);
        });
}

/// Gradient of average pooling.
pub fn avg_pool_backward(
    g: &Pool,
    div: &[f32],
    dy: &[f32],
    (dx, set): (&mut [f32], bool),
    planes: usize,
) {
    let (hw, howo) = (g.h * g.w, g.ho * g.wo);
    let taps = tap_table(&g.as_conv());
    dx[..planes * hw]
        .par_chunks_mut(hw)
        .zip(dy[..planes * howo].par_chunks(howo))
        .for_each(|(dp, d)| {
            if set {
                dp.fill(0.0);
            }
            for &Tap {
                ys: (ylo, yhi),
                xs: (xlo, xhi),
                offy,
                offx,
                ..
            } in &taps
            {
                for oy in ylo..yhi {
                    let iy = ((oy * g.stride[0]) as isize + offy) as usize;
                    let row = &mut dp[iy * g.w..(iy + 1) * g.w];
                    for ox in xlo..xhi {
                        let o = oy * g.wo + ox;
                        row[((ox * g.stride[1]) as isize + offx) as usize] += d[o] / div[o];
                    }
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geom(c: usize, h: usize, o: usize, k: usize, s: usize, p: usize, d: usize) -> Conv {
        let span = d * (k - 1) + 1;
        let ho = (h + 2 * p - span) / s + 1;
        Conv {
            c,
            h,
            w: h,
            o,
            kh: k,
            kw: k,
            stride: [s, s],
            pad: [p, p],
            dil: [d, d],
            ho,
            wo: ho,
            depthwise: false,
        }
    }

    /// im2col and col2im are adjoint: <im2col(x), c> = <x, col2im(c)>.
    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        for (k, s, p, d) in [
            (3, 1, 1, 1),
            (3, 2, 1, 1),
            (3, 1, 2, 2),
            (5, 2, 2, 1),
            (2, 2, 0, 1),
        ] {
            let g = geom(3, 7, 4, k, s, p, d);
            let x: Vec<f32> = (0..g.in_len()).map(|i| (i as f32 * 0.3).sin()).collect();
            let c: Vec<f32> = (0..g.taps() * g.ho * g.wo)
                .map(|i| (i as f32 * 0.7).cos())
                .collect();
            let mut col = vec![0.0; c.len()];
            im2col(&g, &x, &mut col);
            let mut back = vec![0.0; x.len()];
            col2im(&g, &mut c.clone(), &mut back);
            let lhs: f64 = col.iter().zip(&c).map(|(a, b)| (a * b) as f64).sum();
            let rhs: f64 = x.iter().zip(&back).map(|(a, b)| (a * b) as f64).sum();
            assert!(
                (lhs - rhs).abs() < 1e-3,
                "k{k} s{s} p{p} d{d}: {lhs} vs {rhs}"
            );
        }
    }

    #[test]
    fn valid_ranges_keep_inputs_inside() {
        for (out, s, off, len) in [(8, 1, -1, 8), (4, 2, -1, 8), (4, 2, 1, 8), (3, 3, -2, 5)] {
            let (lo, hi) = valid(out, s, off, len);
            for o in 0..out {
                let i = (o * s) as isize + off;
                assert_eq!(o >= lo && o < hi, i >= 0 && i < len as isize);
            }
        }
    }
}
