//! Writing a summary out: the JSON, a markdown table and an SVG chart.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;
use serde_json::Value;

/// Keys that are not plain figures.
const STRUCTURED: [&str; 6] = ["machine", "chart", "targets", "notes", "scenario", "reps"];

/// Write `<scenario>.json`, `<scenario>.md` and (when there is a chart) `<scenario>.svg` into `dir`.
pub fn write_all(dir: &Path, summary: &Value) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let name = summary["scenario"].as_str().unwrap_or("bench");
    std::fs::write(
        dir.join(format!("{name}.json")),
        serde_json::to_string_pretty(summary)?,
    )?;
    std::fs::write(dir.join(format!("{name}.md")), markdown(summary))?;
    let chart = &summary["chart"];
    if !chart.is_null() {
        let path = dir.join(format!("{name}.svg"));
        svg(&path, chart).with_context(|| format!("chart {}", path.display()))?;
    }
    Ok(())
}

fn cell(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// The summary as a markdown document: figures, targets, notes.
pub fn markdown(s: &Value) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# bench `{}`: {} sessions\n\nmachine: {} CPUs, {}\n\n| figure | value |\n|---|---|",
        cell(&s["scenario"]),
        cell(&s["sessions"]),
        cell(&s["machine"]["nproc"]),
        cell(&s["machine"]["cpu"]),
    );
    for (k, v) in s.as_object().into_iter().flatten() {
        if STRUCTURED.contains(&k.as_str()) || k == "sessions" {
            continue;
        }
        match v {
            Value::Object(m) => {
                for (k2, v2) in m {
                    let _ = writeln!(md, "| {k}.{k2} | {} |", cell(v2));
                }
            }
            other => {
                let _ = writeln!(md, "| {k} | {} |", cell(other));
            }
        }
    }
    let _ = writeln!(
        md,
        "\n| target | measured | limit | ratio | met |\n|---|---|---|---|---|"
    );
    for (k, t) in s["targets"].as_object().into_iter().flatten() {
        let ratio = t["ratio"].as_f64().unwrap_or(0.0);
        let _ = writeln!(
            md,
            "| {k} | {} | {} | {ratio:.2} | {} |",
            cell(&t["measured"]),
            cell(&t["target"]),
            if t["met"] == true { "yes" } else { "**no**" }
        );
    }
    if let Some(figures) = s["reps"]["figures"].as_object() {
        let _ = writeln!(
            md,
            "\n{} runs:\n\n| figure | median | min | max |\n|---|---|---|---|",
            cell(&s["reps"]["n"])
        );
        for (k, f) in figures {
            let _ = writeln!(
                md,
                "| {k} | {} | {} | {} |",
                cell(&f["median"]),
                cell(&f["min"]),
                cell(&f["max"])
            );
        }
    }
    let notes: Vec<&Value> = s["notes"].as_array().into_iter().flatten().collect();
    if !notes.is_empty() {
        md.push_str("\nNotes:\n");
        for n in notes {
            let _ = writeln!(md, "- {}", cell(n));
        }
    }
    md
}

fn points(chart: &Value) -> Vec<(f64, f64)> {
    chart["points"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
        .collect()
}

/// Draw a `series` (line) or `histogram` (bars) chart into an SVG file.
pub fn svg(path: &Path, chart: &Value) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = chart["title"].as_str().unwrap_or("");
    let (x_label, y_label) = (
        chart["x"].as_str().unwrap_or(""),
        chart["y"].as_str().unwrap_or(""),
    );
    match chart["kind"].as_str() {
        Some("histogram") => {
            let counts: Vec<u64> = chart["counts"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_u64)
                .collect();
            let width = chart["bin_width"].as_u64().unwrap_or(1);
            let x_max = width * counts.len().max(1) as u64;
            let y_max = counts.iter().copied().max().unwrap_or(1).max(1);
            let mut c = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 20))
                .margin(15)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(0u64..x_max, 0u64..y_max + y_max / 10)?;
            c.configure_mesh().x_desc(x_label).y_desc(y_label).draw()?;
            c.draw_series(counts.iter().enumerate().map(|(i, &n)| {
                let x0 = i as u64 * width;
                Rectangle::new([(x0, 0), (x0 + width, n)], BLUE.mix(0.6).filled())
            }))?;
        }
        _ => {
            let pts = points(chart);
            let x_max = pts.iter().map(|p| p.0).fold(0.1, f64::max);
            let y_max = pts.iter().map(|p| p.1).fold(1.0, f64::max);
            let mut c = ChartBuilder::on(&root)
                .caption(title, ("sans-serif", 20))
                .margin(15)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(0f64..x_max * 1.02, 0f64..y_max * 1.1)?;
            c.configure_mesh().x_desc(x_label).y_desc(y_label).draw()?;
            c.draw_series(LineSeries::new(pts, &BLUE))?;
        }
    }
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn summary(chart: Value) -> Value {
        json!({"scenario":"storm","sessions":5,"machine":{"nproc":2,"cpu":"X"},
            "reconnected_ms":2500.0,"latency_us":{"p50_us":10},
            "targets":{"reconnected_ms":{"measured":2500.0,"target":6000.0,"ratio":0.41,"met":true}},
            "notes":["a note"],"chart":chart})
    }

    #[test]
    fn markdown_has_figures_targets_and_notes() {
        let md = markdown(&summary(Value::Null));
        assert!(md.contains("| reconnected_ms | 2500.0 |"), "{md}");
        assert!(md.contains("| latency_us.p50_us | 10 |"), "{md}");
        assert!(
            md.contains("| reconnected_ms | 2500.0 | 6000.0 | 0.41 | yes |"),
            "{md}"
        );
        assert!(md.contains("- a note"));
    }

    #[test]
    fn both_chart_kinds_render() {
        let dir = std::env::temp_dir().join(format!("ccr-bench-report-{}", std::process::id()));
        let series =
            json!({"kind":"series","title":"t","x":"s","y":"n","points":[[0.0,0.0],[1.0,5.0]]});
        write_all(&dir, &summary(series)).unwrap();
        let text = std::fs::read_to_string(dir.join("storm.svg")).unwrap();
        assert!(
            text.starts_with("<svg") && text.contains("polyline"),
            "{text}"
        );
        let hist = json!({"kind":"histogram","title":"t","x":"us","y":"n","bin_width":10,"counts":[1,5,2]});
        svg(&dir.join("h.svg"), &hist).unwrap();
        let text = std::fs::read_to_string(dir.join("h.svg")).unwrap();
        assert!(text.contains("<rect"), "{text}");
        assert!(dir.join("storm.md").exists() && dir.join("storm.json").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
