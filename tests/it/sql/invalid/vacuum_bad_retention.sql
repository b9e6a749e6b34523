VACUUM lake.shop.orders RETAIN '7 weeks';
