//! Writing the Prometheus text exposition format (0.0.4): the one renderer
//! behind the server's and the agent's `/metrics`. Label values and help
//! texts are escaped as the format requires.

use std::fmt::{Display, Write};

/// Accumulates families and samples into a text exposition.
#[derive(Debug, Default)]
pub struct TextWriter {
    out: String,
}

impl TextWriter {
    pub fn new() -> Self {
        TextWriter {
            out: String::with_capacity(8192),
        }
    }

    /// `# HELP` and `# TYPE` lines for a family (`counter`, `gauge`,
    /// `histogram`, `summary`, `untyped`).
    pub fn family(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    /// One sample line: `name{k="v",...} value`.
    pub fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"{}\"", escape_label_value(v));
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }

    pub fn finish(self) -> String {
        self.out
    }
}

/// A label value as the text format writes it: `\`, `"` and newline escaped.
pub fn escape_label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_and_samples_are_written_escaped() {
        let mut w = TextWriter::new();
        w.family("x_total", "counter", "Line one\nback\\slash.");
        w.sample("x_total", &[], 3);
        w.sample("x_total", &[("a", "q\"uo\\te\nnl"), ("b", "2")], 1.5);
        assert_eq!(
            w.finish(),
            "# HELP x_total Line one\\nback\\\\slash.\n# TYPE x_total counter\nx_total 3\nx_total{a=\"q\\\"uo\\\\te\\nnl\",b=\"2\"} 1.5\n"
        );
    }
}
