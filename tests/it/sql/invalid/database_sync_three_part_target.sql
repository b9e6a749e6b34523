CREATE SYNC shop FROM mongo.shop.* INTO lake.shop.orders;
