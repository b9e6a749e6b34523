CREATE SYNC shop FROM mongo.shop.* EXCLUDE (orders INTO lake.shop;
