CREATE SYNC x FROM m.d.c INTO l.n.t PARTITION BY truncate(-1, name);
