//! Result output formats: an aligned table, CSV with a header, or JSON lines.

use std::io::Write;

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use futures::TryStreamExt;

use crate::exec::Output;
use crate::{Error, Result};

/// How result rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// An aligned table with a header (the whole result is read before printing).
    #[default]
    Table,
    /// CSV with a header row, streamed.
    Csv,
    /// One JSON object per line, streamed.
    Json,
}

/// Writes a statement's rows to `out` (confirmations go to stderr); returns the number of rows
/// written.
pub async fn write(output: Output, format: Format, out: &mut dyn Write) -> Result<usize> {
    let stream = match output {
        Output::Done(message) => {
            // Confirmations are status, not results: stdout stays parseable in CSV and JSON.
            eprintln!("{message}");
            return Ok(0);
        }
        Output::Rows(stream) => stream,
    };
    let schema = stream.schema();
    let mut stream = stream.map_err(Error::from);
    let mut rows = 0;
    match format {
        Format::Table => {
            let batches: Vec<RecordBatch> = stream.try_collect().await?;
            rows = batches.iter().map(|b| b.num_rows()).sum();
            if batches.is_empty() {
                writeln!(out, "{}", pretty_format_batches(&[RecordBatch::new_empty(schema)])?)
            } else {
                writeln!(out, "{}", pretty_format_batches(&batches)?)
            }
            .map_err(stdout_error)?;
        }
        Format::Csv => {
            let mut writer = arrow::csv::WriterBuilder::new().with_header(true).build(&mut *out);
            let mut wrote_any = false;
            while let Some(batch) = stream.try_next().await? {
                rows += batch.num_rows();
                writer.write(&batch)?;
                wrote_any = true;
            }
            if !wrote_any {
                writer.write(&RecordBatch::new_empty(schema))?;
            }
        }
        Format::Json => {
            let mut writer = arrow::json::LineDelimitedWriter::new(&mut *out);
            while let Some(batch) = stream.try_next().await? {
                rows += batch.num_rows();
                writer.write(&batch)?;
            }
            writer.finish()?;
        }
    }
    out.flush().map_err(stdout_error)?;
    Ok(rows)
}

fn stdout_error(source: std::io::Error) -> Error {
    Error::io("writing the result", source)
}
