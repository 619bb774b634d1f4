//! Prometheus `relabel_config`: rewriting, filtering and sharding label sets.
//!
//! Semantics follow Prometheus: regular expressions are fully anchored
//! (`^(?s:regex)$`), source label values are joined with `separator`, an
//! absent label reads as the empty string, and setting a label to the empty
//! string deletes it. Configurations are validated when deserialised, so a
//! [`RelabelConfig`] that exists can always be applied.

use std::fmt;

use regex::Regex;
use serde::Deserialize;
use skopos_model::{is_valid_label_name, Labels, LabelsBuilder};

/// What a relabel step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Action {
    #[default]
    Replace,
    Keep,
    Drop,
    KeepEqual,
    DropEqual,
    HashMod,
    LabelMap,
    LabelDrop,
    LabelKeep,
    Lowercase,
    Uppercase,
}

impl Action {
    fn parse(s: &str) -> Option<Action> {
        Some(match s.to_ascii_lowercase().as_str() {
            "replace" | "" => Action::Replace,
            "keep" => Action::Keep,
            "drop" => Action::Drop,
            "keepequal" => Action::KeepEqual,
            "dropequal" => Action::DropEqual,
            "hashmod" => Action::HashMod,
            "labelmap" => Action::LabelMap,
            "labeldrop" => Action::LabelDrop,
            "labelkeep" => Action::LabelKeep,
            "lowercase" => Action::Lowercase,
            "uppercase" => Action::Uppercase,
            _ => return None,
        })
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        }
    }
}

/// A compiled, anchored relabel regex; compares by its source text.
#[derive(Clone)]
pub struct RelabelRegex {
    source: String,
    re: Regex,
}

impl RelabelRegex {
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        Ok(RelabelRegex {
            source: source.to_string(),
            re: Regex::new(&format!("^(?s:{source})$"))?,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn is_match(&self, s: &str) -> bool {
        self.re.is_match(s)
    }
}

impl PartialEq for RelabelRegex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

impl fmt::Debug for RelabelRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.source)
    }
}

const DEFAULT_REGEX: &str = "(.*)";
const DEFAULT_REPLACEMENT: &str = "$1";
const DEFAULT_SEPARATOR: &str = ";";

/// One relabel step, deserialised from YAML with Prometheus' field names.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawRelabelConfig")]
pub struct RelabelConfig {
    pub source_labels: Vec<String>,
    pub separator: String,
    pub target_label: String,
    pub regex: RelabelRegex,
    pub modulus: u64,
    pub replacement: String,
    pub action: Action,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelabelConfig {
    #[serde(default)]
    source_labels: Vec<String>,
    separator: Option<String>,
    target_label: Option<String>,
    regex: Option<String>,
    modulus: Option<u64>,
    replacement: Option<String>,
    action: Option<String>,
}

impl Default for RelabelConfig {
    fn default() -> Self {
        RelabelConfig {
            source_labels: vec![],
            separator: DEFAULT_SEPARATOR.into(),
            target_label: String::new(),
            regex: RelabelRegex::new(DEFAULT_REGEX).expect("default regex"),
            modulus: 0,
            replacement: DEFAULT_REPLACEMENT.into(),
            action: Action::Replace,
        }
    }
}

/// `name` with `$1`/`${name}` references, as the replace action allows for
/// target labels.
fn is_valid_template_label(s: &str) -> bool {
    if !s.contains('$') {
        return is_valid_label_name(s);
    }
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_${}".contains(c))
}

impl TryFrom<RawRelabelConfig> for RelabelConfig {
    type Error = String;

    fn try_from(raw: RawRelabelConfig) -> Result<Self, String> {
        let action_str = raw.action.clone().unwrap_or_default();
        let action = Action::parse(&action_str).ok_or_else(|| {
            format!(
                "unknown relabel action {action_str:?}; expected one of replace, keep, drop, keepequal, dropequal, hashmod, labelmap, labeldrop, labelkeep, lowercase, uppercase"
            )
        })?;
        let regex_src = raw.regex.clone().unwrap_or_else(|| DEFAULT_REGEX.into());
        let regex = RelabelRegex::new(&regex_src)
            .map_err(|e| format!("invalid relabel regex {regex_src:?}: {e}"))?;
        let cfg = RelabelConfig {
            source_labels: raw.source_labels,
            separator: raw.separator.unwrap_or_else(|| DEFAULT_SEPARATOR.into()),
            target_label: raw.target_label.unwrap_or_default(),
            regex,
            modulus: raw.modulus.unwrap_or(0),
            replacement: raw
                .replacement
                .unwrap_or_else(|| DEFAULT_REPLACEMENT.into()),
            action,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

impl RelabelConfig {
    /// Checks the combination of fields, with the messages Prometheus gives.
    pub fn validate(&self) -> Result<(), String> {
        let a = self.action.as_str();
        let needs_target = matches!(
            self.action,
            Action::Replace
                | Action::HashMod
                | Action::Lowercase
                | Action::Uppercase
                | Action::KeepEqual
                | Action::DropEqual
        );
        if needs_target && self.target_label.is_empty() {
            return Err(format!(
                "relabel configuration for {a} action requires 'target_label' value"
            ));
        }
        match self.action {
            Action::Replace if !is_valid_template_label(&self.target_label) => {
                return Err(format!(
                    "{:?} is invalid 'target_label' for {a} action",
                    self.target_label
                ));
            }
            Action::HashMod
            | Action::Lowercase
            | Action::Uppercase
            | Action::KeepEqual
            | Action::DropEqual
                if !is_valid_label_name(&self.target_label) =>
            {
                return Err(format!(
                    "{:?} is invalid 'target_label' for {a} action",
                    self.target_label
                ));
            }
            Action::HashMod if self.modulus == 0 => {
                return Err("relabel configuration for hashmod requires non-zero modulus".into());
            }
            Action::LabelMap if !is_valid_template_label(&self.replacement) => {
                return Err(format!(
                    "{:?} is invalid 'replacement' for {a} action",
                    self.replacement
                ));
            }
            Action::LabelDrop | Action::LabelKeep
                if !self.source_labels.is_empty()
                    || !self.target_label.is_empty()
                    || self.modulus != 0
                    || self.separator != DEFAULT_SEPARATOR
                    || self.replacement != DEFAULT_REPLACEMENT =>
            {
                return Err(format!(
                    "{a} action requires only 'regex', and no other fields"
                ));
            }
            Action::KeepEqual | Action::DropEqual
                if self.regex.as_str() != DEFAULT_REGEX
                    || self.modulus != 0
                    || self.separator != DEFAULT_SEPARATOR
                    || self.replacement != DEFAULT_REPLACEMENT =>
            {
                return Err(format!(
                    "{a} action requires only 'source_labels' and 'target_label', and no other fields"
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

/// Applies the steps in order; `None` means a keep/drop step dropped the set.
pub fn process(labels: Labels, cfgs: &[RelabelConfig]) -> Option<Labels> {
    if cfgs.is_empty() {
        return Some(labels);
    }
    let mut b = labels.builder();
    for cfg in cfgs {
        if !apply(&mut b, cfg) {
            return None;
        }
    }
    Some(b.build())
}

/// Applies one step; false means drop.
fn apply(b: &mut LabelsBuilder, cfg: &RelabelConfig) -> bool {
    let val = cfg
        .source_labels
        .iter()
        .map(|n| b.get(n).unwrap_or(""))
        .collect::<Vec<_>>()
        .join(&cfg.separator);
    match cfg.action {
        Action::Keep => return cfg.regex.is_match(&val),
        Action::Drop => return !cfg.regex.is_match(&val),
        Action::KeepEqual => return b.get(&cfg.target_label).unwrap_or("") == val,
        Action::DropEqual => return b.get(&cfg.target_label).unwrap_or("") != val,
        Action::Replace => {
            let Some(caps) = cfg.regex.re.captures(&val) else {
                return true;
            };
            let mut target = String::new();
            caps.expand(&cfg.target_label, &mut target);
            if !is_valid_label_name(&target) {
                return true;
            }
            let mut value = String::new();
            caps.expand(&cfg.replacement, &mut value);
            if value.is_empty() {
                b.delete(&target);
            } else {
                b.set(target, value);
            }
        }
        Action::Lowercase => {
            b.set(cfg.target_label.clone(), val.to_lowercase());
        }
        Action::Uppercase => {
            b.set(cfg.target_label.clone(), val.to_uppercase());
        }
        Action::HashMod => {
            // Prometheus hashes with MD5 and takes the low 8 bytes: sharding
            // must agree with Prometheus for the same config.
            use md5::Digest;
            let h = md5::Md5::digest(val.as_bytes());
            let sum = u64::from_be_bytes(h[8..16].try_into().expect("8 bytes"));
            b.set(cfg.target_label.clone(), (sum % cfg.modulus).to_string());
        }
        Action::LabelMap => {
            let current: Vec<_> = b.iter().cloned().collect();
            for l in current {
                if let Some(caps) = cfg.regex.re.captures(&l.name) {
                    let mut name = String::new();
                    caps.expand(&cfg.replacement, &mut name);
                    if is_valid_label_name(&name) {
                        b.set(name, l.value);
                    }
                }
            }
        }
        Action::LabelDrop => {
            b.retain(|l| !cfg.regex.is_match(&l.name));
        }
        Action::LabelKeep => {
            b.retain(|l| cfg.regex.is_match(&l.name));
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfgs(yaml: &str) -> Vec<RelabelConfig> {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    /// (name, config YAML, input, expected output; None = dropped)
    type Case = (
        &'static str,
        &'static str,
        &'static [(&'static str, &'static str)],
        Option<&'static [(&'static str, &'static str)]>,
    );

    const CASES: &[Case] = &[
        (
            "replace with defaults copies the joined sources",
            "- source_labels: [a, b]\n  target_label: c",
            &[("a", "x"), ("b", "y")],
            Some(&[("a", "x"), ("b", "y"), ("c", "x;y")]),
        ),
        (
            "replace with capture groups and a custom separator",
            "- source_labels: [__address__]\n  regex: '(.*):(\\d+)'\n  target_label: port\n  replacement: 'p${2}'",
            &[("__address__", "host:9100")],
            Some(&[("__address__", "host:9100"), ("port", "p9100")]),
        ),
        (
            "replace regex is anchored",
            "- source_labels: [a]\n  regex: 'b'\n  target_label: c\n  replacement: hit",
            &[("a", "abc")],
            Some(&[("a", "abc")]),
        ),
        (
            "replace with an empty result deletes the target",
            "- source_labels: [missing]\n  target_label: a",
            &[("a", "1")],
            Some(&[]),
        ),
        (
            "replace with templated target label",
            "- source_labels: [k]\n  regex: '(.+)=(.+)'\n  target_label: '$1'\n  replacement: '$2'",
            &[("k", "env=prod")],
            Some(&[("env", "prod"), ("k", "env=prod")]),
        ),
        (
            "replace with an invalid templated target does nothing",
            "- source_labels: [k]\n  regex: '(.+)'\n  target_label: '$1'",
            &[("k", "1bad")],
            Some(&[("k", "1bad")]),
        ),
        (
            "keep matching",
            "- source_labels: [job]\n  regex: 'api|web'\n  action: keep",
            &[("job", "web")],
            Some(&[("job", "web")]),
        ),
        ("keep not matching drops", "- source_labels: [job]\n  regex: api\n  action: keep", &[("job", "api2")], None),
        (
            "drop matching",
            "- source_labels: [__name__]\n  regex: 'go_.*'\n  action: drop",
            &[("__name__", "go_goroutines")],
            None,
        ),
        (
            "drop not matching keeps",
            "- source_labels: [__name__]\n  regex: 'go_.*'\n  action: drop",
            &[("__name__", "up")],
            Some(&[("__name__", "up")]),
        ),
        (
            "keepequal keeps when equal",
            "- source_labels: [a]\n  target_label: b\n  action: keepequal",
            &[("a", "1"), ("b", "1")],
            Some(&[("a", "1"), ("b", "1")]),
        ),
        ("keepequal drops when different", "- source_labels: [a]\n  target_label: b\n  action: keepequal", &[("a", "1"), ("b", "2")], None),
        ("dropequal drops when equal", "- source_labels: [a]\n  target_label: b\n  action: dropequal", &[("a", "1"), ("b", "1")], None),
        (
            "hashmod matches Prometheus' md5 sharding (value from Prometheus' own test)",
            "- source_labels: [c]\n  target_label: d\n  modulus: 1000\n  action: hashmod",
            &[("c", "baz")],
            Some(&[("c", "baz"), ("d", "976")]),
        ),
        (
            "labelmap copies matching label names",
            "- regex: '__meta_kubernetes_pod_label_(.+)'\n  action: labelmap",
            &[("__meta_kubernetes_pod_label_app", "x"), ("other", "y")],
            Some(&[("__meta_kubernetes_pod_label_app", "x"), ("app", "x"), ("other", "y")]),
        ),
        (
            "labeldrop removes matching names",
            "- regex: 'tmp_.*'\n  action: labeldrop",
            &[("tmp_a", "1"), ("keep", "2")],
            Some(&[("keep", "2")]),
        ),
        (
            "labelkeep keeps only matching names",
            "- regex: '__name__|job'\n  action: labelkeep",
            &[("__name__", "m"), ("job", "j"), ("x", "1")],
            Some(&[("__name__", "m"), ("job", "j")]),
        ),
        (
            "lowercase and uppercase",
            "- source_labels: [a]\n  target_label: lo\n  action: lowercase\n- source_labels: [a]\n  target_label: up\n  action: UpperCase",
            &[("a", "MiXeD")],
            Some(&[("a", "MiXeD"), ("lo", "mixed"), ("up", "MIXED")]),
        ),
        (
            "steps apply in order",
            "- source_labels: [a]\n  target_label: b\n- source_labels: [b]\n  regex: x\n  action: keep",
            &[("a", "x")],
            Some(&[("a", "x"), ("b", "x")]),
        ),
        (
            "dot matches newline",
            "- source_labels: [a]\n  regex: 'x.y'\n  action: keep",
            &[("a", "x\ny")],
            Some(&[("a", "x\ny")]),
        ),
    ];

    #[test]
    fn relabel_cases() {
        for (name, yaml, input, expected) in CASES {
            let got = process(l(input), &cfgs(yaml));
            let expected = expected.map(l);
            assert_eq!(got, expected, "case {name:?}");
        }
    }

    #[test]
    fn invalid_configs_are_rejected_with_a_reason() {
        let err = |yaml: &str| {
            serde_yaml_ng::from_str::<Vec<RelabelConfig>>(yaml)
                .unwrap_err()
                .to_string()
        };
        assert!(err("- action: bogus").contains("unknown relabel action \"bogus\""));
        assert!(err("- source_labels: [a]\n  regex: '('").contains("invalid relabel regex"));
        assert!(err("- source_labels: [a]").contains("requires 'target_label'"));
        assert!(
            err("- source_labels: [a]\n  target_label: s\n  action: hashmod")
                .contains("non-zero modulus")
        );
        assert!(err("- source_labels: [a]\n  regex: x\n  action: labeldrop")
            .contains("requires only 'regex'"));
        assert!(err("- source_labels: [a]\n  target_label: 1x").contains("invalid 'target_label'"));
        assert!(
            err("- source_labels: [a]\n  target_label: b\n  regex: x\n  action: keepequal")
                .contains("keepequal")
        );
        assert!(err("- sourcelabels: [a]").contains("unknown field"));
    }

    #[test]
    fn defaults_match_prometheus() {
        let c = &cfgs("- target_label: a")[0];
        assert_eq!(c.separator, ";");
        assert_eq!(c.regex.as_str(), "(.*)");
        assert_eq!(c.replacement, "$1");
        assert_eq!(c.action, Action::Replace);
        assert_eq!(process(l(&[("x", "1")]), &[]), Some(l(&[("x", "1")])));
    }
}
