//! Anchor networks: small networks in which every normalization-activation position holds the
//! layer under test. The search judges a layer on a ResNet-like and a MobileNetV2-like anchor;
//! the final evaluation uses a third, plain convolutional one that the search never saw.

use super::Layer;
use crate::ir::{Builder, Graph, IrError, NodeId, Op, Shape};
use crate::train::model::effective_groups;

/// An anchor architecture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// Pre-activation residual blocks (layer, 3x3 conv, layer, 3x3 conv, plus the shortcut).
    Resnet,
    /// Inverted residual blocks (1x1 expansion, layer, depthwise 3x3, layer, 1x1 projection).
    Mobilenet,
    /// Plain stacked 3x3 convolutions, each followed by the layer (held out from the search).
    Plain,
}

impl Anchor {
    /// All anchors, by name.
    pub const ALL: [(&'static str, Anchor); 3] = [
        ("resnet", Anchor::Resnet),
        ("mobilenet", Anchor::Mobilenet),
        ("plain", Anchor::Plain),
    ];

    /// The anchor of a name.
    pub fn parse(s: &str) -> Option<Anchor> {
        Self::ALL.iter().find(|(n, _)| *n == s).map(|(_, a)| *a)
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, a)| *a == self)
            .map(|(n, _)| *n)
            .expect("every anchor is listed")
    }
}

/// The layer at one position.
fn norm_act(b: &mut Builder, name: &str, x: NodeId, layer: &Layer) -> Result<NodeId, IrError> {
    match layer {
        Layer::BnRelu => {
            let y = b.bn(&format!("{name}.bn"), x)?;
            b.relu(&format!("{name}.relu"), y)
        }
        Layer::GnRelu => {
            let groups = effective_groups(super::GROUPS, b.channels(x));
            let y = b.push(&format!("{name}.gn"), Op::GroupNorm { groups }, &[x])?;
            b.relu(&format!("{name}.relu"), y)
        }
        Layer::Graph(g) => b.push(name, Op::NormAct(g.clone()), &[x]),
    }
}

/// The anchor network with `layer` at every normalization-activation position; `width` is
/// the channel count of the first stage (doubled in the second).
pub fn build(
    anchor: Anchor,
    layer: &Layer,
    input: Shape,
    classes: usize,
    width: usize,
) -> Result<Graph, IrError> {
    let mut b = Builder::new(format!("{}-anchor", anchor.name()));
    let x = b.input("input", input)?;
    let mut y = b.conv("stem", x, width, 3, 1, 1, 1)?;
    match anchor {
        Anchor::Resnet => {
            for (i, (c, s)) in [(width, 1), (2 * width, 2)].into_iter().enumerate() {
                b.enter(format!("block{i}"));
                let a = norm_act(&mut b, "na1", y, layer)?;
                let h = b.conv("conv1", a, c, 3, s, 1, 1)?;
                let h = norm_act(&mut b, "na2", h, layer)?;
                let h = b.conv("conv2", h, c, 3, 1, 1, 1)?;
                let short = if s == 1 && b.channels(y) == c {
                    y
                } else {
                    b.conv("shortcut", a, c, 1, s, 0, 1)?
                };
                y = b.add("add", &[h, short])?;
                b.leave();
            }
            y = norm_act(&mut b, "final", y, layer)?;
        }
        Anchor::Mobilenet => {
            y = norm_act(&mut b, "stem.na", y, layer)?;
            for (i, (c, s)) in [(width, 1), (2 * width, 2)].into_iter().enumerate() {
                b.enter(format!("block{i}"));
                let e = 4 * b.channels(y);
                let h = b.conv("expand", y, e, 1, 1, 0, 1)?;
                let h = norm_act(&mut b, "na1", h, layer)?;
                let h = b.conv("dw", h, e, 3, s, 1, e)?;
                let h = norm_act(&mut b, "na2", h, layer)?;
                let h = b.conv("project", h, c, 1, 1, 0, 1)?;
                y = if s == 1 && b.channels(y) == c {
                    b.add("add", &[h, y])?
                } else {
                    h
                };
                b.leave();
            }
            y = b.conv("head", y, 4 * 2 * width, 1, 1, 0, 1)?;
            y = norm_act(&mut b, "head.na", y, layer)?;
        }
        Anchor::Plain => {
            y = norm_act(&mut b, "stem.na", y, layer)?;
            for (i, (c, s)) in [(width, 1), (2 * width, 2), (2 * width, 1)]
                .into_iter()
                .enumerate()
            {
                y = b.conv(&format!("conv{i}"), y, c, 3, s, 1, 1)?;
                y = norm_act(&mut b, &format!("na{i}"), y, layer)?;
            }
        }
    }
    let y = b.pool_flatten(y)?;
    let y = b.linear("classifier", y, classes)?;
    b.finish(&[y])
}
