CREATE SYNC x FROM m.d.c INTO l.n.t WITH (on_error = skip);
