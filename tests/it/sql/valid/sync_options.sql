-- Every option, keys in any case or double-quoted, sizes as text or bytes.
CREATE SYNC orders FROM mongo.shop.orders INTO lake.shop.orders
WITH (
  FLUSH_INTERVAL = '500ms',
  max_batch_rows = 5000,
  max_batch_bytes = '1GiB',
  "on_error" = 'dead_letter',
  on_type_change = 'Stringify',
  sample_size = 250,
  target_file_size = 536870912,
  compression = 'snappy',
  delete_mode = 'equality',
  snapshot_parallelism = 8
);

CREATE SYNC a FROM m.d.a INTO l.n.a WITH (flush_interval = '2m', max_batch_bytes = '64MB', compression = 'lz4');
CREATE SYNC b FROM m.d.b INTO l.n.b WITH (flush_interval = '1h', target_file_size = '100 KB', compression = 'gzip', on_type_change = 'dead_letter');
CREATE SYNC c FROM m.d.c INTO l.n.c WITH (flush_interval = '90s', max_batch_bytes = 1000, compression = 'uncompressed', on_error = 'fail', delete_mode = 'position');
CREATE SYNC d FROM m.d.d INTO l.n.d WITH ();
