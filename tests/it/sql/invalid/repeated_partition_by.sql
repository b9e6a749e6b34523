CREATE SYNC x FROM m.d.c INTO l.n.t PARTITION BY a WITH (sample_size = 5) PARTITION BY b;
