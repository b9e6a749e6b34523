//! Iceberg as the target: catalogs (embedded SQL on SQLite, REST), data-file writing, commits
//! that carry a sync's checkpoint in the snapshot summary.

pub mod catalog;
pub mod commit;
pub(crate) mod conform;
pub mod key_index;
pub mod position_delete;
pub mod rollback;
pub mod row_delta;
pub mod schema;
pub mod schema_update;
mod swap;
pub mod writer;
