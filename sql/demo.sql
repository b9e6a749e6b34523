-- misql demo: explore a MongoDB collection with SQL before syncing it.
-- Run with: scripts/demo.sh   (or: misql -f sql/demo.sql with MONGODB_URI set)

SHOW DATABASES;

SHOW COLLECTIONS FROM mongo.shop;

-- The schema misql infers by sampling: types, nullability, BSON types seen, presence.
DESCRIBE mongo.shop.orders;

-- Preview: nested fields, a cast, a filter pushed into the MongoDB query.
SELECT _id, customer.name, total::DECIMAL(18,2) AS total
  FROM mongo.shop.orders
 WHERE status = 'paid'
 LIMIT 5;

SELECT status, count(*) AS orders, sum(total) AS revenue
  FROM mongo.shop.orders
 GROUP BY status
 ORDER BY status;

-- What is asked of MongoDB: the pushed-down filter and projection.
EXPLAIN SELECT _id, total FROM mongo.shop.orders WHERE status = 'paid' AND priority > 1;

-- Copy the paid and shipped orders into an Iceberg table, partitioned by day.
-- (scripts/demo.sh runs this file with --once: the sync copies its snapshot, then misql exits.)
CREATE OR REPLACE SYNC orders
  FROM mongo.shop.orders
  INTO iceberg.shop.orders
  SELECT _id, customer.name AS customer, total::DECIMAL(18,2) AS total, created_at, items
  WHERE status IN ('paid', 'shipped')
  PARTITION BY day(created_at)
  WITH (max_batch_rows = 500);

SHOW SYNCS;

-- The table answers the same questions as the collection.
SELECT count(*) AS orders, sum(total) AS revenue FROM iceberg.shop.orders;
SELECT count(*) AS orders, sum(total::DECIMAL(18,2)) AS revenue
  FROM mongo.shop.orders WHERE status IN ('paid', 'shipped');
