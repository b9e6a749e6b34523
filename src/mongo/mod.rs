//! MongoDB as a source: schema inference, BSON → Arrow conversion, the table provider and scan.

pub mod bson_arrow;
pub mod change_stream;
pub mod chunk;
pub mod client;
pub mod decimal;
pub mod ext_json;
pub mod filter;
pub mod id_range;
pub mod infer;
pub mod kind;
pub mod provider;
pub mod scan;
