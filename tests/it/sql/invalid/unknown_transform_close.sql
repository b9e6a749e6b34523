CREATE SYNC x FROM m.d.c INTO l.n.t PARTITION BY dya(created_at);
