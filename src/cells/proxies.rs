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
//! - `naswot` (Mellor et al. 2021, "Neural architecture search without training"): the binary
//!   codes of every ReLU's input over a batch, `K = sum over ReLUs of c c^T + (1-c)(1-c)^T`
//!   (units minus Hamming distance), the score `log |det K|`.
//! - `jacob_cov` (the paper's first version): the Jacobians of the summed output with respect
//!   to each input of the batch, their correlation matrix `C`, the score
//!   `-sum_i log(l_i + k) + 1 / (l_i + k)` over the eigenvalues `l_i` of `C`, `k = 1e-5`.
//! - `params`, `flops`: the IR cost model (learned parameters; multiply-accumulates).
//!
//! The papers feed a batch of training images; these proxies take a seeded batch of standard
//! normal inputs, so that they need no data (grad_norm and snip as well).

use candle_core::{DType, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::ir::{Graph, Op};
use crate::train::{Model, ModelError};

/// A proxy's name, as the CLI takes it.
pub const NAMES: [&str; 7] = [
    "synflow",
    "naswot",
    "jacob_cov",
    "grad_norm",
    "snip",
    "params",
    "flops",
];

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

/// The inputs of the data-dependent proxies (naswot, jacob_cov, grad_norm, snip).
#[derive(Clone, Debug, PartialEq)]
pub enum ProxyInputs {
    /// This many seeded standard-normal inputs with random labels.
    Random(usize),
    /// Real examples: `x` holds `y.len()` flattened inputs of the network's shape.
    Data {
        /// The inputs, one after another.
        x: Vec<f32>,
        /// Their labels.
        y: Vec<u32>,
    },
}

impl ProxyInputs {
    /// How many examples.
    pub fn len(&self) -> usize {
        match self {
            ProxyInputs::Random(n) => *n,
            ProxyInputs::Data { y, .. } => y.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first `n` training examples of a dataset.
    pub fn from_dataset(data: &crate::train::Dataset, n: usize) -> ProxyInputs {
        let n = n.min(data.train.len());
        let d = data.input_len();
        ProxyInputs::Data {
            x: data.train.x[..n * d].to_vec(),
            y: data.train.y[..n].to_vec(),
        }
    }

    /// Words for reports: "16 random inputs" or "16 examples".
    pub fn describe(&self) -> String {
        match self {
            ProxyInputs::Random(n) => format!("batch={n}"),
            ProxyInputs::Data { y, .. } => format!("data batch={}", y.len()),
        }
    }
}

/// The proxies' batch as a tensor of the model's shape, and its labels: the given examples, or
/// seeded standard-normal inputs with random labels.
fn proxy_batch(
    m: &Model,
    classes: usize,
    inputs: &ProxyInputs,
    seed: u64,
) -> Result<(Tensor, Vec<u32>), ModelError> {
    let d: usize = m.input_shape().iter().product();
    match inputs {
        ProxyInputs::Random(batch) => {
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xdada);
            let x: Vec<f32> = (0..batch * d)
                .map(|_| crate::train::data::standard_normal(&mut rng) as f32)
                .collect();
            let y: Vec<u32> = (0..*batch)
                .map(|_| rng.random_range(0..classes.max(1)) as u32)
                .collect();
            Ok((m.batch(&x, *batch)?, y))
        }
        ProxyInputs::Data { x, y } => {
            if x.len() != y.len() * d {
                return Err(ModelError::Graph(format!(
                    "the proxy batch has {} values for {} examples; the network takes {d} each",
                    x.len(),
                    y.len()
                )));
            }
            Ok((m.batch(x, y.len())?, y.clone()))
        }
    }
}

/// The NASWOT score on one batch.
pub fn naswot(g: &Graph, inputs: &ProxyInputs, seed: u64) -> Result<f64, ModelError> {
    let m = Model::new(g, seed)?;
    let (x, _) = proxy_batch(&m, 1, inputs, seed)?;
    let is_relu = |op: &Op| {
        matches!(
            op,
            Op::Act {
                function: crate::ir::Activation::Relu
            }
        )
    };
    let (_, taps) = m.forward_taps(&x, &is_relu)?;
    let mut k = nalgebra::DMatrix::<f64>::zeros(inputs.len(), inputs.len());
    for t in taps {
        // ReLU outputs are positive exactly where its input is.
        let c = t.flatten_from(1)?.gt(0.0)?.to_dtype(DType::F64)?;
        let nc = (1.0 - &c)?;
        let kt = (c.matmul(&c.t()?)? + nc.matmul(&nc.t()?)?)?;
        let rows: Vec<Vec<f64>> = kt.to_vec2()?;
        for (i, r) in rows.iter().enumerate() {
            for (j, v) in r.iter().enumerate() {
                k[(i, j)] += v;
            }
        }
    }
    Ok(log_abs_det(k))
}

/// `log |det m|` from an LU factorisation (`-inf` for a singular matrix).
fn log_abs_det(m: nalgebra::DMatrix<f64>) -> f64 {
    let lu = m.lu();
    let u = lu.u();
    (0..u.nrows()).map(|i| u[(i, i)].abs().ln()).sum()
}

/// The jacob_cov score on one seeded random batch of `batch` inputs.
pub fn jacob_cov(g: &Graph, inputs: &ProxyInputs, seed: u64) -> Result<f64, ModelError> {
    let m = Model::new(g, seed)?;
    let (x, _) = proxy_batch(&m, 1, inputs, seed)?;
    let xv = candle_core::Var::from_tensor(&x)?;
    let y = m.forward_batch_stats(xv.as_tensor())?.sum_all()?;
    let grads = y.backward()?;
    let Some(j) = grads.get(xv.as_tensor()) else {
        return Ok(f64::NEG_INFINITY);
    };
    let j: Vec<Vec<f64>> = j.flatten_from(1)?.to_dtype(DType::F64)?.to_vec2()?;
    // The correlation matrix of the rows (numpy's corrcoef).
    let d = j.first().map_or(0, Vec::len) as f64;
    let centred: Vec<Vec<f64>> = j
        .iter()
        .map(|r| {
            let mean = r.iter().sum::<f64>() / d;
            r.iter().map(|v| v - mean).collect()
        })
        .collect();
    let n = centred.len();
    let mut c = nalgebra::DMatrix::<f64>::zeros(n, n);
    for a in 0..n {
        for b in a..n {
            let v: f64 = centred[a].iter().zip(&centred[b]).map(|(p, q)| p * q).sum();
            c[(a, b)] = v;
            c[(b, a)] = v;
        }
    }
    let diag: Vec<f64> = (0..n).map(|i| c[(i, i)].sqrt()).collect();
    for a in 0..n {
        for b in 0..n {
            let s = diag[a] * diag[b];
            c[(a, b)] = if s > 0.0 { c[(a, b)] / s } else { 0.0 };
        }
    }
    const K: f64 = 1e-5;
    let score = -nalgebra::SymmetricEigen::new(c)
        .eigenvalues
        .iter()
        .map(|&l| (l + K).abs().ln() + 1.0 / (l + K))
        .sum::<f64>();
    Ok(if score.is_nan() {
        f64::NEG_INFINITY
    } else {
        score
    })
}

/// `grad_norm` and `snip` on one batch (random inputs come with random labels).
pub fn gradient_proxies(
    g: &Graph,
    classes: usize,
    inputs: &ProxyInputs,
    seed: u64,
) -> Result<(f64, f64), ModelError> {
    let m = Model::new(g, seed)?;
    let (xt, y) = proxy_batch(&m, classes, inputs, seed)?;
    let yt = Tensor::from_slice(&y, y.len(), m.device())?;
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

/// Whether a proxy's values are positive and spread over decades (plotted on a log axis).
pub fn is_multiplicative(name: &str) -> bool {
    !matches!(name, "naswot" | "jacob_cov")
}

/// The proxies `names` of one network: `(value, seconds)` per name. grad_norm and snip share
/// one backward pass; `inputs` is the batch of naswot, jacob_cov, grad_norm and snip.
pub fn scores(
    names: &[&str],
    g: &Graph,
    classes: usize,
    inputs: &ProxyInputs,
    seed: u64,
) -> Result<std::collections::BTreeMap<String, (f64, f64)>, ModelError> {
    let mut out: std::collections::BTreeMap<String, (f64, f64)> = Default::default();
    let want = |p: &str| names.contains(&p);
    let timed = |f: &dyn Fn() -> Result<f64, ModelError>| -> Result<(f64, f64), ModelError> {
        let t = std::time::Instant::now();
        let v = f()?;
        Ok((v, t.elapsed().as_secs_f64()))
    };
    if want("synflow") {
        out.insert("synflow".into(), timed(&|| synflow(g, seed))?);
    }
    if want("naswot") {
        out.insert("naswot".into(), timed(&|| naswot(g, inputs, seed))?);
    }
    if want("jacob_cov") {
        out.insert("jacob_cov".into(), timed(&|| jacob_cov(g, inputs, seed))?);
    }
    if want("grad_norm") || want("snip") {
        let t = std::time::Instant::now();
        let (gn, sn) = gradient_proxies(g, classes, inputs, seed)?;
        let s = t.elapsed().as_secs_f64();
        out.insert("grad_norm".into(), (gn, s));
        out.insert("snip".into(), (sn, s));
    }
    if want("params") || want("flops") {
        let totals = g
            .analyze()
            .map_err(|e| ModelError::Graph(e.to_string()))?
            .totals;
        out.insert("params".into(), (totals.params as f64, 0.0));
        out.insert("flops".into(), (totals.macs as f64, 0.0));
    }
    out.retain(|k, _| want(k));
    for n in names {
        if !out.contains_key(*n) {
            return Err(ModelError::Graph(format!(
                "unknown proxy '{n}' (known: {})",
                NAMES.join(", ")
            )));
        }
    }
    Ok(out)
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
