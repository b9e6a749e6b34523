//! The expected side of the order syncs' comparisons (`sync_stream::SELECT`: `_id,
//! customer.name AS customer, total::DECIMAL(18,2) AS total, created_at, status` where
//! `status <> 'test'`), computed from the documents MongoDB returns through the driver — not
//! from misql's own reading of the collection, where a BSON → Arrow bug would cancel itself
//! out — and the synced table's JSON rows read as the same typed rows.

use bson::{Bson, Document, doc};
use futures::TryStreamExt;
use mongodb::Collection;
use serde_json::Value;

/// One row of the order sync's projection, typed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OrderRow {
    /// `_id`, an ObjectId as hex.
    pub id: String,
    /// `customer.name`.
    pub customer: Option<String>,
    /// `total` with exactly two decimals.
    pub total: Option<String>,
    /// `created_at`, milliseconds since the epoch.
    pub created_at: Option<i64>,
    /// `status`.
    pub status: Option<String>,
}

/// The projection of `coll` as the driver reads it, by `_id`.
pub async fn orders_in_mongo(coll: &Collection<Document>) -> Vec<OrderRow> {
    let docs: Vec<Document> = coll.find(doc! {}).await.unwrap().try_collect().await.unwrap();
    let mut rows: Vec<OrderRow> = docs
        .iter()
        .filter(|d| d.get_str("status").is_ok_and(|s| s != "test"))
        .map(order_of_document)
        .collect();
    rows.sort();
    rows
}

fn order_of_document(d: &Document) -> OrderRow {
    let id = d.get_object_id("_id").expect("an ObjectId _id").to_hex();
    let customer = d.get_document("customer").ok().and_then(|c| text(c.get("name")));
    let total = match d.get("total") {
        Some(Bson::Decimal128(total)) => Some(two_decimals(&total.to_string())),
        other => absent(other, "total"),
    };
    let created_at = match d.get("created_at") {
        Some(Bson::DateTime(at)) => Some(at.timestamp_millis()),
        other => absent(other, "created_at"),
    };
    OrderRow { id, customer, total, created_at, status: text(d.get("status")) }
}

/// A string field's value; `None` when missing or null.
fn text(value: Option<&Bson>) -> Option<String> {
    match value {
        Some(Bson::String(s)) => Some(s.clone()),
        other => absent(other, "a string field"),
    }
}

/// `None` for a missing or null value; panics on a type the order documents never hold.
fn absent<T>(value: Option<&Bson>, what: &str) -> Option<T> {
    match value {
        None | Some(Bson::Null) => None,
        Some(other) => panic!("{what}: {other:?} is no value the order documents hold"),
    }
}

/// `n` written with exactly two decimals (the orders' totals have at most two).
fn two_decimals(n: &str) -> String {
    let (whole, fraction) = n.split_once('.').unwrap_or((n, ""));
    let fraction = fraction.trim_end_matches('0');
    assert!(fraction.len() <= 2 && !n.contains(['E', 'e']), "{n} has more than two decimals");
    format!("{whole}.{fraction:0<2}")
}

/// The synced table's rows (misql's `--format json` of `SELECT *`) as typed rows, by `_id`.
pub fn orders_in_table(rows: &[Value]) -> Vec<OrderRow> {
    let mut typed: Vec<OrderRow> = rows.iter().map(order_of_json).collect();
    typed.sort();
    typed
}

fn order_of_json(row: &Value) -> OrderRow {
    let string = |f: &str| row[f].as_str().map(str::to_string);
    let total = match &row["total"] {
        Value::Null => None,
        Value::String(s) => Some(two_decimals(s)),
        other => Some(two_decimals(&other.to_string())),
    };
    let created_at = row["created_at"].as_str().map(|at| {
        let at = if at.contains(['Z', '+']) { at.to_string() } else { format!("{at}Z") };
        let parsed = bson::DateTime::parse_rfc3339_str(&at);
        parsed.unwrap_or_else(|e| panic!("created_at {at}: {e}")).timestamp_millis()
    });
    OrderRow {
        id: string("_id").unwrap_or_else(|| panic!("a row without _id: {row}")),
        customer: string("customer"),
        total,
        created_at,
        status: string("status"),
    }
}

/// Whether the table's rows equal `expected`, no key twice.
pub fn orders_match(table: &[Value], expected: &[OrderRow]) -> bool {
    orders_in_table(table) == expected
}

/// Asserts that the table's rows equal `expected` and hold no `_id` twice.
pub fn assert_orders_exact(table: &[Value], expected: &[OrderRow], after: &str) {
    let rows = orders_in_table(table);
    let mut keys: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    keys.dedup();
    assert_eq!(keys.len(), rows.len(), "duplicates after {after}");
    assert!(
        rows == expected,
        "the table differs from the collection after {after}: {}",
        differences(&rows, expected)
    );
}

/// The rows only the table holds and those only the collection holds.
fn differences(table: &[OrderRow], expected: &[OrderRow]) -> String {
    let only_table: Vec<&OrderRow> = table.iter().filter(|r| !expected.contains(r)).collect();
    let only_mongo: Vec<&OrderRow> = expected.iter().filter(|r| !table.contains(r)).collect();
    format!(
        "{} rows only in the table {only_table:?}; {} only in the collection {only_mongo:?}",
        only_table.len(),
        only_mongo.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_written_with_two_decimals() {
        assert_eq!(two_decimals("12"), "12.00");
        assert_eq!(two_decimals("12.5"), "12.50");
        assert_eq!(two_decimals("12.25"), "12.25");
        assert_eq!(two_decimals("12.250"), "12.25");
    }

    #[test]
    fn a_json_row_reads_as_the_document_it_came_from() {
        let d = doc! {
            "_id": bson::oid::ObjectId::parse_str("650000000000000000000001").unwrap(),
            "customer": { "name": "Ann" },
            "total": "12.5".parse::<bson::Decimal128>().unwrap(),
            "created_at": bson::DateTime::from_millis(1_700_000_000_000),
            "status": "paid",
        };
        let row = serde_json::json!({
            "_id": "650000000000000000000001", "customer": "Ann", "total": "12.50",
            "created_at": "2023-11-14T22:13:20", "status": "paid",
        });
        assert_eq!(order_of_json(&row), order_of_document(&d));
    }
}
