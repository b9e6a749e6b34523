//! MongoDB as a source: schema inference, BSON → Arrow conversion, the table provider and scan.

pub mod bson_arrow;
pub mod decimal;
pub mod ext_json;
pub mod infer;
pub mod kind;
