CREATE SYNC shop FROM mongo.shop.* INTO lake.shop SELECT _id, total;
