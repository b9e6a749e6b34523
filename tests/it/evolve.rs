//! The schema-evolution rules on their own: how a `SELECT *` sync's input schema grows with the
//! documents it meets (`misql::sync::evolve::grow`), and the Iceberg schema that follows
//! (`misql::lake::schema_update::evolve`): field ids, promotions, nested additions.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema as ArrowSchema, SchemaRef};
use iceberg::spec::{ListType, NestedField, PrimitiveType, Schema, StructType, Type};
use misql::lake::schema_update::evolve;
use misql::sync::evolve::grow;

fn arrow(fields: Vec<Field>) -> SchemaRef {
    Arc::new(ArrowSchema::new(fields))
}

fn structure(fields: Vec<Field>) -> DataType {
    DataType::Struct(Fields::from(fields))
}

fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new("item", item, true)))
}

/// `_id` int, `qty` int, `customer` struct<name>, `items` list<struct<sku>>, `note` string.
fn table_schema() -> Schema {
    let string = || Type::Primitive(PrimitiveType::String);
    Schema::builder()
        .with_schema_id(0)
        .with_fields(vec![
            NestedField::required(1, "_id", Type::Primitive(PrimitiveType::Int)).into(),
            NestedField::optional(2, "qty", Type::Primitive(PrimitiveType::Int)).into(),
            NestedField::optional(
                3,
                "customer",
                Type::Struct(StructType::new(vec![
                    NestedField::optional(6, "name", string()).into(),
                ])),
            )
            .into(),
            NestedField::optional(
                4,
                "items",
                Type::List(ListType::new(
                    NestedField::list_element(
                        7,
                        Type::Struct(StructType::new(vec![
                            NestedField::optional(8, "sku", string()).into(),
                        ])),
                        false,
                    )
                    .into(),
                )),
            )
            .into(),
            NestedField::optional(5, "note", string()).into(),
        ])
        .with_identifier_field_ids([1])
        .build()
        .unwrap()
}

/// The Arrow schema the converter writes for [`table_schema`].
fn table_arrow() -> Vec<Field> {
    vec![
        Field::new("_id", DataType::Int32, false),
        Field::new("qty", DataType::Int32, true),
        Field::new("customer", structure(vec![Field::new("name", DataType::Utf8, true)]), true),
        Field::new(
            "items",
            list_of(structure(vec![Field::new("sku", DataType::Utf8, true)])),
            true,
        ),
        Field::new("note", DataType::Utf8, true),
    ]
}

#[test]
fn grow_adds_new_fields_at_the_end_and_widens_int_to_long_only() {
    let have = arrow(table_arrow());
    let seen = ArrowSchema::new(vec![
        Field::new("_id", DataType::Int32, false),
        Field::new("discount", DataType::Float64, true),
        Field::new("qty", DataType::Int64, true),
        Field::new(
            "customer",
            structure(vec![
                Field::new("tier", DataType::Utf8, true),
                Field::new("name", DataType::Utf8, true),
            ]),
            true,
        ),
        Field::new(
            "items",
            list_of(structure(vec![
                Field::new("sku", DataType::Utf8, true),
                Field::new("price", DataType::Float64, true),
            ])),
            true,
        ),
        // An int where the table has text: the text column takes it, no change.
        Field::new("note", DataType::Int64, true),
    ]);
    let grown = grow(&have, &seen);
    let expected = arrow(vec![
        Field::new("_id", DataType::Int32, false),
        Field::new("qty", DataType::Int64, true),
        Field::new(
            "customer",
            structure(vec![
                Field::new("name", DataType::Utf8, true),
                Field::new("tier", DataType::Utf8, true),
            ]),
            true,
        ),
        Field::new(
            "items",
            list_of(structure(vec![
                Field::new("sku", DataType::Utf8, true),
                Field::new("price", DataType::Float64, true),
            ])),
            true,
        ),
        Field::new("note", DataType::Utf8, true),
        Field::new("discount", DataType::Float64, true),
    ]);
    assert_eq!(grown, expected);
}

#[test]
fn grow_keeps_the_schema_when_nothing_is_new_or_wider() {
    let have = arrow(table_arrow());
    // Narrower (int32 in a long column after a widening) or conflicting kinds change nothing.
    let seen = ArrowSchema::new(vec![
        Field::new("_id", DataType::Int32, false),
        Field::new("qty", DataType::Utf8, true),
        Field::new("customer", DataType::Utf8, true),
    ]);
    let grown = grow(&have, &seen);
    assert!(Arc::ptr_eq(&grown, &have), "{grown:?}");
}

#[test]
fn decimals_widen_to_more_digits_at_the_same_scale_only() {
    let have = arrow(vec![
        Field::new("_id", DataType::Int32, false),
        Field::new("a", DataType::Decimal128(10, 2), true),
        Field::new("b", DataType::Decimal128(10, 2), true),
    ]);
    let seen = ArrowSchema::new(vec![
        Field::new("a", DataType::Decimal128(20, 2), true),
        Field::new("b", DataType::Decimal128(20, 4), true),
    ]);
    let grown = grow(&have, &seen);
    assert_eq!(grown.field(1).data_type(), &DataType::Decimal128(20, 2));
    assert_eq!(
        grown.field(2).data_type(),
        &DataType::Decimal128(10, 2),
        "a scale change is no widening"
    );
}

#[test]
fn the_iceberg_schema_gains_columns_with_fresh_ids_and_keeps_the_old_ones() {
    let current = table_schema();
    let want = grow(
        &arrow(table_arrow()),
        &ArrowSchema::new(vec![
            Field::new("qty", DataType::Int64, true),
            Field::new("customer", structure(vec![Field::new("tier", DataType::Utf8, true)]), true),
            Field::new(
                "items",
                list_of(structure(vec![Field::new("price", DataType::Float64, true)])),
                true,
            ),
            Field::new(
                "meta",
                structure(vec![Field::new("tags", list_of(DataType::Utf8), true)]),
                true,
            ),
        ]),
    );
    let change = evolve(&current, &want, 8).unwrap().expect("the schema changes");
    assert_eq!(
        change.changes,
        [
            "widened `qty` from int to long",
            "added column `customer.tier` (string)",
            "added column `items.element.price` (double)",
            "added column `meta` (struct<tags: list<string>>)",
        ]
    );
    let schema = &change.schema;
    assert_eq!(schema.schema_id(), 1);
    assert_eq!(schema.identifier_field_ids().collect::<Vec<_>>(), [1]);
    let id = |name: &str| schema.field_by_name(name).unwrap().id;
    // Old columns keep their ids; a widened column keeps its id.
    assert_eq!((id("_id"), id("qty"), id("customer.name"), id("note")), (1, 2, 6, 5));
    assert_eq!(
        *schema.field_by_name("qty").unwrap().field_type,
        Type::Primitive(PrimitiveType::Long)
    );
    // New ones come after the last column id (8), each once.
    let mut new_ids = vec![
        id("customer.tier"),
        id("items.element.price"),
        id("meta"),
        id("meta.tags"),
        id("meta.tags.element"),
    ];
    new_ids.sort();
    assert_eq!(new_ids, [9, 10, 11, 12, 13]);
    assert!(!schema.field_by_name("meta").unwrap().required);
    assert_eq!(schema.highest_field_id(), 13);
}

#[test]
fn an_unchanged_or_only_conflicting_schema_needs_no_new_iceberg_schema() {
    let current = table_schema();
    assert!(evolve(&current, &arrow(table_arrow()), 8).unwrap().is_none());
    // A string where the table has an int is not a promotion: left to on_type_change.
    let mut fields = table_arrow();
    fields[1] = Field::new("qty", DataType::Utf8, true);
    assert!(evolve(&current, &arrow(fields), 8).unwrap().is_none());
}
