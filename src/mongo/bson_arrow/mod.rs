//! BSON → Arrow: raw BSON documents appended row by row into Arrow columns of a given schema
//! (usually the inferred one, or a projection of it), finished into `RecordBatch`es.
//!
//! The conversion reads `RawDocument`s in place: no `bson::Document` is built, fields outside the
//! schema are skipped without parsing their values, strings are copied once into the column.
//! Widening on read: Int64 ← int32; Float64 ← int32, int64 that a double holds exactly (every
//! int up to 2^53 in magnitude); Int32 ← int64 that fits; Decimal128(p, s) ← int32, int64,
//! decimal (exactly rescaled, never rounded); Timestamp ← date (in the unit's range);
//! Utf8 ← anything (strings as they are, ObjectIds as 24 hex digits, decimals as their decimal
//! text such as `12.50` or `NaN`, everything else — documents and arrays however deep, such as
//! those nested below [`super::infer::MAX_NESTING_DEPTH`] — as relaxed Extended JSON; a Utf8
//! field whose metadata has [`ENCODING_KEY`] = [`EXTJSON`] holds every value as relaxed
//! Extended JSON, strings quoted); Binary ← any binary; FixedSizeBinary(16) ← 16-byte binary.
//! Anything else is an [`Error::Convert`] naming the document's `_id`, the field path and both
//! types.
//!
//! All-or-nothing appends: every column buffer can be truncated back to a row count, and a
//! column's own length determines the lengths of its children (a list's offsets say how many
//! elements it committed). So [`BatchBuilder::append`] just writes, and on an error truncates
//! every column to the row count before the document — no validation pass, no copying on the

mod column;
mod failure;
mod finish;
mod record;

pub use failure::Segment;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use bson::{RawBsonRef, RawDocument};

use super::ext_json;
use crate::{Error, Result};
use column::Column;
use record::Record;

/// Field metadata key saying how a Utf8 column writes its values (see [`EXTJSON`]).
pub const ENCODING_KEY: &str = "misql.encoding";

/// [`ENCODING_KEY`] value: every value is written as relaxed Extended JSON, strings quoted and
/// ObjectIds as `{"$oid":"..."}`, so that values of different kinds never share a text. The
/// inference gives it to an `_id` of mixed kinds, whose text is a key.
pub const EXTJSON: &str = "extjson";

/// `_id` of a document as relaxed Extended JSON, for error messages: `{"$oid":"..."}`, `42`,
/// `"abc"`; `<missing>` if the document has none, `<malformed>` if it cannot be read.
pub fn document_id(doc: &RawDocument) -> String {
    match doc.get("_id") {
        Ok(Some(id)) => ext_json::to_string(id),
        Ok(None) => "<missing>".to_owned(),
        Err(_) => "<malformed>".to_owned(),
    }
}

/// The relaxed Extended JSON text of any BSON value (see [`super::ext_json`]).
pub fn relaxed_ext_json(value: RawBsonRef<'_>) -> String {
    ext_json::to_string(value)
}

/// Builds `RecordBatch`es of a fixed schema from raw BSON documents.
pub struct BatchBuilder {
    schema: SchemaRef,
    root: Record,
    len: usize,
    /// Where the last failed append failed, outermost segment first.
    failed_at: Vec<Segment>,
}

impl BatchBuilder {
    /// A builder for `schema`, which may be a projection (any subset of the columns, nested
    /// fields included); document fields not in it are skipped. Columns of types the BSON reader
    /// does not produce (e.g. Float32, Map) only accept null or missing values.
    pub fn new(schema: SchemaRef) -> Self {
        let root = Record::new(schema.fields().clone());
        Self { schema, root, len: 0, failed_at: Vec::new() }
    }

    /// The schema of the batches.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Appends one document as a row. All or nothing: on error no column keeps any part of the
    /// document, and the builder is ready for the next one.
    pub fn append(&mut self, doc: &RawDocument) -> Result<()> {
        match self.root.append(doc, false) {
            Ok(()) => {
                self.len += 1;
                Ok(())
            }
            Err(e) => {
                self.root.truncate(self.len);
                let field = e.path();
                self.failed_at = e.path.into_iter().rev().collect();
                Err(Error::Convert { id: document_id(doc), field, reason: e.reason })
            }
        }
    }

    /// Appends `doc` only if it fits the schema as it is — every field that has a value is a
    /// column, no int64 meets an int32 column, no decimal meets a decimal column narrower than
    /// 38 digits (the ways a `SELECT *` sync's schema grows), and every value converts — and
    /// says whether it did; when not, nothing of it is kept. One pass over the document: the
    /// usual document of a `SELECT *` sync needs no schema inference.
    pub fn append_if_fits(&mut self, doc: &RawDocument) -> bool {
        match self.root.append(doc, true) {
            Ok(()) => {
                self.len += 1;
                true
            }
            Err(_) => {
                self.root.truncate(self.len);
                false
            }
        }
    }

    /// Where the last failed [`BatchBuilder::append`] failed: the field keys and array indices
    /// from the document down to the value that did not fit (empty for unreadable BSON).
    pub fn failed_at(&self) -> &[Segment] {
        &self.failed_at
    }

    /// Rows appended since the last [`BatchBuilder::finish`].
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no rows were appended since the last [`BatchBuilder::finish`].
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Approximate bytes buffered, for batch size limits.
    pub fn byte_size(&self) -> usize {
        self.root.columns.iter().map(Column::byte_size).sum()
    }

    /// The rows appended so far as a batch; the builder starts over empty.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let columns = self.root.finish_columns()?;
        let options = RecordBatchOptions::new().with_row_count(Some(self.len));
        self.len = 0;
        Ok(RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?)
    }
}
