//! DeepMAD structures as IR graphs, and back.
//!
//! Blocks become scopes `block{i}`; a plain block is `block{i}.conv/bn/act`, a residual block
//! has units `block{i}.unit{j}` with `conv1`, `conv2`, (`se`,) `conv3` scopes and a shortcut.
//! Reading a graph back relies on these names, so it accepts the graphs this module writes
//! (for instance a `search deepmad` design after `export`), and says so otherwise.

use std::collections::BTreeMap;

use crate::ir::{Activation, Builder, Graph, IrError, NodeId, Op, Shape};

use super::score::se_width;
use super::structure::{validate, Block, BlockKind, StructureError};

/// The IR of a structure at `resolution`, with a global-pool and linear classifier of
/// `classes` outputs when given.
pub fn to_graph(
    blocks: &[Block],
    resolution: usize,
    classes: Option<usize>,
    name: &str,
) -> Result<Graph, IrError> {
    let mut b = Builder::new(name);
    let mut x = b.input(
        "input",
        Shape::chw(
            blocks.first().map(|b| b.cin).unwrap_or(3),
            resolution,
            resolution,
        ),
    )?;
    for (i, blk) in blocks.iter().enumerate() {
        b.enter(format!("block{i}"));
        x = match blk.kind {
            BlockKind::Conv => {
                b.conv_bn_act(x, blk.cout, blk.k, blk.s, 1, Some(Activation::Relu))?
            }
            kind => {
                for u in 0..blk.units() {
                    b.enter(format!("unit{u}"));
                    let (cin, s) = if u == 0 {
                        (blk.cin, blk.s)
                    } else {
                        (blk.cout, 1)
                    };
                    let btn = blk.btn.unwrap_or(1);
                    x = if kind == BlockKind::K1KXK1 {
                        bottleneck(&mut b, x, cin, blk.cout, btn, blk.k, s, u == 0)?
                    } else {
                        inverted(&mut b, x, cin, blk.cout, btn, blk.k, s)?
                    };
                    b.leave();
                }
                x
            }
        };
        b.leave();
    }
    if let Some(c) = classes {
        let f = b.pool_flatten(x)?;
        x = b.linear("fc", f, c)?;
    }
    b.finish(&[x])
}

fn scoped<T>(b: &mut Builder, scope: &str, f: impl FnOnce(&mut Builder) -> T) -> T {
    b.enter(scope);
    let out = f(b);
    b.leave();
    out
}

#[allow(clippy::too_many_arguments)]
fn bottleneck(
    b: &mut Builder,
    x: NodeId,
    cin: usize,
    cout: usize,
    btn: usize,
    k: usize,
    s: usize,
    first: bool,
) -> Result<NodeId, IrError> {
    let relu = Some(Activation::Relu);
    let y = scoped(b, "conv1", |b| b.conv_bn_act(x, btn, 1, 1, 1, relu))?;
    let y = scoped(b, "conv2", |b| b.conv_bn_act(y, btn, k, s, 1, relu))?;
    let y = scoped(b, "conv3", |b| b.conv_bn_act(y, cout, 1, 1, 1, None))?;
    let short = shortcut(b, x, cin, cout, s, first)?;
    let sum = b.add("add", &[y, short])?;
    b.relu("relu", sum)
}

fn shortcut(
    b: &mut Builder,
    x: NodeId,
    cin: usize,
    cout: usize,
    s: usize,
    project: bool,
) -> Result<NodeId, IrError> {
    let mut r = x;
    if s == 2 {
        r = b.push(
            "shortcut_pool",
            Op::AvgPool {
                kernel: [2, 2],
                stride: [2, 2],
                padding: [0, 0],
                count_include_pad: true,
            },
            &[r],
        )?;
    }
    if cin != cout || project {
        r = scoped(b, "shortcut", |b| b.conv_bn_act(r, cout, 1, 1, 1, None))?;
    }
    Ok(r)
}

fn inverted(
    b: &mut Builder,
    x: NodeId,
    cin: usize,
    cout: usize,
    btn: usize,
    k: usize,
    s: usize,
) -> Result<NodeId, IrError> {
    let silu = Some(Activation::Silu);
    let y = scoped(b, "conv1", |b| b.conv_bn_act(x, btn, 1, 1, 1, silu))?;
    let y = scoped(b, "conv2", |b| b.conv_bn_act(y, btn, k, s, btn, silu))?;
    let y = scoped(b, "se", |b| -> Result<NodeId, IrError> {
        let p = b.push("pool", Op::GlobalAvgPool, &[y])?;
        let q = scoped(b, "reduce", |b| {
            b.conv_bn_act(p, se_width(btn), 1, 1, 1, silu)
        })?;
        let g = scoped(b, "expand", |b| {
            b.conv_bn_act(q, btn, 1, 1, 1, Some(Activation::Sigmoid))
        })?;
        b.push("gate", Op::Mul, &[y, g])
    })?;
    let y = scoped(b, "conv3", |b| b.conv_bn_act(y, cout, 1, 1, 1, None))?;
    let out = if cin == cout {
        let short = shortcut(b, x, cin, cout, s, false)?;
        b.add("add", &[y, short])?
    } else {
        y
    };
    b.act("act", out, Activation::Silu)
}

/// Reads a structure back from a graph written by [`to_graph`]; returns it with the input
/// resolution.
pub fn from_graph(graph: &Graph) -> Result<(Vec<Block>, usize), StructureError> {
    let analysis = graph.analyze().map_err(|e| StructureError(e.to_string()))?;
    let not_ours = || {
        StructureError(
            "this graph was not written by archproof's DeepMAD (its nodes are not named \
             block{i}.conv / block{i}.unit{j}.conv1 ...)"
                .to_string(),
        )
    };
    let mut resolution = None;
    // Conv nodes by name: (input channels, out channels, kernel, stride, groups).
    let mut convs: BTreeMap<String, (usize, usize, usize, usize, usize)> = BTreeMap::new();
    for &id in &analysis.order {
        let node = graph.node(id);
        match &node.op {
            Op::Input { shape } => {
                let d = shape.dims();
                if d.len() != 3 || d[1] != d[2] {
                    return Err(StructureError(
                        "the input must be a square [C, H, W] image".into(),
                    ));
                }
                resolution = Some(d[1]);
            }
            Op::Conv2d {
                out_channels,
                kernel,
                stride,
                groups,
                ..
            } => {
                let src = graph.inputs_of(id)[0];
                let cin = analysis.shapes[src.index()].channels();
                convs.insert(
                    node.name.clone(),
                    (cin, *out_channels, kernel[0], stride[0], *groups),
                );
            }
            _ => {}
        }
    }
    let resolution = resolution.ok_or_else(|| StructureError("the graph has no input".into()))?;
    let mut blocks = Vec::new();
    for i in 0.. {
        let p = format!("block{i}");
        if let Some(&(cin, cout, k, s, _)) = convs.get(&format!("{p}.conv")) {
            blocks.push(Block {
                kind: BlockKind::Conv,
                cin,
                cout,
                k,
                s,
                depth: None,
                btn: None,
            });
            continue;
        }
        let Some(&(cin, btn, _, _, _)) = convs.get(&format!("{p}.unit0.conv1.conv")) else {
            break;
        };
        let &(_, _, k, s, groups) = convs
            .get(&format!("{p}.unit0.conv2.conv"))
            .ok_or_else(not_ours)?;
        let &(_, cout, _, _, _) = convs
            .get(&format!("{p}.unit0.conv3.conv"))
            .ok_or_else(not_ours)?;
        let depth = (0..)
            .take_while(|u| convs.contains_key(&format!("{p}.unit{u}.conv1.conv")))
            .count();
        blocks.push(Block {
            kind: if groups > 1 {
                BlockKind::K1DWSEK1
            } else {
                BlockKind::K1KXK1
            },
            cin,
            cout,
            k,
            s,
            depth: Some(depth),
            btn: Some(btn),
        });
    }
    if blocks.is_empty() {
        return Err(not_ours());
    }
    validate(&blocks)?;
    Ok((blocks, resolution))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r50ish() -> Vec<Block> {
        let conv = |cin, cout, k, s| Block {
            kind: BlockKind::Conv,
            cin,
            cout,
            k,
            s,
            depth: None,
            btn: None,
        };
        let res = |kind, cin, cout, k, s, l, btn| Block {
            kind,
            cin,
            cout,
            k,
            s,
            depth: Some(l),
            btn: Some(btn),
        };
        vec![
            conv(3, 32, 3, 2),
            res(BlockKind::K1KXK1, 32, 128, 5, 2, 1, 40),
            res(BlockKind::K1KXK1, 128, 512, 3, 2, 3, 48),
            res(BlockKind::K1DWSEK1, 512, 512, 5, 1, 2, 1024),
            conv(512, 1024, 1, 1),
        ]
    }

    #[test]
    fn structures_round_trip_through_the_ir() {
        let blocks = r50ish();
        let g = to_graph(&blocks, 224, Some(1000), "t").unwrap();
        let (back, res) = from_graph(&g).unwrap();
        assert_eq!(back, blocks);
        assert_eq!(res, 224);
    }

    #[test]
    fn ir_params_match_the_official_bookkeeping_for_bottlenecks() {
        // Without SE blocks the IR's params (conv weights + 2 per BN channel) are exactly the
        // official count.
        let blocks: Vec<Block> = r50ish().into_iter().take(3).collect();
        let g = to_graph(&blocks, 224, None, "t").unwrap();
        let s = super::super::score(
            &blocks,
            224,
            super::super::Convention::Tinynas,
            &Default::default(),
        );
        assert_eq!(g.analyze().unwrap().totals.params as f64, s.params);
    }
}
