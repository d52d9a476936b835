//! Figures, rendered with plotters as SVG (text is SVG text, so no font files are needed).

use std::path::Path;

use plotters::prelude::*;

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
    let colors = [RED, BLUE, GREEN, MAGENTA, BLACK];
    for (k, s) in series.iter().enumerate() {
        let color = colors[k % colors.len()];
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
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}
