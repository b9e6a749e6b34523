CREATE SYNC x FROM m.d.c INTO l.n.t
  WHERE a > 1
  WHERE b > 2;
