//! The physical scan of a collection: one `find` with the pushed-down filter, projection and
//! limit, streamed as Arrow record batches in bounded memory (one server batch plus one record
//! batch at a time).

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::{FieldRef, Schema, SchemaRef};
use bson::{Document, RawDocument, RawDocumentBuf};
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::{TryStreamExt, stream};
use mongodb::options::FindOptions;
use mongodb::raw_batch_cursor::RawBatch;

use super::bson_arrow::BatchBuilder;
use super::client::MongoSource;
use crate::{Error, ErrorKind};

/// Rows in the first record batch; later batches double up to the session's batch size, so a
/// preview shows its first rows quickly and a long scan still uses large batches.
const FIRST_BATCH_ROWS: usize = 512;

/// A record batch is also cut once it holds about this much converted data (checked after each
/// server batch, which MongoDB keeps under 16 MiB): documents near the 16 MiB limit then make
/// small batches instead of gigabytes, and a string column stays far below Arrow's 2 GiB.
const MAX_BATCH_BYTES: usize = 64 << 20;

/// What one scan asks MongoDB for.
#[derive(Debug, Clone)]
pub struct FindRequest {
    /// Database name.
    pub database: String,
    /// Collection name.
    pub collection: String,
    /// The query document (`{}` for all documents).
    pub filter: Document,
    /// The projection document, `None` for whole documents.
    pub projection: Option<Document>,
    /// The maximum number of documents, if any.
    pub limit: Option<u64>,
}

impl fmt::Display for FindRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{} filter={}", self.database, self.collection, json(&self.filter))?;
        if let Some(projection) = &self.projection {
            write!(f, " projection={}", json(projection))?;
        }
        if let Some(limit) = self.limit {
            write!(f, " limit={limit}")?;
        }
        Ok(())
    }
}

impl FindRequest {
    /// What reading this request is called in errors: `reading db.collection`.
    pub fn context(&self) -> String {
        format!("reading {}.{}", self.database, self.collection)
    }

    /// Sends the `find` (in `sort` order, if given) and returns its cursor of raw batches.
    pub async fn cursor(
        &self,
        source: &MongoSource,
        sort: Option<Document>,
    ) -> Result<mongodb::raw_batch_cursor::RawBatchCursor, Error> {
        let client = source.client().await?;
        let coll = client.database(&self.database).collection::<RawDocumentBuf>(&self.collection);
        let options = FindOptions::builder()
            .sort(sort)
            .projection(self.projection.clone())
            .limit(self.limit.map(|l| l as i64))
            .build();
        coll.find(self.filter.clone())
            .with_options(options)
            .batch()
            .await
            .map_err(|e| source.unreachable(&self.context(), e))
    }
}

/// A document as compact relaxed Extended JSON.
pub fn json(doc: &Document) -> String {
    match RawDocumentBuf::try_from(doc) {
        Ok(raw) => super::ext_json::to_string(bson::RawBsonRef::Document(&raw)),
        Err(err) => format!("<unprintable: {err}>"),
    }
}

/// Scans one collection.
#[derive(Debug)]
pub struct MongoScanExec {
    source: Arc<MongoSource>,
    request: FindRequest,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
    /// The table's `_id` column, for [`MongoScanExec::with_id`].
    id_field: Option<FieldRef>,
}

impl MongoScanExec {
    /// A scan producing `schema` (already projected) from `request`.
    pub fn new(source: Arc<MongoSource>, request: FindRequest, schema: SchemaRef) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self { source, request, schema, properties, id_field: None }
    }

    /// The same scan, knowing the table's `_id` column (see [`MongoScanExec::with_id`]).
    pub fn with_id_field(mut self, id_field: FieldRef) -> Self {
        self.id_field = Some(id_field);
        self
    }

    /// What this scan asks MongoDB for.
    pub fn request(&self) -> &FindRequest {
        &self.request
    }

    /// The same scan with `_id` as an extra last column, when its output lacks `_id` and the
    /// table's `_id` column is known: lets an error in an expression over the scan name the
    /// document (columns before it keep their positions). `_id` is always fetched.
    pub fn with_id(&self) -> Option<MongoScanExec> {
        let id_field = self.id_field.as_ref()?;
        if self.schema.index_of(id_field.name()).is_ok() {
            return None;
        }
        let mut fields: Vec<FieldRef> = self.schema.fields().iter().cloned().collect();
        fields.push(id_field.clone());
        let schema = Arc::new(Schema::new_with_metadata(fields, self.schema.metadata().clone()));
        let mut request = self.request.clone();
        if let Some(projection) = &mut request.projection {
            projection.insert(id_field.name().as_str(), 1);
        }
        let scan = MongoScanExec::new(self.source.clone(), request, schema);
        Some(scan.with_id_field(id_field.clone()))
    }
}

impl DisplayAs for MongoScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "MongoScanExec: {}", self.request)
    }
}

impl ExecutionPlan for MongoScanExec {
    fn name(&self) -> &str {
        "MongoScanExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let max_rows = context.session_config().batch_size().max(FIRST_BATCH_ROWS);
        let batches =
            scan_stream(self.source.clone(), self.request.clone(), self.schema.clone(), max_rows);
        Ok(Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), batches.map_err(external))))
    }
}

/// A crate error inside DataFusion.
pub fn external(err: Error) -> DataFusionError {
    DataFusionError::External(Box::new(err))
}

/// State of a running scan.
struct Scan {
    cursor: mongodb::raw_batch_cursor::RawBatchCursor,
    builder: BatchBuilder,
    rows: usize,
    target: usize,
    max_rows: usize,
    context: String,
    done: bool,
}

/// Opens the cursor and streams record batches from it.
pub fn scan_stream(
    source: Arc<MongoSource>,
    request: FindRequest,
    schema: SchemaRef,
    max_rows: usize,
) -> impl futures::Stream<Item = Result<RecordBatch, Error>> + Send {
    stream::once(open(source, request, schema, max_rows))
        .map_ok(|scan| stream::try_unfold(scan, next_batch))
        .try_flatten()
}

async fn open(
    source: Arc<MongoSource>,
    request: FindRequest,
    schema: SchemaRef,
    max_rows: usize,
) -> Result<Scan, Error> {
    Ok(Scan {
        cursor: request.cursor(&source, None).await?,
        builder: BatchBuilder::new(schema),
        rows: 0,
        target: FIRST_BATCH_ROWS.min(max_rows),
        max_rows,
        context: request.context(),
        done: false,
    })
}

/// Reads server batches until a record batch is full or the cursor ends.
/// The documents of a server batch, each an error where the server sent what is no BSON
/// document.
pub(super) fn batch_documents<'a>(
    batch: &'a RawBatch,
    context: &'a str,
) -> Result<impl Iterator<Item = Result<&'a RawDocument, Error>> + 'a, Error> {
    let docs = batch.doc_slices().map_err(|e| Error::mongo(context.to_string(), e))?;
    Ok(docs.into_iter().map(move |doc| {
        let unusable =
            |what: String| Error::remote(ErrorKind::Permanent, format!("{context}: {what}"));
        let doc = doc.map_err(|e| unusable(format!("malformed BSON from the server: {e}")))?;
        doc.as_document().ok_or_else(|| unusable("the server returned a non-document".into()))
    }))
}

async fn next_batch(mut scan: Scan) -> Result<Option<(RecordBatch, Scan)>, Error> {
    while !scan.done && scan.rows < scan.target && scan.builder.byte_size() < MAX_BATCH_BYTES {
        match scan.cursor.try_next().await.map_err(|e| Error::mongo(scan.context.clone(), e))? {
            Some(batch) => {
                for doc in batch_documents(&batch, &scan.context)? {
                    scan.builder.append(doc?)?;
                    scan.rows += 1;
                }
            }
            None => scan.done = true,
        }
    }
    if scan.rows == 0 {
        return Ok(None);
    }
    let batch = finish(&mut scan)?;
    scan.rows = 0;
    scan.target = (scan.target * 2).min(scan.max_rows);
    Ok(Some((batch, scan)))
}

/// The buffered rows as a record batch (a column-less batch keeps its row count, for `count(*)`).
fn finish(scan: &mut Scan) -> Result<RecordBatch, Error> {
    let batch = scan.builder.finish()?;
    if batch.num_columns() == 0 && batch.num_rows() != scan.rows {
        let options = RecordBatchOptions::new().with_row_count(Some(scan.rows));
        return Ok(RecordBatch::try_new_with_options(batch.schema(), vec![], &options)?);
    }
    Ok(batch)
}
