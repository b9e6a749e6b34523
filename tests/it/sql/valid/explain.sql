EXPLAIN SYNC orders;
EXPLAIN CREATE SYNC orders FROM mongo.shop.orders INTO lake.shop.orders SELECT _id, total WHERE total > 0;
EXPLAIN CREATE OR REPLACE SYNC orders FROM mongo.shop.orders INTO lake.shop.orders PARTITION BY bucket(8, _id);
-- A plain EXPLAIN goes to sqlparser.
EXPLAIN SELECT count(*) FROM lake.shop.orders;
