//! MongoDB as a source: schema inference, BSON → Arrow conversion, the table provider and scan.

