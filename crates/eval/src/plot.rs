//! Plots of quality against cost and against latency, one point per run (model or pipeline) with
//! its 95% interval, for each dataset split; and curves, such as a router's quality against its
//! share of large-model calls. Each as PNG and SVG, drawn with `plotters`.
//!
//! Text is drawn with a TrueType font read from the system (DejaVu Sans, Debian's
//! `fonts-dejavu-core`, or whatever `fc-match` offers).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::EvalError;
use crate::report::Row;

/// The family name plot text is drawn with, once [`load_font`] has registered it.
pub const FONT: &str = "sans-serif";
const SIZE: (u32, u32) = (960, 640);

/// One x axis of the plots.
struct Axis {
    file: &'static str,
    label: &'static str,
    value: fn(&Row) -> f64,
}

const AXES: [Axis; 2] = [
    Axis {
        file: "quality-vs-cost",
        label: "cost per item (USD)",
        value: |row| row.cost_per_item_usd,
    },
    Axis {
        file: "quality-vs-latency",
        label: "mean latency per item (s)",
        value: |row| row.mean_latency_ms / 1000.0,
    },
];

/// Draws every plot for `rows` into `dir` and returns the files written.
pub fn write_plots(rows: &[Row], dir: &Path) -> Result<Vec<PathBuf>, EvalError> {
    std::fs::create_dir_all(dir).map_err(EvalError::io(dir))?;
    load_font().map_err(|message| EvalError::Plot {
        path: dir.to_path_buf(),
        message,
    })?;
    let mut splits: Vec<(&str, &str)> = rows
        .iter()
        .map(|r| (r.dataset.as_str(), r.split.as_str()))
        .collect();
    splits.sort_unstable();
    splits.dedup();
    let mut written = Vec::new();
    for (dataset, split) in splits {
        let points: Vec<&Row> = rows
            .iter()
            .filter(|r| r.dataset == dataset && r.split == split)
            .collect();
        for axis in &AXES {
            let stem = format!("{dataset}-{split}-{}", axis.file);
            let png = dir.join(format!("{stem}.png"));
            let svg = dir.join(format!("{stem}.svg"));
            let title = format!(
                "{dataset} ({split}): {} against {}",
                points[0].metric, axis.label
            );
            draw(
                BitMapBackend::new(&png, SIZE).into_drawing_area(),
                &title,
                axis,
                &points,
            )
            .map_err(|message| EvalError::Plot {
                path: png.clone(),
                message,
            })?;
            draw(
                SVGBackend::new(&svg, SIZE).into_drawing_area(),
                &title,
                axis,
                &points,
            )
            .map_err(|message| EvalError::Plot {
                path: svg.clone(),
                message,
            })?;
            written.extend([png, svg]);
        }
    }
    Ok(written)
}

/// A named line of a curve plot, in plot units.
#[derive(Debug, Clone)]
pub struct Curve {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Draws `curves` and labelled single `points` (y in percent, 0 to 100) as `<stem>.png` and
/// `<stem>.svg` in `dir`, and returns the files written.
pub fn write_curves(
    dir: &Path,
    stem: &str,
    title: &str,
    x_label: &str,
    y_label: &str,
    curves: &[Curve],
    points: &[(String, f64, f64)],
) -> Result<Vec<PathBuf>, EvalError> {
    std::fs::create_dir_all(dir).map_err(EvalError::io(dir))?;
    load_font().map_err(|message| EvalError::Plot {
        path: dir.to_path_buf(),
        message,
    })?;
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    let plot = CurvePlot {
        title,
        x_label,
        y_label,
        curves,
        points,
    };
    plot.draw(BitMapBackend::new(&png, SIZE).into_drawing_area())
        .map_err(|message| EvalError::Plot {
            path: png.clone(),
            message,
        })?;
    plot.draw(SVGBackend::new(&svg, SIZE).into_drawing_area())
        .map_err(|message| EvalError::Plot {
            path: svg.clone(),
            message,
        })?;
    Ok(vec![png, svg])
}

struct CurvePlot<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    curves: &'a [Curve],
    points: &'a [(String, f64, f64)],
}

impl CurvePlot<'_> {
    fn draw<DB: DrawingBackend>(&self, root: DrawingArea<DB, Shift>) -> Result<(), String> {
        let error = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
        root.fill(&WHITE).map_err(error)?;
        let x_max = self
            .curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p.0))
            .chain(self.points.iter().map(|p| p.1))
            .fold(0.0f64, f64::max);
        let x_max = if x_max > 0.0 { x_max * 1.05 } else { 1.0 };
        let mut chart = ChartBuilder::on(&root)
            .caption(self.title, (FONT, 22))
            .margin(24)
            .x_label_area_size(48)
            .y_label_area_size(64)
            .build_cartesian_2d(0.0..x_max, 0.0..100.0)
            .map_err(error)?;
        chart
            .configure_mesh()
            .x_desc(self.x_label)
            .y_desc(self.y_label)
            .label_style((FONT, 14))
            .draw()
            .map_err(error)?;
        for (i, curve) in self.curves.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    curve.points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(error)?
                .label(curve.label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        for (label, x, y) in self.points {
            chart
                .draw_series(std::iter::once(
                    EmptyElement::at((*x, *y))
                        + Circle::new((0, 0), 6, BLACK.filled())
                        + Text::new(label.clone(), (10, -18), (FONT, 15)),
                ))
                .map_err(error)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font((FONT, 14))
            .draw()
            .map_err(error)?;
        root.present().map_err(error)
    }
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, Shift>,
    title: &str,
    axis: &Axis,
    points: &[&Row],
) -> Result<(), String> {
    let error = |e: DrawingAreaErrorKind<DB::ErrorType>| e.to_string();
    root.fill(&WHITE).map_err(error)?;
    let x_max = points
        .iter()
        .map(|r| (axis.value)(r))
        .fold(0.0f64, f64::max);
    // Room on the right for the labels of the rightmost points; all-zero costs (local models)
    // still get a readable axis.
    let x_max = if x_max > 0.0 { x_max * 1.4 } else { 1.0 };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT, 22))
        .margin(24)
        .x_label_area_size(48)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, 0.0..100.0)
        .map_err(error)?;
    chart
        .configure_mesh()
        .x_desc(axis.label)
        .y_desc(format!("{} (%), 95% Wilson interval", points[0].metric))
        .label_style((FONT, 14))
        .draw()
        .map_err(error)?;
    for (i, row) in points.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let x = (axis.value)(row);
        chart
            .draw_series(std::iter::once(ErrorBar::new_vertical(
                x,
                100.0 * row.ci_low,
                100.0 * row.score,
                100.0 * row.ci_high,
                color.stroke_width(2),
                12,
            )))
            .map_err(error)?;
        let label = run_label(row, points);
        chart
            .draw_series(std::iter::once(
                EmptyElement::at((x, 100.0 * row.score))
                    + Circle::new((0, 0), 6, color.filled())
                    + Text::new(label, (10, -18), (FONT, 15)),
            ))
            .map_err(error)?;
    }
    root.present().map_err(error)
}

/// Registers a system TrueType font with plotters as [`FONT`], once per process.
pub fn load_font() -> Result<(), String> {
    static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let path = font_path().ok_or_else(|| {
                "no TrueType font found for plot text; install Debian's fonts-dejavu-core"
                    .to_string()
            })?;
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            // plotters keeps registered fonts for the life of the process.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font(FONT, FontStyle::Normal, bytes)
                .map_err(|_| format!("{} is not a usable TrueType font", path.display()))
        })
        .clone()
}

fn font_path() -> Option<PathBuf> {
    let known = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/TTF/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    ];
    if let Some(path) = known.iter().map(PathBuf::from).find(|p| p.is_file()) {
        return Some(path);
    }
    let output = std::process::Command::new("fc-match")
        .args(["--format=%{file}", "sans-serif:fontformat=TrueType"])
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    path.is_file().then_some(path)
}

/// The model's name, and where the same model has several runs in the plot, what tells them
/// apart: the prompt if that does, else the settings hash.
fn run_label(row: &Row, points: &[&Row]) -> String {
    let same_model = || points.iter().filter(|r| r.model == row.model);
    if same_model().count() == 1 {
        row.model.clone()
    } else if same_model().filter(|r| r.prompt == row.prompt).count() == 1 {
        format!("{} [{}]", row.model, row.prompt)
    } else {
        let hash = &row.settings_hash[..row.settings_hash.len().min(6)];
        format!("{} [{hash}]", row.model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(model: &str, score: f64, cost: f64) -> Row {
        let (ci_low, ci_high) = tandem_core::stats::wilson((score * 100.0) as usize, 100);
        Row {
            dataset: "humaneval".into(),
            split: "test".into(),
            model: model.into(),
            settings_hash: "0123456789abcdef".into(),
            prompt: "p1".into(),
            isolation: "full".into(),
            metric: "pass@1".into(),
            n: 100,
            passed: (score * 100.0) as usize,
            errors: 0,
            score,
            ci_low,
            ci_high,
            prompt_tokens: 1000,
            completion_tokens: 5000,
            max_token_stops: 0,
            mean_latency_ms: 2500.0,
            tokens_per_s: 20.0,
            cost_usd: cost * 100.0,
            cost_per_item_usd: cost,
            mean_score_ms: 50.0,
            mean_store_ms: 0.1,
            overhead_pct: 2.0,
            session_overhead_pct: None,
        }
    }

    #[test]
    fn runs_of_one_model_are_told_apart_by_prompt_then_by_settings() {
        let boxed = Row {
            prompt: "p2".into(),
            settings_hash: "fedcba9876543210".into(),
            ..row("small", 0.4, 0.0)
        };
        let hotter = Row {
            settings_hash: "aaaaaaaaaaaaaaaa".into(),
            ..row("small", 0.2, 0.0)
        };
        let (small, large) = (row("small", 0.3, 0.0), row("large", 0.7, 0.002));
        let points = [&small, &boxed, &hotter, &large];
        let labels: Vec<String> = points.iter().map(|r| run_label(r, &points)).collect();
        assert_eq!(
            labels,
            ["small [012345]", "small [p2]", "small [aaaaaa]", "large"]
        );
    }

    #[test]
    fn writes_png_and_svg_for_each_axis() {
        let dir = tempfile::tempdir().unwrap();
        let rows = vec![row("small", 0.3, 0.0), row("large", 0.7, 0.002)];
        let files = write_plots(&rows, dir.path()).unwrap();
        assert_eq!(files.len(), 4);
        for file in &files {
            let bytes = std::fs::read(file).unwrap();
            if file.extension().unwrap() == "png" {
                assert!(bytes.starts_with(b"\x89PNG"), "{}", file.display());
            } else {
                let svg = String::from_utf8(bytes).unwrap();
                assert!(
                    svg.contains("<svg") && svg.contains("large"),
                    "{}",
                    file.display()
                );
            }
        }
    }
}
