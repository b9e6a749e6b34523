CREATE SYNC shop FROM mongo.* INTO lake.shop;
