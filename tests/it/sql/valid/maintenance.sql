-- Compaction and cleanup, on a table or on a sync's table.
OPTIMIZE lake.shop.orders;
OPTIMIZE lake.shop.orders WITH (target_file_size = '64MiB', min_input_files = 5);
OPTIMIZE SYNC orders;
VACUUM lake.shop.orders;
VACUUM lake.shop.orders RETAIN '7d';
VACUUM SYNC orders RETAIN '0s';
CREATE SYNC orders FROM mongo.shop.orders INTO lake.shop.orders
  WITH (auto_optimize = false, retain_snapshots = '1d', max_snapshots = 20);
