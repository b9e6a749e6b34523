ATTACH './w' AS lake (TYPE iceberg, TYPE mongodb);
