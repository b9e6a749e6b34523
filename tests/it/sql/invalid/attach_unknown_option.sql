ATTACH 'http://localhost:8181' AS lake (TYPE iceberg, catalog 'rest', warehose 's3://w');
