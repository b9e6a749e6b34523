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
    /// One `field | value` line per column, a header line per row (psql's expanded mode).
    Expanded,
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
        // A record reads best one field per line; CSV and JSON stay as they are.
        Output::Record(stream) if format == Format::Table => {
            return Box::pin(write(Output::Rows(stream), Format::Expanded, out)).await;
        }
        Output::Record(stream) => stream,
        Output::Differs(stream, error) => {
            Box::pin(write(Output::Rows(stream), format, out)).await?;
            return Err(error);
        }
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
        Format::Expanded => {
            while let Some(batch) = stream.try_next().await? {
                write_expanded(&batch, rows, out)?;
                rows += batch.num_rows();
            }
            if rows == 0 {
                writeln!(out, "(0 rows)").map_err(stdout_error)?;
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

/// Writes each row of `batch` as psql's expanded mode does: a `-[ RECORD n ]-` line, then one
/// `field | value` line per column (rows numbered after the `before` rows already written).
fn write_expanded(batch: &RecordBatch, before: usize, out: &mut dyn Write) -> Result<()> {
    let options = arrow::util::display::FormatOptions::default().with_null("");
    let formatters = batch
        .columns()
        .iter()
        .map(|c| arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()?;
    let schema = batch.schema();
    let width = schema.fields().iter().map(|f| f.name().chars().count()).max().unwrap_or(0);
    for row in 0..batch.num_rows() {
        let values: Vec<String> = formatters.iter().map(|f| f.value(row).to_string()).collect();
        let value_width =
            values.iter().flat_map(|v| v.lines()).map(|l| l.chars().count()).max().unwrap_or(0);
        let title = format!("-[ RECORD {} ]", before + row + 1);
        let rule = (width + 3 + value_width).max(title.chars().count() + 1);
        let dashes = "-".repeat(rule.saturating_sub(title.chars().count()));
        writeln!(out, "{title}{dashes}").map_err(stdout_error)?;
        for (field, value) in schema.fields().iter().zip(&values) {
            let mut lines = value.lines();
            let first = lines.next().unwrap_or_default();
            let line = format!("{:width$} | {first}", field.name());
            writeln!(out, "{}", line.trim_end()).map_err(stdout_error)?;
            for more in lines {
                writeln!(out, "{:width$} | {more}", "").map_err(stdout_error)?;
            }
        }
    }
    Ok(())
}

fn stdout_error(source: std::io::Error) -> Error {
    Error::io("writing the result", source)
}
