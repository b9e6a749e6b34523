//! A column's rows finished into an Arrow array, its buffers left empty for the next batch.

use std::mem;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Decimal128Array, FixedSizeBinaryArray, Float64Array,
    Int32Array, Int64Array, ListArray, StringArray, StructArray, TimestampMicrosecondArray,
    TimestampMillisecondArray, TimestampNanosecondArray, TimestampSecondArray, new_null_array,
};
use arrow::buffer::{Buffer, NullBuffer, OffsetBuffer};
use arrow::datatypes::TimeUnit;
use arrow::error::ArrowError;

use super::column::{Column, Values};

impl Column {
    /// The array of the rows so far; the column starts over empty, with the same capacity.
    pub(super) fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        let len = self.len();
        let nulls = self.nulls.finish();
        Ok(match &mut self.values {
            Values::Int32(v) => Arc::new(Int32Array::new(take(v).into(), nulls)),
            Values::Int64(v) => Arc::new(Int64Array::new(take(v).into(), nulls)),
            Values::Float64(v) => Arc::new(Float64Array::new(take(v).into(), nulls)),
            Values::Boolean(v) => Arc::new(BooleanArray::new(v.finish(), nulls)),
            Values::Timestamp { values, unit, tz } => {
                timestamp_array(take(values), *unit, tz.clone(), nulls)
            }
            Values::Decimal { values, precision, scale } => Arc::new(
                Decimal128Array::new(take(values).into(), nulls)
                    .with_precision_and_scale(*precision, *scale)?,
            ),
            Values::Utf8 { offsets, bytes, .. } => {
                let (offsets, bytes) = take_offsets(offsets, bytes);
                Arc::new(StringArray::try_new(offsets, bytes, nulls)?)
            }
            Values::Binary { offsets, bytes } => {
                let (offsets, bytes) = take_offsets(offsets, bytes);
                Arc::new(BinaryArray::try_new(offsets, bytes, nulls)?)
            }
            Values::Fixed16(v) => {
                Arc::new(FixedSizeBinaryArray::try_new(16, Buffer::from_vec(take(v)), nulls)?)
            }
            Values::Struct(record) => {
                let children = record.finish_columns()?;
                Arc::new(StructArray::try_new_with_length(
                    record.fields.clone(),
                    children,
                    nulls,
                    len,
                )?)
            }
            Values::List { field, offsets, child } => {
                let offsets = OffsetBuffer::new(take_keep_first(offsets).into());
                Arc::new(ListArray::try_new(field.clone(), offsets, child.finish()?, nulls)?)
            }
            Values::Unsupported => new_null_array(&self.data_type, len),
        })
    }
}

/// Takes the values out of `v`, leaving an empty vector of the same capacity for the next batch.
fn take<T>(v: &mut Vec<T>) -> Vec<T> {
    let capacity = v.len();
    mem::replace(v, Vec::with_capacity(capacity))
}

/// Takes offsets out, leaving `[0]` behind.
fn take_keep_first(offsets: &mut Vec<i32>) -> Vec<i32> {
    let mut fresh = Vec::with_capacity(offsets.len());
    fresh.push(0);
    mem::replace(offsets, fresh)
}

fn take_offsets(offsets: &mut Vec<i32>, bytes: &mut Vec<u8>) -> (OffsetBuffer<i32>, Buffer) {
    let offsets = OffsetBuffer::new(take_keep_first(offsets).into());
    (offsets, Buffer::from_vec(take(bytes)))
}

fn timestamp_array(
    values: Vec<i64>,
    unit: TimeUnit,
    tz: Option<Arc<str>>,
    nulls: Option<NullBuffer>,
) -> ArrayRef {
    match unit {
        TimeUnit::Second => {
            Arc::new(TimestampSecondArray::new(values.into(), nulls).with_timezone_opt(tz))
        }
        TimeUnit::Millisecond => {
            Arc::new(TimestampMillisecondArray::new(values.into(), nulls).with_timezone_opt(tz))
        }
        TimeUnit::Microsecond => {
            Arc::new(TimestampMicrosecondArray::new(values.into(), nulls).with_timezone_opt(tz))
        }
        TimeUnit::Nanosecond => {
            Arc::new(TimestampNanosecondArray::new(values.into(), nulls).with_timezone_opt(tz))
        }
    }
}
