-- Plain SQL is handed to sqlparser: casts, quoted names, comments, empty statements.
SELECT _id, customer.name, total::DECIMAL(18,2) FROM mongo.shop.orders LIMIT 5;;
;
SELECT "Weird Name", 'it''s' AS quote /* inline comment */ FROM lake.shop.orders WHERE owner = '${MONGO_USER}';
SET datafusion.execution.batch_size = 1024;
SELECT count(*) FROM lake.shop.orders GROUP BY 1 ORDER BY 1 DESC
