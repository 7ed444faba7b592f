//! The inference log: what production was asked and what it answered, as JSON lines where the
//! pipeline can read them (to find drift, and to build the next training set).
//!
//! ```text
//! <log dir>/<model>/<YYYY-MM-DD>/<instance>-<seq>.jsonl
//! ```
//!
//! The request path only decides whether the request is sampled and queues a record (the model,
//! the decoded rows, the request id, the route, the status): `try_send` into a bounded queue, a
//! full queue drops the record and counts it, and never a system call (the writer is not parked
//! on the queue; it drains it every 10 ms). The writer thread re-scores the rows (production, and
//! the candidate if the request was shadowed; microseconds), formats one line per instance and
//! appends each batch with one `write`. Files rotate by size and at midnight UTC; a full or
//! failing disk drops lines (counted), never slows an answer. A crash loses what the writer had
//! not written yet, at most the last 10 ms; a graceful stop drains the queue and closes files.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use prometheus::IntCounter;

use crate::registry::LoadedModel;
use crate::store::rfc3339_millis;
use crate::telemetry::Metrics;

/// Records waiting for the writer.
const QUEUE: usize = 8192;
/// How long the writer sleeps after draining the queue.
const NAP: Duration = Duration::from_millis(10);

/// Checked settings of the inference log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub dir: PathBuf,
    /// The fraction of requests logged, 0 to 1.
    pub rate: f64,
    /// A file is closed and the next one opened once it reaches this size.
    pub max_file_bytes: u64,
    /// This server's name in file names.
    pub instance: String,
}

/// One request to log.
pub struct Record {
    pub production: Arc<LoadedModel>,
    /// The candidate the request was shadowed with, if it was.
    pub candidate: Option<Arc<LoadedModel>>,
    pub request_id: String,
    pub route: &'static str,
    /// The decoded rows (row-major, model feature order); empty for a failed request.
    pub rows: Vec<f64>,
    /// Whether the request was a batch (lines then carry their position).
    pub batch: bool,
    pub status: u16,
    pub error: Option<String>,
    pub at: SystemTime,
}

/// The inference log of one server: the queue's sending side and the writer thread.
pub struct InferenceLog {
    rate: f64,
    sender: Option<SyncSender<Record>>,
    dropped: IntCounter,
    writer: Option<JoinHandle<()>>,
}

impl InferenceLog {
    /// A log that logs nothing.
    pub fn off(metrics: &Metrics) -> Self {
        Self {
            rate: 0.0,
            sender: None,
            dropped: metrics.inference_log_dropped(),
            writer: None,
        }
    }

    /// Starts the writer thread.
    pub fn start(config: LogConfig, metrics: Arc<Metrics>) -> Self {
        let dropped = metrics.inference_log_dropped();
        let (sender, receiver) = mpsc::sync_channel(QUEUE);
        let rate = config.rate;
        let writer = std::thread::Builder::new()
            .name("limen-inference-log".to_owned())
            .spawn(move || Writer::new(config, &metrics).run(receiver));
        match writer {
            Ok(handle) => Self {
                rate,
                sender: Some(sender),
                dropped,
                writer: Some(handle),
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot start the inference log writer; not logging");
                Self {
                    rate: 0.0,
                    sender: None,
                    dropped,
                    writer: None,
                }
            }
        }
    }

    pub fn enabled(&self) -> bool {
        self.sender.is_some()
    }

    /// Whether to log this request: true with probability `rate`.
    pub fn sample(&self) -> bool {
        self.sender.is_some() && (self.rate >= 1.0 || fastrand::f64() < self.rate)
    }

    /// Queues `record`; drops it, counted, when the queue is full.
    pub fn submit(&self, record: Record) {
        let Some(sender) = &self.sender else { return };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = sender.try_send(record)
        {
            self.dropped.inc();
        }
    }

    /// Stops accepting records, lets the writer write everything queued and close its files,
    /// and waits for it (at most `deadline`).
    pub fn close(mut self, deadline: Duration) {
        self.sender = None;
        let Some(writer) = self.writer.take() else {
            return;
        };
        let started = std::time::Instant::now();
        while !writer.is_finished() && started.elapsed() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if writer.is_finished() {
            let _ = writer.join();
        } else {
            tracing::warn!("the inference log writer did not finish in time; some lines are lost");
        }
    }
}

/// A new request id: 128 random bits in hex.
pub fn new_request_id() -> String {
    // 32 lowercase hex digits of a random u128: what `format!("{:032x}")` writes, without the
    // formatting machinery (one id is made per request while the log is on).
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 32];
    for (pair, byte) in digits
        .chunks_exact_mut(2)
        .zip(fastrand::u128(..).to_be_bytes())
    {
        pair[0] = HEX[usize::from(byte >> 4)];
        pair[1] = HEX[usize::from(byte & 0xf)];
    }
    // ASCII by construction: the conversion borrows, and `into_owned` makes the one allocation.
    String::from_utf8_lossy(&digits).into_owned()
}

/// An open log file.
struct Open {
    file: File,
    day: String,
    seq: u64,
    bytes: u64,
}

struct Writer {
    config: LogConfig,
    files: HashMap<String, Open>,
    lines: IntCounter,
    dropped: IntCounter,
    buffer: Vec<u8>,
    formatter: Formatter,
    /// When the last write error was logged (once a minute at most).
    last_warning: Option<std::time::Instant>,
}

impl Writer {
    fn new(config: LogConfig, metrics: &Metrics) -> Self {
        Self {
            config,
            files: HashMap::new(),
            lines: metrics.inference_log_lines(),
            dropped: metrics.inference_log_dropped(),
            buffer: Vec::with_capacity(64 * 1024),
            formatter: Formatter::default(),
            last_warning: None,
        }
    }

    fn run(mut self, receiver: Receiver<Record>) {
        let mut batch: Vec<Record> = Vec::new();
        loop {
            // Drain everything queued, grouped per model into one write each.
            let disconnected = loop {
                match receiver.try_recv() {
                    Ok(record) => {
                        batch.push(record);
                        if batch.len() >= 4096 {
                            break false;
                        }
                    }
                    Err(mpsc::TryRecvError::Empty) => break false,
                    Err(mpsc::TryRecvError::Disconnected) => break true,
                }
            };
            if !batch.is_empty() {
                self.write_batch(&batch);
                batch.clear();
            } else if disconnected {
                break;
            } else {
                std::thread::sleep(NAP);
            }
        }
        for (_, open) in self.files.drain() {
            let _ = open.file.sync_data();
        }
    }

    fn write_batch(&mut self, batch: &[Record]) {
        // Grouped by the name the records borrow: no copy of it per record.
        let mut by_model: HashMap<&str, Vec<&Record>> = HashMap::new();
        for record in batch {
            by_model
                .entry(record.production.model.name())
                .or_default()
                .push(record);
        }
        for (model, records) in by_model {
            self.buffer.clear();
            let mut lines = 0u64;
            for record in &records {
                lines += self.formatter.format(record, &mut self.buffer);
            }
            let day = day_of(records.last().map_or(SystemTime::now(), |r| r.at));
            match self.append(model, &day) {
                Ok(()) => self.lines.inc_by(lines),
                Err(e) => {
                    self.dropped.inc_by(records.len() as u64);
                    if self
                        .last_warning
                        .is_none_or(|t| t.elapsed() > Duration::from_secs(60))
                    {
                        tracing::warn!(model = %model, error = %e, "cannot write the inference log; dropping lines (counted in limen_inference_log_dropped_total)");
                        self.last_warning = Some(std::time::Instant::now());
                    }
                    // Reopen next time: the disk may have recovered, or the folder come back.
                    self.files.remove(model);
                }
            }
        }
    }

    /// Appends the buffer's lines to `model`'s current file for `day`, as many per `write` as
    /// fit, opening (or rotating to) a new file when the day changed or the next line would pass
    /// the size limit. A line is never split between files or writes.
    fn append(&mut self, model: &str, day: &str) -> std::io::Result<()> {
        let max = self.config.max_file_bytes;
        let mut rest = std::mem::take(&mut self.buffer);
        let mut start = 0;
        let result = loop {
            if start >= rest.len() {
                break Ok(());
            }
            let room = self
                .files
                .get(model)
                .filter(|open| open.day == day)
                .map_or(0, |open| max.saturating_sub(open.bytes));
            // The longest run of whole lines that fits (at least one line, in an empty file):
            // all of them, or those up to the last line end within `room` bytes.
            let pending = &rest[start..];
            let mut end = if pending.len() as u64 <= room {
                rest.len()
            } else {
                let fits = usize::try_from(room).map_or(pending.len(), |r| r.min(pending.len()));
                pending[..fits]
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(start, |i| start + i + 1)
            };
            if end == start {
                let fresh = self
                    .files
                    .get(model)
                    .is_some_and(|o| o.day == day && o.bytes == 0);
                if fresh {
                    // A single line longer than the limit: it gets a file of its own.
                    end = rest[start..]
                        .iter()
                        .position(|b| *b == b'\n')
                        .map_or(rest.len(), |i| start + i + 1);
                } else {
                    let next_seq = self
                        .files
                        .get(model)
                        .filter(|open| open.day == day)
                        .map(|open| open.seq + 1);
                    match self.open(model, day, next_seq) {
                        Ok(open) => {
                            self.files.insert(model.to_owned(), open);
                            continue;
                        }
                        Err(e) => break Err(e),
                    }
                }
            }
            let Some(open) = self.files.get_mut(model) else {
                break Err(std::io::Error::other("no open file"));
            };
            if let Err(e) = open.file.write_all(&rest[start..end]) {
                break Err(e);
            }
            open.bytes += (end - start) as u64;
            start = end;
        };
        rest.clear();
        self.buffer = rest;
        result
    }

    /// Opens `<dir>/<model>/<day>/<instance>-<seq>.jsonl`, `seq` after any file of this instance
    /// already there (a restarted server never appends to or overwrites an old file).
    fn open(&self, model: &str, day: &str, seq: Option<u64>) -> std::io::Result<Open> {
        let folder = self.config.dir.join(model).join(day);
        std::fs::create_dir_all(&folder)?;
        let seq = match seq {
            Some(seq) => seq,
            None => next_seq(&folder, &self.config.instance),
        };
        let path = folder.join(format!("{}-{seq}.jsonl", self.config.instance));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .or_else(|_| {
                // Taken meanwhile (a second server with the same instance name): skip ahead.
                let path = folder.join(format!(
                    "{}-{}.jsonl",
                    self.config.instance,
                    next_seq(&folder, &self.config.instance)
                ));
                OpenOptions::new().create_new(true).append(true).open(path)
            })?;
        Ok(Open {
            file,
            day: day.to_owned(),
            seq,
            bytes: 0,
        })
    }
}

/// One more than the largest `<instance>-<n>.jsonl` in `folder`, or 0.
fn next_seq(folder: &Path, instance: &str) -> u64 {
    let prefix = format!("{instance}-");
    std::fs::read_dir(folder)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.strip_prefix(&prefix)?
                        .strip_suffix(".jsonl")?
                        .parse::<u64>()
                        .ok()
                })
                .max()
                .map_or(0, |n| n + 1)
        })
        .unwrap_or(0)
}

/// `YYYY-MM-DD` (UTC) of `t`.
fn day_of(t: SystemTime) -> String {
    let mut stamp = rfc3339_millis(t);
    stamp.truncate(10);
    stamp
}

/// Formats records into log lines, keeping the text of the last timestamp: the writer takes
/// records in arrival order, so under load consecutive records share their millisecond and the
/// timestamp is formatted once for all of them.
#[derive(Default)]
pub struct Formatter {
    /// Milliseconds since 1970 and their RFC 3339 text.
    stamp: Option<(u128, String)>,
}

impl Formatter {
    /// `at` in RFC 3339 with milliseconds.
    fn timestamp(&mut self, at: SystemTime) -> &str {
        let millis = at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        if self.stamp.as_ref().is_none_or(|(last, _)| *last != millis) {
            let text = rfc3339_millis(at);
            self.stamp = Some((millis, text));
        }
        self.stamp.as_ref().map_or("", |(_, text)| text)
    }

    /// Appends `record`'s lines to `out` (what the writer does per record); returns how many.
    pub fn format(&mut self, record: &Record, out: &mut Vec<u8>) -> u64 {
        let ts = self.timestamp(record.at);
        format_record(record, ts, out)
    }
}

/// `record`'s lines, stamped `ts`, appended to `out`; returns how many.
///
/// A line is written field by field from the models' rendered templates (the names, labels and
/// versions were escaped once, at load), in this order:
///
/// ```text
/// {"ts":…,"model":…,"version":…,"request_id":…[,"index":…],"route":…,"status":…[,"error":…]
///  [,"features":{…},"label":…,"probabilities":{…}][,"shadow":{"version":…,"label":…,"probabilities":{…}}]}
/// ```
fn format_record(record: &Record, ts: &str, out: &mut Vec<u8>) -> u64 {
    let production = &record.production;
    let template = &production.template;
    // Every line of the record starts with the same fields: written once, copied after.
    let head = out.len();
    out.extend_from_slice(b"{\"ts\":\"");
    out.extend_from_slice(ts.as_bytes());
    out.extend_from_slice(b"\",");
    out.extend_from_slice(template.model_fields());
    out.extend_from_slice(b"\"request_id\":");
    write_str(out, &record.request_id);
    let head = head..out.len();
    let rest = |out: &mut Vec<u8>| {
        out.extend_from_slice(b",\"route\":");
        write_str(out, record.route);
        out.extend_from_slice(b",\"status\":");
        out.extend_from_slice(itoa::Buffer::new().format(record.status).as_bytes());
        if let Some(error) = &record.error {
            out.extend_from_slice(b",\"error\":");
            write_str(out, error);
        }
    };
    if record.rows.is_empty() {
        rest(out);
        out.extend_from_slice(b"}\n");
        return 1;
    }
    let model = &production.model;
    let width = model.feature_names().len().max(1);
    let mut probabilities = Vec::new();
    let mut shadow_p = Vec::new();
    let mut gathered = Vec::new();
    // The candidate is scored on the same values by feature name, as the shadow worker does.
    let columns = record.candidate.as_ref().map(|candidate| {
        crate::model::ColumnMap::new(model.feature_names(), candidate.model.feature_names())
    });
    let mut lines = 0;
    for (i, row) in record.rows.chunks_exact(width).enumerate() {
        let Ok(class) = model.predict_into(row, &mut probabilities) else {
            continue;
        };
        if lines > 0 {
            out.extend_from_within(head.clone());
        }
        if record.batch {
            out.extend_from_slice(b",\"index\":");
            out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
        }
        rest(out);
        out.extend_from_slice(b",\"features\":");
        template.write_features(out, row);
        out.push(b',');
        template.write_label(out, class, &probabilities);
        if let (Some(candidate), Some(columns)) = (&record.candidate, &columns) {
            let scored = columns
                .apply(row, &mut gathered)
                .map(|row| candidate.model.predict_into(row, &mut shadow_p));
            if let Some(Ok(class)) = scored {
                out.extend_from_slice(b",\"shadow\":{\"version\":\"");
                out.extend_from_slice(candidate.template.version());
                out.extend_from_slice(b"\",");
                candidate.template.write_label(out, class, &shadow_p);
                out.push(b'}');
            }
        }
        out.extend_from_slice(b"}\n");
        lines += 1;
    }
    if lines == 0 {
        // No row scored (a model that cannot score them): no line, not even the head.
        out.truncate(head.start);
    }
    lines
}

/// `s` as a JSON string. Ids, routes and messages rarely need escaping: those that do go
/// through serde_json.
fn write_str(out: &mut Vec<u8>, s: &str) {
    // Without short-circuiting, so the check runs over whole vectors of bytes.
    let plain = s.bytes().fold(true, |plain, b| {
        plain & (b >= 0x20) & (b != b'"') & (b != b'\\')
    });
    if plain {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing a str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Model;
    use crate::store::VersionId;

    fn loaded(version: u64, intercept: f64) -> Arc<LoadedModel> {
        let mut artifact = crate::model::tests::binary_artifact();
        artifact.version = version;
        artifact.intercepts = vec![intercept];
        let model = Model::new(artifact).unwrap();
        let metrics = Metrics::new();
        let handles = metrics.model_handles("iris", &version.to_string(), model.feature_names());
        Arc::new(LoadedModel::new(
            model,
            VersionId::try_from(version).unwrap(),
            handles,
            None,
        ))
    }

    #[test]
    fn a_timestamp_is_reused_only_within_its_millisecond() {
        let mut formatter = Formatter::default();
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_micros(1_795_901_812_551_200);
        let micros = std::time::Duration::from_micros;
        for (t, text) in [
            (at, "2026-11-28T21:36:52.551Z"),
            (at + micros(700), "2026-11-28T21:36:52.551Z"),
            (at + micros(800), "2026-11-28T21:36:52.552Z"),
            (at - micros(1_000), "2026-11-28T21:36:52.550Z"),
        ] {
            assert_eq!(formatter.timestamp(t), text);
        }
    }

    #[test]
    fn a_buffer_of_lines_is_split_between_files_only_at_line_ends() {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            dir: dir.path().to_owned(),
            rate: 1.0,
            max_file_bytes: 100,
            instance: "pod".into(),
        };
        let mut writer = Writer::new(config, &Metrics::new());
        let mut written = Vec::new();
        for round in 0..3 {
            // Lines of 1 to 61 bytes, and one longer than a whole file in the middle.
            for i in 0..40 {
                let len = if i == 20 { 250 } else { (i * 7 + round) % 61 };
                writer
                    .buffer
                    .extend(std::iter::repeat_n(b'a' + i as u8 % 26, len));
                writer.buffer.push(b'\n');
            }
            written.extend_from_slice(&writer.buffer);
            writer.append("iris", "2026-11-29").unwrap();
            assert!(writer.buffer.is_empty());
        }
        let folder = dir.path().join("iris").join("2026-11-29");
        let count = std::fs::read_dir(&folder).unwrap().count();
        let mut read = Vec::new();
        for seq in 0..count {
            let file = std::fs::read(folder.join(format!("pod-{seq}.jsonl"))).unwrap();
            assert_eq!(file.last(), Some(&b'\n'), "file {seq} ends inside a line");
            let lines = file.iter().filter(|b| **b == b'\n').count();
            assert!(
                file.len() <= 100 || lines == 1,
                "file {seq}: {} bytes in {lines} lines",
                file.len()
            );
            read.extend_from_slice(&file);
        }
        assert_eq!(read, written, "every line once, in order");
        assert!(count > 20, "{count} files");
    }

    proptest::proptest! {
        /// Ids and messages are written without serde: any text round-trips through a line.
        #[test]
        fn any_id_and_error_round_trip_through_a_line(id in "\\PC{0,40}|[\"\\\\\n\t\u{1}é]{0,8}", error in proptest::option::of("\\PC{0,40}|[\"\\\\\r\u{7f}]{0,8}"), rows in proptest::collection::vec(-1e3f64..1e3, 0..4)) {
            let record = Record {
                production: loaded(7, -7.0),
                candidate: Some(loaded(9, -6.0)),
                request_id: id.clone(),
                route: "/predict",
                batch: rows.len() > 1,
                rows: rows.clone(),
                status: 200,
                error: error.clone(),
                at: SystemTime::UNIX_EPOCH,
            };
            let mut out = Vec::new();
            let n = Formatter::default().format(&record, &mut out);
            let text = String::from_utf8(out).unwrap();
            proptest::prop_assert_eq!(n as usize, rows.len().max(1));
            proptest::prop_assert_eq!(text.lines().count(), rows.len().max(1));
            for (i, line) in text.lines().enumerate() {
                let line: serde_json::Value = serde_json::from_str(line).unwrap();
                proptest::prop_assert_eq!(&line["request_id"], &serde_json::json!(id));
                proptest::prop_assert_eq!(&line["error"], &serde_json::json!(error));
                if let Some(x) = rows.get(i) {
                    proptest::prop_assert_eq!(&line["features"]["petal_width"], &serde_json::json!(x));
                    proptest::prop_assert_eq!(&line["shadow"]["version"], "9");
                }
            }
        }
    }

    #[test]
    fn request_ids_are_32_lowercase_hex_digits() {
        let a = new_request_id();
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{a}"
        );
        assert_ne!(a, new_request_id());
    }

    #[test]
    fn each_instance_is_one_line_with_the_answers_of_both_models() {
        let production = loaded(7, -7.193421057651488);
        let candidate = loaded(8, -6.0);
        let record = Record {
            production: Arc::clone(&production),
            candidate: Some(Arc::clone(&candidate)),
            request_id: "req-1".into(),
            route: "/predict",
            rows: vec![2.1, 0.2],
            batch: true,
            status: 200,
            error: None,
            at: SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_795_901_812_551),
        };
        let mut out = Vec::new();
        assert_eq!(Formatter::default().format(&record, &mut out), 2);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        for (i, (line, x)) in lines.iter().zip([2.1, 0.2]).enumerate() {
            let score = |m: &Model| {
                let mut p = Vec::new();
                let class = m.predict_into(&[x], &mut p).unwrap();
                (m.classes()[class].clone(), p)
            };
            let (label, p) = score(&production.model);
            let (shadow_label, q) = score(&candidate.model);
            assert_eq!(line["ts"], "2026-11-28T21:36:52.551Z");
            assert_eq!(line["model"], "iris");
            assert_eq!(line["version"], "7");
            assert_eq!(line["request_id"], "req-1");
            assert_eq!(line["index"], i);
            assert_eq!(line["route"], "/predict");
            assert_eq!(line["status"], 200);
            assert_eq!(line["features"], serde_json::json!({"petal_width": x}));
            assert_eq!(line["label"], label);
            assert_eq!(
                line["probabilities"],
                serde_json::json!({"not_virginica": p[0], "virginica": p[1]})
            );
            assert_eq!(
                line["shadow"],
                serde_json::json!({"version": "8", "label": shadow_label,
                    "probabilities": {"not_virginica": q[0], "virginica": q[1]}})
            );
        }
        // Probabilities keep the model's class order.
        assert!(
            text.contains(r#""probabilities":{"not_virginica":"#),
            "{text}"
        );

        let failed = Record {
            rows: Vec::new(),
            batch: false,
            status: 422,
            error: Some("bad".into()),
            candidate: None,
            ..record
        };
        let mut out = Vec::new();
        assert_eq!(Formatter::default().format(&failed, &mut out), 1);
        let line: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(line["error"], "bad");
        assert_eq!(line["status"], 422);
        assert!(line.get("features").is_none() && line.get("index").is_none());
    }
}
