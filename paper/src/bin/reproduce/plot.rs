//! SVG charts for the reproduce binary: line charts, panels of them, and
//! predicted against measured.
//!
//! Series that coincide stay visible: each has a marker shape of its own, drawn
//! hollow and larger for the earlier series, so a later series' marker sits
//! inside an earlier one's where they overlap.
//!
//! plotters writes SVG without system font libraries: text goes into the file
//! as `<text>` elements and the viewer picks the font, so the widths used for
//! layout here are estimates.

use std::error::Error;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::coord::combinators::WithKeyPoints;
use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// One named line or group of points.
pub struct Series {
    pub name: String,
    pub style: Style,
    pub points: Vec<(f64, f64)>,
}

/// How a series is drawn.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// A line through markers: a prediction over a sweep.
    Line,
    /// A dashed line through markers: another prediction of the same sweep.
    Dashed,
    /// Markers only: measurements.
    Points,
    /// A horizontal line across the chart at the first point's y: a published figure.
    Level,
}

/// What to draw; every text comes from the caller.
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    /// Log scale on y; in `predicted_vs_measured` on both axes.
    pub log_y: bool,
    pub series: &'a [Series],
}

/// A chart that could not be drawn or written, with the file it was meant for.
#[derive(Debug)]
pub struct PlotError {
    path: PathBuf,
    message: String,
}

impl PlotError {
    fn new(path: &Path, cause: impl fmt::Display) -> Self {
        Self {
            path: path.to_owned(),
            message: cause.to_string(),
        }
    }
}

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "plot {}: {}", self.path.display(), self.message)
    }
}

impl Error for PlotError {}

const CHART_SIZE: (u32, u32) = (800, 480);
/// Side of the square plotting area of `predicted_vs_measured`.
const SCATTER_SIDE: u32 = 480;
const MARGIN: u32 = 12;
const CAPTION_HEIGHT: u32 = 34;
const X_LABEL_AREA: u32 = 48;
const Y_LABEL_AREA: u32 = 72;
/// Tableau 10: distinct hues that stay apart for most colour-blind readers.
/// Series past the tenth reuse them.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Several line charts in a grid in one SVG, e.g. one panel per device count.
pub fn panels(path: &Path, title: &str, charts: &[Chart]) -> Result<(), PlotError> {
    // Near-square grid, filled row by row.
    let columns = (1..).find(|c| c * c >= charts.len()).unwrap_or(1);
    let rows = charts.len().div_ceil(columns).max(1);
    let size = (
        CHART_SIZE.0 * columns as u32,
        CHART_SIZE.1 * rows as u32 + 40,
    );
    let root = SVGBackend::new(path, size).into_drawing_area();
    let drawn = (|| {
        root.fill(&WHITE)?;
        let body = root.titled(title, ("sans-serif", 26))?;
        for (area, chart) in body.split_evenly((rows, columns)).iter().zip(charts) {
            draw_lines(area, chart)?;
        }
        root.present()
    })();
    drawn.map_err(|e| PlotError::new(path, e))
}

/// Predicted against measured: a scatter per series plus the y = x diagonal.
/// Both axes share one range, since they are in the same unit; `log_y` makes
/// both logarithmic.
pub fn predicted_vs_measured(path: &Path, chart: &Chart) -> Result<(), PlotError> {
    // Square plotting area, so that y = x runs at 45 degrees.
    let size = (
        SCATTER_SIDE + Y_LABEL_AREA + 2 * MARGIN + legend_width(chart.series),
        SCATTER_SIDE + X_LABEL_AREA + 2 * MARGIN + CAPTION_HEIGHT,
    );
    let root = SVGBackend::new(path, size).into_drawing_area();
    let points = usable_points(chart.series, chart.log_y, chart.log_y);
    let values = points.iter().flatten().flat_map(|&(x, y)| [x, y]);
    let drawn = if chart.log_y {
        let range = log_range(values);
        let diagonal = Some(range.clone());
        draw(
            &root,
            chart,
            &points,
            log_axis(&range),
            log_axis(&range),
            diagonal,
        )
    } else {
        let range = linear_range(values);
        let diagonal = Some(range.clone());
        draw(&root, chart, &points, range.clone(), range, diagonal)
    };
    drawn
        .and_then(|()| root.present())
        .map_err(|e| PlotError::new(path, e))
}

type DrawResult<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn draw_lines<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, chart: &Chart) -> DrawResult<DB> {
    let points = usable_points(chart.series, false, chart.log_y);
    // A level's x is not data: the x axis covers the other series.
    let x_range = linear_range(
        points
            .iter()
            .zip(chart.series)
            .filter(|(_, s)| s.style != Style::Level)
            .flat_map(|(p, _)| p.iter().map(|p| p.0)),
    );
    let y_values = points.iter().flatten().map(|p| p.1);
    if chart.log_y {
        draw(
            area,
            chart,
            &points,
            x_range,
            log_axis(&log_range(y_values)),
            None,
        )
    } else {
        draw(area, chart, &points, x_range, linear_range(y_values), None)
    }
}

/// Draws one chart: lines through the points, or, given the y = x diagonal's
/// range, a scatter.
fn draw<DB, X, Y>(
    area: &DrawingArea<DB, Shift>,
    chart: &Chart,
    points: &[Vec<(f64, f64)>],
    x_range: X,
    y_range: Y,
    diagonal: Option<Range<f64>>,
) -> DrawResult<DB>
where
    DB: DrawingBackend,
    X: AsRangedCoord<Value = f64>,
    Y: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
    Y::CoordDescType: ValueFormatter<f64>,
{
    area.fill(&WHITE)?;
    let width = area.dim_in_pixel().0;
    let (plot_area, legend_area) =
        area.split_horizontally(width.saturating_sub(legend_width(chart.series)));
    let mut context = ChartBuilder::on(&plot_area)
        .caption(chart.title, ("sans-serif", 20))
        .margin(MARGIN)
        .x_label_area_size(X_LABEL_AREA)
        .y_label_area_size(Y_LABEL_AREA)
        .build_cartesian_2d(x_range, y_range)?;
    context
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc(chart.x_label)
        .y_desc(chart.y_label)
        .axis_desc_style(("sans-serif", 15))
        .label_style(("sans-serif", 13))
        .x_label_formatter(&|v| tick_label(*v))
        .y_label_formatter(&|v| tick_label(*v))
        .draw()?;

    if let Some(Range { start, end }) = diagonal {
        let ends = [(start, start), (end, end)];
        context.draw_series(LineSeries::new(ends, BLACK.mix(0.6).stroke_width(1)))?;
    }
    let (x_lo, x_hi) = {
        let r = context.x_range();
        (r.start, r.end)
    };
    for (index, (series, spec)) in points.iter().zip(chart.series).enumerate() {
        let colour = PALETTE[index % PALETTE.len()];
        match spec.style {
            Style::Level => {
                if let Some(&(_, y)) = series.first() {
                    let ends = [(x_lo, y), (x_hi, y)];
                    context.draw_series(LineSeries::new(ends, colour.stroke_width(2)))?;
                }
                continue;
            }
            Style::Line if diagonal.is_none() => {
                context.draw_series(LineSeries::new(
                    series.iter().copied(),
                    colour.stroke_width(2),
                ))?;
            }
            Style::Dashed if diagonal.is_none() => {
                context.draw_series(DashedLineSeries::new(
                    series.iter().copied(),
                    6,
                    4,
                    colour.stroke_width(2),
                ))?;
            }
            Style::Line | Style::Dashed | Style::Points => {}
        }
        for &p in series {
            context.plotting_area().draw(&marker(index, p, colour))?;
        }
    }
    draw_legend(&legend_area, chart.series)
}

/// Series `index`'s marker at `at`: a shape and size of its own, earlier series larger and
/// hollow, so that coinciding series stay visible.
fn marker<DB, C>(index: usize, at: C, colour: RGBColor) -> DynElement<'static, DB, C>
where
    DB: DrawingBackend,
    C: Clone + 'static,
{
    let size = 7 - (index % 4) as i32;
    let style = if index.is_multiple_of(2) {
        colour.stroke_width(2)
    } else {
        colour.filled()
    };
    match index % 4 {
        0 => Circle::new(at, size, style).into_dyn(),
        1 => TriangleMarker::new(at, size, style).into_dyn(),
        2 => Cross::new(at, size, style).into_dyn(),
        _ => Circle::new(at, size, style).into_dyn(),
    }
}

/// Legend to the right of the plot, so it never hides points.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[Series],
) -> DrawResult<DB> {
    for (index, series) in series.iter().enumerate() {
        let colour = PALETTE[index % PALETTE.len()];
        let y = 56 + 22 * index as i32;
        match series.style {
            Style::Line | Style::Level => {
                area.draw(&PathElement::new([(4, y), (28, y)], colour.stroke_width(2)))?
            }
            Style::Dashed => {
                area.draw(&PathElement::new([(4, y), (12, y)], colour.stroke_width(2)))?;
                area.draw(&PathElement::new(
                    [(20, y), (28, y)],
                    colour.stroke_width(2),
                ))?;
            }
            Style::Points => {}
        }
        if series.style != Style::Level {
            area.draw(&marker(index, (16, y), colour))?;
        }
        let style = TextStyle::from(("sans-serif", 15)).pos(Pos::new(HPos::Left, VPos::Center));
        area.draw(&Text::new(series.name.as_str(), (36, y), style))?;
    }
    Ok(())
}

fn legend_width(series: &[Series]) -> u32 {
    let longest = series.iter().map(|s| s.name.chars().count()).max();
    // About 8 px per character at the legend's font size, plus the marker.
    longest.map_or(0, |chars| (48 + 8 * chars as u32).min(320))
}

/// Points that can be drawn: finite, and positive on a log axis. Extreme
/// values are left out too: plotters never finishes placing ticks on an axis
/// whose span (or ratio, for log) overflows to infinity.
fn usable_points(series: &[Series], log_x: bool, log_y: bool) -> Vec<Vec<(f64, f64)>> {
    let fits = |v: f64, log: bool| match log {
        false => v.abs() <= 1e300,
        true => (1e-150..=1e150).contains(&v),
    };
    series
        .iter()
        .map(|s| {
            s.points
                .iter()
                .copied()
                .filter(|&(x, y)| fits(x, log_x) && fits(y, log_y))
                .collect()
        })
        .collect()
}

fn min_max(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    values.fold(None, |range, v| match range {
        None => Some((v, v)),
        Some((lo, hi)) => Some((lo.min(v), hi.max(v))),
    })
}

/// Data range with 5 % room on each side; a single value gets room of its own.
fn linear_range(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = min_max(values).unwrap_or((0.0, 1.0));
    let pad = if hi > lo {
        (hi - lo) * 0.05
    } else if lo != 0.0 {
        lo.abs() * 0.1
    } else {
        1.0
    };
    lo - pad..hi + pad
}

/// Like `linear_range` in powers of ten, for positive values only.
fn log_range(values: impl Iterator<Item = f64>) -> Range<f64> {
    let (lo, hi) = min_max(values.map(f64::log10)).unwrap_or((0.0, 1.0));
    // At least 0.4 decades, a factor of 2.5, so that `log_ticks` finds a tick.
    let pad = ((hi - lo) * 0.05).max((0.4 - (hi - lo)) / 2.0);
    // Within the limits of `usable_points`, so that hi / lo stays finite.
    let (lo, hi) = ((lo - pad).max(-150.0), (hi + pad).min(150.0));
    10f64.powf(lo)..10f64.powf(hi)
}

/// A log axis with our own ticks: plotters labels only the powers of ten
/// and the steps after them, leaving e.g. 100..165 or 2..8 unlabelled.
fn log_axis(range: &Range<f64>) -> WithKeyPoints<LogCoord<f64>> {
    range.clone().log_scale().with_key_points(log_ticks(range))
}

/// The finest of these tick sets that gives at most ten ticks: 1, 1.25, 1.5, 1.75, 2, 2.5,
/// 3, …, 9 times powers of ten (so that a range under a decade gets ticks all along it), or
/// 1, 2, …, 9 times, or 1, 2, 5 times, or powers of ten only.
fn log_ticks(range: &Range<f64>) -> Vec<f64> {
    let first = range.start.log10().floor() as i32;
    let last = range.end.log10().ceil() as i32;
    let ticks = |mantissas: &[f64], step: usize| -> Vec<f64> {
        (first..=last)
            .step_by(step)
            .flat_map(|exponent| mantissas.iter().map(move |m| m * 10f64.powi(exponent)))
            .filter(|tick| (range.start..=range.end).contains(tick))
            .collect()
    };
    let steps: [&[f64]; 4] = [
        &[
            1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0,
        ],
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
        &[1.0, 2.0, 5.0],
        &[1.0],
    ];
    for mantissas in steps {
        let candidate = ticks(mantissas, 1);
        if candidate.len() <= 10 {
            return candidate;
        }
    }
    let decades = (last - first) as usize;
    ticks(&[1.0], decades.div_ceil(10))
}

/// About four significant digits without float noise such as 0.30000000000000004.
fn tick_label(value: f64) -> String {
    let magnitude = value.abs();
    if value == 0.0 {
        return "0".to_owned();
    }
    if !(1e-3..1e6).contains(&magnitude) {
        let text = format!("{value:.3e}");
        let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
        return format!("{}e{exponent}", trim_zeros(mantissa));
    }
    let decimals = (3 - magnitude.log10().floor() as i32).clamp(0, 6) as usize;
    trim_zeros(&format!("{value:.decimals$}")).to_owned()
}

fn trim_zeros(number: &str) -> &str {
    if number.contains('.') {
        number.trim_end_matches('0').trim_end_matches('.')
    } else {
        number
    }
}
