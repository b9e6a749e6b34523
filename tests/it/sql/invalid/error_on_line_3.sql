-- two good statements, then a bad one
SHOW SYNCS; START SYNC orders;
CREATE SYNC orders FROM mongo.shop.orders INTO lake.shop.orders PARTITION BY day(created_at WITH (sample_size = 5);
