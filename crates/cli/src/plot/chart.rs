//! One metric's PNG: the metric against optimizer steps (left) and against tokens seen
//! (right, when the log has them), one coloured line per run, drawn with plotters' bitmap
//! backend and an embedded DejaVu Sans (no system fonts needed: clusters often have none).

use std::path::Path;
use std::sync::Once;

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{FontStyle, register_font};

/// The font family name the embedded font is registered under.
const FONT: &str = "sans-serif";
const WIDTH: u32 = 1600;
const HEIGHT: u32 = 640;

/// Matplotlib's `tab10` colours: distinct, and familiar from other training dashboards.
const COLOURS: [RGBColor; 10] = [
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

/// One run's values of a metric: (step, tokens seen if logged, value).
pub struct Series {
    pub label: String,
    pub points: Vec<(u64, Option<u64>, f64)>,
}

pub struct Chart<'a> {
    pub title: &'a str,
    pub y_label: &'a str,
    /// Values drawn as log10 with the axis labelled in the values themselves.
    pub log_scale: bool,
    /// The metric grows as training goes well (accuracies): the legend goes low.
    pub rising: bool,
    pub series: &'a [Series],
}

/// Which x axis a panel draws.
#[derive(Clone, Copy)]
enum Axis {
    Steps,
    Tokens,
}

impl Chart<'_> {
    pub fn draw(&self, path: &Path) -> Result<()> {
        register_embedded_font()?;
        let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_error(&e))?;
        // The title in a band of its own: plotters' `titled` clips the embedded font's
        // ascenders at the top edge.
        let (band, root) = root.split_vertically(64);
        let title_style = TextStyle::from((FONT, 34).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Center));
        band.draw_text(self.title, &title_style, (WIDTH as i32 / 2, 36))
            .map_err(|e| plot_error(&e))?;
        let has_tokens = self
            .series
            .iter()
            .any(|s| s.points.iter().any(|p| p.1.is_some()));
        if has_tokens {
            let (left, right) = root.split_horizontally(WIDTH / 2);
            self.panel(&left, Axis::Steps)?;
            self.panel(&right, Axis::Tokens)?;
        } else {
            self.panel(&root, Axis::Steps)?;
        }
        root.present().map_err(|e| plot_error(&e))
    }

    fn panel(&self, area: &DrawingArea<BitMapBackend<'_>, Shift>, axis: Axis) -> Result<()> {
        let lines: Vec<Vec<(f64, f64)>> = self
            .series
            .iter()
            .map(|series| self.line(series, axis))
            .collect();
        let (x_range, y_range) = bounds(lines.iter().flatten());
        let mut chart = ChartBuilder::on(area)
            .margin(24)
            .x_label_area_size(64)
            .y_label_area_size(110)
            .build_cartesian_2d(x_range, y_range)
            .map_err(|e| plot_error(&e))?;
        let log_scale = self.log_scale;
        let y_format = move |v: &f64| number(if log_scale { 10f64.powf(*v) } else { *v });
        let x_format = |v: &f64| number(*v);
        chart
            .configure_mesh()
            .x_desc(match axis {
                Axis::Steps => "optimizer step",
                Axis::Tokens => "tokens seen",
            })
            .y_desc(self.y_label)
            .axis_desc_style((FONT, 24))
            .label_style((FONT, 20))
            .x_label_formatter(&x_format)
            .y_label_formatter(&y_format)
            .x_labels(8)
            .y_labels(8)
            .light_line_style(WHITE.mix(0.0))
            .bold_line_style(BLACK.mix(0.12))
            .draw()
            .map_err(|e| plot_error(&e))?;
        for (index, (series, line)) in self.series.iter().zip(lines).enumerate() {
            let colour = COLOURS[index % COLOURS.len()];
            let single = line.len() == 1;
            let drawn = chart
                .draw_series(LineSeries::new(line.clone(), colour.stroke_width(3)))
                .map_err(|e| plot_error(&e))?;
            // Padded: plotters sizes the legend box from a narrower estimate of the text.
            drawn
                .label(format!("{}   ", series.label))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 28, y)], colour.stroke_width(4))
                });
            // Evaluations are few: mark each one (and a line of one point would not show).
            if single || line.len() <= 40 {
                chart
                    .draw_series(line.iter().map(|&p| Circle::new(p, 4, colour.filled())))
                    .map_err(|e| plot_error(&e))?;
            }
        }
        chart
            .configure_series_labels()
            .label_font((FONT, 20))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .legend_area_size(44)
            .margin(12)
            // Away from the lines: losses fall to the lower right, accuracies rise to the
            // upper right.
            .position(if self.rising {
                SeriesLabelPosition::LowerRight
            } else {
                SeriesLabelPosition::UpperRight
            })
            .draw()
            .map_err(|e| plot_error(&e))
    }

    /// The series' points on `axis` (points without tokens are left out of the token panel).
    fn line(&self, series: &Series, axis: Axis) -> Vec<(f64, f64)> {
        series
            .points
            .iter()
            .filter_map(|&(step, tokens, value)| {
                let x = match axis {
                    Axis::Steps => step as f64,
                    Axis::Tokens => tokens? as f64,
                };
                let y = if self.log_scale { value.log10() } else { value };
                Some((x, y))
            })
            .collect()
    }
}

/// The x and y ranges holding every point, with a margin above and below the values.
fn bounds<'a>(
    points: impl Iterator<Item = &'a (f64, f64)>,
) -> (std::ops::Range<f64>, std::ops::Range<f64>) {
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    if x0 > x1 {
        return (0.0..1.0, 0.0..1.0);
    }
    let x_span = if x1 > x0 { x1 - x0 } else { 1.0 };
    let y_pad = if y1 > y0 {
        (y1 - y0) * 0.06
    } else {
        y0.abs().max(1e-12) * 0.1
    };
    (x0..x0 + x_span, y0 - y_pad..y1 + y_pad)
}

/// An axis label: 12,500 steps as `12.5k`, 3.2e9 tokens as `3.2G`, 2e-5 as `2.0e-5`.
fn number(v: f64) -> String {
    let magnitude = v.abs();
    let trimmed = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    match magnitude {
        // Rounding leaves ~1e-20 where an axis crosses zero.
        m if m < 1e-15 => "0".to_string(),
        m if m >= 1e9 => trimmed(format!("{:.2}", v / 1e9)) + "G",
        m if m >= 1e6 => trimmed(format!("{:.2}", v / 1e6)) + "M",
        m if m >= 1e4 => trimmed(format!("{:.1}", v / 1e3)) + "k",
        m if m >= 100.0 => format!("{v:.0}"),
        m if m >= 0.01 => trimmed(format!("{v:.3}")),
        _ => format!("{v:.1e}"),
    }
}

/// Registers DejaVu Sans (from the `dejavu` crate, under the DejaVu fonts' permissive
/// licence) as the `sans-serif` family, once per process.
fn register_embedded_font() -> Result<()> {
    static REGISTER: Once = Once::new();
    let mut result = Ok(());
    REGISTER.call_once(|| {
        result = register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .map_err(|_| anyhow!("the embedded DejaVu Sans font does not parse"));
    });
    result
}

fn plot_error<E: std::error::Error + Send + Sync + 'static>(
    error: &DrawingAreaErrorKind<E>,
) -> anyhow::Error {
    anyhow!("{error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_numbers_are_short() {
        assert_eq!(number(12_500.0), "12.5k");
        assert_eq!(number(3.2e9), "3.2G");
        assert_eq!(number(1.5e6), "1.5M");
        assert_eq!(number(400.0), "400");
        assert_eq!(number(0.125), "0.125");
        assert_eq!(number(2e-5), "2.0e-5");
        assert_eq!(number(0.0), "0");
    }

    #[test]
    fn bounds_hold_every_point_with_a_margin() {
        let points = [(0.0, 2.0), (10.0, 4.0)];
        let (x, y) = bounds(points.iter());
        assert_eq!(x, 0.0..10.0);
        assert!(y.start < 2.0 && y.end > 4.0);
        let (x, y) = bounds([(5.0, 1.0)].iter());
        assert!(x.start == 5.0 && x.end > 5.0 && y.start < 1.0 && y.end > 1.0);
    }
}
