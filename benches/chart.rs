//! The latency chart of `benches/compare.sh`: p50, p99 and p99.9 per resolver as
//! grouped bars (the median of the runs) with min–max whiskers, on a log scale,
//! written as SVG.
//!
//! `cargo bench --bench chart -- IN.tsv OUT.svg [TITLE]`. IN.tsv has a header line,
//! then `resolver  percentile  median  min  max` (milliseconds), tab-separated, in
//! the order the resolvers and percentiles are drawn. Not a benchmark: the bench
//! target only keeps plotters out of the resolver's dependencies.

use std::error::Error;

use plotters::prelude::*;

struct Row {
    resolver: String,
    percentile: String,
    median: f64,
    min: f64,
    max: f64,
}

fn read(path: &str) -> Result<Vec<Row>, Box<dyn Error>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 5 {
            return Err(format!("{path}:{}: expected 5 tab-separated fields", n + 1).into());
        }
        let num = |s: &str| -> Result<f64, Box<dyn Error>> {
            s.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v > 0.0)
                .ok_or_else(|| format!("{path}:{}: {s:?} is not a positive number", n + 1).into())
        };
        rows.push(Row {
            resolver: f[0].to_owned(),
            percentile: f[1].to_owned(),
            median: num(f[2])?,
            min: num(f[3])?,
            max: num(f[4])?,
        });
    }
    if rows.is_empty() {
        return Err(format!("{path}: no figures").into());
    }
    Ok(rows)
}

/// The distinct values of `key` in first-seen order.
fn distinct(rows: &[Row], key: impl Fn(&Row) -> &str) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for row in rows {
        if !seen.iter().any(|s| s == key(row)) {
            seen.push(key(row).to_owned());
        }
    }
    seen
}

fn draw(rows: &[Row], out: &str, title: &str) -> Result<(), Box<dyn Error>> {
    let resolvers = distinct(rows, |r| &r.resolver);
    let percentiles = distinct(rows, |r| &r.percentile);
    let low = rows.iter().map(|r| r.min).fold(f64::INFINITY, f64::min) / 2.0;
    let high = rows.iter().map(|r| r.max).fold(0.0, f64::max) * 2.0;
    let colours = [
        RGBColor(0x4c, 0x72, 0xb0),
        RGBColor(0xdd, 0x84, 0x52),
        RGBColor(0xc4, 0x4e, 0x52),
    ];

    let root = SVGBackend::new(out, (800, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..resolvers.len() as f64, (low..high).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc("ms (log scale)")
        .y_labels(12)
        .y_label_formatter(&|v| {
            let text = format!("{v:.3}");
            text.trim_end_matches('0').trim_end_matches('.').to_owned()
        })
        .draw()?;

    // one group per resolver, one bar per percentile, a gap of a fifth around each group
    let width = 0.8 / percentiles.len() as f64;
    for (j, percentile) in percentiles.iter().enumerate() {
        let colour = colours[j % colours.len()];
        let x0 = |i: usize| i as f64 + 0.1 + j as f64 * width;
        let mine = || rows.iter().filter(move |r| &r.percentile == percentile);
        chart
            .draw_series(mine().map(|r| {
                let i = resolvers.iter().position(|s| *s == r.resolver).unwrap_or(0);
                Rectangle::new(
                    [(x0(i), low), (x0(i) + width * 0.9, r.median)],
                    colour.filled(),
                )
            }))?
            .label(percentile.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
        chart.draw_series(mine().map(|r| {
            let i = resolvers.iter().position(|s| *s == r.resolver).unwrap_or(0);
            let x = x0(i) + width * 0.45;
            PathElement::new([(x, r.min), (x, r.max)], BLACK.stroke_width(1))
        }))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    for (i, name) in resolvers.iter().enumerate() {
        let (x, y) = chart.backend_coord(&(i as f64 + 0.5, low));
        root.draw(&Text::new(
            name.as_str(),
            (x - 4 * name.len() as i32, y + 10),
            ("sans-serif", 15),
        ))?;
    }
    root.present()?;
    Ok(())
}

fn main() {
    // cargo bench appends --bench; keep the positional arguments
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let (input, output) = match (args.first(), args.get(1)) {
        (Some(i), Some(o)) => (i, o),
        _ => {
            eprintln!("usage: cargo bench --bench chart -- IN.tsv OUT.svg [TITLE]");
            std::process::exit(64);
        }
    };
    let title = args.get(2).map_or("Answer latency", String::as_str);
    if let Err(e) = read(input).and_then(|rows| draw(&rows, output, title)) {
        eprintln!("chart: {e}");
        std::process::exit(1);
    }
}
