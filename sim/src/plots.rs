//! SVG plots of a report: latency CDF, reliability and components over time, degree histogram.

use std::path::Path;

use plotters::prelude::*;

use crate::metrics::Report;

/// A plot that could not be written.
#[derive(Debug)]
pub struct PlotError(pub String);

impl std::fmt::Display for PlotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot draw plot: {}", self.0)
    }
}

impl std::error::Error for PlotError {}

fn err(e: impl std::fmt::Display) -> PlotError {
    PlotError(e.to_string())
}

/// Writes `latency_cdf.svg`, `over_time.svg` and `degree_histogram.svg` into `dir`; returns
/// the files written.
pub fn write_all(report: &Report, dir: &Path) -> Result<Vec<std::path::PathBuf>, PlotError> {
    let files = [dir.join("latency_cdf.svg"), dir.join("over_time.svg"), dir.join("degree_histogram.svg")];
    latency_cdf(report, &files[0])?;
    over_time(report, &files[1])?;
    degree_histogram(report, &files[2])?;
    Ok(files.to_vec())
}

/// Cumulative distribution of delivery latency to members (nodes joined by the send).
pub fn latency_cdf(report: &Report, file: &Path) -> Result<(), PlotError> {
    let root = SVGBackend::new(file, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let lat = &report.latency_cdf_ms;
    let max = lat.last().copied().unwrap_or(1.0).max(1.0);
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{}: delivery latency CDF", report.scenario), ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..max * 1.05, 0.0..1.0)
        .map_err(err)?;
    chart.configure_mesh().x_desc("latency (ms)").y_desc("share of deliveries to members").draw().map_err(err)?;
    let n = lat.len().max(1) as f64;
    chart
        .draw_series(LineSeries::new(lat.iter().enumerate().map(|(i, l)| (*l, (i + 1) as f64 / n)), &BLUE))
        .map_err(err)?;
    root.present().map_err(err)
}

/// Per-message reliability (top) and connected components (bottom) over simulated time.
pub fn over_time(report: &Report, file: &Path) -> Result<(), PlotError> {
    let root = SVGBackend::new(file, (900, 700)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (top, bottom) = root.split_vertically(350);
    let t_end = report.duration_s.max(1.0);
    let rmin = report.messages.iter().map(|m| m.reliability).fold(1.0, f64::min);
    let lo = (rmin - 0.05).clamp(0.0, 0.95);
    let mut chart = ChartBuilder::on(&top)
        .caption(format!("{}: reliability per message", report.scenario), ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_end, lo..1.005)
        .map_err(err)?;
    chart.configure_mesh().x_desc("send time (s)").y_desc("reliability").draw().map_err(err)?;
    chart
        .draw_series(report.messages.iter().map(|m| Circle::new((m.t, m.reliability), 2, BLUE.filled())))
        .map_err(err)?;
    let cmax = report.samples.iter().map(|s| s.components).max().unwrap_or(1).max(2);
    let mut chart = ChartBuilder::on(&bottom)
        .caption("connected components of the neighbor graph", ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..t_end, 0usize..cmax + 1)
        .map_err(err)?;
    chart.configure_mesh().x_desc("time (s)").y_desc("components").draw().map_err(err)?;
    chart.draw_series(LineSeries::new(report.samples.iter().map(|s| (s.t, s.components)), &RED)).map_err(err)?;
    root.present().map_err(err)
}

/// How many joined nodes have each degree at the end of the run.
pub fn degree_histogram(report: &Report, file: &Path) -> Result<(), PlotError> {
    let root = SVGBackend::new(file, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let h = &report.degree_histogram;
    let ymax = h.iter().copied().max().unwrap_or(1).max(1);
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{}: degree histogram at the end", report.scenario), ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d((0usize..h.len().max(1)).into_segmented(), 0usize..ymax + ymax / 10 + 1)
        .map_err(err)?;
    chart.configure_mesh().x_desc("neighbors").y_desc("nodes").draw().map_err(err)?;
    chart
        .draw_series(
            Histogram::vertical(&chart).style(BLUE.mix(0.6).filled()).data(h.iter().enumerate().map(|(d, n)| (d, *n))),
        )
        .map_err(err)?;
    root.present().map_err(err)
}
