SHOW SYNC STATUS orders now;
