//! The TraceQL syntax tree and its canonical text.
//!
//! `Display` prints every query in one canonical form: binary operations
//! fully parenthesised, literals in their shortest unambiguous spelling,
//! intrinsics by their classic names (`name`, `rootServiceName`, ...).
//! Parsing the canonical form gives the same tree back.

use std::fmt;

/// A whole query: spanset expressions joined by spanset operators, with
/// pipeline stages.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// `{ expr }`; `{}` is `Filter(None)`, every span.
    Filter(Option<FieldExpr>),
    /// `lhs op rhs` between spansets.
    Binary {
        op: SpansetOp,
        lhs: Box<Query>,
        rhs: Box<Query>,
    },
    /// `input | stage`.
    Pipe { input: Box<Query>, stage: Stage },
}

/// Operators between spansets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpansetOp {
    /// `&&`: both sides match somewhere in the trace; the union.
    And,
    /// `||`: the union.
    Or,
    /// `>`: right-hand spans whose parent is a left-hand span.
    Child,
    /// `>>`: right-hand spans with a left-hand ancestor.
    Descendant,
    /// `<`: right-hand spans that are the parent of a left-hand span.
    Parent,
    /// `<<`: right-hand spans that are an ancestor of a left-hand span.
    Ancestor,
    /// `~`: right-hand spans with a left-hand sibling.
    Sibling,
    /// `!>`, `!>>`, `!<`, `!<<`, `!~`: right-hand spans without such a
    /// left-hand relative.
    NotChild,
    NotDescendant,
    NotParent,
    NotAncestor,
    NotSibling,
}

impl SpansetOp {
    pub fn symbol(self) -> &'static str {
        match self {
            SpansetOp::And => "&&",
            SpansetOp::Or => "||",
            SpansetOp::Child => ">",
            SpansetOp::Descendant => ">>",
            SpansetOp::Parent => "<",
            SpansetOp::Ancestor => "<<",
            SpansetOp::Sibling => "~",
            SpansetOp::NotChild => "!>",
            SpansetOp::NotDescendant => "!>>",
            SpansetOp::NotParent => "!<",
            SpansetOp::NotAncestor => "!<<",
            SpansetOp::NotSibling => "!~",
        }
    }
}

/// One pipeline stage.
#[derive(Debug, Clone, PartialEq)]
pub enum Stage {
    /// `count() > 2`, `avg(duration) >= 1s`: keeps spansets whose
    /// aggregate compares true.
    Aggregate {
        agg: Aggregate,
        op: BinOp,
        value: Static,
    },
    /// `{ expr }` as a stage: keeps the spans of each spanset that match.
    Filter(Option<FieldExpr>),
    /// `by(field, ...)`: splits each spanset into one per distinct value.
    By(Vec<FieldExpr>),
    /// `select(field, ...)`: reports these fields on the matched spans.
    Select(Vec<FieldExpr>),
    /// `coalesce()`: merges the spansets of a trace into one.
    Coalesce,
}

/// An aggregate over the spans of a spanset.
#[derive(Debug, Clone, PartialEq)]
pub enum Aggregate {
    Count,
    Avg(FieldExpr),
    Min(FieldExpr),
    Max(FieldExpr),
    Sum(FieldExpr),
}

/// An expression evaluated on one span.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldExpr {
    Static(Static),
    Attr(AttrRef),
    Intrinsic(Intrinsic),
    Binary {
        op: BinOp,
        lhs: Box<FieldExpr>,
        rhs: Box<FieldExpr>,
    },
    /// `!expr`.
    Not(Box<FieldExpr>),
    /// `-expr`.
    Neg(Box<FieldExpr>),
}

/// Operators between field expressions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Eq,
    Neq,
    Gt,
    Gte,
    Lt,
    Lte,
    Re,
    NotRe,
    And,
    Or,
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Eq => "=",
            BinOp::Neq => "!=",
            BinOp::Gt => ">",
            BinOp::Gte => ">=",
            BinOp::Lt => "<",
            BinOp::Lte => "<=",
            BinOp::Re => "=~",
            BinOp::NotRe => "!~",
            BinOp::And => "&&",
            BinOp::Or => "||",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
        }
    }

    pub fn is_comparison(self) -> bool {
        matches!(
            self,
            BinOp::Eq
                | BinOp::Neq
                | BinOp::Gt
                | BinOp::Gte
                | BinOp::Lt
                | BinOp::Lte
                | BinOp::Re
                | BinOp::NotRe
        )
    }

    pub fn is_arithmetic(self) -> bool {
        matches!(
            self,
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod
        )
    }

    /// The operator with its operands swapped (`a < b` is `b > a`).
    pub fn flipped(self) -> BinOp {
        match self {
            BinOp::Gt => BinOp::Lt,
            BinOp::Gte => BinOp::Lte,
            BinOp::Lt => BinOp::Gt,
            BinOp::Lte => BinOp::Gte,
            other => other,
        }
    }
}

/// Where an attribute is looked up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttrScope {
    /// `span.key`
    Span,
    /// `resource.key`
    Resource,
    /// `.key`: the span attribute, else the resource attribute.
    Unscoped,
}

/// An attribute reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AttrRef {
    pub scope: AttrScope,
    pub name: String,
}

/// Span and trace intrinsics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Intrinsic {
    Name,
    Status,
    StatusMessage,
    Kind,
    Duration,
    RootName,
    RootServiceName,
    TraceDuration,
    SpanId,
    TraceId,
    /// The parent's span id in hex; missing on a root span.
    ParentId,
    InstrumentationName,
    InstrumentationVersion,
}

impl Intrinsic {
    /// The canonical spelling.
    pub fn name(self) -> &'static str {
        match self {
            Intrinsic::Name => "name",
            Intrinsic::Status => "status",
            Intrinsic::StatusMessage => "statusMessage",
            Intrinsic::Kind => "kind",
            Intrinsic::Duration => "duration",
            Intrinsic::RootName => "rootName",
            Intrinsic::RootServiceName => "rootServiceName",
            Intrinsic::TraceDuration => "traceDuration",
            Intrinsic::SpanId => "span:id",
            Intrinsic::TraceId => "trace:id",
            Intrinsic::ParentId => "span:parentID",
            Intrinsic::InstrumentationName => "instrumentation:name",
            Intrinsic::InstrumentationVersion => "instrumentation:version",
        }
    }

    /// Every spelling the parser accepts, classic and scoped (`span:name`).
    pub fn from_word(w: &str) -> Option<Intrinsic> {
        Some(match w {
            "name" | "span:name" => Intrinsic::Name,
            "status" | "span:status" => Intrinsic::Status,
            "statusMessage" | "span:statusMessage" => Intrinsic::StatusMessage,
            "kind" | "span:kind" => Intrinsic::Kind,
            "duration" | "span:duration" => Intrinsic::Duration,
            "rootName" | "trace:rootName" => Intrinsic::RootName,
            "rootServiceName" | "trace:rootService" | "trace:rootServiceName" => {
                Intrinsic::RootServiceName
            }
            "traceDuration" | "trace:duration" => Intrinsic::TraceDuration,
            "span:id" => Intrinsic::SpanId,
            "trace:id" => Intrinsic::TraceId,
            "span:parentID" => Intrinsic::ParentId,
            "instrumentation:name" => Intrinsic::InstrumentationName,
            "instrumentation:version" => Intrinsic::InstrumentationVersion,
            _ => return None,
        })
    }

    /// The type of its values.
    pub fn kind(self) -> ValueType {
        match self {
            Intrinsic::Name
            | Intrinsic::StatusMessage
            | Intrinsic::RootName
            | Intrinsic::RootServiceName
            | Intrinsic::SpanId
            | Intrinsic::TraceId
            | Intrinsic::ParentId
            | Intrinsic::InstrumentationName
            | Intrinsic::InstrumentationVersion => ValueType::Str,
            Intrinsic::Status => ValueType::Status,
            Intrinsic::Kind => ValueType::Kind,
            Intrinsic::Duration | Intrinsic::TraceDuration => ValueType::Duration,
        }
    }
}

/// The static types the parser checks comparisons with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    Str,
    Int,
    Float,
    Duration,
    Bool,
    Status,
    Kind,
    Nil,
    /// An attribute or an expression over one: known only per span.
    Any,
}

impl ValueType {
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            ValueType::Int | ValueType::Float | ValueType::Duration
        )
    }
}

/// A literal.
#[derive(Debug, Clone, PartialEq)]
pub enum Static {
    Str(String),
    Int(i64),
    Float(f64),
    /// Nanoseconds.
    Duration(i64),
    Bool(bool),
    Status(skopos_model::StatusCode),
    Kind(skopos_model::SpanKind),
    Nil,
}

impl Static {
    pub fn value_type(&self) -> ValueType {
        match self {
            Static::Str(_) => ValueType::Str,
            Static::Int(_) => ValueType::Int,
            Static::Float(_) => ValueType::Float,
            Static::Duration(_) => ValueType::Duration,
            Static::Bool(_) => ValueType::Bool,
            Static::Status(_) => ValueType::Status,
            Static::Kind(_) => ValueType::Kind,
            Static::Nil => ValueType::Nil,
        }
    }
}

/// Nanoseconds as Go prints a duration's largest exact units: `1h30m`,
/// `1.5s`, `250ms`, `10us`, `7ns`.
pub fn format_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let mut rest = ns.unsigned_abs();
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    for (unit, size) in [("h", 3_600_000_000_000u64), ("m", 60_000_000_000)] {
        if rest >= size && rest.is_multiple_of(size) {
            out.push_str(&format!("{}{unit}", rest / size));
            return out;
        }
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    for (unit, size) in [
        ("s", 1_000_000_000u64),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
    ] {
        if rest >= size || size == 1 {
            let whole = rest / size;
            let frac = rest % size;
            if frac == 0 {
                out.push_str(&format!("{whole}{unit}"));
            } else {
                let digits = size.ilog10() as usize;
                let f = format!("{frac:0digits$}");
                out.push_str(&format!("{whole}.{}{unit}", f.trim_end_matches('0')));
            }
            return out;
        }
    }
    out
}

fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether an attribute name can be written without quotes.
fn plain_attr_name(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.chars()
            .all(|c| !c.is_whitespace() && !is_attr_terminator(c))
}

/// Characters that end an unquoted attribute name.
pub(crate) fn is_attr_terminator(c: char) -> bool {
    matches!(
        c,
        '{' | '}' | '(' | ')' | '=' | '~' | '!' | '<' | '>' | '&' | '|' | '^' | ',' | '"' | '`'
    )
}

impl fmt::Display for Static {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Static::Str(s) => f.write_str(&quote(s)),
            Static::Int(i) => write!(f, "{i}"),
            Static::Float(x) => {
                // Integral floats keep a `.0` so they read back as floats.
                if x.is_finite() && x.fract() == 0.0 {
                    write!(f, "{x:.1}")
                } else {
                    write!(f, "{x}")
                }
            }
            Static::Duration(ns) => f.write_str(&format_duration(*ns)),
            Static::Bool(b) => write!(f, "{b}"),
            Static::Status(s) => f.write_str(s.name()),
            Static::Kind(k) => f.write_str(k.name()),
            Static::Nil => f.write_str("nil"),
        }
    }
}

impl fmt::Display for AttrRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scope = match self.scope {
            AttrScope::Span => "span",
            AttrScope::Resource => "resource",
            AttrScope::Unscoped => "",
        };
        if plain_attr_name(&self.name) {
            write!(f, "{scope}.{}", self.name)
        } else {
            write!(f, "{scope}.{}", quote(&self.name))
        }
    }
}

impl fmt::Display for FieldExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldExpr::Static(s) => write!(f, "{s}"),
            FieldExpr::Attr(a) => write!(f, "{a}"),
            FieldExpr::Intrinsic(i) => f.write_str(i.name()),
            FieldExpr::Binary { op, lhs, rhs } => {
                write!(f, "({lhs} {} {rhs})", op.symbol())
            }
            FieldExpr::Not(e) => write!(f, "!{e}"),
            FieldExpr::Neg(e) => write!(f, "-{e}"),
        }
    }
}

fn write_filter(f: &mut fmt::Formatter<'_>, e: &Option<FieldExpr>) -> fmt::Result {
    match e {
        None => f.write_str("{ }"),
        // The outermost operation needs no parentheses inside the braces.
        Some(FieldExpr::Binary { op, lhs, rhs }) => {
            write!(f, "{{ {lhs} {} {rhs} }}", op.symbol())
        }
        Some(e) => write!(f, "{{ {e} }}"),
    }
}

fn write_fields(f: &mut fmt::Formatter<'_>, fields: &[FieldExpr]) -> fmt::Result {
    for (i, e) in fields.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{e}")?;
    }
    Ok(())
}

impl fmt::Display for Aggregate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Aggregate::Count => f.write_str("count()"),
            Aggregate::Avg(e) => write!(f, "avg({e})"),
            Aggregate::Min(e) => write!(f, "min({e})"),
            Aggregate::Max(e) => write!(f, "max({e})"),
            Aggregate::Sum(e) => write!(f, "sum({e})"),
        }
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Aggregate { agg, op, value } => write!(f, "{agg} {} {value}", op.symbol()),
            Stage::Filter(e) => write_filter(f, e),
            Stage::By(fields) => {
                f.write_str("by(")?;
                write_fields(f, fields)?;
                f.write_str(")")
            }
            Stage::Select(fields) => {
                f.write_str("select(")?;
                write_fields(f, fields)?;
                f.write_str(")")
            }
            Stage::Coalesce => f.write_str("coalesce()"),
        }
    }
}

impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Query::Filter(e) => write_filter(f, e),
            Query::Binary { op, lhs, rhs } => write!(f, "({lhs} {} {rhs})", op.symbol()),
            Query::Pipe { input, stage } => write!(f, "({input} | {stage})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::format_duration;

    #[test]
    fn durations_print_in_their_largest_exact_units() {
        assert_eq!(format_duration(1_500_000_000), "1.5s");
        assert_eq!(format_duration(100_000_000), "100ms");
        assert_eq!(format_duration(5_400_000_000_000), "1h30m");
        assert_eq!(format_duration(3_600_000_000_000), "1h");
        assert_eq!(format_duration(10_000), "10us");
        assert_eq!(format_duration(7), "7ns");
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(61_500_000_000), "1m1.5s");
    }
}
