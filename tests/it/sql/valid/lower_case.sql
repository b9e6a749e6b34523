create or replace sync s from m.d.c into l.n.t select a, b as "B" where a is not null partition by bucket(4, a) with (Flush_Interval = '1m');
attach 'x' as y (type mongodb);
explain sync s
