DROP SYNC orders;
DROP SYNC IF EXISTS orders PURGE;
drop sync "Order Copy" purge;
START SYNC orders;
STOP SYNC orders;
SHOW SYNCS;
SHOW SYNC STATUS;
show sync status orders;
