//! The benchmark's plot: deliveries per second and p99 latency against the
//! number of users, one line per server, drawn with plotters into an SVG.
//! Both axes are logarithmic: the servers differ by orders of magnitude.

use plotters::prelude::*;

/// One server's full-speed fan-out results: (users, deliveries/s, p99 ms).
pub struct Series {
    pub server: String,
    pub points: Vec<(f64, f64, f64)>,
}

const COLOURS: [RGBColor; 4] = [
    RGBColor(0xd9, 0x48, 0x1c),
    RGBColor(0x1f, 0x6f, 0xb4),
    RGBColor(0x2a, 0x9d, 0x4b),
    RGBColor(0x7b, 0x3f, 0xa0),
];

pub fn draw(path: &str, series: &[Series]) -> Result<(), String> {
    if series.iter().all(|s| s.points.is_empty()) {
        // No axis range to draw: plotters would look for ticks forever.
        return Err("no full-speed fan-out results to plot".into());
    }
    let root = SVGBackend::new(path, (960, 400)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (left, right) = root.split_horizontally(480);
    let users = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .fold((f64::MAX, f64::MIN), |(lo, hi), u| (lo.min(u), hi.max(u)));
    let x_range = (users.0 * 0.8).max(1.0)..(users.1 * 1.25).max(2.0);
    panel(
        &left,
        series,
        x_range.clone(),
        "deliveries per second",
        |p| p.1,
    )?;
    panel(&right, series, x_range, "p99 latency (ms)", |p| p.2)?;
    root.present().map_err(|e| e.to_string())
}

fn panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    series: &[Series],
    x_range: std::ops::Range<f64>,
    title: &str,
    value: impl Fn(&(f64, f64, f64)) -> f64,
) -> Result<(), String> {
    let values: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(&value))
        .filter(|v| *v > 0.0)
        .collect();
    let low = values.iter().copied().fold(f64::MAX, f64::min).max(1e-3);
    let high = values
        .iter()
        .copied()
        .fold(f64::MIN, f64::max)
        .max(low * 10.0);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(x_range.log_scale(), (low / 2.0..high * 2.0).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("users in the room")
        .y_label_formatter(&|v| human(*v))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, s) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let points: Vec<(f64, f64)> = s.points.iter().map(|p| (p.0, value(p))).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(s.server.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour));
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, colour.filled())),
            )
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| e.to_string())?;
    Ok(())
}

/// 1200000 → "1.2M", 0.5 → "0.5".
pub fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.0}k", v / 1e3)
    } else if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
