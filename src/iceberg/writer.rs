//! Writing Arrow record batches into Parquet data files of an Iceberg table, split by partition.
