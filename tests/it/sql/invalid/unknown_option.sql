CREATE SYNC x FROM m.d.c INTO l.n.t WITH (flush_intervl = '5s');
