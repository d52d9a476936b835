//! Figures (SVG and PNG, one style, data read back from the SVG) and the HTML report.

pub mod figure;
pub mod html;

pub use figure::{
    cactus_points, padded_range, BandSeries, BarSeries, CactusSeries, Figure, Image, Plot, Series,
    StageSeries,
};
pub use html::{FigureRef, FileLink, RunPage, Table};
