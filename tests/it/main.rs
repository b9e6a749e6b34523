//! The one integration-test binary: a module per area.

mod support;

mod bson_arrow;
mod catalog_blips;
mod catalog_faults;
mod chaos;
mod checkpoint;
mod copy_follow;
mod database_sync;
mod deep_nesting;
mod evolve;
mod explore;
mod fault_proxy;
mod hostile;
mod iceberg_catalog;
mod iceberg_write;
mod id_ranges;
mod infer;
mod key_index;
mod maintenance;
mod maintenance_faults;
mod parser;
mod proptest_bson;
mod row_delta;
mod schema_drift;
mod service;
mod shell;
mod sigv4;
mod sync_snapshot;
mod sync_stream;
mod transactions;
mod two_writers;
