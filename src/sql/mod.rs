//! misql statements: the AST (each with `Display`) and the parser. Nothing here touches MongoDB or Iceberg.

