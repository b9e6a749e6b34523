//! The kinds of BSON values, named as MongoDB's `$type` operator names them. Schema inference
//! counts them per field; conversion errors use them to say what was found.

use std::fmt;

use bson::RawBsonRef;
use bson::spec::BinarySubtype;

/// The kind of a BSON value. A binary value of subtype 4 (UUID) with 16 bytes is its own kind,
/// [`BsonKind::Uuid`], because it maps to a different Arrow type than other binary values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BsonKind {
    /// 64-bit binary floating point (`double`).
    Double,
    /// UTF-8 string (`string`).
    String,
    /// Embedded document (`object`).
    Document,
    /// Array (`array`).
    Array,
    /// Binary data other than a 16-byte UUID (`binData`).
    Binary,
    /// Binary subtype 4 with 16 bytes (`uuid`).
    Uuid,
    /// ObjectId (`objectId`).
    ObjectId,
    /// Boolean (`bool`).
    Boolean,
    /// UTC datetime in milliseconds (`date`).
    DateTime,
    /// Null (`null`).
    Null,
    /// Regular expression (`regex`).
    RegularExpression,
    /// JavaScript code (`javascript`).
    JavaScriptCode,
    /// JavaScript code with scope (`javascriptWithScope`).
    JavaScriptCodeWithScope,
    /// 32-bit integer (`int`).
    Int32,
    /// Internal replication timestamp (`timestamp`).
    Timestamp,
    /// 64-bit integer (`long`).
    Int64,
    /// IEEE 754-2008 128-bit decimal (`decimal`).
    Decimal128,
    /// Min key (`minKey`).
    MinKey,
    /// Max key (`maxKey`).
    MaxKey,
    /// Symbol, deprecated (`symbol`).
    Symbol,
    /// DBPointer, deprecated (`dbPointer`).
    DbPointer,
    /// Undefined, deprecated (`undefined`).
    Undefined,
}

impl BsonKind {
    /// Every kind, in declaration order.
    pub const ALL: [BsonKind; 22] = [
        BsonKind::Double,
        BsonKind::String,
        BsonKind::Document,
        BsonKind::Array,
        BsonKind::Binary,
        BsonKind::Uuid,
        BsonKind::ObjectId,
        BsonKind::Boolean,
        BsonKind::DateTime,
        BsonKind::Null,
        BsonKind::RegularExpression,
        BsonKind::JavaScriptCode,
        BsonKind::JavaScriptCodeWithScope,
        BsonKind::Int32,
        BsonKind::Timestamp,
        BsonKind::Int64,
        BsonKind::Decimal128,
        BsonKind::MinKey,
        BsonKind::MaxKey,
        BsonKind::Symbol,
        BsonKind::DbPointer,
        BsonKind::Undefined,
    ];

    /// The kind of `value`.
    pub fn of(value: RawBsonRef<'_>) -> BsonKind {
        match value {
            RawBsonRef::Double(_) => BsonKind::Double,
            RawBsonRef::String(_) => BsonKind::String,
            RawBsonRef::Array(_) => BsonKind::Array,
            RawBsonRef::Document(_) => BsonKind::Document,
            RawBsonRef::Boolean(_) => BsonKind::Boolean,
            RawBsonRef::Null => BsonKind::Null,
            RawBsonRef::RegularExpression(_) => BsonKind::RegularExpression,
            RawBsonRef::JavaScriptCode(_) => BsonKind::JavaScriptCode,
            RawBsonRef::JavaScriptCodeWithScope(_) => BsonKind::JavaScriptCodeWithScope,
            RawBsonRef::Int32(_) => BsonKind::Int32,
            RawBsonRef::Int64(_) => BsonKind::Int64,
            RawBsonRef::Timestamp(_) => BsonKind::Timestamp,
            RawBsonRef::Binary(b) if b.subtype == BinarySubtype::Uuid && b.bytes.len() == 16 => {
                BsonKind::Uuid
            }
            RawBsonRef::Binary(_) => BsonKind::Binary,
            RawBsonRef::ObjectId(_) => BsonKind::ObjectId,
            RawBsonRef::DateTime(_) => BsonKind::DateTime,
            RawBsonRef::Symbol(_) => BsonKind::Symbol,
            RawBsonRef::Decimal128(_) => BsonKind::Decimal128,
            RawBsonRef::Undefined => BsonKind::Undefined,
            RawBsonRef::MaxKey => BsonKind::MaxKey,
            RawBsonRef::MinKey => BsonKind::MinKey,
            RawBsonRef::DbPointer(_) => BsonKind::DbPointer,
        }
    }

    /// The name MongoDB's `$type` operator uses for this kind (`"int"`, `"objectId"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            BsonKind::Double => "double",
            BsonKind::String => "string",
            BsonKind::Document => "object",
            BsonKind::Array => "array",
            BsonKind::Binary => "binData",
            BsonKind::Uuid => "uuid",
            BsonKind::ObjectId => "objectId",
            BsonKind::Boolean => "bool",
            BsonKind::DateTime => "date",
            BsonKind::Null => "null",
            BsonKind::RegularExpression => "regex",
            BsonKind::JavaScriptCode => "javascript",
            BsonKind::JavaScriptCodeWithScope => "javascriptWithScope",
            BsonKind::Int32 => "int",
            BsonKind::Timestamp => "timestamp",
            BsonKind::Int64 => "long",
            BsonKind::Decimal128 => "decimal",
            BsonKind::MinKey => "minKey",
            BsonKind::MaxKey => "maxKey",
            BsonKind::Symbol => "symbol",
            BsonKind::DbPointer => "dbPointer",
            BsonKind::Undefined => "undefined",
        }
    }

    /// Position in [`BsonKind::ALL`], for per-kind counters.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for BsonKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
