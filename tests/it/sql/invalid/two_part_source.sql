CREATE SYNC x FROM mongo.shop INTO lake.shop.orders;
