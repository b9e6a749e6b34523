//! The one integration-test binary: a module per area.

#[allow(dead_code)] // until every fixture has a user
mod support;

mod bson_arrow;
mod infer;
mod parser;
