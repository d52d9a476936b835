//! Reference networks: torchvision's ResNet-18/34/50 and MobileNetV2, and small trainable
//! ones (MLPs, cnn-tiny, resnet-tiny, resnet-mini). Node names follow the reference
//! implementations, so a per-layer table can be read beside theirs.

use super::builder::Builder;
use super::graph::{Graph, NodeId};
use super::ops::{Activation, Op};
use super::shape::Shape;
use super::IrError;

/// Names the zoo knows, with a one-line description each.
pub const MODELS: &[(&str, &str)] = &[
    ("resnet18", "torchvision ResNet-18 (basic blocks 2-2-2-2)"),
    ("resnet34", "torchvision ResNet-34 (basic blocks 3-4-6-3)"),
    (
        "resnet50",
        "torchvision ResNet-50 v1.5 (bottlenecks 3-4-6-3)",
    ),
    ("mobilenet_v2", "torchvision MobileNetV2 (width 1.0)"),
    (
        "mlp:<w1>-<w2>-...",
        "ReLU MLP with these hidden widths (default input 1x16x16, 6 classes)",
    ),
    (
        "cnn-tiny",
        "3 conv-ReLU layers (8, 16, 32 channels; stride 1, 2, 2) and a 64-wide ReLU layer",
    ),
    (
        "resnet-tiny",
        "ResNet for small images: 16-channel stem, basic blocks at 16, 32, 64 channels",
    ),
    (
        "resnet-mini[:W]",
        "ResNet small enough to verify in seconds: W-channel stride-2 stem (W = 8), basic blocks at W, 2W",
    ),
];

/// Default input of the small trainable models: the embedded `shapes` dataset.
const SMALL_INPUT: [usize; 3] = [1, 16, 16];
/// Default classes of the small trainable models.
const SMALL_CLASSES: usize = 6;

/// Builds a zoo network by name; `input` and `classes` override the defaults (3x224x224 and
/// 1000 for ImageNet networks, 1x16x16 and 6 for the small trainable ones). Networks of the
/// search spaces (`nb201:<cell>`) are built by [`crate::models::build`].
pub fn build(name: &str, input: Option<Shape>, classes: Option<usize>) -> Result<Graph, IrError> {
    let small_input =
        input
            .clone()
            .unwrap_or(Shape::chw(SMALL_INPUT[0], SMALL_INPUT[1], SMALL_INPUT[2]));
    let small_classes = classes.unwrap_or(SMALL_CLASSES);
    if let Some(w) = name.strip_prefix("resnet-mini:") {
        let w = w
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|&w| w > 0)
            .ok_or_else(|| {
                IrError::Model(format!(
                    "'{name}': the stem width is a positive integer, e.g. resnet-mini:16"
                ))
            })?;
        return resnet_mini(w, small_input, small_classes);
    }
    if let Some(widths) = name.strip_prefix("mlp:") {
        let widths: Vec<usize> = widths
            .split('-')
            .map(|w| w.trim().parse::<usize>().ok().filter(|&w| w > 0))
            .collect::<Option<_>>()
            .ok_or_else(|| {
                IrError::Model(format!(
                    "'{name}': hidden widths are positive integers joined by '-', e.g. mlp:64-32"
                ))
            })?;
        return mlp(&widths, small_input, small_classes);
    }
    match name {
        "cnn-tiny" => return cnn_tiny(small_input, small_classes),
        "resnet-tiny" => return resnet_tiny(small_input, small_classes),
        "resnet-mini" => return resnet_mini(8, small_input, small_classes),
        _ => {}
    }
    let input = input.unwrap_or(Shape::chw(3, 224, 224));
    let classes = classes.unwrap_or(1000);
    match name {
        "resnet18" => resnet(name, Block::Basic, [2, 2, 2, 2], input, classes),
        "resnet34" => resnet(name, Block::Basic, [3, 4, 6, 3], input, classes),
        "resnet50" => resnet(name, Block::Bottleneck, [3, 4, 6, 3], input, classes),
        "mobilenet_v2" | "mobilenetv2" => mobilenet_v2(input, classes),
        other => {
            let known: Vec<&str> = MODELS.iter().map(|(n, _)| *n).collect();
            Err(IrError::Model(format!(
                "unknown model '{other}'; known: {}, or a path to an IR .json file",
                known.join(", ")
            )))
        }
    }
}

/// A ReLU MLP: flatten, then `fc{i}` linear layers with ReLU, then `fc{n}` to the classes.
pub fn mlp(widths: &[usize], input: Shape, classes: usize) -> Result<Graph, IrError> {
    let name = format!(
        "mlp-{}",
        widths
            .iter()
            .map(|w| w.to_string())
            .collect::<Vec<_>>()
            .join("-")
    );
    let mut b = Builder::new(name);
    let mut x = b.input("input", input.clone())?;
    if input.dims().len() != 1 {
        x = b.push("flatten", Op::Flatten, &[x])?;
    }
    for (i, &w) in widths.iter().enumerate() {
        x = b.linear(&format!("fc{}", i + 1), x, w)?;
        x = b.relu(&format!("relu{}", i + 1), x)?;
    }
    let out = b.linear(&format!("fc{}", widths.len() + 1), x, classes)?;
    b.finish(&[out])
}

/// A small plain CNN the verifier reads: three 3x3 conv-ReLU layers (8, 16, 32 channels,
/// strides 1, 2, 2), a 64-wide ReLU layer and the classifier.
pub fn cnn_tiny(input: Shape, classes: usize) -> Result<Graph, IrError> {
    let mut b = Builder::new("cnn-tiny");
    let mut x = b.input("input", input)?;
    for (i, (c, s)) in [(8, 1), (16, 2), (32, 2)].into_iter().enumerate() {
        x = b.conv_bias(&format!("conv{}", i + 1), x, c, 3, s, 1)?;
        x = b.relu(&format!("relu{}", i + 1), x)?;
    }
    let f = b.push("flatten", Op::Flatten, &[x])?;
    let h = b.linear("fc1", f, 64)?;
    let h = b.relu("relu4", h)?;
    let out = b.linear("fc2", h, classes)?;
    b.finish(&[out])
}

/// A ResNet for small images: a 3x3 stem of 16 channels with BN-ReLU, one basic block each
/// at 16, 32 and 64 channels (the last two with stride 2 and a 1x1 projection), global
/// pooling and the classifier.
pub fn resnet_tiny(input: Shape, classes: usize) -> Result<Graph, IrError> {
    small_resnet(
        "resnet-tiny",
        1,
        &[(16, 1), (32, 2), (64, 2)],
        input,
        classes,
    )
}

/// A ResNet small enough for complete verification in seconds: a 3x3 stride-2 stem of `width`
/// channels with BN-ReLU, one basic block at `width` channels and one at `2 * width` (stride 2,
/// with a 1x1 projection), global pooling and the classifier. On the 1x16x16 `shapes` images
/// with width 8 it has 2,048 ReLUs; on 3x32x32 with width 16, 16,384.
pub fn resnet_mini(width: usize, input: Shape, classes: usize) -> Result<Graph, IrError> {
    let name = if width == 8 {
        "resnet-mini".to_string()
    } else {
        format!("resnet-mini-{width}")
    };
    small_resnet(&name, 2, &[(width, 1), (2 * width, 2)], input, classes)
}

/// A 3x3 stem (`stride`) with BN-ReLU as wide as the first block, one basic block per
/// `(planes, stride)` in scopes `layer1, layer2, ...`, global pooling and the classifier.
fn small_resnet(
    name: &str,
    stride: usize,
    blocks: &[(usize, usize)],
    input: Shape,
    classes: usize,
) -> Result<Graph, IrError> {
    let mut b = Builder::new(name);
    let x = b.input("input", input)?;
    let c = b.conv("conv1", x, blocks[0].0, 3, stride, 1, 1)?;
    let c = b.bn("bn1", c)?;
    let mut x = b.relu("relu", c)?;
    for (i, &(planes, s)) in blocks.iter().enumerate() {
        b.enter(format!("layer{}", i + 1));
        x = residual_block(&mut b, x, Block::Basic, planes, s)?;
        b.leave();
    }
    let f = b.pool_flatten(x)?;
    let fc = b.linear("fc", f, classes)?;
    b.finish(&[fc])
}

/// One torchvision residual block (basic or bottleneck) with its projection shortcut where
/// the stride or width changes, in the current scope; returns the block's output.
fn residual_block(
    b: &mut Builder,
    x: NodeId,
    block: Block,
    planes: usize,
    stride: usize,
) -> Result<NodeId, IrError> {
    let out = match block {
        Block::Basic => planes,
        Block::Bottleneck => planes * 4,
    };
    let mut y = x;
    match block {
        Block::Basic => {
            y = b.conv("conv1", y, planes, 3, stride, 1, 1)?;
            y = b.bn("bn1", y)?;
            y = b.relu("relu1", y)?;
            y = b.conv("conv2", y, planes, 3, 1, 1, 1)?;
            y = b.bn("bn2", y)?;
        }
        Block::Bottleneck => {
            y = b.conv("conv1", y, planes, 1, 1, 0, 1)?;
            y = b.bn("bn1", y)?;
            y = b.relu("relu1", y)?;
            y = b.conv("conv2", y, planes, 3, stride, 1, 1)?;
            y = b.bn("bn2", y)?;
            y = b.relu("relu2", y)?;
            y = b.conv("conv3", y, out, 1, 1, 0, 1)?;
            y = b.bn("bn3", y)?;
        }
    }
    let shortcut = if stride != 1 || b.channels(x) != out {
        let d = b.conv("downsample.0", x, out, 1, stride, 0, 1)?;
        b.bn("downsample.1", d)?
    } else {
        x
    };
    let s = b.add("add", &[y, shortcut])?;
    b.relu("relu", s)
}

#[derive(Clone, Copy)]
enum Block {
    Basic,
    Bottleneck,
}

fn resnet(
    name: &str,
    block: Block,
    depths: [usize; 4],
    input: Shape,
    classes: usize,
) -> Result<Graph, IrError> {
    let mut b = Builder::new(name);
    let x = b.input("input", input)?;
    let c = b.conv("conv1", x, 64, 7, 2, 3, 1)?;
    let c = b.bn("bn1", c)?;
    let c = b.relu("relu", c)?;
    let mut x = b.push(
        "maxpool",
        Op::MaxPool {
            kernel: [3, 3],
            stride: [2, 2],
            padding: [1, 1],
        },
        &[c],
    )?;
    for (stage, &depth) in depths.iter().enumerate() {
        let planes = 64 << stage;
        for i in 0..depth {
            let stride = if stage > 0 && i == 0 { 2 } else { 1 };
            b.enter(format!("layer{}.{}", stage + 1, i));
            x = residual_block(&mut b, x, block, planes, stride)?;
            b.leave();
        }
    }
    let f = b.pool_flatten(x)?;
    let fc = b.linear("fc", f, classes)?;
    b.finish(&[fc])
}

fn mobilenet_v2(input: Shape, classes: usize) -> Result<Graph, IrError> {
    // (expansion t, output channels c, repeats n, first stride s), torchvision's table.
    const SETTINGS: [(usize, usize, usize, usize); 7] = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ];
    let relu6 = Some(Activation::Relu6);
    let mut b = Builder::new("mobilenet_v2");
    let x = b.input("input", input)?;
    b.enter("features.0");
    let mut x = b.conv_bn_act(x, 32, 3, 2, 1, relu6)?;
    b.leave();
    let mut index = 1;
    for (t, c, n, s) in SETTINGS {
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            let inp = b.channels(x);
            let hidden = inp * t;
            b.enter(format!("features.{index}"));
            let mut y = x;
            if t != 1 {
                b.enter("expand");
                y = b.conv_bn_act(y, hidden, 1, 1, 1, relu6)?;
                b.leave();
            }
            b.enter("dw");
            y = b.conv_bn_act(y, hidden, 3, stride, hidden, relu6)?;
            b.leave();
            b.enter("project");
            y = b.conv_bn_act(y, c, 1, 1, 1, None)?;
            b.leave();
            if stride == 1 && inp == c {
                y = b.add("add", &[x, y])?;
            }
            b.leave();
            x = y;
            index += 1;
        }
    }
    b.enter(format!("features.{index}"));
    let x = b.conv_bn_act(x, 1280, 1, 1, 1, relu6)?;
    b.leave();
    let f = b.pool_flatten(x)?;
    let fc = b.linear("classifier", f, classes)?;
    b.finish(&[fc])
}

/// ReLU-Conv-BN, the `nor_conv` of NAS-Bench-201 (and its reduction blocks).
pub(crate) fn relu_conv_bn(
    b: &mut Builder,
    x: NodeId,
    out: usize,
    k: usize,
    stride: usize,
) -> Result<NodeId, IrError> {
    let r = b.relu("relu", x)?;
    let c = b.conv("conv", r, out, k, stride, k / 2, 1)?;
    b.bn("bn", c)
}
