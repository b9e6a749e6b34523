-- The example from DESIGN.md.
CREATE SYNC orders
  FROM mongo.shop.orders
  INTO lake.shop.orders
  SELECT _id, customer.name AS customer, total::DECIMAL(18,2) AS total, created_at
  WHERE status <> 'test'
  PARTITION BY day(created_at)
  WITH (flush_interval = '5s', max_batch_rows = 100000);
