//! misql keeps Apache Iceberg tables in sync with MongoDB collections; every sync is one SQL
//! statement. The modules follow the data flow: `sql` parses statements, `catalog` registers
//! attached systems in a DataFusion session, `mongo` is the BSON source, `exec` runs statements
//! and `repl` is the interactive shell.

pub mod error;
pub mod mongo;
pub mod sql;

pub use error::{Error, Location, Result};
