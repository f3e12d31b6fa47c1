//! A feeder's file read as a stream: CSV with a header row, JSON Lines, or one JSON
//! array, each gzip-compressed or not (by the `.gz` suffix), one record at a time — a
//! file of any size costs the parser's buffer, never its size. A malformed row is
//! reported with its file, line and column and skipped; only the file's own I/O error
//! (or, inside a JSON array, a syntax error, after which nothing can be resynchronised)
//! ends the pass.

use serde::de::{Deserializer as _, SeqAccess, Visitor};
use serde_json::Value as Json;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

/// Read buffer per open file.
const READ_BUFFER: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A header row names the fields; every value is a string.
    Csv,
    /// One JSON value per line (blank lines skipped).
    JsonLines,
    /// One JSON array of values.
    JsonArray,
}

impl Format {
    /// The format a file's name says, and whether it is gzip-compressed:
    /// `.csv`, `.jsonl`/`.ndjson`, `.json`, each optionally followed by `.gz`.
    pub fn of(path: &Path) -> Option<(Format, bool)> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        let (stem, gz) = match name.strip_suffix(".gz") {
            Some(s) => (s.to_string(), true),
            None => (name, false),
        };
        let f = if stem.ends_with(".csv") {
            Format::Csv
        } else if stem.ends_with(".jsonl") || stem.ends_with(".ndjson") {
            Format::JsonLines
        } else if stem.ends_with(".json") {
            Format::JsonArray
        } else {
            return None;
        };
        Some((f, gz))
    }
}

/// A row that does not read, where it is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}:{line}:{column}: {message}", file.display())]
pub struct RowError {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

/// What a pass over the file yields, in file order.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Record(Json),
    Bad(RowError),
}

/// Opens `path`, decompressing when `gz`.
fn open(path: &Path, gz: bool) -> std::io::Result<Box<dyn BufRead + Send>> {
    let f = std::fs::File::open(path)?;
    Ok(if gz {
        Box::new(BufReader::with_capacity(
            READ_BUFFER,
            flate2::read::MultiGzDecoder::new(f),
        ))
    } else {
        Box::new(BufReader::with_capacity(READ_BUFFER, f))
    })
}

/// Streams `path`'s records to `visit` in file order until the file ends or `visit`
/// returns false. Err: the file could not be read (or a JSON array broke off).
pub fn stream(
    path: &Path,
    format: Format,
    gz: bool,
    mut visit: impl FnMut(Item) -> bool,
) -> Result<(), RowError> {
    let io = |e: std::io::Error| RowError {
        file: path.to_path_buf(),
        line: 0,
        column: 0,
        message: e.to_string(),
    };
    let r = open(path, gz).map_err(io)?;
    match format {
        Format::Csv => csv_rows(path, r, &mut visit),
        Format::JsonLines => json_lines(path, r, &mut visit),
        Format::JsonArray => json_array(path, r, &mut visit),
    }
}

fn csv_rows(
    path: &Path,
    r: Box<dyn BufRead + Send>,
    visit: &mut dyn FnMut(Item) -> bool,
) -> Result<(), RowError> {
    let mut rdr = csv::ReaderBuilder::new().has_headers(true).from_reader(r);
    let at = |pos: Option<&csv::Position>, column: u64, message: String| RowError {
        file: path.to_path_buf(),
        line: pos.map_or(0, csv::Position::line),
        column,
        message,
    };
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| at(e.position(), 0, format!("the header row: {e}")))?
        .iter()
        .map(str::to_string)
        .collect();
    let mut rec = csv::StringRecord::new();
    loop {
        match rdr.read_record(&mut rec) {
            Ok(false) => return Ok(()),
            Ok(true) => {
                let obj: serde_json::Map<String, Json> = headers
                    .iter()
                    .zip(rec.iter())
                    .map(|(k, v)| (k.clone(), Json::String(v.to_string())))
                    .collect();
                if !visit(Item::Record(Json::Object(obj))) {
                    return Ok(());
                }
            }
            Err(e) => {
                let bad = match e.kind() {
                    csv::ErrorKind::UnequalLengths {
                        pos,
                        expected_len,
                        len,
                    } => at(
                        pos.as_ref(),
                        (*expected_len).min(*len) + 1,
                        format!("{len} fields where the header has {expected_len}"),
                    ),
                    csv::ErrorKind::Utf8 { pos, err } => at(
                        pos.as_ref(),
                        err.field() as u64 + 1,
                        "not UTF-8".to_string(),
                    ),
                    csv::ErrorKind::Io(_) => return Err(at(e.position(), 0, e.to_string())),
                    _ => at(e.position(), 0, e.to_string()),
                };
                if !visit(Item::Bad(bad)) {
                    return Ok(());
                }
            }
        }
    }
}

fn json_lines(
    path: &Path,
    mut r: Box<dyn BufRead + Send>,
    visit: &mut dyn FnMut(Item) -> bool,
) -> Result<(), RowError> {
    let mut line = String::new();
    let mut n = 0u64;
    loop {
        line.clear();
        let read = r.read_line(&mut line).map_err(|e| RowError {
            file: path.to_path_buf(),
            line: n + 1,
            column: 0,
            message: e.to_string(),
        })?;
        if read == 0 {
            return Ok(());
        }
        n += 1;
        if line.trim().is_empty() {
            continue;
        }
        let item = match serde_json::from_str::<Json>(&line) {
            Ok(v) => Item::Record(v),
            Err(e) => Item::Bad(RowError {
                file: path.to_path_buf(),
                line: n,
                column: e.column() as u64,
                message: e.to_string(),
            }),
        };
        if !visit(item) {
            return Ok(());
        }
    }
}

/// The array's elements one by one, through serde's sequence visitor.
fn json_array(
    path: &Path,
    r: Box<dyn BufRead + Send>,
    visit: &mut dyn FnMut(Item) -> bool,
) -> Result<(), RowError> {
    struct Each<'a>(&'a mut dyn FnMut(Item) -> bool);
    impl<'de> Visitor<'de> for Each<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON array of records")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(v) = seq.next_element::<Json>()? {
                if !(self.0)(Item::Record(v)) {
                    // Stop reading: the rest is never parsed.
                    return Err(serde::de::Error::custom(STOPPED));
                }
            }
            Ok(())
        }
    }
    const STOPPED: &str = "soakd: stopped";
    let mut de = serde_json::Deserializer::from_reader(r);
    match de.deserialize_seq(Each(visit)) {
        Ok(()) => Ok(()),
        Err(e) if e.to_string().starts_with(STOPPED) => Ok(()),
        Err(e) => Err(RowError {
            file: path.to_path_buf(),
            line: e.line() as u64,
            column: e.column() as u64,
            message: e.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn all(path: &Path) -> (Vec<Json>, Vec<RowError>, Result<(), RowError>) {
        let (f, gz) = Format::of(path).unwrap();
        let (mut ok, mut bad) = (Vec::new(), Vec::new());
        let r = stream(path, f, gz, |i| {
            match i {
                Item::Record(v) => ok.push(v),
                Item::Bad(e) => bad.push(e),
            }
            true
        });
        (ok, bad, r)
    }

    #[test]
    fn csv_rows_are_objects_of_the_header_and_a_bad_row_says_where() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("users.csv");
        std::fs::write(&p, "id,token\n1,a\n2\n3,c\n").unwrap();
        let (ok, bad, r) = all(&p);
        r.unwrap();
        assert_eq!(
            ok,
            vec![
                serde_json::json!({"id": "1", "token": "a"}),
                serde_json::json!({"id": "3", "token": "c"})
            ]
        );
        assert_eq!(bad.len(), 1);
        assert_eq!((bad[0].line, bad[0].column), (3, 2), "{}", bad[0]);
        assert!(
            bad[0]
                .to_string()
                .contains("users.csv:3:2: 1 fields where the header has 2"),
            "{}",
            bad[0]
        );
    }

    #[test]
    fn json_lines_and_arrays_gzipped_or_not_stream_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let jl = dir.path().join("ids.jsonl.gz");
        let mut gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&jl).unwrap(),
            flate2::Compression::fast(),
        );
        writeln!(gz, "{{\"id\": 1}}\n\n{{\"id\": 2,}}\n{{\"id\": 3}}").unwrap();
        gz.finish().unwrap();
        let (ok, bad, r) = all(&jl);
        r.unwrap();
        assert_eq!(
            ok,
            vec![serde_json::json!({"id": 1}), serde_json::json!({"id": 3})]
        );
        assert_eq!(bad[0].line, 3, "{}", bad[0]);
        let arr = dir.path().join("ids.json");
        std::fs::write(&arr, "[{\"id\": 1}, {\"id\": 2}, {\"id\": 3}]").unwrap();
        let (ok, bad, r) = all(&arr);
        r.unwrap();
        assert_eq!(ok.len(), 3);
        assert!(bad.is_empty());
        // Stopping early reads no further.
        let mut seen = 0;
        stream(&arr, Format::JsonArray, false, |_| {
            seen += 1;
            seen < 2
        })
        .unwrap();
        assert_eq!(seen, 2);
        // A broken array ends the pass with where it broke.
        std::fs::write(&arr, "[{\"id\": 1},\n {\"id\" 2}]").unwrap();
        let (ok, _, r) = all(&arr);
        assert_eq!(ok.len(), 1);
        let e = r.unwrap_err();
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn formats_come_from_the_name() {
        let f = |n: &str| Format::of(Path::new(n));
        assert_eq!(f("a.CSV"), Some((Format::Csv, false)));
        assert_eq!(f("a.ndjson.gz"), Some((Format::JsonLines, true)));
        assert_eq!(f("a.json"), Some((Format::JsonArray, false)));
        assert_eq!(f("a.txt"), None);
    }
}
