-- The syncs of the compose example, mounted read-only at /etc/misql/syncs.sql and run by
-- `misql -f /etc/misql/syncs.sql`. `${NAME}` in a single-quoted string is replaced by the
-- environment variable NAME (compose.yaml gives misql MINIO_ROOT_USER and MINIO_ROOT_PASSWORD).
-- MongoDB is the `mongo` catalog misql attaches from MONGODB_URI, so it needs no ATTACH here.

-- The Iceberg REST catalog (service `rest`), its tables' files in MinIO's bucket `warehouse`.
-- The catalog serves no OAuth here; for one that does, add CREDENTIAL '<client id>:<secret>'.
ATTACH 'http://rest:8181' AS lake (
  TYPE iceberg,
  CATALOG 'rest',
  WAREHOUSE 's3://warehouse/',
  "s3.endpoint" 'http://minio:9000',
  "s3.access-key-id" '${MINIO_ROOT_USER}',
  "s3.secret-access-key" '${MINIO_ROOT_PASSWORD}',
  "s3.path-style-access" 'true',
  "s3.region" 'us-east-1'
);

-- shop.orders (seeded by seed.js) into lake.shop.orders: a snapshot copy, then the change
-- stream, committed at least every 5 seconds. The namespace and table are created if missing.
CREATE SYNC orders
  FROM mongo.shop.orders
  INTO lake.shop.orders
  SELECT _id, status, customer.name AS customer, customer.address.city AS city,
         total::DECIMAL(18,2) AS total, created_at, items
  PARTITION BY day(created_at)
  WITH (flush_interval = '5s');
