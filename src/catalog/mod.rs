//! ATTACH: the systems a session can read from and write to, registered as DataFusion catalogs.

pub mod mongo;

pub use mongo::MongoCatalog;
