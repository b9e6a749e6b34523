SHOW SYNCS;
SELECT * FROM mongo.shop.users WHERE password = '${MONGO_PASSWORD}';
