-- A MongoDB deployment; ${...} is substituted in string literals.
ATTACH 'mongodb://${MONGO_USER}@${MONGO_HOST}/?replicaSet=rs0' AS mongo (TYPE mongodb);
ATTACH 'mongodb://localhost:27017' AS "Mongo Two" (type MongoDB, SAMPLE_SIZE 500);

-- The embedded Iceberg catalog: a path.
ATTACH './warehouse' AS lake (TYPE iceberg);

-- A REST catalog with object storage: dotted, hyphenated and double-quoted keys.
ATTACH 'http://localhost:8181' AS rest_lake (
  TYPE iceberg,
  catalog 'rest',
  warehouse 's3://warehouse',
  credential 'key:${S3_SECRET}',
  oauth2-server-uri 'http://localhost:8181/v1/oauth/tokens',
  s3.endpoint 'http://localhost:8333',
  "s3.path-style-access" 'true',
  client.region 'us-east-1',
  prefix 'p',
  token 't'
);

-- TYPE may come after other options; $${ is a literal ${.
ATTACH 'file:///tmp/$${not_a_variable}' AS odd (warehouse '/tmp/w', TYPE 'iceberg');
