SHOW SYNC orders;
