CREATE SYNC orders FROM mongo.shop.orders SELECT _id, total;
