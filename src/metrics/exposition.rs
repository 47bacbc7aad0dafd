//! The Prometheus text exposition format, version 0.0.4: a `# HELP` and a
//! `# TYPE` line before each family's samples, label values quoted and
//! escaped, histograms as cumulative `_bucket{le="..."}` samples ending in
//! `le="+Inf"`, then `_sum` and `_count`; `\n` line endings throughout.

use super::histogram::Snapshot;
use std::fmt::{self, Write as _};

/// The `Content-Type` of a page in this format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a family's samples are.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// A metrics page being written, one family after another.
#[derive(Default)]
pub(super) struct Page {
    out: String,
}

impl Page {
    /// Starts a family: its help text and its type. Every sample written
    /// until the next family belongs to it.
    pub(super) fn family(&mut self, name: &str, kind: Kind, help: &str) {
        debug_assert!(is_name(name), "{name}");
        let _ = write!(self.out, "# HELP {name} ");
        escape(&mut self.out, help, false);
        let _ = writeln!(self.out, "\n# TYPE {name} {}", kind.as_str());
    }

    /// Writes one sample.
    pub(super) fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl fmt::Display) {
        self.series(name, labels, None);
        let _ = writeln!(self.out, " {value}");
    }

    /// Writes a histogram's samples, `name` being the family's.
    pub(super) fn histogram(&mut self, name: &str, labels: &[(&str, &str)], h: &Snapshot) {
        let bucket = format!("{name}_bucket");
        for &(bound, count) in &h.buckets {
            let le = bound.as_secs_f64().to_string();
            self.series(&bucket, labels, Some(&le));
            let _ = writeln!(self.out, " {count}");
        }
        self.series(&bucket, labels, Some("+Inf"));
        let _ = writeln!(self.out, " {}", h.count);
        self.sample(&format!("{name}_sum"), labels, h.sum.as_secs_f64());
        self.sample(&format!("{name}_count"), labels, h.count);
    }

    /// `name{label="value",...,le="LE"}`, without braces if there are no
    /// labels.
    fn series(&mut self, name: &str, labels: &[(&str, &str)], le: Option<&str>) {
        self.out.push_str(name);
        let le = le.map(|le| ("le", le));
        let mut all = labels.iter().copied().chain(le).peekable();
        if all.peek().is_none() {
            return;
        }
        self.out.push('{');
        for (i, (label, value)) in all.enumerate() {
            debug_assert!(is_name(label) && !label.contains(':'), "{label}");
            if i > 0 {
                self.out.push(',');
            }
            let _ = write!(self.out, "{label}=\"");
            escape(&mut self.out, value, true);
            self.out.push('"');
        }
        self.out.push('}');
    }

    /// The page's text.
    pub(super) fn finish(self) -> String {
        self.out
    }
}

/// Appends `s` with backslash and line feed escaped, and, in a label value,
/// the double quote.
fn escape(out: &mut String, s: &str, quoted: bool) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if quoted => out.push_str("\\\""),
            c => out.push(c),
        }
    }
}

/// A metric or label name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn is_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn families_samples_and_escaping() {
        let mut p = Page::default();
        p.family(
            "a_total",
            Kind::Counter,
            "Help with \\ and\nnewline and \"quotes\".",
        );
        p.sample("a_total", &[], 3);
        p.sample("a_total", &[("x", "q\"b\\n\nz"), ("y", "日本")], 0);
        p.family("g", Kind::Gauge, "A gauge.");
        p.sample("g", &[("k", "v")], 1.5);
        assert_eq!(
            p.finish(),
            "# HELP a_total Help with \\\\ and\\nnewline and \"quotes\".\n\
             # TYPE a_total counter\n\
             a_total 3\n\
             a_total{x=\"q\\\"b\\\\n\\nz\",y=\"日本\"} 0\n\
             # HELP g A gauge.\n\
             # TYPE g gauge\n\
             g{k=\"v\"} 1.5\n"
        );
    }

    #[test]
    fn histograms_end_in_inf_sum_and_count() {
        let snapshot = Snapshot {
            buckets: vec![(Duration::from_millis(5), 1), (Duration::from_secs(1), 3)],
            count: 4,
            sum: Duration::from_millis(2_250),
        };
        let mut p = Page::default();
        p.family("h_seconds", Kind::Histogram, "H.");
        p.histogram("h_seconds", &[("c", "PUT")], &snapshot);
        p.histogram("h_seconds", &[], &snapshot);
        assert_eq!(
            p.finish(),
            "# HELP h_seconds H.\n\
             # TYPE h_seconds histogram\n\
             h_seconds_bucket{c=\"PUT\",le=\"0.005\"} 1\n\
             h_seconds_bucket{c=\"PUT\",le=\"1\"} 3\n\
             h_seconds_bucket{c=\"PUT\",le=\"+Inf\"} 4\n\
             h_seconds_sum{c=\"PUT\"} 2.25\n\
             h_seconds_count{c=\"PUT\"} 4\n\
             h_seconds_bucket{le=\"0.005\"} 1\n\
             h_seconds_bucket{le=\"1\"} 3\n\
             h_seconds_bucket{le=\"+Inf\"} 4\n\
             h_seconds_sum 2.25\n\
             h_seconds_count 4\n"
        );
    }

    #[test]
    fn names() {
        let cases = [
            ("colorsort_uploads_total", true),
            ("_x:y9", true),
            ("", false),
            ("9a", false),
            ("a-b", false),
            ("a b", false),
        ];
        for (name, ok) in cases {
            assert_eq!(is_name(name), ok, "{name:?}");
        }
    }
}
