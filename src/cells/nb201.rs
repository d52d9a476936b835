//! The NAS-Bench-201 cell space: 4 nodes, 6 edges `j <- i` (i < j), five operations per edge,
//! 5^6 = 15,625 cells.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::ir::zoo::relu_conv_bn;
use crate::ir::{Builder, Graph, IrError, NodeId, Op, Shape};
use crate::search::{DecodeError, Space};

use super::CellsError;

/// An edge operation of NAS-Bench-201, in the benchmark's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Nb201Op {
    /// `none`: the edge outputs zeros.
    None,
    /// `skip_connect`: identity.
    Skip,
    /// `nor_conv_1x1`: ReLU, 1x1 conv, BN.
    Conv1x1,
    /// `nor_conv_3x3`: ReLU, 3x3 conv, BN.
    Conv3x3,
    /// `avg_pool_3x3`: 3x3 average pooling, stride 1.
    AvgPool3x3,
}

impl Nb201Op {
    /// All operations in the benchmark's order.
    pub const ALL: [Nb201Op; 5] = [
        Nb201Op::None,
        Nb201Op::Skip,
        Nb201Op::Conv1x1,
        Nb201Op::Conv3x3,
        Nb201Op::AvgPool3x3,
    ];

    /// The benchmark's name of the operation.
    pub fn name(self) -> &'static str {
        match self {
            Nb201Op::None => "none",
            Nb201Op::Skip => "skip_connect",
            Nb201Op::Conv1x1 => "nor_conv_1x1",
            Nb201Op::Conv3x3 => "nor_conv_3x3",
            Nb201Op::AvgPool3x3 => "avg_pool_3x3",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.name() == name)
    }
}

/// A NAS-Bench-201 cell: the operation on each of the six edges, ordered
/// `1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2` (the order of the cell string).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Nb201Cell {
    /// Edge operations in string order.
    pub edges: [Nb201Op; 6],
}

/// Position of edge `j <- i` in [`Nb201Cell::edges`].
fn edge_slot(j: usize, i: usize) -> usize {
    debug_assert!(i < j && (1..4).contains(&j));
    j * (j - 1) / 2 + i
}

impl Nb201Cell {
    /// Number of cells in the space.
    pub const COUNT: usize = 15_625;

    /// The operation on edge `j <- i`.
    pub fn edge(&self, j: usize, i: usize) -> Nb201Op {
        self.edges[edge_slot(j, i)]
    }

    /// The cell with base-5 code `code` (edge 0 most significant); `code < 15,625`.
    pub fn from_code(mut code: usize) -> Self {
        let mut edges = [Nb201Op::None; 6];
        for e in edges.iter_mut().rev() {
            *e = Nb201Op::ALL[code % 5];
            code /= 5;
        }
        Nb201Cell { edges }
    }

    /// The base-5 code of the cell (edge 0 most significant).
    pub fn code(&self) -> usize {
        self.edges.iter().fold(0, |acc, &e| acc * 5 + e as usize)
    }

    /// Every cell of the space, in code order.
    pub fn all() -> impl Iterator<Item = Nb201Cell> {
        (0..Self::COUNT).map(Self::from_code)
    }
}

impl fmt::Display for Nb201Cell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for j in 1..4 {
            if j > 1 {
                write!(f, "+")?;
            }
            write!(f, "|")?;
            for i in 0..j {
                write!(f, "{}~{}|", self.edge(j, i).name(), i)?;
            }
        }
        Ok(())
    }
}

impl FromStr for Nb201Cell {
    type Err = CellsError;

    /// Parses the benchmark's cell string,
    /// e.g. `|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|none~1|nor_conv_1x1~2|`.
    fn from_str(s: &str) -> Result<Self, CellsError> {
        let bad =
            |why: String| CellsError::Cell(format!("'{s}' is not a NAS-Bench-201 cell: {why}"));
        let groups: Vec<&str> = s.trim().split('+').collect();
        if groups.len() != 3 {
            return Err(bad(format!(
                "it has {} node groups separated by '+', a cell has 3",
                groups.len()
            )));
        }
        let mut edges = [Nb201Op::None; 6];
        for (g, group) in groups.iter().enumerate() {
            let j = g + 1;
            let inner = group
                .strip_prefix('|')
                .and_then(|x| x.strip_suffix('|'))
                .ok_or_else(|| bad(format!("node {j}'s group must start and end with '|'")))?;
            let items: Vec<&str> = inner.split('|').collect();
            if items.len() != j {
                return Err(bad(format!(
                    "node {j} must have {j} incoming edge(s), has {}",
                    items.len()
                )));
            }
            for (i, item) in items.iter().enumerate() {
                let (op, from) = item
                    .split_once('~')
                    .ok_or_else(|| bad(format!("edge '{item}' is not op~index")))?;
                let op = Nb201Op::from_name(op).ok_or_else(|| {
                    bad(format!(
                        "unknown operation '{op}' (known: none, skip_connect, nor_conv_1x1, nor_conv_3x3, avg_pool_3x3)"
                    ))
                })?;
                if from != i.to_string() {
                    return Err(bad(format!(
                        "edge {} of node {j} must come from node {i}, not '{from}'",
                        i + 1
                    )));
                }
                edges[edge_slot(j, i)] = op;
            }
        }
        Ok(Nb201Cell { edges })
    }
}

/// The NAS-Bench-201 space for the search strategies: uniform sampling, single-edge mutation,
/// and the 24 single-edge neighbours.
#[derive(Debug, Clone, Copy, Default)]
pub struct Nb201Space;

impl Space for Nb201Space {
    type Candidate = Nb201Cell;

    fn name(&self) -> &str {
        "nb201"
    }

    fn sample(&self, rng: &mut ChaCha8Rng) -> Nb201Cell {
        Nb201Cell::from_code(rng.random_range(0..Nb201Cell::COUNT))
    }

    fn mutate(&self, parent: &Nb201Cell, rng: &mut ChaCha8Rng) -> Nb201Cell {
        // The benchmark's REA mutation: one edge gets a different operation.
        let mut child = *parent;
        let e = rng.random_range(0..6);
        let shift = rng.random_range(1..5);
        child.edges[e] = Nb201Op::ALL[(parent.edges[e] as usize + shift) % 5];
        child
    }

    fn neighbours(&self, c: &Nb201Cell) -> Vec<Nb201Cell> {
        let mut out = Vec::with_capacity(24);
        for e in 0..6 {
            for op in Nb201Op::ALL {
                if op != c.edges[e] {
                    let mut n = *c;
                    n.edges[e] = op;
                    out.push(n);
                }
            }
        }
        out
    }

    fn encode(&self, c: &Nb201Cell) -> String {
        c.to_string()
    }

    fn decode(&self, text: &str) -> Result<Nb201Cell, DecodeError> {
        Ok(text.parse()?)
    }
}

/// The benchmark's stem channels, `C`.
pub const BENCHMARK_CHANNELS: usize = 16;
/// The benchmark's cells per stage, `N`.
pub const BENCHMARK_CELLS_PER_STAGE: usize = 5;

/// The size of the network around the cell: stem channels `C`, cells per stage `N` and the
/// stem's stride. The benchmark's is `C = 16, N = 5`, stride 1 ([`Skeleton::BENCHMARK`]);
/// its table's accuracies are of that network only. A stride-2 stem halves every stage's
/// resolution, as resnet-mini's does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Skeleton {
    /// Stem channels `C`: the stages have C, 2C and 4C.
    pub channels: usize,
    /// Cells per stage `N`.
    pub cells_per_stage: usize,
    /// The stem convolution's stride.
    pub stem_stride: usize,
}

impl Skeleton {
    /// The benchmark's network: C = 16, N = 5, a stride-1 stem.
    pub const BENCHMARK: Skeleton = Skeleton {
        channels: BENCHMARK_CHANNELS,
        cells_per_stage: BENCHMARK_CELLS_PER_STAGE,
        stem_stride: 1,
    };

    /// The prefix of its networks' names: `nb201` for the benchmark's, `nb201-c8n1` for
    /// another size, `nb201-c8n1s2` with a stride-2 stem. [`Skeleton::parse_prefix`] reads it.
    pub fn prefix(&self) -> String {
        if *self == Skeleton::BENCHMARK {
            return "nb201".into();
        }
        let mut p = format!("nb201-c{}n{}", self.channels, self.cells_per_stage);
        if self.stem_stride != 1 {
            p.push_str(&format!("s{}", self.stem_stride));
        }
        p
    }

    /// Reads a name prefix written by [`Skeleton::prefix`], or the same with every number
    /// written out (`nb201-c16n5s1` is the benchmark's); `None` for anything else, numbers
    /// with signs or leading zeros included.
    pub fn parse_prefix(prefix: &str) -> Option<Skeleton> {
        if prefix == "nb201" {
            return Some(Skeleton::BENCHMARK);
        }
        let rest = prefix.strip_prefix("nb201-c")?;
        let (c, rest) = rest.split_once('n')?;
        let (n, s) = match rest.split_once('s') {
            Some((n, s)) => (n, s.parse().ok()?),
            None => (rest, 1),
        };
        let k = Skeleton {
            channels: c.parse().ok()?,
            cells_per_stage: n.parse().ok()?,
            stem_stride: s,
        };
        // Written back, the numbers must read as typed: no signs, no leading zeros.
        let (c, n, s) = (k.channels, k.cells_per_stage, k.stem_stride);
        let as_typed =
            prefix == format!("nb201-c{c}n{n}") || prefix == format!("nb201-c{c}n{n}s{s}");
        (c > 0 && n > 0 && s > 0 && as_typed).then_some(k)
    }
}

/// The NAS-Bench-201 network: a 3x3 conv stem of `C = 16` channels, three stages of `N = 5`
/// cells at 16, 32 and 64 channels separated by residual reduction blocks, BN-ReLU, global
/// pooling and a linear classifier (the benchmark's `TinyNetwork`).
pub fn network(cell: &Nb201Cell, input: Shape, classes: usize) -> Result<Graph, IrError> {
    network_sized(cell, input, classes, Skeleton::BENCHMARK)
}

/// [`network`] on another [`Skeleton`]: the benchmark's network at another size. Only
/// [`Skeleton::BENCHMARK`] is the network the benchmark's accuracies are of.
pub fn network_sized(
    cell: &Nb201Cell,
    input: Shape,
    classes: usize,
    skeleton: Skeleton,
) -> Result<Graph, IrError> {
    let (c, n) = (skeleton.channels, skeleton.cells_per_stage);
    let name = format!("{}:{cell}", skeleton.prefix());
    let mut b = Builder::new(name);
    let x = b.input("input", input)?;
    b.enter("stem");
    let s = b.conv("conv", x, c, 3, skeleton.stem_stride, 1, 1)?;
    let mut x = b.bn("bn", s)?;
    b.leave();
    let mut k = 0;
    for stage in 0..3 {
        let channels = c << stage;
        if stage > 0 {
            b.enter(format!("cells.{k}"));
            x = nb201_reduction(&mut b, x, channels)?;
            b.leave();
            k += 1;
        }
        for _ in 0..n {
            b.enter(format!("cells.{k}"));
            x = nb201_cell(&mut b, cell, x)?;
            b.leave();
            k += 1;
        }
    }
    b.enter("lastact");
    let y = b.bn("bn", x)?;
    let y = b.relu("relu", y)?;
    b.leave();
    let f = b.pool_flatten(y)?;
    let fc = b.linear("classifier", f, classes)?;
    b.finish(&[fc])
}

fn nb201_reduction(b: &mut Builder, x: NodeId, out: usize) -> Result<NodeId, IrError> {
    b.enter("conv_a");
    let y = relu_conv_bn(b, x, out, 3, 2)?;
    b.leave();
    b.enter("conv_b");
    let y = relu_conv_bn(b, y, out, 3, 1)?;
    b.leave();
    b.enter("downsample");
    let p = b.push(
        "pool",
        Op::AvgPool {
            kernel: [2, 2],
            stride: [2, 2],
            padding: [0, 0],
            count_include_pad: true,
        },
        &[x],
    )?;
    let d = b.conv("conv", p, out, 1, 1, 0, 1)?;
    b.leave();
    b.add("add", &[d, y])
}

fn nb201_cell(b: &mut Builder, cell: &Nb201Cell, x: NodeId) -> Result<NodeId, IrError> {
    let channels = b.channels(x);
    let mut nodes = vec![x];
    for j in 1..4 {
        let mut terms = Vec::with_capacity(j);
        for (i, &from) in nodes.iter().enumerate() {
            b.enter(format!("edge_{j}_{i}"));
            let t = match cell.edge(j, i) {
                Nb201Op::None => b.push("zero", Op::Zero, &[from])?,
                Nb201Op::Skip => b.push("skip", Op::Identity, &[from])?,
                Nb201Op::Conv1x1 => relu_conv_bn(b, from, channels, 1, 1)?,
                Nb201Op::Conv3x3 => relu_conv_bn(b, from, channels, 3, 1)?,
                Nb201Op::AvgPool3x3 => b.push(
                    "pool",
                    Op::AvgPool {
                        kernel: [3, 3],
                        stride: [1, 1],
                        padding: [1, 1],
                        count_include_pad: false,
                    },
                    &[from],
                )?,
            };
            b.leave();
            terms.push(t);
        }
        let node = if terms.len() == 1 {
            terms[0]
        } else {
            b.add(&format!("node{j}"), &terms)?
        };
        nodes.push(node);
    }
    Ok(nodes[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_round_trip_for_every_cell() {
        for cell in Nb201Cell::all() {
            let s = cell.to_string();
            assert_eq!(s.parse::<Nb201Cell>().unwrap(), cell, "{s}");
        }
        let published =
            "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|";
        let c: Nb201Cell = published.parse().unwrap();
        assert_eq!(c.edge(3, 2), Nb201Op::Conv1x1);
        assert_eq!(c.to_string(), published);
    }

    #[test]
    fn malformed_strings_say_why() {
        for (s, why) in [
            ("|nor_conv_3x3~0|", "a cell has 3"),
            (
                "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",
                "unknown operation 'conv'",
            ),
            (
                "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",
                "must come from node 0",
            ),
            (
                "|none~0|+|none~0|+|none~0|none~1|none~2|",
                "2 incoming edge",
            ),
        ] {
            let e = s.parse::<Nb201Cell>().unwrap_err().to_string();
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn neighbours_differ_in_one_edge() {
        let c = Nb201Cell::from_code(1234);
        let n = Nb201Space.neighbours(&c);
        assert_eq!(n.len(), 24);
        for m in n {
            assert_eq!(
                m.edges.iter().zip(&c.edges).filter(|(a, b)| a != b).count(),
                1
            );
        }
    }

    #[test]
    fn skeleton_names_round_trip() {
        for k in [
            Skeleton::BENCHMARK,
            Skeleton {
                channels: 8,
                cells_per_stage: 1,
                stem_stride: 1,
            },
            Skeleton {
                channels: 8,
                cells_per_stage: 1,
                stem_stride: 2,
            },
        ] {
            assert_eq!(
                Skeleton::parse_prefix(&k.prefix()),
                Some(k),
                "{}",
                k.prefix()
            );
        }
        assert_eq!(Skeleton::BENCHMARK.prefix(), "nb201");
        assert_eq!(
            Skeleton::parse_prefix("nb201-c16n5s1"),
            Some(Skeleton::BENCHMARK)
        );
        for bad in [
            "nb201-c8",
            "nb201-c0n1",
            "nb201-c8n1s0",
            "nb201-cxn1",
            "nb201x",
            "nb201-c08n1",
            "nb201-c+8n1",
            "nb201-c8n1s2x",
            "nb201-c8n1s",
        ] {
            assert_eq!(Skeleton::parse_prefix(bad), None, "{bad}");
        }
    }

    /// A stride-2 stem halves every stage's resolution and leaves the weights as they are.
    #[test]
    fn stride_two_stem_halves_the_resolution() {
        let cell = Nb201Cell::from_code(4321);
        let k1 = Skeleton {
            channels: 8,
            cells_per_stage: 1,
            stem_stride: 1,
        };
        let k2 = Skeleton {
            stem_stride: 2,
            ..k1
        };
        let a = network_sized(&cell, Shape::chw(1, 16, 16), 6, k1)
            .unwrap()
            .analyze()
            .unwrap();
        let b = network_sized(&cell, Shape::chw(1, 16, 16), 6, k2)
            .unwrap()
            .analyze()
            .unwrap();
        assert_eq!(a.totals.params, b.totals.params);
        // The last stage runs at 4x4 after a stride-1 stem and at 2x2 after a stride-2 one
        // (its largest 32-channel map: the global pool's is 1x1).
        let last = |an: &crate::ir::Analysis| {
            an.shapes
                .iter()
                .filter(|s| s.dims().len() == 3 && s.channels() == 32)
                .map(|s| s.dims()[1])
                .max()
                .unwrap()
        };
        assert_eq!((last(&a), last(&b)), (4, 2));
        assert!(b.totals.macs * 3 < a.totals.macs);
    }
}
