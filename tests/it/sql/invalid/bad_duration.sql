CREATE SYNC x FROM m.d.c INTO l.n.t WITH (flush_interval = '5 parsecs');
