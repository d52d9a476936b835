//! Figures (SVG and PNG, one style, data read back from the SVG) and the HTML report.

pub mod figure;
pub mod html;

pub use figure::{
    cactus_points, padded_range, BandSeries, BarSeries, CactusSeries, Figure, Image, Plot, Series,
    StageSeries,
};
pub use html::{FigureRef, FileLink, RunPage, Table};

use std::path::PathBuf;

/// Why a figure or a report could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// Drawing failed (plotters or the rasteriser).
    #[error("{0}")]
    Draw(String),
    /// A file or folder could not be read or written.
    #[error("{}: {cause}", .path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The system's reason.
        cause: std::io::Error,
    },
    /// A file is not what it should be (an SVG without figure data, a malformed run.json).
    #[error("{}: {msg}", .path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// SVG text without the figure data archproof writes.
    #[error("{0}")]
    NoFigureData(String),
    /// A folder holds no finished runs.
    #[error("{}: no finished runs (no run.json below it)", .0.display())]
    NoRuns(PathBuf),
}

/// `ReportError::Io` for `path`.
pub(crate) fn io_err(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> ReportError + '_ {
    move |cause| ReportError::Io {
        path: path.to_path_buf(),
        cause,
    }
}
