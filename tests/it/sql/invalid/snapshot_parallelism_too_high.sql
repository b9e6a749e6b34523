CREATE SYNC x FROM m.d.c INTO l.n.t WITH (max_batch_rows = 500, snapshot_parallelism = 100);
