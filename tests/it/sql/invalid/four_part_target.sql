CREATE SYNC x FROM mongo.shop.orders INTO lake.a.b.orders;
