//! The design program over a box of channel vectors with the channels as variables: a bound on
//! every structure of the box whose error falls with the square of the box's width.
//!
//! `program::box_bound` takes every entropy term at the box's largest channels and every cost
//! at its smallest, an error proportional to the box's width. Here the widths `C_i` and their
//! logarithms `u_i` are variables of the program (`u_i <= ln C_i` by tangents of `ln` at points
//! of the box), and for each stage's choice (bottleneck, kernel, depth), one binary as in the
//! fixed-channel program:
//!
//! - a block's costs are bilinear in its input and output widths,
//!   `a + b C_in + c C_out + d C_in C_out` (`d`, the projection shortcut's, does not depend on
//!   the choice). The choice's copies of `C_in` and `C_out` (`y C`, bounded by `lo y` and
//!   `hi y`, summing to `C` over the stage's choices: the convex hull of the disjunction) make
//!   the `b` and `c` terms exact; `C_in C_out` is bounded from below by McCormick's
//!   inequalities;
//! - a block's `ln w` is `u_in + (L - 1) u_out + kappa` (its first unit reads the input width,
//!   the others the output width). Its weight in the objective is `A`, the sum of
//!   `alpha half ln(C R^2)` over the stages that end at or after it, linear in `u`. So the
//!   block's entropy is `u_in A + (L - 1) (u_out A) + kappa A`: the two products of a width's
//!   logarithm with `A` are bounded from above by McCormick's inequalities, and the choice's
//!   copies of `u_out A` and of `A` make the rest exact;
//! - the bottleneck rules are linear in the output width (`btn >= r C - 4` bounds `btn >=
//!   round8(r C)`, and so on);
//! - the effectiveness bound and the depth penalty are those of the fixed-channel program, with
//!   `(L - 1) u_out` in `ln w` bounded from above by McCormick's inequalities.
//!
//! Every structure of the box satisfies every constraint at its own widths, and its score is
//! at most the objective there, so the program's optimum (or HiGHS's dual bound of it) bounds
//! the box. McCormick's error for `x y` is at most `(x_hi - x_lo)(y_hi - y_lo) / 4`, a product
//! of two widths of the box. Choices are dropped where another of the same depth, allowed at
//! every width of the box, has no less `ln w` and no more FLOPs or params at each corner of the
//! box (the costs differ by a function affine in each width, so the corners decide).

use std::time::Duration;

use good_lp::{constraint, variable, Expression, Variable};

use super::bound::ChannelBox;
use super::polish::btn_bounds;
use super::program::{dual_bound, input_resolutions, undominated, BoxBound, Choice, Program};
use super::score::{block_terms, score, Convention};
use super::space::{Space, CHANNEL_STEP};
use super::structure::{Block, BlockKind};

/// `a + b x + c z + d x z`: a block's FLOPs or params as a function of its input and output
/// widths `x` and `z` (the bottleneck, kernel and depth fixed).
#[derive(Debug, Clone, Copy)]
struct Bilinear {
    a: f64,
    b: f64,
    c: f64,
    d: f64,
}

impl Bilinear {
    /// The bilinear function through `f` at four points whose input and output widths differ
    /// (an inverted block's identity residual, counted only where they agree, is left out).
    fn fit(f: impl Fn(usize, usize) -> f64) -> Bilinear {
        let (x1, x2, z1, z2) = (8usize, 16usize, 24usize, 40usize);
        let (f11, f12, f21, f22) = (f(x1, z1), f(x1, z2), f(x2, z1), f(x2, z2));
        let (x1, x2, z1, z2) = (x1 as f64, x2 as f64, z1 as f64, z2 as f64);
        let d = (f22 - f21 - f12 + f11) / ((x2 - x1) * (z2 - z1));
        let b = (f21 - f11) / (x2 - x1) - d * z1;
        let c = (f12 - f11) / (z2 - z1) - d * x1;
        let a = f11 - b * x1 - c * z1 - d * x1 * z1;
        Bilinear { a, b, c, d }
    }

    fn at(&self, x: f64, z: f64) -> f64 {
        self.a + self.b * x + self.c * z + self.d * x * z
    }
}

/// One choice of a stage over the box.
struct BoxChoice {
    choice: Choice,
    flops: Bilinear,
    params: Bilinear,
    /// `ln w` less `u_in + (L - 1) u_out`.
    kappa: f64,
}

/// The choices of stage `j` (0-based) over box `b`, dominated ones dropped.
fn options(space: &Space, j: usize, b: &ChannelBox, res_in: f64) -> Vec<BoxChoice> {
    let st = &space.stages;
    let (x_lo, x_hi) = (b.lo[j] as f64, b.hi[j] as f64);
    let (c_lo, c_hi) = (b.lo[j + 1], b.hi[j + 1]);
    let (blo, bhi) = (btn_bounds(space, c_lo).0, btn_bounds(space, c_hi).1);
    let grid: Vec<usize> = (blo.div_ceil(CHANNEL_STEP).max(1)..=bhi / CHANNEL_STEP)
        .map(|i| i * CHANNEL_STEP)
        .collect();
    // Allowed at every width of the box (the rules' limits grow with the width).
    let everywhere = |btn: usize| {
        let (a, _) = btn_bounds(space, c_hi);
        let (_, z) = btn_bounds(space, c_lo);
        a <= btn && btn <= z
    };
    let corners = [
        (x_lo, c_lo as f64),
        (x_lo, c_hi as f64),
        (x_hi, c_lo as f64),
        (x_hi, c_hi as f64),
    ];
    let mut out = Vec::new();
    for depth in b.depths[j][0]..=b.depths[j][1].min(st.max_depth[j]) {
        let mut row: Vec<BoxChoice> = Vec::new();
        for &k in &st.kernels {
            for &btn in &grid {
                let blk = |cin: usize, cout: usize| Block {
                    kind: space.block,
                    cin,
                    cout,
                    k,
                    s: st.strides[j],
                    depth: Some(depth),
                    btn: Some(btn),
                };
                let flops = Bilinear::fit(|x, z| block_terms(&blk(x, z), res_in).1);
                let params = Bilinear::fit(|x, z| block_terms(&blk(x, z), res_in).0);
                let (_, _, lw, layers) = block_terms(&blk(8, 24), res_in);
                let kappa = lw - 8f64.ln() - (depth as f64 - 1.0) * 24f64.ln();
                row.push(BoxChoice {
                    // Costs and `ln w` depend on the widths here: they are in `flops`,
                    // `params` and `kappa`, and `log_w` holds `kappa`.
                    choice: Choice {
                        btn,
                        k,
                        depth,
                        params: 0.0,
                        flops: 0.0,
                        log_w: kappa,
                        layers,
                    },
                    flops,
                    params,
                    kappa,
                });
            }
        }
        // Ties between equal choices go to the first (`pos`), so that one of them stays.
        let key = |o: &BoxChoice, pos: usize| -> (bool, Vec<f64>, usize) {
            let costs = corners
                .iter()
                .flat_map(|&(x, z)| [o.flops.at(x, z), o.params.at(x, z)])
                .collect();
            (everywhere(o.choice.btn), costs, pos)
        };
        let keyed: Vec<(BoxChoice, (bool, Vec<f64>, usize))> = row
            .into_iter()
            .enumerate()
            .map(|(i, o)| {
                let k = key(&o, i);
                (o, k)
            })
            .collect();
        out.extend(
            undominated(keyed, |(b, (free, cb, pb)), (a, (_, ca, pa))| {
                pb != pa
                    && *free
                    && b.kappa >= a.kappa
                    && cb.iter().zip(ca).all(|(p, q)| p <= q)
                    && (b.kappa > a.kappa || cb.iter().zip(ca).any(|(p, q)| p < q) || pb < pa)
            })
            .into_iter()
            .map(|(o, _)| o),
        );
    }
    out
}

/// The number of choices of the box's stages before dominated ones are dropped: bottlenecks
/// on the grid times kernels times depths, summed over the stages.
pub(crate) fn raw_options(space: &Space, b: &ChannelBox) -> usize {
    let st = &space.stages;
    (0..st.strides.len())
        .map(|j| {
            let (blo, bhi) = (
                btn_bounds(space, b.lo[j + 1]).0,
                btn_bounds(space, b.hi[j + 1]).1,
            );
            let btns = (bhi / CHANNEL_STEP + 1).saturating_sub(blo.div_ceil(CHANNEL_STEP).max(1));
            let [dl, dh] = b.depths[j];
            let depths = (dh.min(st.max_depth[j]) + 1).saturating_sub(dl);
            btns * st.kernels.len() * depths
        })
        .sum()
}

/// McCormick's upper bounds of `x y` for `x` in `[xl, xh]`, `y` in `[yl, yh]`.
fn over(
    xy: Variable,
    x: Expression,
    y: Expression,
    [xl, xh]: [f64; 2],
    [yl, yh]: [f64; 2],
) -> [good_lp::Constraint; 2] {
    [
        constraint!(xy <= xh * y.clone() + yl * x.clone() - xh * yl),
        constraint!(xy <= xl * y + yh * x - xl * yh),
    ]
}

/// McCormick's lower bounds of `x y`.
fn under(
    xy: Variable,
    x: Expression,
    y: Expression,
    [xl, xh]: [f64; 2],
    [yl, yh]: [f64; 2],
) -> [good_lp::Constraint; 2] {
    [
        constraint!(xy >= xl * y.clone() + yl * x.clone() - xl * yl),
        constraint!(xy >= xh * y + yh * x - xh * yh),
    ]
}

/// The program over box `b` (channels as variables), solved for its bound within `limit`
/// (only its linear relaxation with `relaxation`); `Unknown` when its stages have more than
/// `max_options` choices together before dominated ones are dropped ([`raw_options`]): the
/// program would take seconds.
pub(crate) fn box_bound(
    space: &Space,
    convention: Convention,
    b: &ChannelBox,
    limit: Duration,
    relaxation: bool,
    max_options: usize,
) -> BoxBound {
    let tinynas = convention == Convention::Tinynas;
    let st = &space.stages;
    let n = st.strides.len();
    let res = input_resolutions(space);
    let w = space.weights();
    if raw_options(space, b) > max_options {
        return BoxBound::Unknown;
    }
    let opts: Vec<Vec<BoxChoice>> = (0..n).map(|j| options(space, j, b, res[j + 1])).collect();
    if opts.iter().any(Vec::is_empty) {
        return BoxBound::Empty;
    }

    let mut p = Program::new(
        opts.iter()
            .map(|o| o.iter().map(|o| o.choice.clone()).collect())
            .collect(),
    );
    // Widths and their logarithms.
    let mut cv = Vec::with_capacity(n + 1);
    let mut uv = Vec::with_capacity(n + 1);
    let lo: Vec<f64> = b.lo.iter().map(|&c| c as f64).collect();
    let hi: Vec<f64> = b.hi.iter().map(|&c| c as f64).collect();
    for i in 0..=n {
        let c = p.vars.add(variable().min(lo[i]).max(hi[i]));
        let u = p.vars.add(variable().min(lo[i].ln()).max(hi[i].ln()));
        // Tangents of ln at up to 9 points of the box, spread geometrically over the grid.
        let steps = (b.hi[i] - b.lo[i]) / CHANNEL_STEP;
        let mut pts: Vec<f64> = (0..=8)
            .map(|t| {
                let g = lo[i] * (hi[i] / lo[i]).powf(t as f64 / 8.0);
                ((g / CHANNEL_STEP as f64).round() * CHANNEL_STEP as f64).clamp(lo[i], hi[i])
            })
            .collect();
        if steps <= 8 {
            pts = (0..=steps)
                .map(|s| lo[i] + (s * CHANNEL_STEP) as f64)
                .collect();
        }
        pts.dedup();
        for t in pts {
            p.cons.push(constraint!(u <= t.ln() - 1.0 + c / t));
        }
        cv.push(c);
        uv.push(u);
    }
    for i in 1..=n {
        p.cons.push(constraint!(cv[i] >= cv[i - 1]));
        p.cons.push(constraint!(cv[i] <= st.max_growth * cv[i - 1]));
    }
    let ulo: Vec<f64> = lo.iter().map(|x| x.ln()).collect();
    let uhi: Vec<f64> = hi.iter().map(|x| x.ln()).collect();
    // The stages as the convention counts them: block index that ends each, its weight
    // `alpha half` and `ln R^2`.
    let structure = space.assemble(&b.hi, &vec![(CHANNEL_STEP, st.kernels[0], 1); n]);
    let plan = score(&structure, space.resolution, convention, &w).stages;
    let half = if tinynas { 0.5 } else { 1.0 };
    let fin = space.final_channels.map(|f| (f as f64).ln());
    // A of block i: (expression, lower bound, upper bound).
    let weight = |i: usize| -> (Expression, f64, f64) {
        let (mut e, mut l, mut h) = (Expression::default(), 0.0, 0.0);
        for (g, stage) in plan.iter().enumerate() {
            if stage.last_block < i {
                continue;
            }
            let a = w.alpha_of(g, plan.len()) * half;
            let r2 = (stage.resolution * stage.resolution).ln();
            match (stage.last_block <= n, fin) {
                (true, _) => {
                    let c = stage.last_block;
                    e += a * uv[c] + a * r2;
                    l += a * (ulo[c] + r2);
                    h += a * (uhi[c] + r2);
                }
                (false, Some(f)) => {
                    e += a * (f + r2);
                    l += a * (f + r2);
                    h += a * (f + r2);
                }
                (false, None) => unreachable!("a stage past the last block needs a final conv"),
            }
        }
        (e, l, h)
    };
    let mega = 1e-6;
    // The stem (input width 3) and the final conv (output width fixed): affine in one width.
    let stem_at = |c: usize| block_terms(&space.assemble(&vec![c; n + 1], &[])[0], res[0]);
    let (s8, s16) = (stem_at(8), stem_at(16));
    let lin = |a: f64, b: f64| ((b - a) / 8.0, a - 8.0 * (b - a) / 8.0);
    let (sf, sf0) = lin(s8.1, s16.1);
    let (sp, sp0) = lin(s8.0, s16.0);
    let mut flops = mega * (sf0 + sf * cv[0]);
    let mut params = mega * (sp0 + sp * cv[0]);
    let (e0, l0) = (s8.2, s8.3);
    let mut objective = Expression::default();
    let (a0, _, _) = weight(0);
    objective += e0 * a0;
    let mut e_blocks: Vec<Expression> = vec![Expression::from(e0)];
    let mut l_blocks: Vec<Expression> = vec![Expression::from(l0 as f64)];
    for j in 0..n {
        let o = &opts[j];
        let y = p.z[j].clone();
        let (xi, zi) = (j, j + 1);
        // Costs: the choice's copies of the input and output widths.
        let mut xs = Expression::default();
        let mut zs = Expression::default();
        let mut fl = Expression::default();
        let mut pa = Expression::default();
        let dmin_f = o.iter().map(|o| o.flops.d).fold(f64::INFINITY, f64::min);
        let dmin_p = o.iter().map(|o| o.params.d).fold(f64::INFINITY, f64::min);
        debug_assert!(dmin_f >= 0.0 && dmin_p >= 0.0);
        for (opt, &yv) in o.iter().zip(&y) {
            let x = p.vars.add(variable().min(0.0));
            let z = p.vars.add(variable().min(0.0));
            p.cons.push(constraint!(x >= lo[xi] * yv));
            p.cons.push(constraint!(x <= hi[xi] * yv));
            p.cons.push(constraint!(z >= lo[zi] * yv));
            p.cons.push(constraint!(z <= hi[zi] * yv));
            xs += x;
            zs += z;
            let ll = lo[xi] * lo[zi];
            fl += (opt.flops.a + (opt.flops.d - dmin_f) * ll) * yv
                + opt.flops.b * x
                + opt.flops.c * z;
            pa += (opt.params.a + (opt.params.d - dmin_p) * ll) * yv
                + opt.params.b * x
                + opt.params.c * z;
            // The bottleneck rules at the output width (relaxed past the rounding to 8).
            let btn = opt.choice.btn as f64;
            match (st.btn_min_ratio, st.btn_ratio) {
                (Some(r), _) => {
                    p.cons.push(constraint!(r * z <= (btn + 4.0) * yv));
                    p.cons.push(constraint!(z >= btn * yv));
                }
                (None, Some([ra, rb])) => {
                    p.cons.push(constraint!(ra * z <= (btn + 4.0) * yv));
                    if btn > CHANNEL_STEP as f64 {
                        p.cons.push(constraint!(rb * z >= (btn - 4.0) * yv));
                    }
                }
                _ => p.cons.push(constraint!(z >= btn * yv)),
            }
        }
        p.cons.push(constraint!(xs == cv[xi]));
        p.cons.push(constraint!(zs == cv[zi]));
        // C_in C_out from below.
        let prod = p.vars.add(variable().min(lo[xi] * lo[zi]));
        for c in under(
            prod,
            cv[xi].into(),
            cv[zi].into(),
            [lo[xi], hi[xi]],
            [lo[zi], hi[zi]],
        ) {
            p.cons.push(c);
        }
        fl += dmin_f * prod;
        pa += dmin_p * prod;
        // The identity residual of a strided inverted block, counted only where the box fixes
        // both widths equal.
        if space.block == BlockKind::K1DWSEK1
            && st.strides[j] == 2
            && b.lo[xi] == b.hi[xi]
            && b.lo[zi] == b.hi[zi]
            && b.lo[xi] == b.lo[zi]
        {
            fl += lo[xi] * res[j + 1] * res[j + 1];
        }
        flops += mega * fl;
        params += mega * pa;
        // Entropy: u_in A + (L - 1) (u_out A) + kappa A.
        let (a, al, ah) = weight(j + 1);
        let av = p.vars.add(variable().min(al).max(ah));
        p.cons.push(constraint!(av == a));
        let q = p.vars.add(variable());
        for c in over(q, uv[xi].into(), av.into(), [ulo[xi], uhi[xi]], [al, ah]) {
            p.cons.push(c);
        }
        let (rl, rh) = (ulo[zi] * al, uhi[zi] * ah);
        let r = p.vars.add(variable().min(rl).max(rh));
        for c in over(r, uv[zi].into(), av.into(), [ulo[zi], uhi[zi]], [al, ah]) {
            p.cons.push(c);
        }
        let mut ent = Expression::from(q);
        let mut rs = Expression::default();
        let mut as_ = Expression::default();
        for (opt, &yv) in o.iter().zip(&y) {
            let rc = p.vars.add(variable());
            let ac = p.vars.add(variable());
            p.cons.push(constraint!(rc >= rl * yv));
            p.cons.push(constraint!(rc <= rh * yv));
            p.cons.push(constraint!(ac >= al * yv));
            p.cons.push(constraint!(ac <= ah * yv));
            rs += rc;
            as_ += ac;
            ent += (opt.choice.depth as f64 - 1.0) * rc + opt.kappa * ac;
        }
        p.cons.push(constraint!(rs == r));
        p.cons.push(constraint!(as_ == av));
        objective += ent;
        // ln w of the block for the effectiveness bound: u_in + (L - 1) u_out + kappa, the
        // product from above.
        let [dl, dh] = b.depths[j];
        let dh = dh.min(st.max_depth[j]);
        let t = p.vars.add(variable());
        let lm1 = p.sum_of(j, &|c| c.depth as f64 - 1.0);
        for c in over(
            t,
            lm1,
            uv[zi].into(),
            [dl as f64 - 1.0, dh as f64 - 1.0],
            [ulo[zi], uhi[zi]],
        ) {
            p.cons.push(c);
        }
        e_blocks.push(uv[xi] + t + p.sum_of(j, &|c| c.log_w));
        l_blocks.push(p.sum_of(j, &|c| c.layers as f64));
    }
    let mut lf = 0usize;
    if let Some(f) = space.final_conv(8) {
        let at = |c: usize| {
            block_terms(
                &Block {
                    cin: c,
                    ..f.clone()
                },
                res[n + 1],
            )
        };
        let (f8, f16) = (at(8), at(16));
        let (ff, ff0) = lin(f8.1, f16.1);
        let (fp, fp0) = lin(f8.0, f16.0);
        flops += mega * (ff0 + ff * cv[n]);
        params += mega * (fp0 + fp * cv[n]);
        let (an1, _, _) = weight(n + 1);
        // ln w of a 1x1 conv is ln C_in; A of the final conv is a constant.
        let an1 = good_lp::IntoAffineExpression::constant(&an1);
        objective += an1 * uv[n];
        e_blocks.push(Expression::from(uv[n]));
        lf = f8.3;
        l_blocks.push(Expression::from(lf as f64));
    }
    p.cons.push(constraint!(flops <= mega * space.budget.flops));
    p.cons
        .push(constraint!(params <= mega * space.budget.params));
    let ends: Vec<usize> = plan.iter().map(|s| s.last_block).collect();
    objective -= p.effectiveness_and_penalty(
        space,
        convention,
        &ends,
        &e_blocks,
        &l_blocks,
        l0 + lf,
        relaxation,
    );
    dual_bound(p.vars, p.cons, objective, limit, relaxation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deepmad::bound::tests::{around, enumerate_in, inside, small};
    use crate::deepmad::program::full_depths;

    /// Every box of the small spaces that holds a feasible structure: channel vectors alone and
    /// boxes one grid step either side of them.
    #[test]
    fn the_box_bound_covers_every_structure_of_the_box_and_is_tight_at_one_vector() {
        let mut checked = 0;
        for block in ["SuperResK1KXK1", "SuperResK1DWSEK1"] {
            for (rho, flops) in [(0.5, 3.0e6), (0.4, 1.5e6)] {
                let space = small(block, rho, flops);
                for convention in [Convention::Paper, Convention::Tinynas] {
                    for c in [
                        [8usize, 16, 16, 24],
                        [16, 16, 24, 32],
                        [8, 8, 16, 32],
                        [16, 24, 32, 32],
                    ] {
                        for steps in [0usize, 1] {
                            let (lo, hi) = around(&c, steps);
                            let best = enumerate_in(&space, convention, &|v| inside(&lo, &hi, v));
                            let b = ChannelBox {
                                lo: lo.clone(),
                                hi: hi.clone(),
                                depths: full_depths(&space),
                            };
                            let limit = Duration::from_secs(20);
                            let mip = box_bound(&space, convention, &b, limit, false, usize::MAX);
                            let lp = box_bound(&space, convention, &b, limit, true, usize::MAX);
                            let Some(best) = best else {
                                // No feasible structure: the program may say so or bound
                                // anything; it must not fail.
                                assert!(!matches!(mip, BoxBound::Unknown), "{block} {c:?}");
                                continue;
                            };
                            checked += 1;
                            let (BoxBound::Bound(m), BoxBound::Bound(l)) = (mip, lp) else {
                                panic!("{block} {convention:?} {c:?} +-{steps}: {mip:?} {lp:?} with a feasible structure {best}");
                            };
                            assert!(
                                // The LP has the penalty's planes, the program not, so
                                // neither need be below the other.
                                m >= best - 1e-9 && l >= best - 1e-9,
                                "{block} {convention:?} {lo:?}..{hi:?}: program {m}, LP {l}, best {best}"
                            );
                            // At one vector the program is the fixed-channel one: exact but
                            // for the depth penalty, which a chord bounds from below where it
                            // is concave (0.12% on one of these).
                            if steps == 0 {
                                assert!(
                                    m <= best + 5e-3 * best.abs(),
                                    "{block} {convention:?} {c:?}: program {m} above the best {best}"
                                );
                            }
                        }
                    }
                }
            }
        }
        assert!(
            checked >= 20,
            "only {checked} boxes held a feasible structure"
        );
    }

    #[test]
    fn costs_are_bilinear_in_the_widths() {
        for block in ["SuperResK1KXK1", "SuperResK1DWSEK1"] {
            let space = small(block, 0.5, 3.0e6);
            let b = ChannelBox {
                lo: vec![8, 8, 8, 8],
                hi: vec![32, 32, 32, 32],
                depths: full_depths(&space),
            };
            for j in 0..3 {
                let res = input_resolutions(&space)[j + 1];
                for o in options(&space, j, &b, res) {
                    for (x, z) in [(8usize, 32usize), (24, 16), (16, 24)] {
                        let blk = Block {
                            kind: space.block,
                            cin: x,
                            cout: z,
                            k: o.choice.k,
                            s: space.stages.strides[j],
                            depth: Some(o.choice.depth),
                            btn: Some(o.choice.btn),
                        };
                        let (p, f, lw, _) = block_terms(&blk, res);
                        let (xf, zf) = (x as f64, z as f64);
                        let lw_fit = xf.ln() + (o.choice.depth as f64 - 1.0) * zf.ln() + o.kappa;
                        assert!((o.flops.at(xf, zf) - f).abs() <= 1e-6 * f);
                        assert!((o.params.at(xf, zf) - p).abs() <= 1e-6 * p);
                        assert!((lw_fit - lw).abs() <= 1e-9 * lw.abs().max(1.0));
                    }
                }
            }
        }
    }
}
