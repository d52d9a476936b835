//! DeepMAD structures as block lists, in the format of the published code: a stem
//! `ConvKXBNRELU`, then `SuperResK1KXK1` (bottleneck) or `SuperResK1DWSEK1` (inverted residual
//! with squeeze-excitation) stages of `L` repeated units, and an optional final 1x1
//! `ConvKXBNRELU`.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// The kind of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BlockKind {
    /// Convolution k x k, stride s, batch norm, ReLU.
    #[serde(rename = "ConvKXBNRELU")]
    Conv,
    /// `L` bottleneck units 1x1 -> k x k -> 1x1 (ReLU).
    #[serde(rename = "SuperResK1KXK1")]
    K1KXK1,
    /// `L` inverted units 1x1 -> depthwise k x k -> squeeze-excitation -> 1x1 (SiLU).
    #[serde(rename = "SuperResK1DWSEK1")]
    K1DWSEK1,
}

/// One block of a structure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    /// The block's kind (`class` in the published format).
    #[serde(rename = "class")]
    pub kind: BlockKind,
    /// Input channels.
    #[serde(rename = "in")]
    pub cin: usize,
    /// Output channels.
    #[serde(rename = "out")]
    pub cout: usize,
    /// Kernel size.
    pub k: usize,
    /// Stride (1 or 2) of the block's first unit.
    pub s: usize,
    /// Units (for the residual kinds).
    #[serde(rename = "L", default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<usize>,
    /// Bottleneck (or expansion) width (for the residual kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub btn: Option<usize>,
}

impl Block {
    /// Units of the block (1 for a plain convolution).
    pub fn units(&self) -> usize {
        match self.kind {
            BlockKind::Conv => 1,
            _ => self.depth.unwrap_or(1),
        }
    }
}

/// A whole network as a block list.
pub type Structure = Vec<Block>;

/// Checks a structure: known kinds, positive sizes, strides 1 or 2, residual blocks with `L` and
/// `btn`, each block reading what the previous one writes.
pub fn validate(blocks: &[Block]) -> Result<(), StructureError> {
    if blocks.is_empty() {
        return Err(StructureError("the structure has no blocks".into()));
    }
    for (i, b) in blocks.iter().enumerate() {
        let at = |m: String| StructureError(format!("block {i}: {m}"));
        if b.cin == 0 || b.cout == 0 || b.k == 0 {
            return Err(at("in, out and k must be positive".into()));
        }
        if b.s != 1 && b.s != 2 {
            return Err(at(format!("stride {} (must be 1 or 2)", b.s)));
        }
        if b.kind != BlockKind::Conv {
            match (b.depth, b.btn) {
                (Some(l), Some(btn)) if l > 0 && btn > 0 => {}
                _ => return Err(at("a residual block needs positive L and btn".into())),
            }
        }
        if i > 0 && blocks[i - 1].cout != b.cin {
            return Err(at(format!(
                "reads {} channels but block {} writes {}",
                b.cin,
                i - 1,
                blocks[i - 1].cout
            )));
        }
    }
    Ok(())
}

/// What is wrong with a structure or its file (the message names the block or the file).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct StructureError(pub String);

/// Reads a structure from `FILE` or `FILE#NAME`: a JSON block list, an object with a
/// `structure` list, or the released-structures file (`{"structures": {NAME: [...]}}`, where
/// `#NAME` picks one). Errors name the file and the problem.
pub fn read(spec: &str) -> Result<Structure, StructureError> {
    read_with_resolution(spec).map(|(s, _)| s)
}

/// [`read`], and the input resolution the file states beside the list
/// (`{"structure": [...], "resolution": 32}`, as `search deepmad` writes it), if any.
pub fn read_with_resolution(spec: &str) -> Result<(Structure, Option<usize>), StructureError> {
    let (path, name) = match spec.rsplit_once('#') {
        Some((p, n)) => (p, Some(n)),
        None => (spec, None),
    };
    let err = |m: String| StructureError(format!("{path}: {m}"));
    let text = std::fs::read_to_string(Path::new(path)).map_err(|e| err(e.to_string()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| err(format!("not valid JSON: {e}")))?;
    let resolution = value
        .get("resolution")
        .and_then(|r| r.as_u64())
        .map(|r| r as usize);
    let list = if let Some(all) = value.get("structures").and_then(|v| v.as_object()) {
        let Some(name) = name else {
            let names: Vec<&String> = all.keys().collect();
            return Err(err(format!(
                "holds several structures; pick one with FILE#NAME ({names:?})"
            )));
        };
        all.get(name)
            .cloned()
            .ok_or_else(|| err(format!("no structure called '{name}'")))?
    } else if let Some(s) = value.get("structure") {
        s.clone()
    } else {
        value
    };
    let blocks: Structure = serde_json::from_value(list).map_err(|e| {
        err(format!(
            "not a DeepMAD block list ({e}); expected [{{\"class\": \"ConvKXBNRELU\", \"in\": 3, \"out\": 32, \"k\": 3, \"s\": 2}}, ...]"
        ))
    })?;
    validate(&blocks).map_err(|e| err(e.0))?;
    Ok((blocks, resolution))
}
