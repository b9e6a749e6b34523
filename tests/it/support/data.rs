//! Generated order documents: nested customer, an items array, a Decimal128 total, a date and an
//! ObjectId `_id`, deterministic for a given seed so tests can compute expected values.

use std::str::FromStr;

use bson::oid::ObjectId;
use bson::{Bson, DateTime, Decimal128, Document, doc};

/// Order statuses, in the proportions the generator uses.
pub const STATUSES: [&str; 4] = ["paid", "pending", "shipped", "test"];
const CITIES: [&str; 5] = ["Lisbon", "Oslo", "Quito", "Kyoto", "Accra"];

/// A small deterministic generator (SplitMix64), so no test depends on a random crate.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    /// The next value in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

/// The `i`-th order of a run with generator `rng`.
pub fn order(i: u64, rng: &mut Rng) -> Document {
    let mut id = [0u8; 12];
    id[..4].copy_from_slice(&0x6500_0000u32.to_be_bytes());
    id[4..].copy_from_slice(&i.to_be_bytes());
    let items: Vec<Bson> = (0..1 + rng.below(4))
        .map(|k| {
            Bson::Document(doc! {
                "sku": format!("SKU-{:04}", rng.below(5000)),
                "qty": 1 + rng.below(5) as i32,
                "price": (100 + rng.below(10_000)) as f64 / 100.0 + k as f64,
            })
        })
        .collect();
    let cents = 100 + rng.below(100_000);
    let total =
        Decimal128::from_str(&format!("{}.{:02}", cents / 100, cents % 100)).expect("decimal");
    let city = CITIES[rng.below(CITIES.len() as u64) as usize];
    doc! {
        "_id": ObjectId::from_bytes(id),
        "status": STATUSES[rng.below(STATUSES.len() as u64) as usize],
        "customer": {
            "name": format!("Customer {}", rng.below(1000)),
            "email": format!("c{i}@example.com"),
            "address": { "city": city, "zip": format!("{:05}", rng.below(99_999)) },
        },
        "items": items,
        "total": total,
        "created_at": DateTime::from_millis(1_700_000_000_000 + (i as i64) * 60_000),
        "priority": rng.below(3) as i32,
    }
}

/// `n` orders from seed `seed`.
pub fn orders(n: u64, seed: u64) -> Vec<Document> {
    let mut rng = Rng::new(seed);
    (0..n).map(|i| order(i, &mut rng)).collect()
}

/// Inserts `docs` into `db.collection` on the test server.
pub async fn load(db: &str, collection: &str, docs: &[Document]) {
    let client = super::client().await;
    let coll = client.database(db).collection::<Document>(collection);
    for chunk in docs.chunks(1000) {
        coll.insert_many(chunk).await.expect("insert test documents");
    }
}
