//! SVG charts for the reproduce binary: line charts, panels of them, and
//! predicted against measured.
//!
//! Series that coincide stay visible: every series of a chart has a marker of its
//! own (shape, fill and size, [`MARKERS`]); markers are drawn over the lines,
//! measurements over predictions, and largest first, so that a smaller one sits on top
//! of a larger one; and a series that coincides with an earlier one at every point is
//! drawn a few pixels to the side, its legend entry saying which series it is the same
//! as.
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
        SCATTER_SIDE + Y_LABEL_AREA + 2 * MARGIN + legend_width(chart.series, &[]),
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
            &[],
            log_axis(&range),
            log_axis(&range),
            diagonal,
        )
    } else {
        let range = linear_range(values);
        let diagonal = Some(range.clone());
        draw(&root, chart, &points, &[], range.clone(), range, diagonal)
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
    let layout = layout(&coinciding(&points, chart.series), chart.series);
    if chart.log_y {
        draw(
            area,
            chart,
            &points,
            &layout,
            x_range,
            log_axis(&log_range(y_values)),
            None,
        )
    } else {
        let y_range = linear_range(y_values);
        draw(area, chart, &points, &layout, x_range, y_range, None)
    }
}

/// Relative difference within which two series count as coinciding: about 3 pixels on a
/// log axis of one decade per 700 pixels, less than a marker.
const COINCIDENT: f64 = 0.01;
/// Pixels by which a coinciding series is moved along x, per series that coincides with
/// the same earlier one.
const OFFSET_PX: i32 = 4;

/// A series drawn on top of an earlier one at every point.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Coincidence {
    /// The earlier series.
    with: usize,
    /// Equal at every point, not only within [`COINCIDENT`].
    exact: bool,
}

/// For every series, the first earlier series it coincides with: the same x values and y
/// within [`COINCIDENT`] at every point. Levels and empty series coincide with nothing.
fn coinciding(points: &[Vec<(f64, f64)>], series: &[Series]) -> Vec<Option<Coincidence>> {
    let relative = |a: f64, b: f64| {
        if a == b {
            0.0
        } else {
            (a - b).abs() / a.abs().max(b.abs())
        }
    };
    let comparable = |i: usize| series[i].style != Style::Level && !points[i].is_empty();
    (0..points.len())
        .map(|later| {
            if !comparable(later) {
                return None;
            }
            (0..later).filter(|&i| comparable(i)).find_map(|earlier| {
                let (a, b) = (&points[earlier], &points[later]);
                if a.len() != b.len() || a.iter().zip(b).any(|(p, q)| p.0 != q.0) {
                    return None;
                }
                let worst = a
                    .iter()
                    .zip(b)
                    .map(|(p, q)| relative(p.1, q.1))
                    .fold(0.0, f64::max);
                (worst <= COINCIDENT).then_some(Coincidence {
                    with: earlier,
                    exact: worst == 0.0,
                })
            })
        })
        .collect()
}

/// Where each series is drawn and what its legend entry adds.
#[derive(Debug, Clone, PartialEq, Default)]
struct Layout {
    /// Pixels along x (on a linear x axis).
    offset_px: i32,
    /// A line under the legend entry, e.g. `(same as uniform)`.
    note: Option<String>,
}

/// Moves every series that coincides with an earlier one aside, alternately right and left
/// and further for each more series on the same one, and notes which it is the same as.
fn layout(coincidences: &[Option<Coincidence>], series: &[Series]) -> Vec<Layout> {
    let mut on_each: Vec<i32> = vec![0; series.len()];
    coincidences
        .iter()
        .map(|c| match c {
            None => Layout::default(),
            Some(c) => {
                on_each[c.with] += 1;
                let rank = on_each[c.with];
                let side = if rank % 2 == 1 { 1 } else { -1 };
                let name = &series[c.with].name;
                Layout {
                    offset_px: side * OFFSET_PX * ((rank + 1) / 2),
                    note: Some(if c.exact {
                        format!("(same as {name})")
                    } else {
                        format!("(within {:.0} % of {name})", COINCIDENT * 100.0)
                    }),
                }
            }
        })
        .collect()
}

/// Draws one chart: lines through the points, or, given the y = x diagonal's
/// range, a scatter. `layout` (one per series, or empty for none) moves series along a
/// linear x axis and adds legend notes.
fn draw<DB, X, Y>(
    area: &DrawingArea<DB, Shift>,
    chart: &Chart,
    points: &[Vec<(f64, f64)>],
    layout: &[Layout],
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
        area.split_horizontally(width.saturating_sub(legend_width(chart.series, layout)));
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
    let plot_width = f64::from(context.plotting_area().dim_in_pixel().0.max(1));
    let no_layout = Layout::default();
    let layout_of = |index: usize| layout.get(index).unwrap_or(&no_layout);
    // A series' points as drawn: moved by its offset, in x units of a linear axis.
    let placed = |index: usize| -> Vec<(f64, f64)> {
        let dx = f64::from(layout_of(index).offset_px) * (x_hi - x_lo) / plot_width;
        points[index].iter().map(|&(x, y)| (x + dx, y)).collect()
    };
    for (index, spec) in chart.series.iter().enumerate() {
        let colour = PALETTE[index % PALETTE.len()];
        match spec.style {
            Style::Level => {
                if let Some(&(_, y)) = points[index].first() {
                    let ends = [(x_lo, y), (x_hi, y)];
                    context.draw_series(LineSeries::new(ends, colour.stroke_width(2)))?;
                }
            }
            Style::Line if diagonal.is_none() => {
                context.draw_series(LineSeries::new(placed(index), colour.stroke_width(2)))?;
            }
            Style::Dashed if diagonal.is_none() => {
                context.draw_series(DashedLineSeries::new(
                    placed(index),
                    6,
                    4,
                    colour.stroke_width(2),
                ))?;
            }
            Style::Line | Style::Dashed | Style::Points => {}
        }
    }
    // Markers over all lines, measurements over predictions, and among each largest first,
    // so that a smaller marker sits on a larger one.
    let mut order: Vec<usize> = (0..chart.series.len())
        .filter(|&i| chart.series[i].style != Style::Level)
        .collect();
    order.sort_by_key(|&i| {
        (
            chart.series[i].style == Style::Points,
            std::cmp::Reverse(marker_of(i).size),
        )
    });
    for index in order {
        let colour = PALETTE[index % PALETTE.len()];
        for p in placed(index) {
            context
                .plotting_area()
                .draw(&marker(marker_of(index), p, colour))?;
        }
    }
    draw_legend(&legend_area, chart.series, layout)
}

/// The outline of a marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Circle,
    Square,
    Diamond,
    TriangleUp,
    TriangleDown,
    /// An x.
    Cross,
    /// A +.
    Plus,
    /// An x over a +.
    Star,
}

/// A marker: its shape, filled or drawn as an outline, and its size (half its width) in
/// pixels. Lines (crosses, pluses, stars) have no fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Marker {
    shape: Shape,
    filled: bool,
    size: i32,
}

const fn m(shape: Shape, filled: bool, size: i32) -> Marker {
    Marker {
        shape,
        filled,
        size,
    }
}

/// One marker per series of a chart, all different in shape, fill or size: hollow ones
/// large, filled ones smaller. Series past the twelfth reuse them.
const MARKERS: [Marker; 12] = [
    m(Shape::Circle, false, 7),
    m(Shape::TriangleUp, true, 7),
    m(Shape::Square, false, 6),
    m(Shape::Diamond, true, 7),
    m(Shape::Cross, false, 6),
    m(Shape::TriangleDown, false, 8),
    m(Shape::Plus, false, 7),
    m(Shape::Circle, true, 4),
    m(Shape::Diamond, false, 8),
    m(Shape::Square, true, 4),
    m(Shape::Star, false, 6),
    m(Shape::TriangleUp, false, 9),
];

/// Series `index`'s marker.
fn marker_of(index: usize) -> Marker {
    MARKERS[index % MARKERS.len()]
}

/// `marker` drawn at `at`, in pixels around it.
fn marker<'a, DB, C>(marker: Marker, at: C, colour: RGBColor) -> DynElement<'a, DB, C>
where
    DB: DrawingBackend + 'a,
    C: Clone + 'a,
{
    let s = marker.size;
    // Half the width of a triangle of height 1.5 s, and of a cross's arm, so that each
    // shape covers about the area of a circle of radius s.
    let (w, d) = (s * 13 / 10, s * 7 / 10);
    let outline: Vec<(i32, i32)> = match marker.shape {
        Shape::Circle => Vec::new(),
        Shape::Square => vec![(-d, -d), (d, -d), (d, d), (-d, d)],
        Shape::Diamond => vec![(0, -s), (s, 0), (0, s), (-s, 0)],
        Shape::TriangleUp => vec![(0, -s), (w * 2 / 3, s / 2), (-w * 2 / 3, s / 2)],
        Shape::TriangleDown => vec![(0, s), (w * 2 / 3, -s / 2), (-w * 2 / 3, -s / 2)],
        // One path through the centre for every stroke.
        Shape::Cross => vec![(-d, -d), (d, d), (0, 0), (-d, d), (d, -d)],
        Shape::Plus => vec![(-s, 0), (s, 0), (0, 0), (0, -s), (0, s)],
        Shape::Star => vec![
            (-s, 0),
            (s, 0),
            (0, 0),
            (0, -s),
            (0, s),
            (0, 0),
            (-d, -d),
            (d, d),
            (0, 0),
            (-d, d),
            (d, -d),
        ],
    };
    let stroke = colour.stroke_width(2);
    let anchor = EmptyElement::at(at);
    match (marker.shape, marker.filled) {
        (Shape::Circle, true) => (anchor + Circle::new((0, 0), s, colour.filled())).into_dyn(),
        (Shape::Circle, false) => (anchor + Circle::new((0, 0), s, stroke)).into_dyn(),
        (Shape::Cross | Shape::Plus | Shape::Star, _) => {
            (anchor + PathElement::new(outline, stroke)).into_dyn()
        }
        (_, true) => (anchor + Polygon::new(outline, colour.filled())).into_dyn(),
        (_, false) => {
            let mut closed = outline;
            closed.push(closed[0]);
            (anchor + PathElement::new(closed, stroke)).into_dyn()
        }
    }
}

/// Legend to the right of the plot, so it never hides points; a series' note from
/// `layout` goes on a line of its own under its name.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[Series],
    layout: &[Layout],
) -> DrawResult<DB> {
    let name_style = TextStyle::from(("sans-serif", 15)).pos(Pos::new(HPos::Left, VPos::Center));
    let note_style = TextStyle::from(("sans-serif", 13)).pos(Pos::new(HPos::Left, VPos::Center));
    let mut y = 56;
    for (index, series) in series.iter().enumerate() {
        let colour = PALETTE[index % PALETTE.len()];
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
            area.draw(&marker(marker_of(index), (16, y), colour))?;
        }
        area.draw(&Text::new(
            series.name.as_str(),
            (36, y),
            name_style.clone(),
        ))?;
        if let Some(note) = layout.get(index).and_then(|l| l.note.as_deref()) {
            y += 17;
            area.draw(&Text::new(note, (44, y), note_style.clone()))?;
        }
        y += 22;
    }
    Ok(())
}

/// The legend's width for `series` and the notes of `layout`.
fn legend_width(series: &[Series], layout: &[Layout]) -> u32 {
    // About 8 px per character at the names' font size, plus the marker; 7 at the notes'.
    let names = series
        .iter()
        .map(|s| 48 + 8 * s.name.chars().count() as u32);
    let notes = layout
        .iter()
        .filter_map(|l| l.note.as_ref())
        .map(|n| 56 + 7 * n.chars().count() as u32);
    names.chain(notes).max().map_or(0, |width| width.min(320))
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
/// 1, 2, …, 9 times, or 1, 2, 5 times, or powers of ten only; plus, at an end of the axis
/// that a coarser set leaves uncovered, the finest set's tick nearest it ([`cover_ends`]).
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
    let finest = ticks(steps[0], 1);
    for mantissas in steps {
        let mut candidate = ticks(mantissas, 1);
        if candidate.len() <= 10 {
            cover_ends(&mut candidate, &finest, range);
            return candidate;
        }
    }
    let decades = (last - first) as usize;
    ticks(&[1.0], decades.div_ceil(10))
}

/// Where an end of the axis is farther from the nearest tick than the widest step between two
/// ticks (a ratio), as 1.18..10.9 is from 2, 3, …, 10, adds the tick of `finest` nearest that
/// end (1.25), so that the ticks span the axis.
fn cover_ends(ticks: &mut Vec<f64>, finest: &[f64], range: &Range<f64>) {
    let step = ticks
        .windows(2)
        .map(|w| w[1] / w[0])
        .fold(f64::NAN, f64::max);
    let (Some(&first), Some(&last)) = (ticks.first(), ticks.last()) else {
        return;
    };
    if first > range.start * step
        && let Some(&lowest) = finest.first().filter(|&&t| t < first)
    {
        ticks.insert(0, lowest);
    }
    if last < range.end / step
        && let Some(&highest) = finest.last().filter(|&&t| t > last)
    {
        ticks.push(highest);
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use plotters::coord::ranged1d::Ranged;
    use plotters::coord::types::RangedCoordf64;

    /// Data of the kinds the reproduction plots: speedups under a decade, times over
    /// several, one value, a range just under a decade, and a sweep's knob.
    const DATA: [&[f64]; 8] = [
        &[100.0, 165.0],
        &[2.0, 8.0],
        &[0.55, 6.0],
        &[1.0, 1.05],
        &[3.44],
        &[1.3, 9.9],
        &[0.2, 0.5, 36.0, 118.1],
        &[1e-3, 2.5e5],
    ];

    /// At least two ticks, ascending, inside the axis, and no part of the data farther from
    /// a tick than the widest step between two ticks (a ratio on a log axis).
    fn assert_ticks_span(ticks: &[f64], axis: &Range<f64>, data: &[f64], log: bool) {
        assert!(ticks.len() >= 2, "{data:?}: ticks {ticks:?}");
        assert!(ticks.windows(2).all(|w| w[0] < w[1]), "{ticks:?}");
        assert!(
            ticks.iter().all(|t| axis.contains(t) || *t == axis.end),
            "{ticks:?} outside {axis:?}"
        );
        let (lo, hi) = min_max(data.iter().copied()).unwrap();
        let (first, last) = (ticks[0], ticks[ticks.len() - 1]);
        if log {
            let step = ticks.windows(2).map(|w| w[1] / w[0]).fold(1.0, f64::max);
            assert!(
                first <= lo * step && last >= hi / step,
                "{data:?}: {ticks:?}"
            );
        } else {
            let step = ticks.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
            assert!(
                first <= lo + step && last >= hi - step,
                "{data:?}: {ticks:?}"
            );
        }
    }

    #[test]
    fn log_ticks_span_the_data() {
        for data in DATA {
            let axis = log_range(data.iter().copied());
            assert!(axis.start <= data[0] && axis.end >= data[data.len() - 1]);
            let ticks = log_ticks(&axis);
            assert!(
                ticks.len() <= 12 || axis.end / axis.start > 1e10,
                "{ticks:?}"
            );
            assert_ticks_span(&ticks, &axis, data, true);
        }
    }

    /// The linear axes' ticks are plotters' own, as the mesh asks for them (11 labels).
    #[test]
    fn linear_ticks_span_the_data() {
        for data in DATA
            .iter()
            .chain([&[0.0][..], &[-5.0, 0.0, 7.5], &[100.0, 2620.0]].iter())
        {
            let axis = linear_range(data.iter().copied());
            let (lo, hi) = min_max(data.iter().copied()).unwrap();
            assert!(axis.start < lo && axis.end > hi, "{data:?}: {axis:?}");
            let coord: RangedCoordf64 = axis.clone().into();
            assert_ticks_span(&coord.key_points(11), &axis, data, false);
        }
    }

    #[test]
    fn tick_labels_have_no_float_noise() {
        assert_eq!(tick_label(0.1 + 0.2), "0.3");
        assert_eq!(tick_label(1.25), "1.25");
        assert_eq!(tick_label(2620.0), "2620");
        assert_eq!(tick_label(0.0), "0");
        assert_eq!(tick_label(2.5e-5), "2.5e-5");
    }

    #[test]
    fn every_series_of_a_chart_has_a_marker_of_its_own() {
        for (i, a) in MARKERS.iter().enumerate() {
            for b in &MARKERS[i + 1..] {
                assert_ne!(a, b);
            }
        }
        // The speedup panels have up to ten series (five strategies, the author's program
        // over two splits, two measured splits, a published level).
        assert!(MARKERS.len() >= 10);
        assert_ne!(marker_of(0), marker_of(4));
        assert_ne!(marker_of(1), marker_of(5));
    }

    fn series(name: &str, style: Style, points: &[(f64, f64)]) -> Series {
        Series {
            name: name.to_string(),
            style,
            points: points.to_vec(),
        }
    }

    #[test]
    fn coinciding_series_are_moved_aside_and_named() {
        let a = [(1.0, 2.0), (2.0, 3.0)];
        let near = [(1.0, 2.01), (2.0, 3.0)];
        let apart = [(1.0, 2.1), (2.0, 3.0)];
        let all = [
            series("uniform", Style::Line, &a),
            series("uniform-ops", Style::Line, &apart),
            series("libcoral", Style::Line, &a),
            series("uniform, author's program", Style::Dashed, &near),
            series("layers", Style::Line, &a),
            series("published: 6x", Style::Level, &[(0.0, 2.0)]),
            series("measured (README)", Style::Points, &[(2.0, 3.0)]),
            series("empty", Style::Line, &[]),
        ];
        let points: Vec<_> = all.iter().map(|s| s.points.clone()).collect();
        let found = coinciding(&points, &all);
        let on = |with, exact| Some(Coincidence { with, exact });
        assert_eq!(
            found,
            [
                None,
                None,
                on(0, true),
                on(0, false),
                on(0, true),
                None,
                None,
                None
            ]
        );
        let layout = layout(&found, &all);
        let offsets: Vec<i32> = layout.iter().map(|l| l.offset_px).collect();
        assert_eq!(
            offsets,
            [0, 0, OFFSET_PX, -OFFSET_PX, 2 * OFFSET_PX, 0, 0, 0]
        );
        assert_eq!(layout[2].note.as_deref(), Some("(same as uniform)"));
        assert_eq!(layout[3].note.as_deref(), Some("(within 1 % of uniform)"));
        assert_eq!(layout[1].note, None);
    }
}
