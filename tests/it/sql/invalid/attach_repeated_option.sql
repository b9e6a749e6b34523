ATTACH './w' AS lake (TYPE iceberg, warehouse 'a', WAREHOUSE 'b');
