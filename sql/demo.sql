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
