-- Every Iceberg transform; a SELECT list directly followed by PARTITION BY.
CREATE SYNC events FROM mongo.app.events INTO lake.app.events
  SELECT _id, kind, ts, user_id, name
  PARTITION BY kind, identity(kind), year(ts), month(ts), DAY(ts), Hour(ts),
               bucket(16, user_id), truncate(4, name), "Mixed Case";
