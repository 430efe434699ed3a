//! Prometheus exposition formats shared by the proxy's and the twin's `GET /metrics`.
//!
//! Both encode their registries as OpenMetrics text (what the `prometheus-client` crate writes);
//! [`openmetrics_to_text`] turns that into the classic Prometheus text format (version 0.0.4) for
//! scrapers that do not ask for OpenMetrics.

/// The Content-Type of the classic Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The Content-Type of OpenMetrics text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether an `Accept` header asks for OpenMetrics.
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// The classic text format of an OpenMetrics exposition: the same samples, without the `# EOF`
/// and `# UNIT` lines, and with counters described under their sample name (`foo_total`), as the
/// classic format wants.
pub fn openmetrics_to_text(om: &str) -> String {
    let counters: Vec<&str> = om
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(om.len() + 16 * counters.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let described = ["# HELP ", "# TYPE "].into_iter().find_map(|p| {
            let (name, tail) = line.strip_prefix(p)?.split_once(' ')?;
            counters.contains(&name).then_some((p, name, tail))
        });
        match described {
            Some((p, name, tail)) => {
                out.push_str(p);
                out.push_str(name);
                out.push_str("_total ");
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_take_their_sample_name() {
        let om = "# HELP a Things.\n# TYPE a counter\na_total{x=\"1\"} 3\n# HELP g G.\n# TYPE g gauge\ng 1\n# EOF\n";
        assert_eq!(
            openmetrics_to_text(om),
            "# HELP a_total Things.\n# TYPE a_total counter\na_total{x=\"1\"} 3\n# HELP g G.\n# TYPE g gauge\ng 1\n"
        );
    }
}
