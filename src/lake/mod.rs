//! Iceberg as the target: catalogs (embedded SQL on SQLite, REST), table creation, data and
//! position-delete file writing, and the one commit path every change to a table takes.

pub mod catalog;
pub mod commit;
pub(crate) mod conform;
pub mod key_index;
pub mod lineage;
pub mod live;
pub mod maintenance;
pub mod position_delete;
pub mod rest_failure;
pub mod retry;
pub mod rollback;
pub mod schema;
pub mod schema_update;
pub mod sigv4;
pub mod table;
pub mod writer;
