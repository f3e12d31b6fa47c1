//! A run rendered: the sections in order, and the files written.

use super::{analysis, combined, sections};
use crate::capacity::findings::{findings, isolated_levels};
use crate::capacity::record::Run;
use crate::config::search::SearchMode;
use std::fmt;

/// A rendered report: the Markdown text and the charts it links, by file name.
#[derive(Debug, Clone)]
pub struct Report {
    pub markdown: String,
    pub charts: Vec<(String, String)>,
}

/// Renders a run.
pub fn render(run: &Run) -> Report {
    let mut report = Report {
        markdown: String::new(),
        charts: Vec::new(),
    };
    // Writing into a String cannot fail.
    let _ = write_report(&mut report, run);
    report
}

fn write_report(report: &mut Report, run: &Run) -> fmt::Result {
    let md = &mut report.markdown;
    sections::header(md, run)?;
    let found = findings(run);
    sections::summary(md, run, &found)?;
    if run.record.search.mode == SearchMode::Matrix {
        combined::section(md, &mut report.charts, run)?;
    } else {
        let notes: Vec<Vec<String>> = found
            .iter()
            .map(|f| analysis::bottlenecks(&isolated_levels(run, &f.scenario), run.record.cpus, f))
            .collect();
        sections::primary_bottlenecks(md, &found, &notes)?;
        for (i, s) in run.record.search.scenarios.iter().enumerate() {
            let (Some(f), Some(n)) = (found.get(i), notes.get(i)) else {
                continue;
            };
            sections::scenario(md, &mut report.charts, run, i, &s.name, f, n)?;
        }
    }
    sections::all_levels(md, run)
}

/// Writes `report.md` and the charts into `dir`; returns the files written.
pub fn write(report: &Report, dir: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut out = Vec::new();
    let p = dir.join("report.md");
    std::fs::write(&p, &report.markdown)?;
    out.push(p);
    for (name, svg) in &report.charts {
        let p = dir.join(name);
        std::fs::write(&p, svg)?;
        out.push(p);
    }
    Ok(out)
}
