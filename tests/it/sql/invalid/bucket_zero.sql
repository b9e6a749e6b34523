CREATE SYNC x FROM m.d.c INTO l.n.t PARTITION BY bucket(0, user_id);
