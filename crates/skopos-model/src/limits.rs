use crate::{is_valid_label_name, is_valid_metric_name, Labels, METRIC_NAME};

/// Per-series limits every write path enforces before anything is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Maximum number of series in the in-memory head.
    pub max_series: usize,
    pub max_labels_per_series: usize,
    pub max_label_name_length: usize,
    pub max_label_value_length: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_series: 5_000_000,
            max_labels_per_series: 64,
            max_label_name_length: 1024,
            max_label_value_length: 4096,
        }
    }
}

/// A label set that no write path may store. The message names the limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    #[error("series {series} has {count} labels, over the limit max_labels_per_series={limit}")]
    TooManyLabels {
        series: String,
        count: usize,
        limit: usize,
    },
    #[error("label name {name:?} is {len} bytes, over the limit max_label_name_length={limit}")]
    LabelNameTooLong {
        name: String,
        len: usize,
        limit: usize,
    },
    #[error(
        "value of label {name:?} is {len} bytes, over the limit max_label_value_length={limit}"
    )]
    LabelValueTooLong {
        name: String,
        len: usize,
        limit: usize,
    },
    #[error("invalid label name {0:?}")]
    InvalidLabelName(String),
    #[error("invalid metric name {0:?}")]
    InvalidMetricName(String),
    #[error("series has no metric name (__name__ label)")]
    MissingMetricName,
}

impl Limits {
    /// Checks one series' labels against the name grammar and the limits.
    pub fn check(&self, labels: &Labels) -> Result<(), LimitError> {
        let short = || {
            let mut s = labels.to_string();
            if s.len() > 200 {
                let mut cut = 200;
                while !s.is_char_boundary(cut) {
                    cut -= 1;
                }
                s.truncate(cut);
                s.push('…');
            }
            s
        };
        if labels.len() > self.max_labels_per_series {
            return Err(LimitError::TooManyLabels {
                series: short(),
                count: labels.len(),
                limit: self.max_labels_per_series,
            });
        }
        match labels.metric_name() {
            None => return Err(LimitError::MissingMetricName),
            Some(n) if !is_valid_metric_name(n) => {
                return Err(LimitError::InvalidMetricName(n.to_string()))
            }
            _ => {}
        }
        for l in labels {
            if l.name.len() > self.max_label_name_length {
                return Err(LimitError::LabelNameTooLong {
                    name: l.name.chars().take(64).collect(),
                    len: l.name.len(),
                    limit: self.max_label_name_length,
                });
            }
            if l.name != METRIC_NAME && !is_valid_label_name(&l.name) {
                return Err(LimitError::InvalidLabelName(l.name.clone()));
            }
            if l.value.len() > self.max_label_value_length {
                return Err(LimitError::LabelValueTooLong {
                    name: l.name.clone(),
                    len: l.value.len(),
                    limit: self.max_label_value_length,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(n: usize) -> Labels {
        let mut pairs = vec![("__name__".to_string(), "m".to_string())];
        for i in 0..n {
            pairs.push((format!("l{i}"), "v".to_string()));
        }
        Labels::from_pairs(pairs)
    }

    #[test]
    fn too_many_labels_names_the_limit() {
        let lim = Limits {
            max_labels_per_series: 3,
            ..Limits::default()
        };
        assert!(lim.check(&labels(2)).is_ok());
        let e = lim.check(&labels(3)).unwrap_err();
        assert!(e.to_string().contains("max_labels_per_series=3"), "{e}");
    }

    #[test]
    fn long_value_names_the_limit() {
        let lim = Limits {
            max_label_value_length: 4,
            ..Limits::default()
        };
        let l = Labels::from_pairs([("__name__", "m"), ("a", "12345")]);
        let e = lim.check(&l).unwrap_err();
        assert!(e.to_string().contains("max_label_value_length=4"), "{e}");
    }

    #[test]
    fn grammar_is_enforced() {
        let lim = Limits::default();
        assert_eq!(
            lim.check(&Labels::from_pairs([("a", "b")])),
            Err(LimitError::MissingMetricName)
        );
        let l = Labels::from_pairs([("__name__", "m"), ("bad-name", "b")]);
        assert_eq!(
            lim.check(&l),
            Err(LimitError::InvalidLabelName("bad-name".into()))
        );
        let l = Labels::from_pairs([("__name__", "1m")]);
        assert_eq!(
            lim.check(&l),
            Err(LimitError::InvalidMetricName("1m".into()))
        );
    }
}
