//! The two exposition formats of `/metrics`, chosen by the request's `Accept`:
//! OpenMetrics 1.0 (what prometheus-client encodes) and the Prometheus text format 0.0.4,
//! derived from it.
//!
//! Why a conversion: prometheus-client 0.25 encodes only OpenMetrics (its Prometheus text
//! encoder is an open request, prometheus/client_rust#51 and #293). The two differ in
//! little that we use: a counter's `# HELP` / `# TYPE` name carries `_total` like its
//! samples (else promtool and Grafana find no help for them), there is no `# UNIT` and no
//! `# EOF`, `info` is a gauge and `unknown` is `untyped`. Exemplars and `_created`
//! samples, which we never emit, are dropped.

use std::collections::HashSet;

/// An exposition format of `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text, ending in `# EOF`.
    OpenMetrics,
    /// The Prometheus text format 0.0.4.
    Text,
}

impl Format {
    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }

    /// The format a request's `Accept` header asks for: OpenMetrics when it names
    /// `application/openmetrics-text` with a quality at least that of any text type it
    /// accepts (`text/plain`, `text/*`, `*/*`); the text format otherwise, and when there
    /// is no header (the Prometheus convention).
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let (mut om, mut text) = (0.0_f32, 0.0_f32);
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or("").to_ascii_lowercase();
            let q = parts
                .filter_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
                .find_map(|v| v.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            match media.as_str() {
                "application/openmetrics-text" => om = om.max(q),
                "text/plain" | "text/*" | "*/*" => text = text.max(q),
                _ => {}
            }
        }
        if om > 0.0 && om >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// The Prometheus text format (0.0.4) of an OpenMetrics exposition.
pub fn openmetrics_to_text(om: &str) -> String {
    // Families by type, from their `# TYPE` lines (which precede their samples).
    let (mut counters, mut infos) = (HashSet::new(), HashSet::new());
    for line in om.lines() {
        if let Some((name, kind)) = descriptor(line, "# TYPE ") {
            match kind.trim() {
                "counter" => counters.insert(name),
                "info" => infos.insert(name),
                _ => false,
            };
        }
    }
    let mut out = String::with_capacity(om.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some((name, help)) = descriptor(line, "# HELP ") {
            let suffix = if counters.contains(name) {
                "_total"
            } else if infos.contains(name) {
                "_info"
            } else {
                ""
            };
            out.push_str(&format!("# HELP {name}{suffix} {help}\n"));
            continue;
        }
        if let Some((name, kind)) = descriptor(line, "# TYPE ") {
            let (name, kind) = match kind.trim() {
                "counter" => (format!("{name}_total"), "counter"),
                "info" => (format!("{name}_info"), "gauge"),
                "stateset" => (name.to_owned(), "gauge"),
                "gaugehistogram" => (name.to_owned(), "histogram"),
                "unknown" => (name.to_owned(), "untyped"),
                other => (name.to_owned(), other),
            };
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let series_name = line.split(['{', ' ']).next().unwrap_or("");
        if series_name
            .strip_suffix("_created")
            .is_some_and(|f| counters.contains(f))
        {
            continue;
        }
        // An exemplar follows ` # ` after the value.
        let sample = line.split_once(" # ").map_or(line, |(s, _)| s);
        out.push_str(sample);
        out.push('\n');
    }
    out
}

/// `(name, rest)` of a `# HELP` / `# TYPE` line starting with `prefix`.
fn descriptor<'a>(line: &'a str, prefix: &str) -> Option<(&'a str, &'a str)> {
    let rest = line.strip_prefix(prefix)?;
    Some(rest.split_once(' ').unwrap_or((rest, "")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_prefers_text_unless_openmetrics_is_asked_for() {
        use Format::*;
        assert_eq!(Format::negotiate(None), Text);
        assert_eq!(Format::negotiate(Some("*/*")), Text);
        assert_eq!(Format::negotiate(Some("text/plain")), Text);
        assert_eq!(Format::negotiate(Some("text/plain; version=0.0.4")), Text);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text")),
            OpenMetrics
        );
        // What Prometheus 2.x sends.
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(prometheus)), OpenMetrics);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0.3, text/plain;q=0.9")),
            Text
        );
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0")),
            Text
        );
        assert_eq!(Format::negotiate(Some("application/json")), Text);
    }

    #[test]
    fn counters_take_their_total_suffix_and_units_and_eof_go() {
        let om = "\
# HELP x_frames Frames.
# TYPE x_frames counter
x_frames_total{kind=\"a\"} 3
x_frames_created{kind=\"a\"} 1700000000.0
# HELP x_age_seconds Age.
# TYPE x_age_seconds gauge
# UNIT x_age_seconds seconds
x_age_seconds 1.5
# HELP x_lat_seconds Latency.
# TYPE x_lat_seconds histogram
# UNIT x_lat_seconds seconds
x_lat_seconds_sum 0.5
x_lat_seconds_count 1
x_lat_seconds_bucket{le=\"0.1\"} 0 # {trace_id=\"1\"} 0.05
x_lat_seconds_bucket{le=\"+Inf\"} 1
# HELP x_build Build.
# TYPE x_build info
x_build_info{version=\"1\"} 1
# EOF
";
        let want = "\
# HELP x_frames_total Frames.
# TYPE x_frames_total counter
x_frames_total{kind=\"a\"} 3
# HELP x_age_seconds Age.
# TYPE x_age_seconds gauge
x_age_seconds 1.5
# HELP x_lat_seconds Latency.
# TYPE x_lat_seconds histogram
x_lat_seconds_sum 0.5
x_lat_seconds_count 1
x_lat_seconds_bucket{le=\"0.1\"} 0
x_lat_seconds_bucket{le=\"+Inf\"} 1
# HELP x_build_info Build.
# TYPE x_build_info gauge
x_build_info{version=\"1\"} 1
";
        assert_eq!(openmetrics_to_text(om), want);
    }

    #[test]
    fn a_gauge_named_like_a_counter_sample_is_left_alone() {
        let om = "# HELP a_created A.\n# TYPE a_created gauge\na_created 2\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(om),
            "# HELP a_created A.\n# TYPE a_created gauge\na_created 2\n"
        );
    }
}
