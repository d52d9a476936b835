//! Feasibility against a space, and a local search that polishes a design: single steps of
//! one choice (channels or bottleneck by 8, depth by 1, another kernel), best improvement first,
//! until no step improves the exact score.

use super::score::{score, Convention, Score};
use super::space::{round8, Space, CHANNEL_STEP};
use super::structure::{Block, BlockKind};

/// Whether `blocks` lies in the space and meets its budget: FLOPs, params, `rho <= rho0`,
/// non-decreasing channels with bounded growth, bottleneck widths in their ratio range, and the
/// grid's limits.
pub fn feasible(space: &Space, blocks: &[Block], s: &Score) -> bool {
    let st = &space.stages;
    let n = st.strides.len();
    if s.flops > space.budget.flops || s.params > space.budget.params || s.rho > space.budget.rho {
        return false;
    }
    let chans: Vec<usize> = blocks[..=n].iter().map(|b| b.cout).collect();
    if !channels_ok(space, &chans) {
        return false;
    }
    blocks[1..=n].iter().enumerate().all(|(j, b)| {
        let (btn, l) = (b.btn.unwrap_or(0), b.depth.unwrap_or(0));
        let (lo, hi) = btn_bounds(space, b.cout);
        (lo..=hi).contains(&btn) && (1..=st.max_depth[j]).contains(&l) && st.kernels.contains(&b.k)
    })
}

/// Whether a channel vector (stem, then each stage) respects the space: the stem range,
/// non-decreasing, growth at most `max_growth` per stage, at most `max_channels`, and not
/// above a final conv. (Searches only propose multiples of 8; a released design need not be
/// on that grid to be judged.)
pub fn channels_ok(space: &Space, c: &[usize]) -> bool {
    let st = &space.stages;
    let [lo, hi] = space.stem.channels;
    (lo..=hi).contains(&c[0])
        && c.windows(2).all(|w| {
            w[1] >= w[0] && w[1] as f64 <= st.max_growth * w[0] as f64 && w[1] <= st.max_channels
        })
        && space.final_channels.is_none_or(|f| c[c.len() - 1] <= f)
}

/// The bottleneck widths a stage of `c` channels may take: the ratio bounds of the space,
/// rounded to the nearest multiple of 8 as the official rules round them, and `max_btn`.
pub fn btn_bounds(space: &Space, c: usize) -> (usize, usize) {
    let st = &space.stages;
    let (lo, hi) = match (st.btn_min_ratio, st.btn_ratio) {
        (Some(r), _) => (round8(r * c as f64), c),
        (None, Some([a, b])) => (round8(a * c as f64), round8(b * c as f64)),
        _ => (CHANNEL_STEP, c),
    };
    (lo, hi.min(st.max_btn))
}

fn neighbours(space: &Space, blocks: &[Block]) -> Vec<Vec<Block>> {
    let n = space.stages.strides.len();
    let step = CHANNEL_STEP as isize;
    let mut out = Vec::new();
    let set_out = |v: &mut Vec<Block>, i: usize, c: usize| {
        v[i].cout = c;
        if i + 1 < v.len() {
            v[i + 1].cin = c;
        }
    };
    for d in [-step, step] {
        let c = blocks[0].cout as isize + d;
        if c > 0 {
            let mut v = blocks.to_vec();
            set_out(&mut v, 0, c as usize);
            out.push(v);
        }
    }
    for i in 1..=n {
        for d in [-step, step] {
            let c = blocks[i].cout as isize + d;
            if c > 0 {
                let mut v = blocks.to_vec();
                set_out(&mut v, i, c as usize);
                out.push(v);
            }
            let b = blocks[i].btn.unwrap_or(0) as isize + d;
            if b > 0 {
                let mut v = blocks.to_vec();
                v[i].btn = Some(b as usize);
                out.push(v);
            }
            // Channels and bottleneck together (keeps the ratio constraints satisfiable).
            if c > 0 && b > 0 {
                let mut v = blocks.to_vec();
                set_out(&mut v, i, c as usize);
                v[i].btn = Some(b as usize);
                out.push(v);
            }
        }
        for d in [-1isize, 1] {
            let l = blocks[i].depth.unwrap_or(1) as isize + d;
            if l >= 1 {
                let mut v = blocks.to_vec();
                v[i].depth = Some(l as usize);
                out.push(v);
            }
        }
        for &k in &space.stages.kernels {
            if k != blocks[i].k {
                let mut v = blocks.to_vec();
                v[i].k = k;
                out.push(v);
            }
        }
    }
    // Moving one unit of depth between two stages.
    for i in 1..=n {
        for j in 1..=n {
            if i != j && blocks[i].depth.unwrap_or(1) > 1 {
                let mut v = blocks.to_vec();
                v[i].depth = v[i].depth.map(|l| l - 1);
                v[j].depth = v[j].depth.map(|l| l + 1);
                out.push(v);
            }
        }
    }
    out.retain(|v| v.iter().all(|b| b.kind == BlockKind::Conv || b.cout > 0));
    out
}

/// Polishes `blocks` by local search; returns the best structure found (the input when it is
/// infeasible and no feasible neighbour exists).
pub fn polish(space: &Space, blocks: Vec<Block>, convention: Convention) -> Vec<Block> {
    let w = space.weights();
    let eval = |b: &[Block]| {
        let s = score(b, space.resolution, convention, &w);
        feasible(space, b, &s).then_some(s.score)
    };
    let mut best = blocks;
    let mut best_score = eval(&best).unwrap_or(f64::NEG_INFINITY);
    loop {
        let next = neighbours(space, &best)
            .into_iter()
            .filter_map(|v| eval(&v).map(|s| (s, v)))
            .max_by(|a, b| a.0.total_cmp(&b.0));
        match next {
            Some((s, v)) if s > best_score + 1e-9 => {
                best = v;
                best_score = s;
            }
            _ => return best,
        }
    }
}
