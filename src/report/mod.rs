//! Figures, rendered with plotters as SVG (text is SVG text, so no font files are needed).

use std::path::Path;

use plotters::prelude::*;

/// Line and bar colours, in series order.
const COLORS: [RGBColor; 5] = [RED, BLUE, GREEN, MAGENTA, BLACK];

/// Draws the legend of a chart's labelled series.
fn legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(position)
        .draw()
        .map_err(|e| e.to_string())
}

/// One line of a cactus plot: a name and the solve times of the instances it solved.
pub struct CactusSeries {
    /// Legend label.
    pub name: String,
    /// Seconds of each solved instance (any order).
    pub solved_seconds: Vec<f64>,
}

/// The points of a cactus plot: after sorting, the k-th fastest solve at (k, cumulative
/// seconds). This is the data series the figure draws, exposed for checking.
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

/// Draws instances solved (x) against cumulative time (y, log scale), one line per engine.
pub fn cactus_svg(
    path: &Path,
    title: &str,
    series: &[CactusSeries],
    instances: usize,
) -> Result<(), String> {
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let max_t = series
        .iter()
        .flat_map(|s| cactus_points(&s.solved_seconds).last().map(|p| p.1))
        .fold(1.0f64, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0usize..instances.max(1), (1e-3f64..max_t * 2.0).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("instances solved")
        .y_desc("cumulative time (s)")
        .draw()
        .map_err(|e| e.to_string())?;
    for (k, s) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let pts: Vec<(usize, f64)> = cactus_points(&s.solved_seconds)
            .into_iter()
            .map(|(i, t)| (i, t.max(1e-3)))
            .collect();
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(format!("{} ({} solved)", s.name, s.solved_seconds.len()))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// A white SVG canvas with a titled chart of f64 axes and its labelled mesh drawn.
fn xy_chart<'a, 'b>(
    root: &'b DrawingArea<SVGBackend<'a>, plotters::coord::Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> Result<
    ChartContext<
        'b,
        SVGBackend<'a>,
        Cartesian2d<plotters::coord::types::RangedCoordf64, plotters::coord::types::RangedCoordf64>,
    >,
    String,
> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 18))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x, y)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(chart)
}

/// One line of a best-so-far figure: a name and its (x, best value) steps.
pub struct ProgressSeries {
    /// Legend label.
    pub name: String,
    /// Points where the best value improved, in increasing x.
    pub points: Vec<(f64, f64)>,
}

/// Draws best-so-far step lines (value against time or trials), one per series, each held flat
/// to `x_end`.
pub fn progress_svg(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[ProgressSeries],
    x_end: f64,
) -> Result<(), String> {
    line_chart(path, title, x_desc, y_desc, series, x_end, true)
}

/// Draws plain lines through each series' points (training curves), with a marker on each.
pub fn lines_svg(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[ProgressSeries],
) -> Result<(), String> {
    let x_end = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold(0.0, f64::max);
    line_chart(path, title, x_desc, y_desc, series, x_end, false)
}

fn line_chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[ProgressSeries],
    x_end: f64,
    steps: bool,
) -> Result<(), String> {
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .collect();
    let (lo, hi) = ys
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| {
            (a.min(y), b.max(y))
        });
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let pad = ((hi - lo) * 0.05).max(1e-9);
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    let mut chart = xy_chart(
        &root,
        title,
        x_desc,
        y_desc,
        0f64..x_end.max(1e-9),
        (lo - pad)..(hi + pad),
    )?;
    for (k, s) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let mut pts: Vec<(f64, f64)> = Vec::new();
        for (i, &(x, y)) in s.points.iter().enumerate() {
            if steps && i > 0 {
                pts.push((x, s.points[i - 1].1));
            }
            pts.push((x, y));
        }
        if let (true, Some(&(_, y))) = (steps, s.points.last()) {
            pts.push((x_end, y));
        }
        if !steps {
            chart
                .draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| e.to_string())?;
        }
        let last = s.points.last().map(|p| p.1).unwrap_or(f64::NAN);
        chart
            .draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(if steps {
                format!("{} (best {last:.1})", s.name)
            } else {
                format!("{} (last {last:.4})", s.name)
            })
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// One design in a stage figure: per stage, its channels and its depth.
pub struct StageSeries {
    /// Legend label.
    pub name: String,
    /// (channels, depth) of each stage.
    pub stages: Vec<(usize, usize)>,
}

/// Draws two grouped bar charts side by side: stage widths and stage depths of each design.
pub fn stages_svg(path: &Path, title: &str, designs: &[StageSeries]) -> Result<(), String> {
    let root = SVGBackend::new(path, (1000, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let root = root
        .titled(title, ("sans-serif", 20))
        .map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(500);
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
        let mut chart = ChartBuilder::on(area)
            .margin(15)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..n as f64, 0f64..top * 1.1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_desc("stage")
            .y_desc(what)
            .x_labels(n.max(1))
            .x_label_formatter(&|x| format!("{}", x.floor() as usize))
            .draw()
            .map_err(|e| e.to_string())?;
        for (k, d) in designs.iter().enumerate() {
            let color = COLORS[k % COLORS.len()];
            let w = 0.8 / groups;
            let bars = d.stages.iter().enumerate().map(move |(i, s)| {
                let v = if pick == 0 { s.0 } else { s.1 } as f64;
                let x0 = i as f64 + 0.1 + k as f64 * w;
                Rectangle::new([(x0, 0.0), (x0 + w, v)], color.filled())
            });
            let series = chart.draw_series(bars).map_err(|e| e.to_string())?;
            if pick == 0 {
                series.label(d.name.clone()).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 15, y + 5)], color.filled())
                });
            }
        }
        if pick == 0 {
            legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        }
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// The span of the values with 5% room on each side (0..1 when there are none).
fn padded_range(v: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = v.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    if lo.is_finite() {
        let pad = ((hi - lo) * 0.05).max(1e-9);
        (lo - pad)..(hi + pad)
    } else {
        0.0..1.0
    }
}

/// Draws a scatter of (x, y) points, x on a log scale when `log_x` (non-positive x dropped).
pub fn scatter_svg(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    points: &[(f64, f64)],
    log_x: bool,
) -> Result<(), String> {
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
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    let mut chart = xy_chart(&root, title, &x_desc, y_desc, xr, yr)?;
    chart
        .draw_series(
            pts.iter()
                .map(|&p| Circle::new(p, 2, BLUE.mix(0.5).filled())),
        )
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// One strategy in a band figure: (x, mean, standard deviation) points.
pub struct BandSeries {
    /// Legend label.
    pub name: String,
    /// Points in increasing x.
    pub points: Vec<(f64, f64, f64)>,
}

/// Draws each series' mean as a line inside a shaded band of plus or minus one standard
/// deviation.
pub fn band_svg(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[BandSeries],
) -> Result<(), String> {
    let all = series.iter().flat_map(|s| s.points.iter());
    let (x0, x1, y0, y1) = all.fold(
        (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ),
        |(a, b, c, d), &(x, m, sd)| (a.min(x), b.max(x), c.min(m - sd), d.max(m + sd)),
    );
    let (x0, x1, y0, y1) = if x0.is_finite() {
        (x0, x1.max(x0 + 1e-9), y0, y1.max(y0 + 1e-9))
    } else {
        (0.0, 1.0, 0.0, 1.0)
    };
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    let mut chart = xy_chart(&root, title, x_desc, y_desc, x0..x1, y0..y1)?;
    for (k, s) in series.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let mut poly: Vec<(f64, f64)> = s.points.iter().map(|p| (p.0, p.1 + p.2)).collect();
        poly.extend(s.points.iter().rev().map(|p| (p.0, p.1 - p.2)));
        chart
            .draw_series(std::iter::once(Polygon::new(
                poly,
                color.mix(0.15).filled(),
            )))
            .map_err(|e| e.to_string())?;
        let last = s.points.last().map(|p| p.1).unwrap_or(f64::NAN);
        chart
            .draw_series(LineSeries::new(
                s.points.iter().map(|p| (p.0, p.1)),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(format!("{} (final mean {last:.2})", s.name))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// A named Pareto front for [`pareto_svg`]: its points in plot coordinates.
pub struct FrontSeries {
    /// Legend label.
    pub name: String,
    /// The front's points (any order; drawn sorted by x).
    pub points: Vec<(f64, f64)>,
}

/// Draws evaluated candidates as grey dots and each front as a line with markers (a
/// cost on x, lower is better; accuracy on y, higher is better).
pub fn pareto_svg(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    evaluated: &[(f64, f64)],
    fronts: &[FrontSeries],
) -> Result<(), String> {
    let all: Vec<(f64, f64)> = evaluated
        .iter()
        .chain(fronts.iter().flat_map(|f| f.points.iter()))
        .copied()
        .filter(|p| p.0.is_finite() && p.1.is_finite())
        .collect();
    let xr = padded_range(all.iter().map(|p| p.0));
    let yr = padded_range(all.iter().map(|p| p.1));
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    let mut chart = xy_chart(&root, title, x_desc, y_desc, xr, yr)?;
    chart
        .draw_series(
            evaluated
                .iter()
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .map(|&p| Circle::new(p, 2, RGBColor(150, 150, 150).mix(0.6).filled())),
        )
        .map_err(|e| e.to_string())?
        .label(format!("evaluated ({})", evaluated.len()))
        .legend(|(x, y)| Circle::new((x + 10, y), 3, RGBColor(150, 150, 150).filled()));
    for (k, f) in fronts.iter().enumerate() {
        let color = COLORS[k % COLORS.len()];
        let mut pts = f.points.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(format!("{} ({} points)", f.name, pts.len()))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| e.to_string())?;
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// Draws a small DAG top-down: each node a labelled box on the row of its depth (nodes without
/// arguments on the first row), an edge from each argument. `nodes` are in topological order,
/// each a label and the indices of its arguments.
pub fn dag_svg(path: &Path, title: &str, nodes: &[(String, Vec<usize>)]) -> Result<(), String> {
    let mut depth = vec![0usize; nodes.len()];
    for (i, (_, args)) in nodes.iter().enumerate() {
        depth[i] = args.iter().map(|&a| depth[a] + 1).max().unwrap_or(0);
    }
    let rows = depth.iter().max().map_or(1, |d| d + 1);
    let mut slot = vec![0usize; nodes.len()];
    let mut per_row = vec![0usize; rows];
    for i in 0..nodes.len() {
        slot[i] = per_row[depth[i]];
        per_row[depth[i]] += 1;
    }
    let widest = per_row.iter().copied().max().unwrap_or(1);
    let (bw, bh, gap_x, gap_y) = (150i32, 28i32, 20i32, 50i32);
    let width = (widest as i32 * (bw + gap_x) + gap_x).max(400);
    let height = rows as i32 * (bh + gap_y) + 60;
    let centre = |i: usize| -> (i32, i32) {
        let n = per_row[depth[i]] as i32;
        let row_w = n * (bw + gap_x) - gap_x;
        let x0 = (width - row_w) / 2;
        (
            x0 + slot[i] as i32 * (bw + gap_x) + bw / 2,
            50 + depth[i] as i32 * (bh + gap_y) + bh / 2,
        )
    };
    let root = SVGBackend::new(path, (width as u32, height as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let err = |e: DrawingAreaErrorKind<_>| e.to_string();
    root.draw(&Text::new(
        title.to_string(),
        (10, 10),
        ("sans-serif", 16).into_font(),
    ))
    .map_err(err)?;
    for (i, (_, args)) in nodes.iter().enumerate() {
        let (x, y) = centre(i);
        for &a in args {
            let (ax, ay) = centre(a);
            root.draw(&PathElement::new(
                vec![(ax, ay + bh / 2), (x, y - bh / 2)],
                BLACK.stroke_width(1),
            ))
            .map_err(err)?;
        }
    }
    for (i, (label, _)) in nodes.iter().enumerate() {
        let (x, y) = centre(i);
        root.draw(&Rectangle::new(
            [(x - bw / 2, y - bh / 2), (x + bw / 2, y + bh / 2)],
            WHITE.filled(),
        ))
        .map_err(err)?;
        root.draw(&Rectangle::new(
            [(x - bw / 2, y - bh / 2), (x + bw / 2, y + bh / 2)],
            BLUE.stroke_width(1),
        ))
        .map_err(err)?;
        let style = ("sans-serif", 13).into_font().color(&BLACK).pos(
            plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Center,
                plotters::style::text_anchor::VPos::Center,
            ),
        );
        root.draw(&Text::new(label.clone(), (x, y), style))
            .map_err(err)?;
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
