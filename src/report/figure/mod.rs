//! One figure model for the whole project, drawn with plotters as SVG and PNG in one style.
//!
//! A [`Figure`] holds its data series, its title, axis labels (with units) and a settings line
//! (the run's settings and seed). [`Figure::save`] writes `NAME.svg` and `NAME.png` from the
//! same drawing code. Text is laid out, and for PNG rasterised, with DejaVu Sans from the
//! `dejavu` crate, so no figure depends on the fonts of the machine that drew it.
//!
//! The SVG carries the figure's data as JSON in a `<metadata id="archproof-figure">` element;
//! [`Figure::read`] reads it back, so a figure can be checked against the run that drew it.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Once;

use plotters::prelude::*;
use serde::{Deserialize, Serialize};

mod draw;

use draw::{dag_layout, image_panel};

use super::{io_err, ReportError};

/// Height of the title and one settings line above every figure's body; each further settings
/// line adds `SETTINGS_LINE`.
const HEADER: u32 = 58;
const SETTINGS_LINE: u32 = 16;
/// The element that carries the data in an SVG.
const META_OPEN: &str = "<metadata id=\"archproof-figure\">";
const META_CLOSE: &str = "</metadata>";

/// A named line: its (x, y) points.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Points, in drawing order.
    pub points: Vec<(f64, f64)>,
}

/// A named mean line with a band of plus or minus one standard deviation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BandSeries {
    /// Legend label.
    pub name: String,
    /// (x, mean, standard deviation), in increasing x.
    pub points: Vec<(f64, f64, f64)>,
}

/// One engine of a cactus plot: the solve times of the instances it solved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CactusSeries {
    /// Legend label.
    pub name: String,
    /// Seconds of each solved instance (any order).
    pub solved_seconds: Vec<f64>,
    /// Another tool's published times, drawn thinner than the runs of this one.
    #[serde(default)]
    pub published: bool,
}

/// One group member of a bar chart: a value per category (`None` draws no bar).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BarSeries {
    /// Legend label.
    pub name: String,
    /// One value per category.
    pub values: Vec<Option<f64>>,
}

/// One design of a stage figure: per stage, its channels and its depth.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageSeries {
    /// Legend label.
    pub name: String,
    /// (channels, depth) of each stage.
    pub stages: Vec<(usize, usize)>,
}

/// A greyscale (1 channel) or colour (3 channels, channels first) image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Image {
    /// Caption under the image.
    pub label: String,
    /// Channels: 1 or 3.
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Values, channels first; `range` maps to black..white.
    pub pixels: Vec<f64>,
    /// The values drawn black and white.
    pub range: (f64, f64),
}

/// What a figure draws.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Plot {
    /// Best-so-far step lines, each held flat to `x_end`.
    Steps {
        /// The lines: points where the best value changed, in increasing x.
        series: Vec<Series>,
        /// Where every line ends.
        x_end: f64,
    },
    /// Lines through each series' points, with a marker on each point.
    Lines {
        /// The lines.
        series: Vec<Series>,
    },
    /// A cloud of points, x on a log scale when `log_x` (non-positive x dropped).
    Scatter {
        /// The points.
        points: Vec<(f64, f64)>,
        /// log10 x axis.
        log_x: bool,
    },
    /// Mean lines inside shaded standard-deviation bands.
    Band {
        /// The lines.
        series: Vec<BandSeries>,
    },
    /// Evaluated candidates as grey dots and fronts as lines with markers.
    Pareto {
        /// Every evaluated (x, y).
        evaluated: Vec<(f64, f64)>,
        /// The fronts.
        fronts: Vec<Series>,
    },
    /// Instances solved against cumulative time (log scale), one line per engine.
    Cactus {
        /// The engines.
        series: Vec<CactusSeries>,
        /// How many instances were posed.
        instances: usize,
    },
    /// Grouped bars, one group per category.
    Bars {
        /// The group names, left to right.
        categories: Vec<String>,
        /// One bar per series in each group.
        series: Vec<BarSeries>,
    },
    /// Widths and depths of each design's stages, side by side.
    Stages {
        /// The designs.
        designs: Vec<StageSeries>,
    },
    /// Rows of images with captions (counterexamples beside their originals).
    Images {
        /// The rows, each drawn left to right.
        rows: Vec<Vec<Image>>,
    },
    /// A small DAG drawn top-down: (label, argument indices) in topological order.
    Dag {
        /// The nodes.
        nodes: Vec<(String, Vec<usize>)>,
    },
}

/// A figure: data, title, axis labels and the settings line. Series values must be finite
/// (JSON has no NaN): leave points out, or use `None` in a bar series.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    /// The title.
    pub title: String,
    /// The run's settings and seed, drawn under the title.
    pub settings: String,
    /// The x axis, with its unit.
    pub x_label: String,
    /// The y axis, with its unit.
    pub y_label: String,
    /// The data.
    pub plot: Plot,
}

/// The points of a cactus plot: after sorting, the k-th fastest solve at (k, cumulative
/// seconds).
pub fn cactus_points(seconds: &[f64]) -> Vec<(usize, f64)> {
    let mut s = seconds.to_vec();
    s.sort_by(f64::total_cmp);
    let mut total = 0.0;
    s.iter()
        .enumerate()
        .map(|(i, t)| {
            total += t;
            (i + 1, total)
        })
        .collect()
}

/// The span of the values with 5% room on each side (0..1 when there are none; one value, or
/// many equal ones, get 5% of their size, at least 0.5, on each side, so that the axis labels
/// differ).
pub fn padded_range(v: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = v
        .filter(|x| x.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
    if lo.is_finite() {
        let pad = if hi - lo > 1e-9 * hi.abs().max(1.0) {
            (hi - lo) * 0.05
        } else {
            (0.05 * hi.abs()).max(0.5)
        };
        (lo - pad)..(hi + pad)
    } else {
        0.0..1.0
    }
}

/// Registers the bundled font as the family every figure uses (once per process).
fn fonts() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The bytes are a valid TrueType file shipped inside the dejavu crate.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold());
    });
}

/// The PNG of SVG text, rendered by resvg with the bundled fonts (loaded once per process).
fn rasterise(svg: &str) -> Result<Vec<u8>, ReportError> {
    use resvg::{tiny_skia, usvg};
    static FONTS: std::sync::OnceLock<std::sync::Arc<usvg::fontdb::Database>> =
        std::sync::OnceLock::new();
    let fontdb = FONTS
        .get_or_init(|| {
            let mut db = usvg::fontdb::Database::new();
            db.load_font_data(dejavu::sans::regular().to_vec());
            db.load_font_data(dejavu::sans::bold().to_vec());
            db.set_sans_serif_family("DejaVu Sans");
            std::sync::Arc::new(db)
        })
        .clone();
    let opts = usvg::Options {
        font_family: "DejaVu Sans".into(),
        fontdb,
        ..usvg::Options::default()
    };
    let tree = usvg::Tree::from_str(svg, &opts).map_err(err)?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height()).ok_or_else(|| {
        err(format!(
            "a figure of {}x{} pixels",
            size.width(),
            size.height()
        ))
    })?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(&tree, tiny_skia::Transform::default(), &mut pixmap.as_mut());
    pixmap.encode_png().map_err(err)
}

fn err(e: impl std::fmt::Display) -> ReportError {
    ReportError::Draw(e.to_string())
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn xml_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

impl Figure {
    /// A figure with no axis labels yet.
    pub fn new(title: impl Into<String>, plot: Plot) -> Figure {
        Figure {
            title: title.into(),
            settings: String::new(),
            x_label: String::new(),
            y_label: String::new(),
            plot,
        }
    }

    /// Sets the axis labels (give each its unit).
    pub fn axes(mut self, x: impl Into<String>, y: impl Into<String>) -> Figure {
        self.x_label = x.into();
        self.y_label = y.into();
        self
    }

    /// Sets the settings line (the run's settings and its seed).
    pub fn settings(mut self, s: impl Into<String>) -> Figure {
        self.settings = s.into();
        self
    }

    /// The canvas width in pixels: the plot's, or wider to fit the title.
    fn width(&self) -> u32 {
        let title = 11 * self.title.chars().count() as u32 + 40;
        self.plot_width().max(title)
    }

    /// The width the plot itself needs.
    fn plot_width(&self) -> u32 {
        match &self.plot {
            Plot::Stages { .. } => 1000,
            Plot::Bars { categories, .. } => (120 + 70 * categories.len() as u32).max(800),
            Plot::Images { rows } => {
                let (pw, _) = image_panel(rows);
                let cols = rows.iter().map(Vec::len).max().unwrap_or(1) as u32;
                (cols * pw + 20).max(640)
            }
            Plot::Dag { nodes } => dag_layout(nodes).width as u32,
            _ => 800,
        }
    }

    /// The settings line broken to fit the width (at about 7 pixels a character).
    fn settings_lines(&self) -> Vec<String> {
        let max = ((self.width().saturating_sub(40)) / 7).max(20) as usize;
        let mut lines: Vec<String> = Vec::new();
        let mut line = String::new();
        for word in self.settings.split(' ') {
            if !line.is_empty() && line.chars().count() + 1 + word.chars().count() > max {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
        lines
    }

    /// Height of the title and settings lines.
    fn header(&self) -> u32 {
        HEADER + SETTINGS_LINE * (self.settings_lines().len() as u32 - 1)
    }

    /// The canvas size in pixels.
    pub fn size(&self) -> (u32, u32) {
        let body = match &self.plot {
            Plot::Stages { .. } => 450,
            Plot::Bars { .. } => 462,
            Plot::Images { rows } => {
                let (_, ph) = image_panel(rows);
                rows.len().max(1) as u32 * ph + 10
            }
            Plot::Dag { nodes } => dag_layout(nodes).height as u32,
            _ => 500,
        };
        (self.width(), self.header() + body)
    }

    /// Writes the figure as SVG at `svg_path` (which should end in .svg) and as PNG beside it;
    /// returns the PNG's path.
    pub fn save(&self, svg_path: &Path) -> Result<PathBuf, ReportError> {
        let svg = self.to_svg()?;
        let png = rasterise(&svg)?;
        std::fs::write(svg_path, svg).map_err(io_err(svg_path))?;
        let png_path = svg_path.with_extension("png");
        std::fs::write(&png_path, png).map_err(io_err(&png_path))?;
        Ok(png_path)
    }

    /// The SVG text, with the figure's data in its metadata element.
    pub fn to_svg(&self) -> Result<String, ReportError> {
        fonts();
        let size = self.size();
        let mut text = String::new();
        {
            let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
            self.draw(&root)?;
            root.present().map_err(err)?;
        }
        let json = serde_json::to_string(self).map_err(err)?;
        let meta = format!("{META_OPEN}{}{META_CLOSE}\n", xml_escape(&json));
        // After the opening <svg ...> tag.
        let at = text
            .find('>')
            .map(|i| i + 1)
            .ok_or_else(|| err("plotters wrote no SVG element"))?;
        text.insert_str(at, &format!("\n{meta}"));
        Ok(text)
    }

    /// The PNG bytes: the SVG rasterised by resvg, with the bundled DejaVu Sans as every
    /// sans-serif font, so that the PNG is the SVG pixel for pixel, text laid out with the
    /// font's own advances and kerning.
    pub fn to_png(&self) -> Result<Vec<u8>, ReportError> {
        rasterise(&self.to_svg()?)
    }

    /// Reads back the figure an SVG written by [`Figure::save`] carries.
    pub fn read(svg_path: &Path) -> Result<Figure, ReportError> {
        let text = std::fs::read_to_string(svg_path).map_err(io_err(svg_path))?;
        Figure::from_svg(&text).map_err(|e| ReportError::Invalid {
            path: svg_path.to_path_buf(),
            msg: e.to_string(),
        })
    }

    /// Parses the figure out of SVG text.
    pub fn from_svg(text: &str) -> Result<Figure, ReportError> {
        let missing = |m: &str| ReportError::NoFigureData(m.to_string());
        let start = text
            .find(META_OPEN)
            .ok_or_else(|| missing("no archproof figure data in this SVG"))?
            + META_OPEN.len();
        let end = start
            + text[start..]
                .find(META_CLOSE)
                .ok_or_else(|| missing("unterminated figure data"))?;
        serde_json::from_str(&xml_unescape(&text[start..end]))
            .map_err(|e| missing(&format!("malformed figure data: {e}")))
    }
}
