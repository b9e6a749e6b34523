CREATE SYNC x FROM INTO lake.shop.orders;
