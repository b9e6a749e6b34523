FROBNICATE the database;
