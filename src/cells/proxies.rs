//! Training-free (zero-cost) proxies of a network's trained accuracy, computed with candle on
//! the IR, and the rank correlation they are judged by.
//!
//! - `synflow` (Tanaka et al. 2020, as the zero-cost proxy of Abdelfattah et al. 2021): batch
//!   normalization removed, every parameter replaced by its absolute value, an all-ones input,
//!   `R = sum(f(1))`; the score is the sum over convolution and linear weights of
//!   `|theta * dR/dtheta|`, in double precision (the products of weights overflow f32).
//! - `grad_norm`: the norm of the cross-entropy loss gradient over the weights, on a seeded
//!   random batch with random labels.
//! - `snip`: the sum of `|theta * dL/dtheta|` over the weights, on the same batch.
//! - `params`, `flops`: the IR cost model (learned parameters; multiply-accumulates).

use candle_core::{DType, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::ir::{Graph, Op};
use crate::train::{Model, ModelError};

/// A proxy's name, as the CLI takes it.
pub const NAMES: [&str; 5] = ["synflow", "grad_norm", "snip", "params", "flops"];

/// The graph with every batch normalization replaced by an identity.
pub fn without_batch_norm(g: &Graph) -> Result<Graph, ModelError> {
    let a = g.analyze().map_err(|e| ModelError::Graph(e.to_string()))?;
    let mut out = Graph::new(g.name.clone());
    let mut map = vec![None; a.shapes.len()];
    for &id in &a.order {
        let n = g.node(id);
        let op = match n.op {
            Op::BatchNorm => Op::Identity,
            ref other => other.clone(),
        };
        let ins: Vec<_> = g
            .inputs_of(id)
            .iter()
            .map(|i| map[i.index()].expect("topological order"))
            .collect();
        map[id.index()] = Some(out.add_node(n.name.clone(), op, &ins));
    }
    out.set_outputs(
        g.outputs()
            .iter()
            .map(|o| map[o.index()].expect("mapped"))
            .collect(),
    );
    Ok(out)
}

fn is_weight(name: &str) -> bool {
    name.ends_with(".weight")
}

/// Which vars are convolution or linear weights.
fn layer_weights(m: &Model) -> Vec<candle_core::Var> {
    let layers: std::collections::HashSet<String> = m
        .graph()
        .node_ids()
        .filter(|&id| matches!(m.graph().node(id).op, Op::Conv2d { .. } | Op::Linear { .. }))
        .map(|id| m.graph().node(id).name.clone())
        .collect();
    m.named_vars()
        .into_iter()
        .filter(|(n, _)| is_weight(n) && layers.contains(n.trim_end_matches(".weight")))
        .map(|(_, v)| v)
        .collect()
}

/// The synflow score of a network (see the module notes).
pub fn synflow(g: &Graph, seed: u64) -> Result<f64, ModelError> {
    let m = Model::new(&without_batch_norm(g)?, seed)?.with_dtype(DType::F64)?;
    for v in m.vars() {
        v.set(&v.as_tensor().abs()?)?;
    }
    let d: usize = m.input_shape().iter().product();
    let x = m.batch(&vec![1.0; d], 1)?;
    let r = m.forward(&x)?.sum_all()?;
    let grads = r.backward()?;
    let mut score = 0.0;
    for v in layer_weights(&m) {
        if let Some(gr) = grads.get(v.as_tensor()) {
            score += (v.as_tensor() * gr)?.abs()?.sum_all()?.to_scalar::<f64>()?;
        }
    }
    Ok(score)
}

/// `grad_norm` and `snip` on one seeded random batch of `batch` inputs with random labels.
pub fn gradient_proxies(
    g: &Graph,
    classes: usize,
    batch: usize,
    seed: u64,
) -> Result<(f64, f64), ModelError> {
    let m = Model::new(g, seed)?;
    let d: usize = m.input_shape().iter().product();
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xdada);
    let x: Vec<f32> = (0..batch * d)
        .map(|_| crate::train::data::standard_normal(&mut rng) as f32)
        .collect();
    let y: Vec<u32> = (0..batch)
        .map(|_| rng.random_range(0..classes.max(1)) as u32)
        .collect();
    let xt = m.batch(&x, batch)?;
    let yt = Tensor::from_slice(&y, batch, m.device())?;
    let loss = candle_nn::loss::cross_entropy(&m.forward_batch_stats(&xt)?, &yt)?;
    let grads = loss.backward()?;
    let (mut sq, mut snip) = (0.0, 0.0);
    for v in layer_weights(&m) {
        if let Some(gr) = grads.get(v.as_tensor()) {
            sq += gr.sqr()?.sum_all()?.to_scalar::<f32>()? as f64;
            snip += (v.as_tensor() * gr)?.abs()?.sum_all()?.to_scalar::<f32>()? as f64;
        }
    }
    Ok((sq.sqrt(), snip))
}

/// Ranks with ties sharing their mean rank.
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let mean = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = mean;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation (Pearson's correlation of the ranks, ties averaged).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    let (ra, rb) = (ranks(a), ranks(b));
    let n = ra.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in ra.iter().zip(&rb) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    sab / (saa * sbb).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_of_known_rankings() {
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // 1 - 6 sum d^2 / (n (n^2 - 1)) with d = (0, 1, -1, 0, 0): 1 - 12 / 120 = 0.9.
        let r = spearman(&[1.0, 2.0, 3.0, 4.0, 5.0], &[1.0, 3.0, 2.0, 4.0, 5.0]);
        assert!((r - 0.9).abs() < 1e-12, "{r}");
        assert_eq!(ranks(&[5.0, 1.0, 5.0]), vec![2.5, 1.0, 2.5]);
    }
}
