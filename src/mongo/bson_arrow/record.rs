//! The columns of a struct (or of the batch), filled from one document's fields.

use std::collections::HashMap;
use std::mem;

use arrow::array::ArrayRef;
use arrow::datatypes::Fields;
use arrow::error::ArrowError;
use bson::RawDocument;

use super::column::Column;
use super::failure::{Failure, Segment};

/// The columns of a struct (or of the batch), with the lookup from field name to column.
pub(super) struct Record {
    pub(super) fields: Fields,
    pub(super) columns: Vec<Column>,
    /// Which columns the current document set, to append nulls for the rest and to let the
    /// first of duplicate keys win.
    seen: Vec<bool>,
    /// Name lookup for wide records; narrow ones scan `fields`.
    index: Option<HashMap<String, usize>>,
}

/// Records with more fields than this get a hash map for name lookups.
const LINEAR_LOOKUP_MAX: usize = 12;

impl Record {
    pub(super) fn new(fields: Fields) -> Self {
        let columns = fields.iter().map(|f| Column::for_field(f)).collect();
        let index = (fields.len() > LINEAR_LOOKUP_MAX).then(|| {
            let mut index = HashMap::with_capacity(fields.len());
            for (i, field) in fields.iter().enumerate() {
                index.entry(field.name().clone()).or_insert(i);
            }
            index
        });
        Self { seen: vec![false; fields.len()], fields, columns, index }
    }

    /// The column for `key`. Documents usually repeat the schema's field order, so the field
    /// after the previous match (`hint`) is tried first.
    fn find(&self, key: &str, hint: usize) -> Option<usize> {
        if self.fields.get(hint).is_some_and(|f| f.name() == key) {
            return Some(hint);
        }
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.fields.iter().position(|f| f.name() == key),
        }
    }

    /// Appends one document: each column gets its field's value, or null if it is missing.
    /// `strict`: a field with a value but no column, or a value the column's type would have to
    /// grow for, fails (see [`BatchBuilder::append_if_fits`]).
    pub(super) fn append(&mut self, doc: &RawDocument, strict: bool) -> Result<(), Failure> {
        self.seen.fill(false);
        let mut hint = 0;
        for element in doc.iter_elements() {
            let element = element?;
            let key = element.key().as_str();
            let Some(i) = self.find(key, hint) else {
                if strict && element.element_type() != bson::spec::ElementType::Null {
                    return Err(Failure::new(format!("no column for field `{key}`")));
                }
                continue;
            };
            hint = i + 1;
            if mem::replace(&mut self.seen[i], true) {
                continue; // a repeated key: the first occurrence wins
            }
            let value = element.value().map_err(|e| Failure::from(e).at(key_segment(key)))?;
            self.columns[i].append(value, strict).map_err(|e| e.at(key_segment(key)))?;
        }
        for (i, column) in self.columns.iter_mut().enumerate() {
            if !self.seen[i] {
                column.append_null(true).map_err(|e| e.at(key_segment(self.fields[i].name())))?;
            }
        }
        Ok(())
    }

    pub(super) fn truncate(&mut self, len: usize) {
        for column in &mut self.columns {
            column.truncate(len);
        }
    }

    pub(super) fn finish_columns(&mut self) -> Result<Vec<ArrayRef>, ArrowError> {
        self.columns.iter_mut().map(Column::finish).collect()
    }
}

fn key_segment(key: &str) -> Segment {
    Segment::Key(key.to_owned())
}
