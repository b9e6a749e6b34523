STOP orders;
