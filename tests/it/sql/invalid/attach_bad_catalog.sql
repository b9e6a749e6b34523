ATTACH './w' AS lake (TYPE iceberg, catalog 'hive');
