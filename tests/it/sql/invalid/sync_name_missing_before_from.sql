CREATE SYNC FROM mongo.shop.orders INTO lake.shop.orders;
