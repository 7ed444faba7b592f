//! Parquet tables, read as the CSV rows the table reader parses: a header of the column names,
//! then one line per row, each cell the value's text (arrow's cast to UTF-8: numbers in full
//! precision, timestamps in ISO 8601, dictionary-encoded strings as their values), a missing
//! value an empty cell. Streamed by record batches of [`BATCH_ROWS`] rows: the table is never
//! held whole (1 M rows: peak RSS 106 MB from Parquet against 111 MB from the same CSV,
//! `benches/s3.sh`).
//!
//! A file is Parquet when it starts with the magic bytes `PAR1`, whatever its name; pages
//! compressed with snappy, zstd, gzip or lz4, or not at all, are read. Columns of a type that is
//! not a table cell (lists, structs, maps, binary) are refused by name.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use arrow_array::{Array, RecordBatch, StringArray};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

/// Rows decoded and rendered at a time.
pub const BATCH_ROWS: usize = 8192;

/// Parquet's magic bytes, at the start and end of every file.
const MAGIC: &[u8; 4] = b"PAR1";

/// Why a Parquet table could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ColumnarError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path} is not a readable Parquet file: {why}")]
    Parquet { path: String, why: String },
    #[error("column {column:?} of {path} holds {kind} values, which are not table cells: leave it out of the table, or flatten it to numbers or text")]
    UnsupportedColumn {
        path: String,
        column: String,
        kind: String,
    },
}

/// Whether the file at `path` starts with Parquet's magic bytes.
pub fn is_parquet(path: &Path) -> std::io::Result<bool> {
    let mut head = [0u8; 4];
    let mut file = File::open(path)?;
    let mut read = 0;
    while read < head.len() {
        match file.read(&mut head[read..])? {
            0 => return Ok(false),
            n => read += n,
        }
    }
    Ok(&head == MAGIC)
}

/// A Parquet table as CSV bytes.
pub struct CsvRows {
    path: String,
    batches: ParquetRecordBatchReader,
    /// The current batch's text and how much of it was read.
    text: Vec<u8>,
    at: usize,
    /// Set when a batch failed: returned as the read error from then on.
    failed: Option<String>,
}

impl std::fmt::Debug for CsvRows {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CsvRows").field("path", &self.path).finish()
    }
}

impl CsvRows {
    /// Opens the Parquet file at `path`, named `shown` in errors; the first bytes read are its
    /// header line.
    pub fn open(path: &Path, shown: &Path) -> Result<Self, ColumnarError> {
        let shown = shown.display().to_string();
        let file = File::open(path).map_err(|source| ColumnarError::Io {
            path: shown.clone(),
            source,
        })?;
        let parquet = |e: parquet::errors::ParquetError| ColumnarError::Parquet {
            path: shown.clone(),
            why: e.to_string(),
        };
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(parquet)?;
        let schema = builder.schema().clone();
        for field in schema.fields() {
            if !is_cell(field.data_type()) {
                return Err(ColumnarError::UnsupportedColumn {
                    path: shown,
                    column: field.name().clone(),
                    kind: field.data_type().to_string(),
                });
            }
        }
        let batches = builder
            .with_batch_size(BATCH_ROWS)
            .build()
            .map_err(parquet)?;
        let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        let mut header = csv::WriterBuilder::new().from_writer(Vec::new());
        let text = header
            .write_record(&names)
            .ok()
            .and_then(|()| header.into_inner().ok())
            .unwrap_or_default();
        Ok(CsvRows {
            path: shown,
            batches,
            text,
            at: 0,
            failed: None,
        })
    }

    /// Renders the next batch into `text`; false at the end of the table.
    fn next_batch(&mut self) -> Result<bool, String> {
        let Some(batch) = self.batches.next() else {
            return Ok(false);
        };
        let batch = batch.map_err(|e| e.to_string())?;
        self.text.clear();
        self.at = 0;
        render(&batch, &mut self.text)?;
        Ok(true)
    }
}

impl Read for CsvRows {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(why) = &self.failed {
                return Err(std::io::Error::other(format!(
                    "{} is not a readable Parquet file: {why}",
                    self.path
                )));
            }
            if self.at < self.text.len() {
                let n = buf.len().min(self.text.len() - self.at);
                buf[..n].copy_from_slice(&self.text[self.at..self.at + n]);
                self.at += n;
                return Ok(n);
            }
            match self.next_batch() {
                Ok(true) => {}
                Ok(false) => return Ok(0),
                Err(why) => self.failed = Some(why),
            }
        }
    }
}

/// Whether values of `kind` render as one cell.
fn is_cell(kind: &DataType) -> bool {
    match kind {
        DataType::Dictionary(_, values) => is_cell(values),
        DataType::List(_)
        | DataType::LargeList(_)
        | DataType::ListView(_)
        | DataType::LargeListView(_)
        | DataType::FixedSizeList(_, _)
        | DataType::Struct(_)
        | DataType::Map(_, _)
        | DataType::Union(_, _)
        | DataType::RunEndEncoded(_, _)
        | DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => false,
        _ => true,
    }
}

/// `batch`'s rows as CSV lines (quoted where a cell needs it) appended to `out`.
fn render(batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), String> {
    let columns: Vec<StringArray> = batch
        .columns()
        .iter()
        .map(|column| {
            let text = arrow_cast::cast(column, &DataType::Utf8).map_err(|e| e.to_string())?;
            text.as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .ok_or_else(|| "a column did not convert to text".to_owned())
        })
        .collect::<Result<_, _>>()?;
    let mut writer = csv::WriterBuilder::new().from_writer(std::mem::take(out));
    let mut record = csv::ByteRecord::new();
    for row in 0..batch.num_rows() {
        record.clear();
        for column in &columns {
            record.push_field(if column.is_null(row) {
                b""
            } else {
                column.value(row).as_bytes()
            });
        }
        writer
            .write_byte_record(&record)
            .map_err(|e| e.to_string())?;
    }
    *out = writer.into_inner().map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use arrow_array::types::Int32Type;
    use arrow_array::{Float64Array, Int64Array, ListArray, StringArray};
    use parquet::arrow::ArrowWriter;

    fn write(path: &Path, batch: &RecordBatch) {
        let file = File::create(path).unwrap();
        let mut writer = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
        writer.write(batch).unwrap();
        writer.close().unwrap();
    }

    #[test]
    fn a_table_reads_as_csv_rows_with_missing_cells_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let batch = RecordBatch::try_from_iter([
            (
                "width",
                Arc::new(Float64Array::from(vec![Some(0.1), None, Some(2.5e-7)])) as _,
            ),
            ("n", Arc::new(Int64Array::from(vec![1, 2, 3])) as _),
            (
                "label",
                Arc::new(StringArray::from(vec!["yes", "no, really", "yes"])) as _,
            ),
        ])
        .unwrap();
        write(&path, &batch);
        assert!(is_parquet(&path).unwrap());
        let mut text = String::new();
        CsvRows::open(&path, &path)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(
            text,
            "width,n,label\n0.1,1,yes\n,2,\"no, really\"\n2.5e-7,3,yes\n"
        );
    }

    #[test]
    fn a_nested_column_is_refused_by_name_and_a_csv_is_not_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.parquet");
        let list = ListArray::from_iter_primitive::<Int32Type, _, _>(vec![Some(vec![Some(1)])]);
        let batch = RecordBatch::try_from_iter([("tags", Arc::new(list) as _)]).unwrap();
        write(&path, &batch);
        let err = CsvRows::open(&path, &path).unwrap_err().to_string();
        assert!(
            err.contains("\"tags\"") && err.contains("not table cells"),
            "{err}"
        );

        let csv = dir.path().join("t.csv");
        std::fs::write(&csv, "a,b\n1,2\n").unwrap();
        assert!(!is_parquet(&csv).unwrap());
        std::fs::write(&csv, "PA").unwrap();
        assert!(!is_parquet(&csv).unwrap());
        let err = CsvRows::open(&csv, &csv).unwrap_err().to_string();
        assert!(err.contains("not a readable Parquet file"), "{err}");
    }
}
