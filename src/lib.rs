//! misql keeps Apache Iceberg tables in sync with MongoDB collections; every sync is one SQL
//! statement. The modules follow the data flow: `sql` parses statements, `catalog` registers
//! attached systems in a DataFusion session, `mongo` is the BSON source, `exec` runs statements,
//! `output` writes results, `script` runs files and `-e` text, and `repl` is the interactive
//! shell.

pub mod catalog;
pub mod error;
pub mod exec;
pub mod failpoint;
pub mod http;
pub mod lake;
pub mod listen;
pub mod logging;
pub mod mongo;
pub mod output;
pub mod repl;
pub mod script;
pub mod sql;
pub mod sync;

pub use error::{Error, ErrorKind, Location, Result};
