CREATE SYNC x FROM m.d.c INTO l.n.t SELECT a, b FROM m.d.c;
