//! Order documents of about 1 KB for the benchmarks that feed misql from memory (shared by
//! `bson_arrow` and `engine_ceiling` through `#[path]`).
#![allow(dead_code)]

use std::str::FromStr;

use bson::oid::ObjectId;
use bson::raw::{RawArrayBuf, RawDocumentBuf};
use bson::{DateTime, Decimal128, rawdoc};

/// A small deterministic generator (no `rand` dependency needed for a benchmark).
pub struct Lcg(pub u64);

impl Lcg {
    /// A number below `n`.
    pub fn next(&mut self, n: u64) -> u64 {
        self.0 =
            self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

const CITIES: [&str; 5] = ["Oslo", "Lyon", "Porto", "Kraków", "Valparaíso"];
const STATUSES: [&str; 4] = ["new", "paid", "shipped", "cancelled"];

/// Order `i`: about 1 KB of BSON (nested customer, 3 to 5 items, a Decimal128 total, dates).
pub fn order(i: usize, rng: &mut Lcg) -> RawDocumentBuf {
    let mut items = RawArrayBuf::new();
    let mut cents = 0u64;
    for n in 0..3 + rng.next(3) {
        let price = (rng.next(10_000) + 100) as f64 / 100.0;
        let qty = 1 + rng.next(5) as i32;
        cents += (price * 100.0) as u64 * qty as u64;
        items.push(rawdoc! {
            "sku": format!("SKU-{:06}", rng.next(1_000_000)),
            "name": format!("Product number {} in the catalogue", rng.next(5000)),
            "qty": qty,
            "price": price,
            "line": n as i32,
        });
    }
    let created = 1_700_000_000_000 + (i as i64) * 60_000;
    rawdoc! {
        "_id": ObjectId::from_bytes({
            let mut b = [0u8; 12];
            b[4..12].copy_from_slice(&(i as u64).to_be_bytes());
            b
        }),
        "status": STATUSES[rng.next(4) as usize],
        "customer": {
            "name": format!("Customer {}", rng.next(100_000)),
            "email": format!("customer{}@example.com", rng.next(100_000)),
            "phone": format!("+47 {:08}", rng.next(100_000_000)),
            "address": {
                "street": format!("{} Long Street Name", rng.next(300)),
                "city": CITIES[rng.next(5) as usize],
                "zip": format!("{:05}", rng.next(100_000)),
                "country": "NO",
            },
        },
        "items": items,
        "total": Decimal128::from_str(&format!("{}.{:02}", cents / 100, cents % 100)).unwrap(),
        "currency": "EUR",
        "created_at": DateTime::from_millis(created),
        "updated_at": DateTime::from_millis(created + rng.next(1_000_000) as i64),
        "paid": rng.next(2) == 1,
        "discount": rng.next(30) as f64 / 100.0,
        "channel": (if rng.next(2) == 0 { "web" } else { "app" }),
        "notes": "Leave the parcel at the door, please ring twice and wait a moment.",
        "version": rng.next(10) as i64,
    }
}

/// `n` order documents, the same for every run.
pub fn orders(n: usize) -> Vec<RawDocumentBuf> {
    let mut rng = Lcg(42);
    (0..n).map(|i| order(i, &mut rng)).collect()
}
