-- OR REPLACE, IF NOT EXISTS, and the clauses after INTO in another order.
CREATE OR REPLACE SYNC orders FROM mongo.shop.orders INTO lake.shop.orders
  WITH (on_error = 'skip')
  PARTITION BY month(created_at)
  WHERE total > 100 AND status IN ('paid', 'shipped')
  SELECT *;

CREATE SYNC IF NOT EXISTS "Order Copy" FROM mongo."shop-eu".orders INTO lake.shop_eu."Orders";

CREATE OR REPLACE SYNC IF NOT EXISTS users FROM mongo.app.users INTO lake.app.users
  SELECT _id::VARCHAR AS id, lower(email) AS email, profile['age'] AS age, tags;
