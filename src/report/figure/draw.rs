//! The drawing of every kind of [`Plot`] with plotters, in one style: the figure model and its
//! file formats are in the parent module.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::ReportError;
use std::ops::Range;

use super::{
    cactus_points, err, padded_range, BandSeries, BarSeries, CactusSeries, Figure, Image, Plot,
    Series, StageSeries, SETTINGS_LINE,
};

/// Line and bar colours, in series order.
const COLORS: [RGBColor; 10] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(0, 0, 0),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];
const GREY: RGBColor = RGBColor(150, 150, 150);

fn color(k: usize) -> RGBColor {
    COLORS[k % COLORS.len()]
}

impl Figure {
    /// Draws title, settings line and body.
    pub(super) fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), ReportError> {
        root.fill(&WHITE).map_err(err)?;
        let (w, _) = root.dim_in_pixel();
        let centre = Pos::new(HPos::Center, VPos::Top);
        root.draw(&Text::new(
            self.title.clone(),
            (w as i32 / 2, 8),
            ("sans-serif", 20).into_font().color(&BLACK).pos(centre),
        ))
        .map_err(err)?;
        for (i, line) in self.settings_lines().into_iter().enumerate() {
            root.draw(&Text::new(
                line,
                (w as i32 / 2, 34 + (i as u32 * SETTINGS_LINE) as i32),
                ("sans-serif", 13)
                    .into_font()
                    .color(&RGBColor(90, 90, 90))
                    .pos(centre),
            ))
            .map_err(err)?;
        }
        let body = root.margin(self.header(), 0, 0, 0);
        let (x, y) = (self.x_label.as_str(), self.y_label.as_str());
        match &self.plot {
            Plot::Steps { series, x_end } => line_chart(&body, x, y, series, *x_end, true),
            Plot::Lines { series } => {
                let x_end = series
                    .iter()
                    .flat_map(|s| s.points.iter().map(|p| p.0))
                    .fold(0.0, f64::max);
                line_chart(&body, x, y, series, x_end, false)
            }
            Plot::Scatter { points, log_x } => scatter(&body, x, y, points, *log_x),
            Plot::Band { series } => band(&body, x, y, series),
            Plot::Pareto { evaluated, fronts } => pareto(&body, x, y, evaluated, fronts),
            Plot::Cactus { series, instances } => cactus(&body, x, y, series, *instances),
            Plot::Bars { categories, series } => bars(&body, x, y, categories, series),
            Plot::Stages { designs } => stages(&body, designs),
            Plot::Images { rows } => images(&body, rows),
            Plot::Dag { nodes } => dag(&body, nodes),
        }
    }
}

type XyChart<'a, DB> = ChartContext<
    'a,
    DB,
    Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
>;

/// A chart builder with the margins every chart uses.
fn chart_on<'a, 'b, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
) -> ChartBuilder<'a, 'b, DB> {
    let mut b = ChartBuilder::on(area);
    b.margin(15).x_label_area_size(45).y_label_area_size(75);
    b
}

/// The axis labels and fonts every mesh uses.
fn style_mesh<'m, 'a, 'b, X, Y, DB>(
    mesh: &'m mut plotters::chart::MeshStyle<'a, 'b, X, Y, DB>,
    x_desc: &str,
    y_desc: &str,
) -> &'m mut plotters::chart::MeshStyle<'a, 'b, X, Y, DB>
where
    X: plotters::coord::ranged1d::Ranged<ValueType: std::fmt::Debug>,
    Y: plotters::coord::ranged1d::Ranged<ValueType: std::fmt::Debug>,
    DB: DrawingBackend,
{
    mesh.x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 15))
}

/// A chart of f64 axes on `area` with its labelled mesh drawn.
fn xy_chart<'a, DB: DrawingBackend + 'a>(
    area: &'a DrawingArea<DB, Shift>,
    x_desc: &str,
    y_desc: &str,
    x: Range<f64>,
    y: Range<f64>,
) -> Result<XyChart<'a, DB>, ReportError> {
    let mut chart = chart_on(area).build_cartesian_2d(x, y).map_err(err)?;
    style_mesh(&mut chart.configure_mesh(), x_desc, y_desc)
        .draw()
        .map_err(err)?;
    Ok(chart)
}

/// Draws the legend of a chart's labelled series.
fn legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<(), ReportError>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.85))
        .label_font(("sans-serif", 13))
        .position(position)
        .draw()
        .map_err(err)
}

fn line_legend(c: RGBColor) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], c.stroke_width(2))
}

fn line_chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    x_end: f64,
    steps: bool,
) -> Result<(), ReportError> {
    let mut yr = padded_range(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    // Best-so-far curves: the axis shows where they finish, which is what they are compared
    // on; earlier values below it are drawn on its lower edge, and the figure says so.
    let finals: Vec<f64> = series
        .iter()
        .filter_map(|s| s.points.last().map(|p| p.1))
        .filter(|v| v.is_finite())
        .collect();
    let mut cut = None;
    if steps && !finals.is_empty() {
        let (lo_f, hi_f) = finals
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                (a.min(v), b.max(v))
            });
        let lo = lo_f - (2.0 * (hi_f - lo_f)).max(0.02 * hi_f.abs().max(1e-9));
        if lo > yr.start {
            cut = Some(lo);
            yr = lo..yr.end;
        }
    }
    let floor = |y: f64| cut.map_or(y, |lo| y.max(lo));
    let x0 = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(0.0, f64::min);
    let mut chart = xy_chart(area, x_desc, y_desc, x0..x_end.max(x0 + 1e-9), yr)?;
    for (k, s) in series.iter().enumerate() {
        let c = color(k);
        let mut pts: Vec<(f64, f64)> = Vec::new();
        for (i, &(x, y)) in s.points.iter().enumerate() {
            if steps && i > 0 {
                pts.push((x, floor(s.points[i - 1].1)));
            }
            pts.push((x, floor(y)));
        }
        if let (true, Some(&(_, y))) = (steps, s.points.last()) {
            pts.push((x_end, floor(y)));
        }
        if !steps {
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, c.filled())))
                .map_err(err)?;
        }
        let last = s.points.last().map(|p| p.1).unwrap_or(f64::NAN);
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(2)))
            .map_err(err)?
            .label(if steps {
                format!("{} (best {})", s.name, short(last))
            } else {
                format!("{} (last {})", s.name, short(last))
            })
            .legend(line_legend(c));
    }
    if let Some(lo) = cut {
        let below = series.iter().any(|s| s.points.iter().any(|p| p.1 < lo));
        if below {
            let style = ("sans-serif", 12)
                .into_font()
                .color(&RGBColor(90, 90, 90))
                .pos(Pos::new(HPos::Left, VPos::Bottom));
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("earlier values below {}, drawn on the axis", short(lo)),
                    (x0, lo),
                    style,
                )))
                .map_err(err)?;
        }
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)
}

/// A number in at most four significant digits.
fn short(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    if v.fract() == 0.0 && v.abs() < 1e7 {
        return format!("{v:.0}");
    }
    let digits = (3 - v.abs().log10().floor() as i32).clamp(0, 6) as usize;
    format!("{v:.digits$}")
}

fn scatter<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    x_desc: &str,
    y_desc: &str,
    points: &[(f64, f64)],
    log_x: bool,
) -> Result<(), ReportError> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .filter(|p| p.0.is_finite() && p.1.is_finite() && (!log_x || p.0 > 0.0))
        .map(|&(x, y)| (if log_x { x.log10() } else { x }, y))
        .collect();
    let xr = padded_range(pts.iter().map(|p| p.0));
    let yr = padded_range(pts.iter().map(|p| p.1));
    let x_desc = if log_x {
        format!("log10 {x_desc}")
    } else {
        x_desc.to_string()
    };
    let mut chart = xy_chart(area, &x_desc, y_desc, xr, yr)?;
    chart
        .draw_series(
            pts.iter()
                .map(|&p| Circle::new(p, 2, color(1).mix(0.5).filled())),
        )
        .map_err(err)?;
    Ok(())
}

fn band<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    x_desc: &str,
    y_desc: &str,
    series: &[BandSeries],
) -> Result<(), ReportError> {
    let pts = || series.iter().flat_map(|s| s.points.iter());
    let xr = padded_range(pts().map(|p| p.0));
    let yr = padded_range(pts().flat_map(|p| [p.1 - p.2, p.1 + p.2]));
    let mut chart = xy_chart(area, x_desc, y_desc, xr, yr)?;
    for (k, s) in series.iter().enumerate() {
        let c = color(k);
        let mut poly: Vec<(f64, f64)> = s.points.iter().map(|p| (p.0, p.1 + p.2)).collect();
        poly.extend(s.points.iter().rev().map(|p| (p.0, p.1 - p.2)));
        chart
            .draw_series(std::iter::once(Polygon::new(poly, c.mix(0.15).filled())))
            .map_err(err)?;
        let last = s.points.last().map(|p| p.1).unwrap_or(f64::NAN);
        chart
            .draw_series(LineSeries::new(
                s.points.iter().map(|p| (p.0, p.1)),
                c.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!("{} (final mean {})", s.name, short(last)))
            .legend(line_legend(c));
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)
}

fn pareto<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    x_desc: &str,
    y_desc: &str,
    evaluated: &[(f64, f64)],
    fronts: &[Series],
) -> Result<(), ReportError> {
    let all = || {
        evaluated
            .iter()
            .chain(fronts.iter().flat_map(|f| f.points.iter()))
    };
    let xr = padded_range(all().map(|p| p.0));
    let yr = padded_range(all().map(|p| p.1));
    let mut chart = xy_chart(area, x_desc, y_desc, xr, yr)?;
    chart
        .draw_series(
            evaluated
                .iter()
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .map(|&p| Circle::new(p, 2, GREY.mix(0.6).filled())),
        )
        .map_err(err)?
        .label(format!("evaluated ({})", evaluated.len()))
        .legend(|(x, y)| Circle::new((x + 10, y), 3, GREY.filled()));
    for (k, f) in fronts.iter().enumerate() {
        let c = color(k);
        let mut pts = f.points.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(err)?
            .label(format!("{} ({} points)", f.name, pts.len()))
            .legend(line_legend(c));
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled())))
            .map_err(err)?;
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)
}

fn cactus<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    x_desc: &str,
    y_desc: &str,
    series: &[CactusSeries],
    instances: usize,
) -> Result<(), ReportError> {
    let max_t = series
        .iter()
        .flat_map(|s| cactus_points(&s.solved_seconds).last().map(|p| p.1))
        .fold(1.0f64, f64::max);
    let mut chart = chart_on(area)
        .build_cartesian_2d(0usize..instances.max(1), (1e-3f64..max_t * 2.0).log_scale())
        .map_err(err)?;
    style_mesh(&mut chart.configure_mesh(), x_desc, y_desc)
        .draw()
        .map_err(err)?;
    // Published tools first, thin; archproof's engines on top, each with a marker of its
    // own, so that curves that coincide stay visible (a cross over a circle).
    let mut order: Vec<usize> = (0..series.len()).collect();
    order.sort_by_key(|&k| !series[k].published);
    let mut own = 0;
    for k in order {
        let s = &series[k];
        let c = color(k);
        let pts: Vec<(usize, f64)> = cactus_points(&s.solved_seconds)
            .into_iter()
            .map(|(i, t)| (i, t.max(1e-3)))
            .collect();
        let marker = if s.published {
            None
        } else {
            own += 1;
            Some((own - 1) % 4)
        };
        match marker {
            None => chart.draw_series(pts.iter().map(|&p| Circle::new(p, 2, c.filled()))),
            Some(0) => chart.draw_series(pts.iter().map(|&p| Circle::new(p, 4, c.stroke_width(2)))),
            Some(1) => chart.draw_series(pts.iter().map(|&p| Cross::new(p, 4, c.stroke_width(2)))),
            Some(2) => chart.draw_series(
                pts.iter()
                    .map(|&p| TriangleMarker::new(p, 5, c.stroke_width(2))),
            ),
            Some(_) => chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, c.filled()))),
        }
        .map_err(err)?;
        let width = if s.published { 1 } else { 2 };
        chart
            .draw_series(LineSeries::new(pts, c.stroke_width(width)))
            .map_err(err)?
            .label(format!("{} ({} solved)", s.name, s.solved_seconds.len()))
            .legend(line_legend(c));
    }
    // Solve times grow with the count, so the lower right corner stays empty.
    legend(&mut chart, SeriesLabelPosition::LowerRight)
}

fn bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    x_desc: &str,
    y_desc: &str,
    categories: &[String],
    series: &[BarSeries],
) -> Result<(), ReportError> {
    let n = categories.len().max(1);
    let values = || {
        series
            .iter()
            .flat_map(|s| s.values.iter().flatten().copied())
            .filter(|v| v.is_finite())
    };
    let top = values().fold(0.0f64, f64::max);
    let bottom = values().fold(0.0f64, f64::min);
    let span = (top - bottom).max(1e-9);
    let mut chart = chart_on(area)
        .build_cartesian_2d(0f64..n as f64, bottom..top + 0.25 * span)
        .map_err(err)?;
    let names = categories.to_vec();
    style_mesh(&mut chart.configure_mesh(), x_desc, y_desc)
        .disable_x_mesh()
        .x_labels(2 * n + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.26 {
                names.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(err)?;
    let groups = series.len().max(1) as f64;
    for (k, s) in series.iter().enumerate() {
        let c = color(k);
        let w = 0.8 / groups;
        let rects = s
            .values
            .iter()
            .enumerate()
            .filter_map(|(i, v)| v.filter(|v| v.is_finite()).map(|v| (i, v)))
            .map(move |(i, v)| {
                let x0 = i as f64 + 0.1 + k as f64 * w;
                Rectangle::new([(x0, 0.0), (x0 + w, v)], c.filled())
            });
        chart
            .draw_series(rects)
            .map_err(err)?
            .label(s.name.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 15, y + 5)], c.filled()));
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)
}

fn stages<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    designs: &[StageSeries],
) -> Result<(), ReportError> {
    let (w, _) = area.dim_in_pixel();
    let (left, right) = area.split_horizontally(w / 2);
    let n = designs.iter().map(|d| d.stages.len()).max().unwrap_or(0);
    let groups = designs.len().max(1) as f64;
    for (area, what, pick) in [
        (&left, "channels", 0usize),
        (&right, "depth (units)", 1usize),
    ] {
        let top = designs
            .iter()
            .flat_map(|d| d.stages.iter().map(|s| if pick == 0 { s.0 } else { s.1 }))
            .max()
            .unwrap_or(1) as f64;
        let mut chart = chart_on(area)
            .build_cartesian_2d(0f64..n as f64, 0f64..top * 1.1)
            .map_err(err)?;
        style_mesh(&mut chart.configure_mesh(), "stage", what)
            .disable_x_mesh()
            .x_labels(n.max(1))
            .x_label_formatter(&|x| format!("{}", x.floor() as usize))
            .draw()
            .map_err(err)?;
        for (k, d) in designs.iter().enumerate() {
            let c = color(k);
            let bw = 0.8 / groups;
            let rects = d.stages.iter().enumerate().map(move |(i, s)| {
                let v = if pick == 0 { s.0 } else { s.1 } as f64;
                let x0 = i as f64 + 0.1 + k as f64 * bw;
                Rectangle::new([(x0, 0.0), (x0 + bw, v)], c.filled())
            });
            let drawn = chart.draw_series(rects).map_err(err)?;
            if pick == 0 {
                drawn.label(d.name.clone()).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 15, y + 5)], c.filled())
                });
            }
        }
        if pick == 0 {
            legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        }
    }
    Ok(())
}

/// The pixel size of one image panel (image plus caption) and the scale of one image pixel.
pub(super) fn image_panel(rows: &[Vec<Image>]) -> (u32, u32) {
    let (w, h) = image_dims(rows);
    let s = image_scale(rows);
    ((w as u32 * s).max(150) + 20, h as u32 * s + 40)
}

fn image_dims(rows: &[Vec<Image>]) -> (usize, usize) {
    rows.iter()
        .flatten()
        .fold((1, 1), |(w, h), im| (w.max(im.width), h.max(im.height)))
}

fn image_scale(rows: &[Vec<Image>]) -> u32 {
    let (w, h) = image_dims(rows);
    (160 / w.max(h)).clamp(1, 12) as u32
}

fn images<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    rows: &[Vec<Image>],
) -> Result<(), ReportError> {
    let (pw, ph) = image_panel(rows);
    let s = image_scale(rows) as i32;
    for (r, row) in rows.iter().enumerate() {
        for (c, im) in row.iter().enumerate() {
            let x0 = 10 + c as i32 * pw as i32;
            let y0 = r as i32 * ph as i32;
            let (lo, hi) = im.range;
            let plane = im.width * im.height;
            let level = |v: f64| (((v - lo) / (hi - lo).max(1e-12)).clamp(0.0, 1.0) * 255.0) as u8;
            for y in 0..im.height {
                for x in 0..im.width {
                    let at = |ch: usize| im.pixels.get(ch * plane + y * im.width + x).copied();
                    let rgb = if im.channels == 3 {
                        RGBColor(
                            level(at(0).unwrap_or(lo)),
                            level(at(1).unwrap_or(lo)),
                            level(at(2).unwrap_or(lo)),
                        )
                    } else {
                        let g = level(at(0).unwrap_or(lo));
                        RGBColor(g, g, g)
                    };
                    let (px, py) = (x0 + x as i32 * s, y0 + y as i32 * s);
                    area.draw(&Rectangle::new([(px, py), (px + s, py + s)], rgb.filled()))
                        .map_err(err)?;
                }
            }
            area.draw(&Rectangle::new(
                [
                    (x0 - 1, y0 - 1),
                    (x0 + im.width as i32 * s, y0 + im.height as i32 * s),
                ],
                BLACK.stroke_width(1),
            ))
            .map_err(err)?;
            area.draw(&Text::new(
                im.label.clone(),
                (x0, y0 + im.height as i32 * s + 6),
                ("sans-serif", 12).into_font().color(&BLACK),
            ))
            .map_err(err)?;
        }
    }
    Ok(())
}

pub(super) struct DagLayout {
    /// The row of each node.
    depth: Vec<usize>,
    pub(super) width: i32,
    pub(super) height: i32,
    centres: Vec<(i32, i32)>,
}

const DAG_BOX: (i32, i32) = (150, 28);
/// The margin left of the boxes for edges that skip rows (lanes 8 pixels apart).
const DAG_LANES: i32 = 40;

pub(super) fn dag_layout(nodes: &[(String, Vec<usize>)]) -> DagLayout {
    let mut depth = vec![0usize; nodes.len()];
    for (i, (_, args)) in nodes.iter().enumerate() {
        depth[i] = args
            .iter()
            .filter(|&&a| a < i)
            .map(|&a| depth[a] + 1)
            .max()
            .unwrap_or(0);
    }
    let rows = depth.iter().max().map_or(1, |d| d + 1);
    let mut slot = vec![0usize; nodes.len()];
    let mut per_row = vec![0usize; rows];
    for i in 0..nodes.len() {
        slot[i] = per_row[depth[i]];
        per_row[depth[i]] += 1;
    }
    let widest = per_row.iter().copied().max().unwrap_or(1);
    let ((bw, bh), gap_x, gap_y) = (DAG_BOX, 20i32, 50i32);
    // Room on both sides for the lanes of edges that skip rows.
    let width = (widest as i32 * (bw + gap_x) + gap_x + 2 * DAG_LANES).max(500);
    let height = rows as i32 * (bh + gap_y) + 20;
    let centres = (0..nodes.len())
        .map(|i| {
            let n = per_row[depth[i]] as i32;
            let row_w = n * (bw + gap_x) - gap_x;
            let x0 = (width - row_w) / 2;
            (
                x0 + slot[i] as i32 * (bw + gap_x) + bw / 2,
                15 + depth[i] as i32 * (bh + gap_y) + bh / 2,
            )
        })
        .collect();
    DagLayout {
        depth,
        width,
        height,
        centres,
    }
}

/// A filled arrowhead at `q` for a line arriving from `p`.
fn arrowhead(p: (i32, i32), q: (i32, i32)) -> Polygon<(i32, i32)> {
    let (dx, dy) = ((q.0 - p.0) as f64, (q.1 - p.1) as f64);
    let len = (dx * dx + dy * dy).sqrt().max(1e-9);
    let (ux, uy) = (dx / len, dy / len);
    let (size, half) = (8.0, 4.0);
    let base = (q.0 as f64 - ux * size, q.1 as f64 - uy * size);
    let corner = |s: f64| {
        (
            (base.0 - uy * s).round() as i32,
            (base.1 + ux * s).round() as i32,
        )
    };
    Polygon::new(vec![q, corner(half), corner(-half)], BLACK.filled())
}

fn dag<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    nodes: &[(String, Vec<usize>)],
) -> Result<(), ReportError> {
    let mut l = dag_layout(nodes);
    // Centred on a canvas made wider for the title.
    let shift = (area.dim_in_pixel().0 as i32 - l.width).max(0) / 2;
    for c in &mut l.centres {
        c.0 += shift;
    }
    let (bw, bh) = DAG_BOX;
    // Edges between adjacent rows go straight; an edge that skips rows runs down a lane left
    // of every box it passes, so that no edge crosses a box. Each ends in an arrowhead.
    let half_gap = 25;
    let mut lanes = 0;
    for (i, (_, args)) in nodes.iter().enumerate() {
        let (x, y) = l.centres[i];
        let top = y - bh / 2;
        for &a in args.iter().filter(|&&a| a < i) {
            let (ax, ay) = l.centres[a];
            let from = (ax, ay + bh / 2);
            let path = if l.depth[i] == l.depth[a] + 1 {
                vec![from, (x, top)]
            } else {
                let left = (0..nodes.len())
                    .filter(|&k| l.depth[k] > l.depth[a] && l.depth[k] < l.depth[i])
                    .map(|k| l.centres[k].0 - bw / 2)
                    .min()
                    .unwrap_or(ax.min(x) - bw / 2);
                lanes += 1;
                let lane = left - 8 * (1 + (lanes - 1) % (DAG_LANES / 8));
                vec![
                    from,
                    (ax, from.1 + half_gap / 2),
                    (lane, from.1 + half_gap / 2),
                    (lane, top - half_gap / 2),
                    (x, top - half_gap / 2),
                    (x, top),
                ]
            };
            let n = path.len();
            let (p, q) = (path[n - 2], path[n - 1]);
            area.draw(&PathElement::new(path, BLACK.stroke_width(1)))
                .map_err(err)?;
            area.draw(&arrowhead(p, q)).map_err(err)?;
        }
    }
    for (i, (label, _)) in nodes.iter().enumerate() {
        let (x, y) = l.centres[i];
        let corners = [(x - bw / 2, y - bh / 2), (x + bw / 2, y + bh / 2)];
        area.draw(&Rectangle::new(corners, WHITE.filled()))
            .map_err(err)?;
        area.draw(&Rectangle::new(corners, color(1).stroke_width(1)))
            .map_err(err)?;
        let style = ("sans-serif", 13)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Center));
        area.draw(&Text::new(label.clone(), (x, y), style))
            .map_err(err)?;
    }
    Ok(())
}
