//! Keeping tables fast to read: compaction (`OPTIMIZE`) and the removal of old snapshots and
//! unreferenced files (`VACUUM`), for any table misql can attach. A sync runs both on its own
//! table between batches (see `sync::maintain`).

pub mod listing;
pub mod optimize;
pub mod vacuum;

pub use optimize::{OptimizeOptions, OptimizeReport, optimize};
pub use vacuum::{VacuumOptions, VacuumReport, vacuum};
