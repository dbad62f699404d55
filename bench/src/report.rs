//! The harness's results: a [`Report`] of [`Section`]s of [`Row`]s, each row a measured figure
//! beside the baseline measured in the same run and the target it is held to. Rendered as a
//! markdown table ([`Report::markdown`]), JSON (serde) and an SVG chart ([`Report::svg`]).

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::http_load::LoadReport;

/// The baseline a figure is compared with, measured in the same run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub name: String,
    pub value: f64,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    pub fn of(r: &LoadReport) -> Self {
        Self {
            p50: r.ms(50.0),
            p90: r.ms(90.0),
            p99: r.ms(99.0),
            max: r.max_ms(),
        }
    }

    /// Percentiles of a sorted sample (milliseconds); `None` when it is empty.
    pub fn of_sorted(sorted_ms: &[f64]) -> Option<Self> {
        let last = *sorted_ms.last()?;
        Some(Self {
            p50: percentile(sorted_ms, 50.0),
            p90: percentile(sorted_ms, 90.0),
            p99: percentile(sorted_ms, 99.0),
            max: last,
        })
    }
}

/// Nearest-rank percentile of a sorted, non-empty sample.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The target an issue states for a figure, and whether this run met it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Target {
    pub text: String,
    pub met: bool,
}

/// One measured figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub name: String,
    pub value: f64,
    /// `req/s`, `events/s`, `ms`, `µs/event`, `MiB`, …
    pub unit: String,
    pub baseline: Option<Baseline>,
    pub latency_ms: Option<Latency>,
    pub target: Option<Target>,
}

impl Row {
    pub fn new(name: impl Into<String>, value: f64, unit: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value,
            unit: unit.into(),
            baseline: None,
            latency_ms: None,
            target: None,
        }
    }

    pub fn baseline(mut self, name: impl Into<String>, value: f64) -> Self {
        self.baseline = Some(Baseline {
            name: name.into(),
            value,
        });
        self
    }

    pub fn latency(mut self, latency: Latency) -> Self {
        self.latency_ms = Some(latency);
        self
    }

    pub fn target(mut self, text: impl Into<String>, met: bool) -> Self {
        self.target = Some(Target {
            text: text.into(),
            met,
        });
        self
    }

    /// `value / baseline`, when there is a baseline.
    pub fn ratio(&self) -> Option<f64> {
        self.baseline
            .as_ref()
            .filter(|b| b.value > 0.0)
            .map(|b| self.value / b.value)
    }
}

/// One scenario's rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Section {
    pub title: String,
    pub rows: Vec<Row>,
    /// How the scenario ran (sizes, durations), one line.
    pub setup: String,
}

impl Section {
    pub fn new(title: impl Into<String>, setup: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            rows: Vec::new(),
            setup: setup.into(),
        }
    }

    pub fn row(mut self, row: Row) -> Self {
        self.rows.push(row);
        self
    }
}

/// Title of the section every scenario adds its peak-RSS rows to.
pub const MEMORY: &str = "6. Peak memory (RSS) under load";

/// A whole harness run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// RFC 3339, when the run started.
    pub started: String,
    /// CPU model, cores and memory of the machine.
    pub machine: String,
    /// The command line that produced it.
    pub command: String,
    pub quick: bool,
    pub sections: Vec<Section>,
}

impl Report {
    /// Add a scenario's sections; sections with a title already present (the memory section)
    /// are merged into it.
    pub fn add(&mut self, sections: Vec<Section>) {
        for s in sections {
            match self.sections.iter_mut().find(|have| have.title == s.title) {
                Some(have) => {
                    have.rows.extend(s.rows);
                    if !s.setup.is_empty() && !have.setup.contains(&s.setup) {
                        if !have.setup.is_empty() {
                            have.setup.push_str("; ");
                        }
                        have.setup.push_str(&s.setup);
                    }
                }
                None => self.sections.push(s),
            }
        }
        self.sections.sort_by(|a, b| a.title.cmp(&b.title));
    }

    /// Every row, with its section.
    pub fn rows(&self) -> impl Iterator<Item = (&Section, &Row)> {
        self.sections
            .iter()
            .flat_map(|s| s.rows.iter().map(move |r| (s, r)))
    }

    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Measured {} on {}{}, with `{}`. Every baseline was measured in the same run, on the same machine, \
             side by side with the figure it is compared with.\n",
            self.started,
            self.machine,
            if self.quick {
                " (quick mode: a smoke test of the harness, not a measurement)"
            } else {
                ""
            },
            self.command
        );
        for s in &self.sections {
            let _ = writeln!(out, "#### {}\n", s.title);
            if !s.setup.is_empty() {
                let _ = writeln!(out, "{}\n", s.setup);
            }
            out.push_str(&markdown_table(&s.rows));
            out.push('\n');
        }
        out
    }

    /// Two panels: throughput as a share of the same-run baseline, and latency percentiles
    /// on a log scale.
    pub fn svg(&self) -> String {
        svg(self)
    }
}

/// One markdown table for `rows`.
pub fn markdown_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| measurement | result | baseline (same run) | vs baseline | p50 | p90 | p99 | max | target |\n\
         |---|---:|---|---:|---:|---:|---:|---:|---|\n",
    );
    for r in rows {
        let (baseline, ratio) = match (&r.baseline, r.ratio()) {
            (Some(b), Some(x)) => (
                format!("{}: {} {}", b.name, num(b.value), r.unit),
                format!("{:.0}%", x * 100.0),
            ),
            _ => (String::new(), String::new()),
        };
        let lat = |f: fn(&Latency) -> f64| {
            r.latency_ms
                .as_ref()
                .map_or(String::new(), |l| format!("{} ms", num(f(l))))
        };
        let target = r.target.as_ref().map_or(String::new(), |t| {
            format!("{} {}", t.text, if t.met { "✔" } else { "✘ not met" })
        });
        let _ = writeln!(
            out,
            "| {} | {} {} | {baseline} | {ratio} | {} | {} | {} | {} | {target} |",
            r.name,
            num(r.value),
            r.unit,
            lat(|l| l.p50),
            lat(|l| l.p90),
            lat(|l| l.p99),
            lat(|l| l.max),
        );
    }
    out
}

/// A figure for humans: thousands separated above 1,000, two decimals below 10.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    if v.abs() >= 1000.0 {
        let s = format!("{:.0}", v.abs());
        let mut grouped = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i).is_multiple_of(3) {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if v < 0.0 {
            format!("-{grouped}")
        } else {
            grouped
        }
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('`', "")
        .replace("**", "")
}

/// A row's label in the chart: the scenario number, the size when the section names one
/// ("on 10 M events"), the name without parentheses, at most 56 characters.
fn chart_label(section: &Section, row: &Row) -> String {
    let number = section.title.split_once(' ').map_or("", |(n, _)| n);
    let size = section
        .title
        .split_once(" on ")
        .map(|(_, s)| format!(" [{}]", s.trim_end_matches(" events")))
        .unwrap_or_default();
    let mut name = String::new();
    let mut depth = 0usize;
    for c in row.name.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => name.push(c),
            _ => {}
        }
    }
    let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
    let name = name.replace(" ,", ",");
    let mut label = format!("{number}{size} {name}");
    if label.chars().count() > 56 {
        label = label.chars().take(55).collect::<String>() + "…";
    }
    label
}

fn svg(report: &Report) -> String {
    const W: f64 = 1200.0;
    const LABEL: f64 = 360.0;
    const BAR: f64 = 420.0;
    const LINE: f64 = 22.0;
    let ratios: Vec<(&Row, f64)> = report
        .rows()
        .filter_map(|(_, r)| r.ratio().map(|x| (r, x)))
        .collect();
    let latencies: Vec<(&Section, &Row, Latency)> = report
        .rows()
        .filter_map(|(s, r)| r.latency_ms.map(|l| (s, r, l)))
        .filter(|(_, _, l)| l.p50 > 0.0 && l.p99.is_finite())
        .collect();
    let top1 = 50.0;
    let top2 = top1 + ratios.len() as f64 * LINE + 80.0;
    let height = top2 + latencies.len() as f64 * LINE + 50.0;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" viewBox="0 0 {W} {height}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="10" y="20" font-size="14" font-weight="bold">Tiny Analytics benchmarks — {}</text>
<text x="10" y="{}" font-size="13" font-weight="bold">Throughput as a share of the baseline measured in the same run (line = 100%)</text>"##,
        escape(&report.started),
        top1 - 10.0
    );
    let max_ratio = ratios
        .iter()
        .map(|(_, x)| *x)
        .fold(1.0_f64, f64::max)
        .min(3.0);
    let scale = BAR / max_ratio;
    for (i, (row, x)) in ratios.iter().enumerate() {
        let y = top1 + i as f64 * LINE;
        let w = (x.min(max_ratio) * scale).max(1.0);
        let color = match &row.target {
            Some(t) if !t.met => "#d9534f",
            _ => "#4a7bd0",
        };
        let b = row
            .baseline
            .as_ref()
            .expect("rows with a ratio have a baseline");
        let _ = writeln!(
            o,
            r##"<text x="{}" y="{}" text-anchor="end">{}</text>
<rect x="{LABEL}" y="{}" width="{w:.1}" height="{}" fill="{color}"/>
<text x="{}" y="{}">{:.0}% — {} vs {} {} ({})</text>"##,
            LABEL - 8.0,
            y + 14.0,
            escape(&row.name),
            y + 3.0,
            LINE - 6.0,
            LABEL + w + 6.0,
            y + 14.0,
            x * 100.0,
            num(row.value),
            num(b.value),
            escape(&row.unit),
            escape(&b.name),
        );
    }
    let hundred = LABEL + scale;
    let _ = writeln!(
        o,
        r##"<line x1="{hundred:.1}" y1="{}" x2="{hundred:.1}" y2="{}" stroke="#333" stroke-dasharray="4 3"/>"##,
        top1 - 2.0,
        top1 + ratios.len() as f64 * LINE
    );

    // Latency: log scale from 0.01 ms to 100 s.
    let _ = writeln!(
        o,
        r##"<text x="10" y="{}" font-size="13" font-weight="bold">Latency percentiles (log scale): p50 ● p90 ◆ p99 ▲, line to max</text>"##,
        top2 - 30.0
    );
    let (lo, hi) = (0.01_f64.log10(), 100_000.0_f64.log10());
    let xpos = |ms: f64| LABEL + (ms.max(0.01).log10() - lo) / (hi - lo) * (W - LABEL - 30.0);
    for (k, label) in [
        (0.01, "10 µs"),
        (0.1, "0.1 ms"),
        (1.0, "1 ms"),
        (10.0, "10 ms"),
        (100.0, "100 ms"),
        (1000.0, "1 s"),
        (10_000.0, "10 s"),
        (100_000.0, "100 s"),
    ] {
        let x = xpos(k);
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" y1="{}" x2="{x:.1}" y2="{}" stroke="#ddd"/><text x="{x:.1}" y="{}" text-anchor="middle" fill="#666">{label}</text>"##,
            top2 - 8.0,
            top2 + latencies.len() as f64 * LINE,
            top2 - 12.0,
        );
    }
    for (i, (section, row, l)) in latencies.iter().enumerate() {
        let y = top2 + i as f64 * LINE + 11.0;
        let label = chart_label(section, row);
        let _ = writeln!(
            o,
            r##"<text x="{}" y="{}" text-anchor="end">{}</text>
<line x1="{:.1}" y1="{y}" x2="{:.1}" y2="{y}" stroke="#999"/>
<circle cx="{:.1}" cy="{y}" r="4" fill="#4a7bd0"/>
<rect x="{:.1}" y="{}" width="7" height="7" fill="#e0a030" transform="rotate(45 {:.1} {y})"/>
<path d="M {:.1} {} l 5 9 l -10 0 z" fill="#d9534f"/>"##,
            LABEL - 8.0,
            y + 4.0,
            escape(&label),
            xpos(l.p50),
            xpos(l.max),
            xpos(l.p50),
            xpos(l.p90) - 3.5,
            y - 3.5,
            xpos(l.p90),
            xpos(l.p99),
            y - 5.0,
        );
    }
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let mut r = Report {
            started: "2026-11-30T12:00:00Z".into(),
            machine: "test".into(),
            command: "ta-bench all".into(),
            ..Report::default()
        };
        r.add(vec![
            Section::new("1. Edge", "60 s").row(
                Row::new("ta-edge <collect>", 16_184.0, "req/s")
                    .baseline("null tide", 32_000.0)
                    .latency(Latency {
                        p50: 2.0,
                        p90: 4.0,
                        p99: 9.5,
                        max: 40.0,
                    })
                    .target("≥ 25,000/s", false),
            ),
            Section::new(MEMORY, "").row(Row::new("ta-edge", 70.0, "MiB")),
        ]);
        r.add(vec![Section::new(MEMORY, "").row(Row::new(
            "ta-loader",
            92.0,
            "MiB",
        ))]);
        r
    }

    #[test]
    fn sections_merge_by_title_and_sort() {
        let r = sample();
        assert_eq!(r.sections.len(), 2);
        assert_eq!(r.sections[0].title, "1. Edge");
        assert_eq!(r.sections[1].rows.len(), 2);
    }

    #[test]
    fn markdown_shows_ratio_target_and_percentiles() {
        let md = sample().markdown();
        assert!(md.contains("| ta-edge <collect> | 16,184 req/s | null tide: 32,000 req/s | 51% | 2.00 ms | 4.00 ms | 9.50 ms | 40.0 ms | ≥ 25,000/s ✘ not met |"), "{md}");
        assert!(md.contains("| ta-loader | 92.0 MiB |"), "{md}");
    }

    #[test]
    fn svg_is_well_formed_and_escaped() {
        let svg = sample().svg();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>\n"));
        assert!(svg.contains("ta-edge &lt;collect&gt;"));
        assert!(!svg.contains("<collect>"));
        assert!(svg.contains("51% — 16,184 vs 32,000 req/s (null tide)"));
        assert_eq!(svg.matches("<svg").count(), 1);
    }

    #[test]
    fn numbers_are_grouped() {
        assert_eq!(num(1234567.4), "1,234,567");
        assert_eq!(num(999.0), "999.0");
        assert_eq!(num(4.5), "4.50");
        assert_eq!(num(f64::NAN), "n/a");
    }

    #[test]
    fn chart_labels_drop_parentheses_but_keep_what_follows() {
        let s = Section::new("4. Query API on 10 M events", "");
        let r = Row::new("timeseries (day), cached (server p50 ≤ 1 ms)", 1.0, "ms");
        assert_eq!(chart_label(&s, &r), "4. [10 M] timeseries, cached");
    }
}
