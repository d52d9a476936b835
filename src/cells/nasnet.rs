//! The NASNet cell space (Zoph et al. 2018, "Learning transferable architectures for scalable
//! image recognition"): a normal and a reduction cell, each of `B = 5` blocks. A block picks two
//! inputs among the cell's two inputs (the outputs of the previous two cells) and the earlier
//! blocks of its cell, applies one operation of the NASNet list to each, and adds the results;
//! the blocks no other block of the cell uses are concatenated into the cell's output.
//!
//! Networks are built into the IR by stacking: a 3x3 stem, then `N` normal cells, a reduction
//! cell, `N` normal cells, a reduction cell and `N` normal cells (channels double at each
//! reduction), then ReLU, global average pooling and a linear classifier.
//!
//! Building details (those of the DARTS code base, which most NASNet-space work reuses):
//! - each cell first maps both inputs to its channel count with ReLU, 1x1 convolution and
//!   batch normalization; an input that is twice the cell's resolution (the cell after a
//!   reduction) is brought down by the 1x1 convolution with stride 2;
//! - in a reduction cell, operations on the cell's inputs have stride 2 (identity becomes ReLU,
//!   1x1 convolution with stride 2 and batch normalization);
//! - separable convolutions are (ReLU, depthwise kxk, pointwise 1x1, BN) twice; the dilated
//!   convolution is ReLU, depthwise 3x3 with dilation 2, pointwise 1x1, BN; the factorised
//!   `1xk then kx1` convolutions are ReLU, 1xk, kx1, BN; the plain convolutions ReLU, conv, BN;
//!   pools have padding k/2 (average pooling does not count the padding).

use std::fmt;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::ir::{Activation, Builder, Graph, IrError, NodeId, Op, Shape};
use crate::search::{DecodeError, Space};

use super::CellsError;

/// Blocks per cell.
pub const BLOCKS: usize = 5;

/// An operation of the NASNet search space (the paper's list of 13).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NasnetOp {
    /// Identity.
    Identity,
    /// 1x3 then 3x1 convolution.
    Conv1x3x3x1,
    /// 1x7 then 7x1 convolution.
    Conv1x7x7x1,
    /// 3x3 dilated convolution.
    DilConv3x3,
    /// 3x3 average pooling.
    AvgPool3x3,
    /// 3x3 max pooling.
    MaxPool3x3,
    /// 5x5 max pooling.
    MaxPool5x5,
    /// 7x7 max pooling.
    MaxPool7x7,
    /// 1x1 convolution.
    Conv1x1,
    /// 3x3 convolution.
    Conv3x3,
    /// 3x3 depthwise-separable convolution.
    SepConv3x3,
    /// 5x5 depthwise-separable convolution.
    SepConv5x5,
    /// 7x7 depthwise-separable convolution.
    SepConv7x7,
}

impl NasnetOp {
    /// All operations.
    pub const ALL: [NasnetOp; 13] = [
        NasnetOp::Identity,
        NasnetOp::Conv1x3x3x1,
        NasnetOp::Conv1x7x7x1,
        NasnetOp::DilConv3x3,
        NasnetOp::AvgPool3x3,
        NasnetOp::MaxPool3x3,
        NasnetOp::MaxPool5x5,
        NasnetOp::MaxPool7x7,
        NasnetOp::Conv1x1,
        NasnetOp::Conv3x3,
        NasnetOp::SepConv3x3,
        NasnetOp::SepConv5x5,
        NasnetOp::SepConv7x7,
    ];

    /// The operation's name in cell strings.
    pub fn name(self) -> &'static str {
        match self {
            NasnetOp::Identity => "identity",
            NasnetOp::Conv1x3x3x1 => "conv_1x3_3x1",
            NasnetOp::Conv1x7x7x1 => "conv_1x7_7x1",
            NasnetOp::DilConv3x3 => "dil_conv_3x3",
            NasnetOp::AvgPool3x3 => "avg_pool_3x3",
            NasnetOp::MaxPool3x3 => "max_pool_3x3",
            NasnetOp::MaxPool5x5 => "max_pool_5x5",
            NasnetOp::MaxPool7x7 => "max_pool_7x7",
            NasnetOp::Conv1x1 => "conv_1x1",
            NasnetOp::Conv3x3 => "conv_3x3",
            NasnetOp::SepConv3x3 => "sep_conv_3x3",
            NasnetOp::SepConv5x5 => "sep_conv_5x5",
            NasnetOp::SepConv7x7 => "sep_conv_7x7",
        }
    }

    fn from_name(s: &str) -> Option<NasnetOp> {
        Self::ALL.into_iter().find(|o| o.name() == s)
    }
}

/// One block: two (input, operation) pairs whose results are added. Input 0 is the output of
/// the cell two back, 1 the previous cell's, `2 + j` the cell's block `j`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Block {
    /// The two inputs.
    pub inputs: [usize; 2],
    /// The operation on each input.
    pub ops: [NasnetOp; 2],
}

/// A cell: `BLOCKS` blocks, block `b` taking inputs among `0..2 + b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cell {
    /// The blocks in order.
    pub blocks: [Block; BLOCKS],
}

impl Cell {
    /// Blocks whose output no later block takes: they form the cell's output.
    pub fn loose_ends(&self) -> Vec<usize> {
        (0..BLOCKS)
            .filter(|&j| {
                !self
                    .blocks
                    .iter()
                    .any(|b| b.inputs.iter().any(|&i| i == j + 2))
            })
            .collect()
    }

    fn check(&self) -> Result<(), CellsError> {
        for (b, blk) in self.blocks.iter().enumerate() {
            for &i in &blk.inputs {
                if i >= 2 + b {
                    return Err(CellsError::Cell(format!(
                        "block {b} takes input {i}; it may take 0..{} (the two cell inputs and earlier blocks)",
                        2 + b - 1
                    )));
                }
            }
        }
        Ok(())
    }
}

/// A point of the NASNet space: the normal and the reduction cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NasnetGenotype {
    /// The cell that keeps resolution and channels.
    pub normal: Cell,
    /// The cell that halves resolution and doubles channels.
    pub reduce: Cell,
}

impl fmt::Display for Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (b, blk) in self.blocks.iter().enumerate() {
            if b > 0 {
                write!(f, "|")?;
            }
            write!(
                f,
                "{}~{}+{}~{}",
                blk.ops[0].name(),
                blk.inputs[0],
                blk.ops[1].name(),
                blk.inputs[1]
            )?;
        }
        Ok(())
    }
}

/// The text form: `normal:OP~IN+OP~IN|...(5 blocks);reduce:...`.
impl fmt::Display for NasnetGenotype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "normal:{};reduce:{}", self.normal, self.reduce)
    }
}

fn parse_cell(s: &str) -> Result<Cell, CellsError> {
    let parts: Vec<&str> = s.split('|').collect();
    if parts.len() != BLOCKS {
        return Err(CellsError::Cell(format!(
            "a cell has {BLOCKS} blocks separated by '|', found {}",
            parts.len()
        )));
    }
    let mut blocks = [Block {
        inputs: [0, 0],
        ops: [NasnetOp::Identity; 2],
    }; BLOCKS];
    for (b, p) in parts.iter().enumerate() {
        let halves: Vec<&str> = p.split('+').collect();
        if halves.len() != 2 {
            return Err(CellsError::Cell(format!(
                "block {b} '{p}': expected OP~IN+OP~IN"
            )));
        }
        for (k, h) in halves.iter().enumerate() {
            let (op, input) = h
                .split_once('~')
                .ok_or_else(|| CellsError::Cell(format!("block {b} '{h}': expected OP~IN")))?;
            blocks[b].ops[k] = NasnetOp::from_name(op).ok_or_else(|| {
                CellsError::Cell(format!(
                    "block {b}: unknown operation '{op}' (known: {})",
                    NasnetOp::ALL.map(|o| o.name()).join(", ")
                ))
            })?;
            blocks[b].inputs[k] = input.parse().map_err(|_| {
                CellsError::Cell(format!("block {b}: input '{input}' is not a number"))
            })?;
        }
    }
    let c = Cell { blocks };
    c.check()?;
    Ok(c)
}

impl std::str::FromStr for NasnetGenotype {
    type Err = CellsError;

    fn from_str(s: &str) -> Result<Self, CellsError> {
        let (n, r) = s
            .trim()
            .split_once(';')
            .ok_or_else(|| CellsError::Cell("expected normal:...;reduce:...".into()))?;
        let n = n
            .strip_prefix("normal:")
            .ok_or_else(|| CellsError::Cell("the genotype starts with 'normal:'".into()))?;
        let r = r
            .strip_prefix("reduce:")
            .ok_or_else(|| CellsError::Cell("the reduction cell follows ';reduce:'".into()))?;
        Ok(NasnetGenotype {
            normal: parse_cell(n).map_err(|e| CellsError::Cell(format!("normal cell: {e}")))?,
            reduce: parse_cell(r).map_err(|e| CellsError::Cell(format!("reduction cell: {e}")))?,
        })
    }
}

/// How NASNet genotypes are stacked into networks.
#[derive(Debug, Clone, PartialEq)]
pub struct NasnetSpace {
    /// The network's input `[C, H, W]`.
    pub input: Shape,
    /// Classes of the classifier.
    pub classes: usize,
    /// Channels of the first cells (doubled at each reduction).
    pub channels: usize,
    /// Normal cells per stage (`N`).
    pub cells_per_stage: usize,
}

fn sample_cell(rng: &mut ChaCha8Rng) -> Cell {
    let mut blocks = [Block {
        inputs: [0, 0],
        ops: [NasnetOp::Identity; 2],
    }; BLOCKS];
    for (b, blk) in blocks.iter_mut().enumerate() {
        for k in 0..2 {
            blk.inputs[k] = rng.random_range(0..2 + b);
            blk.ops[k] = NasnetOp::ALL[rng.random_range(0..NasnetOp::ALL.len())];
        }
    }
    Cell { blocks }
}

/// Every cell one input or one operation away from `c`.
fn cell_neighbours(c: &Cell) -> Vec<Cell> {
    let mut out = Vec::new();
    for b in 0..BLOCKS {
        for k in 0..2 {
            for i in 0..2 + b {
                if i != c.blocks[b].inputs[k] {
                    let mut n = *c;
                    n.blocks[b].inputs[k] = i;
                    out.push(n);
                }
            }
            for op in NasnetOp::ALL {
                if op != c.blocks[b].ops[k] {
                    let mut n = *c;
                    n.blocks[b].ops[k] = op;
                    out.push(n);
                }
            }
        }
    }
    out
}

impl Space for NasnetSpace {
    type Candidate = NasnetGenotype;

    fn name(&self) -> &str {
        "nasnet"
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> NasnetGenotype {
        NasnetGenotype {
            normal: sample_cell(rng),
            reduce: sample_cell(rng),
        }
    }

    /// The AmoebaNet mutation: one cell, one block, one of its two halves; either its input
    /// (hidden-state mutation) or its operation changes to a different one.
    fn mutate(&self, parent: &NasnetGenotype, rng: &mut ChaCha8Rng) -> NasnetGenotype {
        let mut g = *parent;
        let cell = if rng.random_bool(0.5) {
            &mut g.normal
        } else {
            &mut g.reduce
        };
        let b = rng.random_range(0..BLOCKS);
        let k = rng.random_range(0..2);
        let blk = &mut cell.blocks[b];
        if rng.random_bool(0.5) {
            let old = blk.inputs[k];
            let mut i = rng.random_range(0..2 + b - 1);
            if i >= old {
                i += 1;
            }
            blk.inputs[k] = i;
        } else {
            let old = NasnetOp::ALL
                .iter()
                .position(|&o| o == blk.ops[k])
                .unwrap_or(0);
            let mut j = rng.random_range(0..NasnetOp::ALL.len() - 1);
            if j >= old {
                j += 1;
            }
            blk.ops[k] = NasnetOp::ALL[j];
        }
        g
    }

    fn neighbours(&self, c: &NasnetGenotype) -> Vec<NasnetGenotype> {
        let mut out: Vec<NasnetGenotype> = cell_neighbours(&c.normal)
            .into_iter()
            .map(|n| NasnetGenotype { normal: n, ..*c })
            .collect();
        out.extend(
            cell_neighbours(&c.reduce)
                .into_iter()
                .map(|r| NasnetGenotype { reduce: r, ..*c }),
        );
        out
    }

    fn encode(&self, c: &NasnetGenotype) -> String {
        c.to_string()
    }

    fn decode(&self, text: &str) -> Result<NasnetGenotype, DecodeError> {
        Ok(text.parse()?)
    }
}

impl NasnetSpace {
    /// The network of a genotype.
    pub fn network(&self, g: &NasnetGenotype) -> Result<Graph, IrError> {
        let mut b = Builder::new(format!(
            "nasnet-c{}-n{}",
            self.channels, self.cells_per_stage
        ));
        let x = b.input("input", self.input.clone())?;
        let stem = b.conv("stem.conv", x, 3 * self.channels, 3, 1, 1, 1)?;
        let stem = b.bn("stem.bn", stem)?;
        let (mut s0, mut s1) = (stem, stem);
        let mut c = self.channels;
        let n = self.cells_per_stage;
        let mut index = 0;
        for stage in 0..3 {
            if stage > 0 {
                c *= 2;
                let out = self.cell(&mut b, &g.reduce, true, s0, s1, c, index)?;
                (s0, s1) = (s1, out);
                index += 1;
            }
            for _ in 0..n {
                let out = self.cell(&mut b, &g.normal, false, s0, s1, c, index)?;
                (s0, s1) = (s1, out);
                index += 1;
            }
        }
        let y = b.relu("head.relu", s1)?;
        let y = b.pool_flatten(y)?;
        let y = b.linear("classifier", y, self.classes)?;
        b.finish(&[y])
    }

    #[allow(clippy::too_many_arguments)]
    fn cell(
        &self,
        b: &mut Builder,
        cell: &Cell,
        reduction: bool,
        s0: NodeId,
        s1: NodeId,
        c: usize,
        index: usize,
    ) -> Result<NodeId, IrError> {
        b.enter(format!("cell{index}"));
        // The cell two back is at twice the resolution when the previous cell reduced.
        let s0_stride = if b.shape(s0).dims()[1] > b.shape(s1).dims()[1] {
            2
        } else {
            1
        };
        let mut states = vec![
            relu_conv_bn(b, "pre0", s0, c, [1, 1], s0_stride, [0, 0])?,
            relu_conv_bn(b, "pre1", s1, c, [1, 1], 1, [0, 0])?,
        ];
        for (j, blk) in cell.blocks.iter().enumerate() {
            let mut halves = Vec::with_capacity(2);
            for k in 0..2 {
                let i = blk.inputs[k];
                let stride = if reduction && i < 2 { 2 } else { 1 };
                let name = format!("block{j}.{k}.{}", blk.ops[k].name());
                halves.push(operation(b, &name, blk.ops[k], states[i], c, stride)?);
            }
            states.push(b.add(&format!("block{j}.add"), &halves)?);
        }
        let ends: Vec<NodeId> = cell.loose_ends().iter().map(|&j| states[j + 2]).collect();
        let out = if ends.len() == 1 {
            ends[0]
        } else {
            b.push("concat", Op::Concat, &ends)?
        };
        b.leave();
        Ok(out)
    }
}

fn relu_conv_bn(
    b: &mut Builder,
    name: &str,
    x: NodeId,
    c: usize,
    kernel: [usize; 2],
    stride: usize,
    padding: [usize; 2],
) -> Result<NodeId, IrError> {
    let y = b.relu(&format!("{name}.relu"), x)?;
    let y = b.push(
        &format!("{name}.conv"),
        conv(c, kernel, stride, padding, 1, 1),
        &[y],
    )?;
    b.bn(&format!("{name}.bn"), y)
}

fn conv(
    out_channels: usize,
    kernel: [usize; 2],
    stride: usize,
    padding: [usize; 2],
    dilation: usize,
    groups: usize,
) -> Op {
    Op::Conv2d {
        out_channels,
        kernel,
        stride: [stride, stride],
        padding,
        dilation: [dilation, dilation],
        groups,
        bias: false,
    }
}

/// ReLU, depthwise `k x k` (stride, dilation), pointwise 1x1, BN.
fn relu_sep_bn(
    b: &mut Builder,
    name: &str,
    x: NodeId,
    c: usize,
    k: usize,
    stride: usize,
    dilation: usize,
) -> Result<NodeId, IrError> {
    let cin = b.channels(x);
    let p = dilation * (k - 1) / 2;
    let y = b.relu(&format!("{name}.relu"), x)?;
    let y = b.push(
        &format!("{name}.dw"),
        conv(cin, [k, k], stride, [p, p], dilation, cin),
        &[y],
    )?;
    let y = b.push(
        &format!("{name}.pw"),
        conv(c, [1, 1], 1, [0, 0], 1, 1),
        &[y],
    )?;
    b.bn(&format!("{name}.bn"), y)
}

fn operation(
    b: &mut Builder,
    name: &str,
    op: NasnetOp,
    x: NodeId,
    c: usize,
    stride: usize,
) -> Result<NodeId, IrError> {
    use NasnetOp::*;
    let pool = |b: &mut Builder, k: usize, avg: bool| {
        let (kernel, stride, padding) = ([k, k], [stride, stride], [k / 2, k / 2]);
        let op = if avg {
            Op::AvgPool {
                kernel,
                stride,
                padding,
                count_include_pad: false,
            }
        } else {
            Op::MaxPool {
                kernel,
                stride,
                padding,
            }
        };
        b.push(name, op, &[x])
    };
    match op {
        Identity if stride == 1 => b.push(name, Op::Identity, &[x]),
        Identity => relu_conv_bn(b, name, x, c, [1, 1], stride, [0, 0]),
        Conv1x1 => relu_conv_bn(b, name, x, c, [1, 1], stride, [0, 0]),
        Conv3x3 => relu_conv_bn(b, name, x, c, [3, 3], stride, [1, 1]),
        Conv1x3x3x1 | Conv1x7x7x1 => {
            let k = if op == Conv1x3x3x1 { 3 } else { 7 };
            let y = b.act(&format!("{name}.relu"), x, Activation::Relu)?;
            let y = b.push(
                &format!("{name}.1x{k}"),
                conv(c, [1, k], stride, [0, k / 2], 1, 1),
                &[y],
            )?;
            let y = b.push(
                &format!("{name}.{k}x1"),
                conv(c, [k, 1], 1, [k / 2, 0], 1, 1),
                &[y],
            )?;
            b.bn(&format!("{name}.bn"), y)
        }
        DilConv3x3 => relu_sep_bn(b, name, x, c, 3, stride, 2),
        SepConv3x3 | SepConv5x5 | SepConv7x7 => {
            let k = match op {
                SepConv3x3 => 3,
                SepConv5x5 => 5,
                _ => 7,
            };
            let y = relu_sep_bn(b, &format!("{name}.a"), x, c, k, stride, 1)?;
            relu_sep_bn(b, &format!("{name}.b"), y, c, k, 1, 1)
        }
        AvgPool3x3 => pool(b, 3, true),
        MaxPool3x3 => pool(b, 3, false),
        MaxPool5x5 => pool(b, 5, false),
        MaxPool7x7 => pool(b, 7, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn space() -> NasnetSpace {
        NasnetSpace {
            input: Shape::new(vec![1, 16, 16]),
            classes: 6,
            channels: 8,
            cells_per_stage: 1,
        }
    }

    #[test]
    fn text_form_round_trips_and_mutation_changes_one_thing() {
        let s = space();
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for _ in 0..200 {
            let g = s.sample(&mut rng);
            assert_eq!(s.decode(&s.encode(&g)).unwrap(), g);
            let m = s.mutate(&g, &mut rng);
            assert_ne!(m, g);
            assert!(s.neighbours(&g).contains(&m));
        }
        // 2 cells x sum over blocks of 2 halves x ((2 + b - 1) inputs + 12 operations).
        let g = s.sample(&mut rng);
        assert_eq!(s.neighbours(&g).len(), 2 * 2 * (13 + 14 + 15 + 16 + 17));
        assert!(s
            .decode(&format!(
                "normal:identity~2+identity~0|{}",
                s.encode(&g).split_once('|').unwrap().1
            ))
            .unwrap_err()
            .0
            .contains("block 0 takes input 2"));
    }

    #[test]
    fn every_operation_builds_in_both_cells() {
        let s = space();
        for op in NasnetOp::ALL {
            let blk = Block {
                inputs: [0, 1],
                ops: [op, op],
            };
            let mut cell = Cell {
                blocks: [blk; BLOCKS],
            };
            // A chain: block j also takes block j - 1, so only the last is a loose end.
            for j in 1..BLOCKS {
                cell.blocks[j].inputs[1] = j + 1;
            }
            assert_eq!(cell.loose_ends(), vec![BLOCKS - 1]);
            let g = NasnetGenotype {
                normal: cell,
                reduce: cell,
            };
            let net = s
                .network(&g)
                .unwrap_or_else(|e| panic!("{}: {e}", op.name()));
            let a = net.analyze().unwrap();
            assert_eq!(a.shapes[net.outputs()[0].index()].dims(), &[6]);
        }
    }
}
