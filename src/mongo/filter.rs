//! Filter pushdown: DataFusion predicates translated to a MongoDB query document.
//!
//! The rule is that the pushed query must match a *superset* of the rows the predicate keeps:
//! DataFusion re-checks every row (filters are reported as inexact), but it cannot bring back a
//! row MongoDB did not return. A predicate is pushed only on columns whose sampled values all
//! have one comparable BSON kind, so MongoDB's type-bracketed comparison agrees with SQL's.

use std::collections::HashMap;

use bson::oid::ObjectId;
use bson::{Bson, Document, doc};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, expr::InList};

/// How a column's values compare in MongoDB, from the BSON kinds seen in the sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Only strings.
    String,
    /// Only ObjectIds (shown as hex text; literals are converted back to ObjectId).
    ObjectId,
    /// Only numbers (int, long, double, decimal): MongoDB compares them by value.
    Number,
    /// Only booleans.
    Boolean,
    /// Only dates.
    Date,
    /// Anything else (documents, arrays, mixed kinds): comparisons are not pushed.
    Other,
}

/// A translated predicate.
#[derive(Debug, Clone, PartialEq)]
pub struct Pushed {
    /// The MongoDB query document.
    pub query: Document,
    /// True when MongoDB matches exactly the rows where the SQL predicate is true (needed to
    /// push a NOT over it).
    pub exact: bool,
}

/// Translates predicates over one collection's columns.
#[derive(Debug, Clone, Default)]
pub struct FilterTranslator {
    kinds: HashMap<String, ColumnKind>,
}

impl FilterTranslator {
    /// A translator for columns of the given kinds; columns not listed are never pushed.
    pub fn new(kinds: HashMap<String, ColumnKind>) -> Self {
        Self { kinds }
    }

    /// The query for the AND of `filters`, keeping only those that translate (dropping a conjunct
    /// only widens the match). `None` when nothing translates.
    pub fn conjunction(&self, filters: &[Expr]) -> Option<Document> {
        let mut parts: Vec<Document> =
            filters.iter().filter_map(|f| self.translate(f)).map(|p| p.query).collect();
        match parts.len() {
            0 => None,
            1 => parts.pop(),
            _ => Some(doc! { "$and": parts }),
        }
    }

    /// Whether `expr` can be pushed (fully or partly).
    pub fn can_push(&self, expr: &Expr) -> bool {
        self.translate(expr).is_some()
    }

    /// Translates one predicate, or `None` when no part of it can be pushed.
    pub fn translate(&self, expr: &Expr) -> Option<Pushed> {
        match expr {
            Expr::BinaryExpr(BinaryExpr { left, op: Operator::And, right }) => {
                match (self.translate(left), self.translate(right)) {
                    (Some(l), Some(r)) => Some(Pushed {
                        query: doc! { "$and": [l.query, r.query] },
                        exact: l.exact && r.exact,
                    }),
                    (Some(one), None) | (None, Some(one)) => Some(Pushed { exact: false, ..one }),
                    (None, None) => None,
                }
            }
            Expr::BinaryExpr(BinaryExpr { left, op: Operator::Or, right }) => {
                let (l, r) = (self.translate(left)?, self.translate(right)?);
                Some(Pushed {
                    query: doc! { "$or": [l.query, r.query] },
                    exact: l.exact && r.exact,
                })
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => self.comparison(left, *op, right),
            Expr::Not(inner) => {
                let inner = self.translate(inner).filter(|p| p.exact)?;
                Some(Pushed { query: doc! { "$nor": [inner.query] }, exact: false })
            }
            Expr::Between(between) if !between.negated => {
                let (name, kind) = self.column(&between.expr)?;
                let low = literal(&between.low, kind)?;
                let high = literal(&between.high, kind)?;
                Some(Pushed { query: doc! { name: { "$gte": low, "$lte": high } }, exact: true })
            }
            Expr::InList(InList { expr, list, negated }) => {
                let (name, kind) = self.column(expr)?;
                let values = list.iter().map(|v| literal(v, kind)).collect::<Option<Vec<_>>>()?;
                let (op, exact) = if *negated { ("$nin", false) } else { ("$in", true) };
                Some(Pushed { query: doc! { name: { op: values } }, exact })
            }
            Expr::IsNull(inner) => {
                let (name, kind) = self.any_column(inner)?;
                // `{f: null}` also matches arrays holding a null: exact only for scalars.
                Some(Pushed { query: doc! { name: Bson::Null }, exact: kind != ColumnKind::Other })
            }
            Expr::IsNotNull(inner) => {
                let (name, _) = self.column(inner)?;
                Some(Pushed { query: doc! { name: { "$ne": Bson::Null } }, exact: true })
            }
            _ => None,
        }
    }

    /// `column op literal` or `literal op column`.
    fn comparison(&self, left: &Expr, op: Operator, right: &Expr) -> Option<Pushed> {
        let (column, value, op) = match (self.column(left), self.column(right)) {
            (Some(column), None) => (column, right, op),
            (None, Some(column)) => (column, left, op.swap()?),
            _ => return None,
        };
        let (name, kind) = column;
        let value = literal(value, kind)?;
        let (mql, exact) = match op {
            Operator::Eq => ("$eq", true),
            // `$ne` also matches null and missing, which SQL's `<>` drops: a superset.
            Operator::NotEq => ("$ne", false),
            Operator::Lt => ("$lt", true),
            Operator::LtEq => ("$lte", true),
            Operator::Gt => ("$gt", true),
            Operator::GtEq => ("$gte", true),
            _ => return None,
        };
        Some(Pushed { query: doc! { name: { mql: value } }, exact })
    }

    /// A plain column (possibly under a numeric widening cast) of a comparable kind.
    fn column(&self, expr: &Expr) -> Option<(String, ColumnKind)> {
        let (name, kind) = self.any_column(expr)?;
        (kind != ColumnKind::Other).then_some((name, kind))
    }

    /// A plain column of any known kind.
    fn any_column(&self, expr: &Expr) -> Option<(String, ColumnKind)> {
        let (name, cast) = match expr {
            Expr::Column(c) => (&c.name, false),
            Expr::Cast(c) if matches!(*c.expr, Expr::Column(_)) && c.data_type.is_numeric() => {
                let Expr::Column(col) = c.expr.as_ref() else { return None };
                (&col.name, true)
            }
            _ => return None,
        };
        let kind = *self.kinds.get(name)?;
        if cast && kind != ColumnKind::Number || !is_plain_field_name(name) {
            return None;
        }
        Some((name.clone(), kind))
    }
}

/// Field names MongoDB would read as paths or operators cannot be used in a query.
pub fn is_plain_field_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('.') && !name.starts_with('$')
}

/// A literal as the BSON value MongoDB compares a column of `kind` against.
fn literal(expr: &Expr, kind: ColumnKind) -> Option<Bson> {
    let Expr::Literal(value, _) = expr else { return None };
    match (kind, value) {
        (ColumnKind::String, _) => text(value).map(|s| Bson::String(s.to_string())),
        (ColumnKind::ObjectId, _) => {
            let hex = text(value)?;
            // Only lower-case hex orders the same as the ObjectId bytes.
            (hex.len() == 24 && !hex.chars().any(|c| c.is_ascii_uppercase()))
                .then(|| ObjectId::parse_str(hex).ok())
                .flatten()
                .map(Bson::ObjectId)
        }
        (ColumnKind::Boolean, ScalarValue::Boolean(Some(b))) => Some(Bson::Boolean(*b)),
        (ColumnKind::Number, _) => number(value),
        (ColumnKind::Date, _) => {
            date_millis(value).map(|ms| Bson::DateTime(bson::DateTime::from_millis(ms)))
        }
        _ => None,
    }
}

fn text(value: &ScalarValue) -> Option<&str> {
    match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s),
        _ => None,
    }
}

fn number(value: &ScalarValue) -> Option<Bson> {
    Some(match value {
        ScalarValue::Int8(Some(v)) => Bson::Int64(i64::from(*v)),
        ScalarValue::Int16(Some(v)) => Bson::Int64(i64::from(*v)),
        ScalarValue::Int32(Some(v)) => Bson::Int64(i64::from(*v)),
        ScalarValue::Int64(Some(v)) => Bson::Int64(*v),
        ScalarValue::UInt8(Some(v)) => Bson::Int64(i64::from(*v)),
        ScalarValue::UInt16(Some(v)) => Bson::Int64(i64::from(*v)),
        ScalarValue::UInt32(Some(v)) => Bson::Int64(i64::from(*v)),
        ScalarValue::UInt64(Some(v)) => Bson::Int64(i64::try_from(*v).ok()?),
        ScalarValue::Float32(Some(v)) => Bson::Double(f64::from(*v)),
        ScalarValue::Float64(Some(v)) if !v.is_nan() => Bson::Double(*v),
        _ => return None,
    })
}

/// Milliseconds since the epoch, only when the literal is a whole number of milliseconds
/// (a BSON date cannot hold more, and rounding would change the comparison).
fn date_millis(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1000),
        ScalarValue::TimestampMillisecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampMicrosecond(Some(v), _) => (v % 1000 == 0).then_some(v / 1000),
        ScalarValue::TimestampNanosecond(Some(v), _) => {
            (v % 1_000_000 == 0).then_some(v / 1_000_000)
        }
        _ => None,
    }
}
