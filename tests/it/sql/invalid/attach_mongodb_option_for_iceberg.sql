ATTACH './w' AS lake (TYPE iceberg, sample_size 10);
