//! Results: one [`Row`] per measured quantity, grouped per scenario, with
//! the statistics helpers (median, percentiles) and the Markdown and JSON
//! renderings. Pure data: no I/O except [`machine`] reading `/proc`.

use serde::Serialize;

use super::{Options, Size};

/// One measured quantity.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// What was measured (`relay MB/s (fake 1 GiB)`).
    pub metric: String,
    /// Median of the samples.
    pub median: f64,
    /// Low end of the spread (min, or p10 where said).
    pub low: f64,
    /// High end of the spread (max, or p90).
    pub high: f64,
    /// Number of samples.
    pub samples: usize,
    /// Baseline median measured in the same run, if any.
    pub baseline: Option<f64>,
    /// `median / baseline` (or as the row defines it).
    pub ratio: Option<f64>,
    /// The target, as text (`ratio ≥ 0.8`).
    pub target: Option<String>,
    /// Whether the target is met (None: no target).
    pub pass: Option<bool>,
}

impl Row {
    /// A row from raw samples (median and min–max).
    pub fn from_samples(metric: impl Into<String>, samples: &[f64]) -> Row {
        Row {
            metric: metric.into(),
            median: median(samples),
            low: samples.iter().copied().fold(f64::INFINITY, f64::min),
            high: samples.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            samples: samples.len(),
            baseline: None,
            ratio: None,
            target: None,
            pass: None,
        }
    }

    /// A single value.
    pub fn value(metric: impl Into<String>, value: f64) -> Row {
        Row::from_samples(metric, &[value])
    }

    /// Sets the baseline and the ratio median / baseline.
    pub fn vs(mut self, baseline: f64) -> Row {
        self.baseline = Some(baseline);
        self.ratio = (baseline != 0.0).then(|| self.median / baseline);
        self
    }

    /// Sets a target and whether it is met.
    pub fn target(mut self, text: impl Into<String>, pass: bool) -> Row {
        self.target = Some(text.into());
        self.pass = Some(pass);
        self
    }
}

/// The rows of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioReport {
    /// Scenario name.
    pub name: String,
    /// Measured rows.
    pub rows: Vec<Row>,
    /// Free-form notes (sizes, parameters).
    pub notes: Vec<String>,
    /// Wall time of the scenario.
    pub seconds: f64,
}

impl ScenarioReport {
    /// An empty report for `name`.
    pub fn new(name: &str) -> Self {
        ScenarioReport {
            name: name.to_owned(),
            rows: Vec::new(),
            notes: Vec::new(),
            seconds: 0.0,
        }
    }

    /// The scenario as a Markdown table.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "### {}\n\n| metric | median | spread (min–max) | n | baseline | ratio | target | result |\n|---|---|---|---|---|---|---|---|\n",
            self.name
        );
        for r in &self.rows {
            out.push_str(&format!(
                "| {} | {} | {}–{} | {} | {} | {} | {} | {} |\n",
                r.metric,
                num(r.median),
                num(r.low),
                num(r.high),
                r.samples,
                r.baseline.map(num).unwrap_or_default(),
                r.ratio.map(|x| format!("{x:.3}")).unwrap_or_default(),
                r.target.clone().unwrap_or_default(),
                match r.pass {
                    Some(true) => "pass",
                    Some(false) => "**miss**",
                    None => "",
                }
            ));
        }
        for n in &self.notes {
            out.push_str(&format!("\n- {n}"));
        }
        out.push('\n');
        out
    }
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `small` or `full`.
    pub size: String,
    /// Repetitions asked for.
    pub repeat: usize,
    /// When the run started (unix seconds).
    pub started_unix: u64,
    /// The machine.
    pub machine: Machine,
    /// Per scenario.
    pub scenarios: Vec<ScenarioReport>,
}

impl Report {
    /// An empty report for a run with `opts`.
    pub fn new(opts: &Options) -> Report {
        Report {
            size: match opts.size {
                Size::Small => "small".into(),
                Size::Full => "full".into(),
            },
            repeat: opts.repeat,
            started_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            machine: machine(),
            scenarios: Vec::new(),
        }
    }

    /// The whole run as Markdown.
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut out = format!(
            "Machine: {} × {}, {} memory, kernel {}; size {}, repeat {}\n\n",
            m.cpus, m.cpu_model, m.memory, m.kernel, self.size, self.repeat
        );
        for s in &self.scenarios {
            out.push_str(&s.markdown());
            out.push('\n');
        }
        out
    }
}

/// What the run ran on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: usize,
    /// CPU model from /proc/cpuinfo.
    pub cpu_model: String,
    /// MemTotal from /proc/meminfo.
    pub memory: String,
    /// Kernel release.
    pub kernel: String,
}

/// Reads the machine's description from `/proc`.
pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0))
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    Machine {
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        cpu_model,
        memory,
        kernel,
    }
}

/// Median of `xs` (0 for none).
pub fn median(xs: &[f64]) -> f64 {
    percentile(xs, 50.0)
}

/// The `p`-th percentile of `xs` (nearest rank; 0 for none).
pub fn percentile(xs: &[f64], p: f64) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mut v = xs.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

fn num(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    let a = x.abs();
    if a >= 1000.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 0.1 {
        format!("{x:.3}")
    } else {
        format!("{x:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let xs: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&xs, 50.0), 50.0);
        assert_eq!(percentile(&xs, 99.0), 99.0);
        assert_eq!(percentile(&[3.0, 1.0, 2.0], 50.0), 2.0);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn rows_compute_ratio_and_spread() {
        let r = Row::from_samples("x", &[1.0, 4.0, 2.0]).vs(4.0);
        assert_eq!((r.median, r.low, r.high), (2.0, 1.0, 4.0));
        assert_eq!(r.ratio, Some(0.5));
    }
}
