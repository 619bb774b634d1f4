//! The LogQL syntax tree. `Display` prints a canonical form that parses back
//! to the same tree: matchers in written order joined by `, `, a space
//! around pipes, `[range]` right after the pipeline, grouping after a range
//! aggregation and before the operand of a vector aggregation, and only the
//! parentheses that precedence needs.

use std::fmt;

use regex::Regex;
use skopos_model::{MatchOp, Matcher};

use crate::parsers::Pattern;
use crate::template::Template;
use crate::units::{format_duration, format_number, go_quote};

#[derive(Debug, Clone)]
pub enum Expr {
    /// A log query: streams of lines.
    Log(LogExpr),
    RangeAgg(RangeAgg),
    VectorAgg(VectorAgg),
    Binary(Box<BinaryExpr>),
    /// A number literal (a scalar).
    Literal(f64),
    /// `vector(1)`: a one-element vector with no labels.
    Vector(f64),
    LabelReplace(Box<LabelReplace>),
}

/// `label_replace(v, "dst", "replacement", "src", "regex")`.
#[derive(Debug, Clone)]
pub struct LabelReplace {
    pub expr: Expr,
    pub dst: String,
    pub replacement: String,
    pub src: String,
    /// As written.
    pub regex_src: String,
    /// Anchored at both ends.
    pub regex: Regex,
}

impl Expr {
    pub fn is_log(&self) -> bool {
        matches!(self, Expr::Log(_))
    }
}

/// A stream selector and its pipeline.
#[derive(Debug, Clone)]
pub struct LogExpr {
    pub matchers: Vec<Matcher>,
    pub stages: Vec<Stage>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineOp {
    /// `|=`
    Contains,
    /// `!=`
    NotContains,
    /// `|~`
    Match,
    /// `!~`
    NotMatch,
    /// `|>`: the line matches a pattern (`<_> error <_>`).
    Pattern,
    /// `!>`
    NotPattern,
}

/// A line filter; several values are its `or` form (`|= "a" or "b"`).
#[derive(Debug, Clone)]
pub struct LineFilter {
    pub op: LineOp,
    pub values: Vec<String>,
    /// Compiled (unanchored) for `|~` and `!~`.
    pub regexes: Vec<Regex>,
    /// Parsed for `|>` and `!>`.
    pub patterns: Vec<Pattern>,
}

impl LineFilter {
    /// Whether the line passes. A positive `or` filter needs any value; a
    /// negative one excludes a line holding any of them.
    pub fn matches(&self, line: &str) -> bool {
        match self.op {
            LineOp::Contains => self.values.iter().any(|v| line.contains(v.as_str())),
            LineOp::NotContains => !self.values.iter().any(|v| line.contains(v.as_str())),
            LineOp::Match => self.regexes.iter().any(|r| r.is_match(line)),
            LineOp::NotMatch => !self.regexes.iter().any(|r| r.is_match(line)),
            LineOp::Pattern => self.patterns.iter().any(|p| p.test(line)),
            LineOp::NotPattern => !self.patterns.iter().any(|p| p.test(line)),
        }
    }
}

#[derive(Debug, Clone)]
pub enum Stage {
    LineFilter(LineFilter),
    /// `| json` (no extractions: every field) or `| json a="x.y"`.
    Json(Vec<Extraction>),
    Logfmt {
        strict: bool,
        keep_empty: bool,
        params: Vec<Extraction>,
    },
    Regexp {
        src: String,
        re: Regex,
    },
    Pattern {
        src: String,
        pattern: Pattern,
    },
    Unpack,
    LabelFilter(LabelFilter),
    LineFormat(Template),
    LabelFormat(Vec<LabelFmt>),
    Drop(Vec<LabelSel>),
    Keep(Vec<LabelSel>),
    Decolorize,
}

impl Stage {
    /// Whether the stage rewrites the line (so line filters after it no
    /// longer see what the store indexed).
    pub fn changes_line(&self) -> bool {
        matches!(
            self,
            Stage::LineFormat(_) | Stage::Unpack | Stage::Decolorize
        )
    }
}

/// One `name="expression"` of a `json` or `logfmt` stage.
#[derive(Debug, Clone)]
pub struct Extraction {
    pub name: String,
    /// As written (for printing).
    pub expr: String,
    pub path: Vec<PathPart>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PathPart {
    Key(String),
    Index(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
        }
    }

    pub fn holds<T: PartialOrd>(self, a: T, b: T) -> bool {
        match self {
            CmpOp::Eq => a == b,
            CmpOp::Ne => a != b,
            CmpOp::Gt => a > b,
            CmpOp::Ge => a >= b,
            CmpOp::Lt => a < b,
            CmpOp::Le => a <= b,
        }
    }
}

#[derive(Debug, Clone)]
pub enum LabelFilter {
    /// `name="v"`, `name=~"re"` … on the label's text (absent is empty).
    Str(Matcher),
    Num {
        name: String,
        op: CmpOp,
        value: f64,
    },
    Duration {
        name: String,
        op: CmpOp,
        /// Nanoseconds.
        value: i64,
    },
    Bytes {
        name: String,
        op: CmpOp,
        value: u64,
    },
    And(Box<LabelFilter>, Box<LabelFilter>),
    Or(Box<LabelFilter>, Box<LabelFilter>),
}

#[derive(Debug, Clone)]
pub enum LabelFmt {
    /// `dst=src`: moves a label.
    Rename { dst: String, src: String },
    /// `dst="{{...}}"`.
    Template { dst: String, tpl: Template },
}

/// A label of `drop`/`keep`, optionally only when its value matches.
#[derive(Debug, Clone)]
pub struct LabelSel {
    pub name: String,
    pub matcher: Option<Matcher>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    Float,
    Duration,
    /// `duration_seconds(x)`, a synonym of `duration(x)`.
    DurationSeconds,
    Bytes,
}

/// `| unwrap x` and the label filters written after it.
#[derive(Debug, Clone)]
pub struct Unwrap {
    pub label: String,
    pub conv: Conversion,
    pub post_filters: Vec<LabelFilter>,
}

/// The operand of a range aggregation: `{..} | ..  [5m] offset 1h`.
#[derive(Debug, Clone)]
pub struct LogRange {
    pub log: LogExpr,
    pub unwrap: Option<Unwrap>,
    /// Nanoseconds.
    pub range: i64,
    /// Nanoseconds.
    pub offset: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeOp {
    Rate,
    CountOverTime,
    BytesRate,
    BytesOverTime,
    AbsentOverTime,
    SumOverTime,
    AvgOverTime,
    MinOverTime,
    MaxOverTime,
    FirstOverTime,
    LastOverTime,
    StddevOverTime,
    StdvarOverTime,
    QuantileOverTime,
    RateCounter,
}

impl RangeOp {
    pub const ALL: [RangeOp; 15] = [
        RangeOp::Rate,
        RangeOp::CountOverTime,
        RangeOp::BytesRate,
        RangeOp::BytesOverTime,
        RangeOp::AbsentOverTime,
        RangeOp::SumOverTime,
        RangeOp::AvgOverTime,
        RangeOp::MinOverTime,
        RangeOp::MaxOverTime,
        RangeOp::FirstOverTime,
        RangeOp::LastOverTime,
        RangeOp::StddevOverTime,
        RangeOp::StdvarOverTime,
        RangeOp::QuantileOverTime,
        RangeOp::RateCounter,
    ];

    pub fn name(self) -> &'static str {
        match self {
            RangeOp::Rate => "rate",
            RangeOp::CountOverTime => "count_over_time",
            RangeOp::BytesRate => "bytes_rate",
            RangeOp::BytesOverTime => "bytes_over_time",
            RangeOp::AbsentOverTime => "absent_over_time",
            RangeOp::SumOverTime => "sum_over_time",
            RangeOp::AvgOverTime => "avg_over_time",
            RangeOp::MinOverTime => "min_over_time",
            RangeOp::MaxOverTime => "max_over_time",
            RangeOp::FirstOverTime => "first_over_time",
            RangeOp::LastOverTime => "last_over_time",
            RangeOp::StddevOverTime => "stddev_over_time",
            RangeOp::StdvarOverTime => "stdvar_over_time",
            RangeOp::QuantileOverTime => "quantile_over_time",
            RangeOp::RateCounter => "rate_counter",
        }
    }

    pub fn from_name(s: &str) -> Option<RangeOp> {
        RangeOp::ALL.into_iter().find(|op| op.name() == s)
    }

    /// Operations that work on unwrapped values (and need `| unwrap`);
    /// `rate` and `absent_over_time` work either way.
    pub fn needs_unwrap(self) -> bool {
        !matches!(
            self,
            RangeOp::Rate
                | RangeOp::CountOverTime
                | RangeOp::BytesRate
                | RangeOp::BytesOverTime
                | RangeOp::AbsentOverTime
        )
    }

    /// Whether `by`/`without` may follow the aggregation (Loki allows it on
    /// the unwrapped aggregations that do not sum).
    pub fn allows_grouping(self) -> bool {
        matches!(
            self,
            RangeOp::AvgOverTime
                | RangeOp::MinOverTime
                | RangeOp::MaxOverTime
                | RangeOp::FirstOverTime
                | RangeOp::LastOverTime
                | RangeOp::StddevOverTime
                | RangeOp::StdvarOverTime
                | RangeOp::QuantileOverTime
        )
    }
}

#[derive(Debug, Clone)]
pub struct Grouping {
    pub without: bool,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct RangeAgg {
    pub op: RangeOp,
    /// The `φ` of `quantile_over_time`.
    pub param: Option<f64>,
    pub range: LogRange,
    pub grouping: Option<Grouping>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VecOp {
    Sum,
    Avg,
    Min,
    Max,
    Count,
    Stddev,
    Stdvar,
    Topk,
    Bottomk,
    Sort,
    SortDesc,
}

impl VecOp {
    pub fn name(self) -> &'static str {
        match self {
            VecOp::Sum => "sum",
            VecOp::Avg => "avg",
            VecOp::Min => "min",
            VecOp::Max => "max",
            VecOp::Count => "count",
            VecOp::Stddev => "stddev",
            VecOp::Stdvar => "stdvar",
            VecOp::Topk => "topk",
            VecOp::Bottomk => "bottomk",
            VecOp::Sort => "sort",
            VecOp::SortDesc => "sort_desc",
        }
    }

    pub fn from_name(s: &str) -> Option<VecOp> {
        use VecOp::*;
        [
            Sum, Avg, Min, Max, Count, Stddev, Stdvar, Topk, Bottomk, Sort, SortDesc,
        ]
        .into_iter()
        .find(|op| op.name() == s)
    }
}

#[derive(Debug, Clone)]
pub struct VectorAgg {
    pub op: VecOp,
    /// The `k` of `topk`/`bottomk`.
    pub param: Option<f64>,
    pub grouping: Option<Grouping>,
    pub expr: Box<Expr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    And,
    Or,
    Unless,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Pow => "^",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::And => "and",
            BinOp::Or => "or",
            BinOp::Unless => "unless",
        }
    }

    pub fn precedence(self) -> u8 {
        match self {
            BinOp::Or => 1,
            BinOp::And | BinOp::Unless => 2,
            BinOp::Eq | BinOp::Ne | BinOp::Gt | BinOp::Ge | BinOp::Lt | BinOp::Le => 3,
            BinOp::Add | BinOp::Sub => 4,
            BinOp::Mul | BinOp::Div | BinOp::Mod => 5,
            BinOp::Pow => 6,
        }
    }

    pub fn is_comparison(self) -> bool {
        self.precedence() == 3
    }

    pub fn is_set(self) -> bool {
        matches!(self, BinOp::And | BinOp::Or | BinOp::Unless)
    }
}

/// `on(..)` / `ignoring(..)`, optionally with `group_left`/`group_right`.
#[derive(Debug, Clone)]
pub struct VectorMatching {
    pub on: bool,
    pub labels: Vec<String>,
    pub group: Option<GroupModifier>,
}

/// `group_left(..)` (`left`) or `group_right(..)`: which side has many
/// series per match, and the labels to copy from the other side.
#[derive(Debug, Clone)]
pub struct GroupModifier {
    pub left: bool,
    pub include: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct BinaryExpr {
    pub op: BinOp,
    pub return_bool: bool,
    pub matching: Option<VectorMatching>,
    pub lhs: Expr,
    pub rhs: Expr,
}

// ---------------------------------------------------------------- Display

fn write_list(f: &mut fmt::Formatter<'_>, items: &[String]) -> fmt::Result {
    write!(f, "{}", items.join(", "))
}

impl fmt::Display for Grouping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (", if self.without { "without" } else { "by" })?;
        write_list(f, &self.labels)?;
        write!(f, ")")
    }
}

fn fmt_matcher(m: &Matcher) -> String {
    let op = match m.op {
        MatchOp::Equal => "=",
        MatchOp::NotEqual => "!=",
        MatchOp::RegexMatch => "=~",
        MatchOp::RegexNoMatch => "!~",
    };
    format!("{}{}{}", m.name, op, go_quote(&m.value))
}

impl fmt::Display for LogExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms: Vec<String> = self.matchers.iter().map(fmt_matcher).collect();
        write!(f, "{{{}}}", ms.join(", "))?;
        for s in &self.stages {
            write!(f, " {s}")?;
        }
        Ok(())
    }
}

fn fmt_extractions(params: &[Extraction]) -> String {
    params
        .iter()
        .map(|e| {
            if e.expr == e.name {
                e.name.clone()
            } else {
                format!("{}={}", e.name, go_quote(&e.expr))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::LineFilter(lf) => {
                let op = match lf.op {
                    LineOp::Contains => "|=",
                    LineOp::NotContains => "!=",
                    LineOp::Match => "|~",
                    LineOp::NotMatch => "!~",
                    LineOp::Pattern => "|>",
                    LineOp::NotPattern => "!>",
                };
                let vals: Vec<String> = lf.values.iter().map(|v| go_quote(v)).collect();
                write!(f, "{op} {}", vals.join(" or "))
            }
            Stage::Json(params) if params.is_empty() => write!(f, "| json"),
            Stage::Json(params) => write!(f, "| json {}", fmt_extractions(params)),
            Stage::Logfmt {
                strict,
                keep_empty,
                params,
            } => {
                write!(f, "| logfmt")?;
                if *strict {
                    write!(f, " --strict")?;
                }
                if *keep_empty {
                    write!(f, " --keep-empty")?;
                }
                if !params.is_empty() {
                    write!(f, " {}", fmt_extractions(params))?;
                }
                Ok(())
            }
            Stage::Regexp { src, .. } => write!(f, "| regexp {}", go_quote(src)),
            Stage::Pattern { src, .. } => write!(f, "| pattern {}", go_quote(src)),
            Stage::Unpack => write!(f, "| unpack"),
            Stage::Decolorize => write!(f, "| decolorize"),
            Stage::LabelFilter(lf) => write!(f, "| {lf}"),
            Stage::LineFormat(t) => write!(f, "| line_format {}", go_quote(t.source())),
            Stage::LabelFormat(items) => {
                let parts: Vec<String> = items
                    .iter()
                    .map(|i| match i {
                        LabelFmt::Rename { dst, src } => format!("{dst}={src}"),
                        LabelFmt::Template { dst, tpl } => {
                            format!("{dst}={}", go_quote(tpl.source()))
                        }
                    })
                    .collect();
                write!(f, "| label_format {}", parts.join(", "))
            }
            Stage::Drop(sels) | Stage::Keep(sels) => {
                let word = if matches!(self, Stage::Drop(_)) {
                    "drop"
                } else {
                    "keep"
                };
                let parts: Vec<String> = sels
                    .iter()
                    .map(|s| match &s.matcher {
                        Some(m) => fmt_matcher(m),
                        None => s.name.clone(),
                    })
                    .collect();
                write!(f, "| {word} {}", parts.join(", "))
            }
        }
    }
}

impl fmt::Display for LabelFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelFilter::Str(m) => write!(f, "{}", fmt_matcher(m)),
            LabelFilter::Num { name, op, value } => {
                write!(f, "{name}{}{}", op.symbol(), format_number(*value))
            }
            LabelFilter::Duration { name, op, value } => {
                write!(f, "{name}{}{}", op.symbol(), format_duration(*value))
            }
            LabelFilter::Bytes { name, op, value } => {
                write!(f, "{name}{}{}B", op.symbol(), value)
            }
            LabelFilter::And(a, b) => {
                let side = |x: &LabelFilter| match x {
                    LabelFilter::Or(..) => format!("({x})"),
                    _ => x.to_string(),
                };
                write!(f, "{} and {}", side(a), side(b))
            }
            LabelFilter::Or(a, b) => {
                // `or` is left-associative: a right operand that is itself an `or` keeps its parentheses.
                match **b {
                    LabelFilter::Or(..) => write!(f, "{a} or ({b})"),
                    _ => write!(f, "{a} or {b}"),
                }
            }
        }
    }
}

impl fmt::Display for Unwrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.conv {
            Conversion::Float => write!(f, "| unwrap {}", self.label)?,
            Conversion::Duration => write!(f, "| unwrap duration({})", self.label)?,
            Conversion::DurationSeconds => write!(f, "| unwrap duration_seconds({})", self.label)?,
            Conversion::Bytes => write!(f, "| unwrap bytes({})", self.label)?,
        }
        for p in &self.post_filters {
            write!(f, " | {p}")?;
        }
        Ok(())
    }
}

impl fmt::Display for LogRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.log)?;
        if let Some(u) = &self.unwrap {
            write!(f, " {u}")?;
        }
        write!(f, " [{}]", format_duration(self.range))?;
        if self.offset != 0 {
            write!(f, " offset {}", format_duration(self.offset))?;
        }
        Ok(())
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Log(l) => write!(f, "{l}"),
            Expr::Literal(v) => write!(f, "{}", format_number(*v)),
            Expr::Vector(v) => write!(f, "vector({})", format_number(*v)),
            Expr::LabelReplace(l) => write!(
                f,
                "label_replace({}, {}, {}, {}, {})",
                l.expr,
                go_quote(&l.dst),
                go_quote(&l.replacement),
                go_quote(&l.src),
                go_quote(&l.regex_src)
            ),
            Expr::RangeAgg(r) => {
                write!(f, "{}(", r.op.name())?;
                if let Some(p) = r.param {
                    write!(f, "{}, ", format_number(p))?;
                }
                write!(f, "{})", r.range)?;
                if let Some(g) = &r.grouping {
                    write!(f, " {g}")?;
                }
                Ok(())
            }
            Expr::VectorAgg(v) => {
                write!(f, "{}", v.op.name())?;
                if let Some(g) = &v.grouping {
                    write!(f, " {g} ")?;
                }
                write!(f, "(")?;
                if let Some(p) = v.param {
                    write!(f, "{}, ", format_number(p))?;
                }
                write!(f, "{})", v.expr)
            }
            Expr::Binary(b) => {
                let prec = b.op.precedence();
                let right_assoc = b.op == BinOp::Pow;
                let needs = |e: &Expr, left: bool| match e {
                    Expr::Binary(c) => {
                        let cp = c.op.precedence();
                        cp < prec || (cp == prec && (left == right_assoc))
                    }
                    Expr::Literal(v) => left && right_assoc && *v < 0.0,
                    _ => false,
                };
                let side = |e: &Expr, left: bool| {
                    if needs(e, left) {
                        format!("({e})")
                    } else {
                        e.to_string()
                    }
                };
                write!(f, "{} {}", side(&b.lhs, true), b.op.symbol())?;
                if b.return_bool {
                    write!(f, " bool")?;
                }
                if let Some(m) = &b.matching {
                    write!(f, " {} (", if m.on { "on" } else { "ignoring" })?;
                    write_list(f, &m.labels)?;
                    write!(f, ")")?;
                    if let Some(g) = &m.group {
                        let word = if g.left { "group_left" } else { "group_right" };
                        write!(f, " {word} (")?;
                        write_list(f, &g.include)?;
                        write!(f, ")")?;
                    }
                }
                write!(f, " {}", side(&b.rhs, false))
            }
        }
    }
}
