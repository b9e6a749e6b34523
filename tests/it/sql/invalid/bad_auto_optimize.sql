CREATE SYNC orders FROM mongo.shop.orders INTO lake.shop.orders WITH (auto_optimize = 'sometimes');
