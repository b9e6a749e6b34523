-- a whole database, one table per collection
CREATE SYNC shop FROM mongo.shop.* INTO lake.shop;
-- a glob on the names, names and globs left out, options
CREATE OR REPLACE SYNC logs FROM mongo.app.log_* EXCLUDE (log_debug, 'log tmp', tmp_*) INTO lake.logs
  WITH (flush_interval = '2s', on_type_change = 'stringify');
EXPLAIN CREATE SYNC shop FROM mongo.shop.*orders INTO lake.shop;
