//! Committing written files to a table in one snapshot whose summary carries the sync checkpoint.
