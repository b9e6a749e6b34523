//! ATTACH: the systems a session can read from and write to, registered as DataFusion catalogs.

pub mod evolved_scan;
pub mod iceberg;
pub mod mongo;

pub use iceberg::IcebergCatalog;
pub use mongo::MongoCatalog;
