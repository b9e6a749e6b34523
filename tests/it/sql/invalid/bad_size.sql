CREATE SYNC x FROM m.d.c INTO l.n.t WITH (max_batch_bytes = '64 parsecs');
