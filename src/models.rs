//! Networks by name, as every command takes them: the reference and small networks of the zoo
//! ([`crate::ir::zoo`]) and the NAS-Bench-201 network of a cell (`nb201:<cell string>`, or
//! `nb201-c8n1s2:<cell string>` on another skeleton, [`crate::cells::nb201::network_sized`]).
//! It sits above the IR so that the IR never depends on the search spaces.

use crate::cells::nb201::{self, Nb201Cell, Skeleton};
use crate::ir::{zoo, Graph, IrError, Shape};

/// Every name a model can be given, with a one-line description each.
pub fn names() -> Vec<(&'static str, &'static str)> {
    let mut all = zoo::MODELS.to_vec();
    all.insert(
        4,
        (
            "nb201:<cell>",
            "NAS-Bench-201 network (C=16, N=5) for a cell string",
        ),
    );
    all.insert(
        5,
        (
            "nb201-cCnN[sS]:<cell>",
            "the same at C stem channels, N cells per stage, stem stride S",
        ),
    );
    all
}

/// Builds a network by name; `input` and `classes` override its defaults (3x32x32 and 10 for
/// NAS-Bench-201; the zoo's otherwise).
pub fn build(name: &str, input: Option<Shape>, classes: Option<usize>) -> Result<Graph, IrError> {
    match name.split_once(':') {
        Some((prefix, cell)) if prefix.starts_with("nb201") => {
            let skeleton = Skeleton::parse_prefix(prefix).ok_or_else(|| {
                IrError::Model(format!(
                    "'{prefix}': a NAS-Bench-201 network is named nb201:<cell> or \
                     nb201-cCnN[sS]:<cell> (C stem channels, N cells per stage, stem stride S), \
                     e.g. nb201-c8n1s2:<cell>"
                ))
            })?;
            let cell: Nb201Cell = cell
                .parse()
                .map_err(|e: crate::cells::CellsError| IrError::Model(e.to_string()))?;
            nb201::network_sized(
                &cell,
                input.unwrap_or(Shape::chw(3, 32, 32)),
                classes.unwrap_or(10),
                skeleton,
            )
        }
        _ => zoo::build(name, input, classes),
    }
}
