//! Connecting to an Iceberg catalog from an ATTACH statement: the embedded SQL catalog on SQLite, or a REST catalog with S3 storage.
