//! The latency-vs-throughput curve of IX's Fig. 5 as a PNG: average and 99th percentile latency against the
//! achieved throughput, one point per rate. Drawn with plotters' bitmap backend and a bundled font (DejaVu Sans
//! Mono through `ab_glyph`), so no system font or fontconfig is needed.

use plotters::prelude::*;
use std::path::Path;

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSansMono.ttf");
const FONT_NAME: &str = "ixbench-mono";

/// One point of the curve: achieved requests/s and latencies in microseconds.
#[derive(Clone, Copy, Debug)]
pub struct CurvePoint {
    pub achieved: f64,
    pub avg_us: f64,
    pub p99_us: f64,
    /// p99 of the unloaded measuring connection, if there was one.
    pub unloaded_p99_us: Option<f64>,
    /// The point kept up with its offered load (closed loop: always).
    pub kept_up: bool,
}

/// Draws the curve into `path`. The latency axis ends at `y_max_us` if given, else at 1.5x the largest latency
/// of the points that kept up (`kept_up`); latencies beyond it are drawn at the top edge, as hollow markers.
pub fn draw_curve(path: &Path, title: &str, points: &[CurvePoint], y_max_us: Option<f64>) -> Result<(), String> {
    draw(path, title, points, y_max_us).map_err(|e| format!("cannot draw {}: {e}", path.display()))
}

fn draw(
    path: &Path,
    title: &str,
    points: &[CurvePoint],
    y_max_us: Option<f64>,
) -> Result<(), Box<dyn std::error::Error>> {
    plotters::style::register_font(FONT_NAME, FontStyle::Normal, FONT).map_err(|_| "the bundled font does not load")?;
    let root = BitMapBackend::new(path, (1000, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let kilo = |r: f64| r / 1000.0;
    let x_max = points.iter().map(|p| kilo(p.achieved)).fold(0.0, f64::max).max(1e-3) * 1.08;
    let largest = |kept_up_only: bool| {
        points
            .iter()
            .filter(|p| p.kept_up || !kept_up_only)
            .flat_map(|p| [p.avg_us, p.p99_us, p.unloaded_p99_us.unwrap_or(0.0)])
            .fold(0.0, f64::max)
    };
    let y_max = match y_max_us {
        Some(y) => y,
        None if largest(true) > 0.0 => (largest(true) * 1.5).min(largest(false) * 1.05),
        None => largest(false) * 1.05,
    }
    .max(1.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT_NAME, 20))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc("achieved throughput (k requests/s)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .y_desc("latency (us)")
        .label_style((FONT_NAME, 14))
        .axis_desc_style((FONT_NAME, 16))
        .draw()?;
    let mut series = vec![
        ("average", BLUE, points.iter().map(|p| (kilo(p.achieved), p.avg_us)).collect::<Vec<_>>()),
        ("99th percentile", RED, points.iter().map(|p| (kilo(p.achieved), p.p99_us)).collect()),
    ];
    let unloaded: Vec<_> = points.iter().filter_map(|p| Some((kilo(p.achieved), p.unloaded_p99_us?))).collect();
    if !unloaded.is_empty() {
        series.push(("99th pct, unloaded connection", GREEN, unloaded));
    }
    for (name, color, xy) in series {
        chart
            .draw_series(LineSeries::new(xy.iter().map(|p| (p.0, p.1.min(y_max))), color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(xy.iter().filter(|p| p.1 <= y_max).map(|&p| Circle::new(p, 4, color.filled())))?;
        // Beyond the axis: at the top edge, hollow.
        let beyond = xy.iter().filter(|p| p.1 > y_max);
        chart.draw_series(beyond.map(|p| Circle::new((p.0, y_max), 5, color.stroke_width(2))))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font((FONT_NAME, 14))
        .draw()?;
    root.present()?;
    Ok(())
}
