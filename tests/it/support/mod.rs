//! Test fixtures: the SecantusDB server and generated documents.
