//! The two text formats `/metrics` speaks: OpenMetrics 1.0 (what
//! prometheus-client encodes) and the Prometheus text format 0.0.4, which
//! [`to_prometheus_text`] derives from it. The scraper picks one with its
//! `Accept` header ([`Format::negotiate`]).

/// A text exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `application/openmetrics-text; version=1.0.0`.
    OpenMetrics,
    /// `text/plain; version=0.0.4` (the default).
    Prometheus,
}

impl Format {
    /// OpenMetrics when `accept` lists `application/openmetrics-text` with
    /// a non-zero quality, else the Prometheus text format.
    pub fn negotiate(accept: Option<&str>) -> Self {
        let wants_openmetrics = accept.is_some_and(|accept| {
            accept.split(',').any(|range| {
                let mut params = range.split(';').map(str::trim);
                let media = params.next().unwrap_or_default();
                media.eq_ignore_ascii_case("application/openmetrics-text")
                    && params
                        .filter_map(|p| p.split_once('='))
                        .filter(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
                        .all(|(_, q)| q.trim().parse::<f32>().is_ok_and(|q| q > 0.0))
            })
        });
        if wants_openmetrics {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }

    /// The `Content-Type` of an answer in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// Rewrites an OpenMetrics exposition as Prometheus text 0.0.4: no
/// `# EOF` and no `# UNIT`; a counter family's HELP and TYPE name its
/// `_total` series; `unknown` becomes `untyped`, `info` a gauge named
/// `_info`; exemplars and `_created` series are dropped.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    // Families by type, from their TYPE lines.
    let mut kinds = std::collections::HashMap::new();
    for line in openmetrics.lines() {
        if let Some((name, kind)) = line
            .strip_prefix("# TYPE ")
            .and_then(|rest| rest.split_once(' '))
        {
            kinds.insert(name, kind);
        }
    }
    let renamed = |name: &str| -> String {
        match kinds.get(name).copied() {
            Some("counter") => format!("{name}_total"),
            Some("info") => format!("{name}_info"),
            _ => name.to_owned(),
        }
    };
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some((name, help)) = line
            .strip_prefix("# HELP ")
            .and_then(|rest| rest.split_once(' '))
        {
            // 0.0.4 escapes only `\` and newlines in HELP.
            let help = help.replace("\\\"", "\"");
            out.push_str(&format!("# HELP {} {help}\n", renamed(name)));
        } else if let Some((name, kind)) = line
            .strip_prefix("# TYPE ")
            .and_then(|rest| rest.split_once(' '))
        {
            let kind = match kind {
                "unknown" => "untyped",
                "info" => "gauge",
                other => other,
            };
            out.push_str(&format!("# TYPE {} {kind}\n", renamed(name)));
        } else if line.starts_with('#') || line.is_empty() {
            continue;
        } else {
            let series = line.split(" # ").next().unwrap_or(line);
            let name = series.split(['{', ' ']).next().unwrap_or_default();
            let created = name
                .strip_suffix("_created")
                .is_some_and(|family| kinds.contains_key(family));
            if !created {
                out.push_str(series);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scraper_chooses_the_format() {
        let prometheus = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text; version=1.0.0")),
            Format::OpenMetrics
        );
        assert_eq!(Format::negotiate(Some("text/plain")), Format::Prometheus);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Prometheus);
        assert_eq!(Format::negotiate(None), Format::Prometheus);
        assert_eq!(
            Format::negotiate(Some("application/openmetrics-text;q=0")),
            Format::Prometheus
        );
    }

    #[test]
    fn openmetrics_becomes_prometheus_text() {
        let om = "# HELP dsg_calls Calls.\n# TYPE dsg_calls counter\ndsg_calls_total{a=\"b\"} 3 # {trace_id=\"x\"} 1.0\ndsg_calls_created{a=\"b\"} 1.7e9\n# HELP dsg_size Size.\n# TYPE dsg_size gauge\n# UNIT dsg_size bytes\ndsg_size 7\n# HELP dsg_x X.\n# TYPE dsg_x unknown\ndsg_x 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP dsg_calls_total Calls.\n# TYPE dsg_calls_total counter\ndsg_calls_total{a=\"b\"} 3\n# HELP dsg_size Size.\n# TYPE dsg_size gauge\ndsg_size 7\n# HELP dsg_x X.\n# TYPE dsg_x untyped\ndsg_x 1\n"
        );
    }
}
