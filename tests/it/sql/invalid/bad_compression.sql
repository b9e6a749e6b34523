CREATE SYNC x FROM m.d.c INTO l.n.t WITH (compression = 'brotli');
