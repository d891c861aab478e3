//! Reading the service's `/metrics` text (OpenMetrics / Prometheus exposition) by series.

/// The value of one series (`name` with its labels, as rendered) in OpenMetrics text
/// such as the service's `/metrics` answers; `None` when it is absent or not a number.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::sample;

    #[test]
    fn a_sample_is_found_by_its_whole_series_name() {
        let text =
            "x_seconds_sum 0.5\nx_seconds_count 10\nx{kind=\"a\"} 2 1700000000\nx_bad z\n# EOF\n";
        assert_eq!(sample(text, "x_seconds_count"), Some(10.0));
        assert_eq!(sample(text, "x{kind=\"a\"}"), Some(2.0));
        assert_eq!(sample(text, "x_seconds"), None, "a prefix of another name");
        assert_eq!(sample(text, "x_bad"), None);
        assert_eq!(sample(text, "y"), None);
    }
}
