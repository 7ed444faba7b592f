//! The inference log: what production was asked and what it answered, as JSON lines where the
//! pipeline can read them (to find drift, and to build the next training set).
//!
//! ```text
//! <log dir>/<model>/<YYYY-MM-DD>/<instance>-<seq>.jsonl
//! <log dir>/.lock-<instance>          held by the one server logging as <instance>
//! ```
//!
//! The request path only decides whether the request is sampled, reserves the record's bytes
//! from the memory budget and queues it (the model, the decoded rows, the request id, the route,
//! the status): `try_send` into a bounded queue; a record the budget or the queue cannot hold is
//! dropped and counted, never waited for, and never a system call (the writer is not parked on
//! the queue; it drains it every 10 ms). The writer thread re-scores the rows (production, and
//! the candidate if the request was shadowed; microseconds), formats one line per instance and
//! writes them in chunks of at most 256 KiB, so a large batch never becomes one large buffer.
//!
//! Files rotate by size (`--inference-log-max-file`, at least 64 KiB) and at midnight UTC; at
//! most 16 files are open at once (the least recently written is closed, and a model written
//! again continues in a new file); each model's day is capped (`--inference-log-max-day`).
//! A disk that refuses a write drops the chunk (counted), closes the file, removes it if it was
//! left empty, and backs off (250 ms doubling to 5 s) before it tries again. A file whose path
//! no longer leads to it (its folder was deleted or replaced) is noticed within a second and
//! logging continues in a new file. A second server started with the same `--instance` on the
//! same folder is refused at start, rather than interleave with the first. A crash (`kill -9`)
//! loses what was still queued; a graceful stop writes everything queued and closes the files.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::num::NonZeroUsize;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use lru::LruCache;
use prometheus::IntCounter;

use crate::budget::{Budget, Reservation};
use crate::registry::LoadedModel;
use crate::store::rfc3339_millis;
use crate::telemetry::Metrics;

/// Records waiting for the writer (their bytes are bounded by the memory budget too).
const QUEUE: usize = 8192;
/// How long the writer sleeps after draining the queue.
const NAP: Duration = Duration::from_millis(10);
/// Bytes of lines the writer formats before it writes them out.
const CHUNK: usize = 256 * 1024;
/// Log files open at once.
const OPEN_FILES: usize = 16;
/// What a queued record holds besides its rows: the record, its id and message, the queue slot.
const RECORD_BYTES: usize = 256;
/// The smallest `--inference-log-max-file`.
pub const MIN_FILE_BYTES: u64 = 64 * 1024;
/// The first and the longest pause after a write the disk refused.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often an open file's path is checked to still lead to it.
const RECHECK: Duration = Duration::from_secs(1);
/// Sequence numbers above this in a file name are not limen's: ignored.
const MAX_SEQ: u64 = 1_000_000_000;

/// Checked settings of the inference log.
#[derive(Debug, Clone)]
pub struct LogConfig {
    pub dir: PathBuf,
    /// The fraction of requests logged, 0 to 1.
    pub rate: f64,
    /// A file is closed and the next one opened once it reaches this size (≥ [`MIN_FILE_BYTES`]).
    pub max_file_bytes: u64,
    /// The most bytes this server writes for one model in one day (UTC); the rest is dropped
    /// and counted.
    pub max_day_bytes: u64,
    /// This server's name in file names.
    pub instance: String,
}

/// Why the inference log cannot start.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot create the inference log folder {path}: {source}")]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("another limen serve already logs as instance {instance:?} into {dir} (it holds {lock}); give each server its own --instance, or its lines and this one's would interleave and be lost")]
    InstanceTaken {
        instance: String,
        dir: PathBuf,
        lock: PathBuf,
    },
    #[error("cannot lock {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
    /// The texts of the rows' unseen categories ([`crate::api::Decoded::unseen`]).
    pub unseen: Vec<String>,
    /// Whether the request was a batch (its lines are keyed `request_id#index` for labels).
    pub batch: bool,
    pub status: u16,
    pub error: Option<String>,
    pub at: SystemTime,
}

/// A queued record and its bytes in the memory budget, given back once it is written.
struct Queued {
    record: Record,
    _held: Reservation,
}

/// `limen_inference_log_dropped_total`'s series, by reason.
#[derive(Clone)]
struct Dropped {
    queue_full: IntCounter,
    over_budget: IntCounter,
    write_failed: IntCounter,
    day_cap: IntCounter,
}

impl Dropped {
    fn new(metrics: &Metrics) -> Self {
        Self {
            queue_full: metrics.inference_log_dropped("queue_full"),
            over_budget: metrics.inference_log_dropped("over_budget"),
            write_failed: metrics.inference_log_dropped("write_failed"),
            day_cap: metrics.inference_log_dropped("day_cap"),
        }
    }
}

/// Lines a record makes: one per instance, or one for a failed request.
fn lines_of(record: &Record) -> u64 {
    let width = record.production.model.feature_names().len().max(1);
    (record.rows.len() / width).max(1) as u64
}

/// The inference log of one server: the queue's sending side, the writer thread, and the lock
/// that keeps its instance name its own.
pub struct InferenceLog {
    rate: f64,
    sender: Option<SyncSender<Queued>>,
    budget: Budget,
    dropped: Dropped,
    writer: Option<JoinHandle<()>>,
    /// `<dir>/.lock-<instance>`, locked while this server logs.
    _lock: Option<File>,
}

impl InferenceLog {
    /// A log that logs nothing.
    pub fn off(metrics: &Metrics) -> Self {
        Self {
            rate: 0.0,
            sender: None,
            budget: Budget::unlimited(),
            dropped: Dropped::new(metrics),
            writer: None,
            _lock: None,
        }
    }

    /// Creates the folder, takes the instance's lock (refused while another server holds it),
    /// and starts the writer thread. Queued records reserve their bytes from `budget`.
    pub fn start(
        config: LogConfig,
        metrics: Arc<Metrics>,
        budget: Budget,
    ) -> Result<Self, LogError> {
        std::fs::create_dir_all(&config.dir).map_err(|source| LogError::Folder {
            path: config.dir.clone(),
            source,
        })?;
        let lock_path = config.dir.join(format!(".lock-{}", config.instance));
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| LogError::Lock {
                path: lock_path.clone(),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(LogError::InstanceTaken {
                    instance: config.instance.clone(),
                    dir: config.dir.clone(),
                    lock: lock_path,
                })
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(LogError::Lock {
                    path: lock_path,
                    source,
                })
            }
        }
        let dropped = Dropped::new(&metrics);
        let (sender, receiver) = mpsc::sync_channel(QUEUE);
        let rate = config.rate;
        let writer_dropped = dropped.clone();
        let writer = std::thread::Builder::new()
            .name("limen-inference-log".to_owned())
            .spawn(move || Writer::new(config, &metrics, writer_dropped).run(receiver));
        Ok(match writer {
            Ok(handle) => Self {
                rate,
                sender: Some(sender),
                budget,
                dropped,
                writer: Some(handle),
                _lock: Some(lock),
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot start the inference log writer; not logging");
                Self {
                    rate: 0.0,
                    sender: None,
                    budget,
                    dropped,
                    writer: None,
                    _lock: Some(lock),
                }
            }
        })
    }

    pub fn enabled(&self) -> bool {
        self.sender.is_some()
    }

    /// Whether to log this request: true with probability `rate`.
    pub fn sample(&self) -> bool {
        self.sender.is_some() && (self.rate >= 1.0 || fastrand::f64() < self.rate)
    }

    /// Queues `record`; drops it, counted, when the memory budget or the queue cannot hold it.
    pub fn submit(&self, record: Record) {
        let Some(sender) = &self.sender else { return };
        let bytes = record.rows.capacity() * std::mem::size_of::<f64>()
            + record
                .unseen
                .iter()
                .map(|t| t.capacity() + std::mem::size_of::<String>())
                .sum::<usize>()
            + record.request_id.len()
            + record.error.as_ref().map_or(0, String::len)
            + RECORD_BYTES;
        let Ok(held) = self.budget.try_reserve(bytes) else {
            self.dropped.over_budget.inc_by(lines_of(&record));
            return;
        };
        let lines = lines_of(&record);
        let queued = Queued {
            record,
            _held: held,
        };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = sender.try_send(queued)
        {
            self.dropped.queue_full.inc_by(lines);
        }
    }

    /// Stops accepting records, lets the writer write everything queued and close its files,
    /// and waits for it (at most `deadline`).
    pub fn close(mut self, deadline: Duration) {
        self.sender = None;
        let Some(writer) = self.writer.take() else {
            return;
        };
        let started = Instant::now();
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

/// Formatted lines waiting to be written, and how many.
#[derive(Default)]
pub struct Chunk {
    pub bytes: Vec<u8>,
    pub lines: u64,
}

/// An open log file.
struct Open {
    file: File,
    path: PathBuf,
    day: String,
    seq: u64,
    bytes: u64,
    /// Its device and inode, to notice when its path leads elsewhere.
    identity: (u64, u64),
    checked: Instant,
}

/// The files of the writer: open ones (a bounded LRU), each model's bytes today, and the back
/// off after a refused write.
struct Files {
    config: LogConfig,
    open: LruCache<String, Open>,
    /// Per model: the day and the bytes written for it.
    today: HashMap<String, (String, u64)>,
    /// No write before this, after the disk refused one; and the pause after the next refusal.
    retry_at: Option<Instant>,
    backoff: Duration,
    lines: IntCounter,
    dropped: Dropped,
    /// When a problem was last logged (once a minute at most).
    last_warning: Option<Instant>,
}

struct Writer {
    files: Files,
    chunk: Chunk,
    formatter: Formatter,
}

impl Writer {
    fn new(config: LogConfig, metrics: &Metrics, dropped: Dropped) -> Self {
        Self {
            files: Files {
                config,
                open: LruCache::new(NonZeroUsize::new(OPEN_FILES).unwrap_or(NonZeroUsize::MIN)),
                today: HashMap::new(),
                retry_at: None,
                backoff: FIRST_BACKOFF,
                lines: metrics.inference_log_lines(),
                dropped,
                last_warning: None,
            },
            chunk: Chunk {
                bytes: Vec::with_capacity(CHUNK + 4096),
                lines: 0,
            },
            formatter: Formatter::default(),
        }
    }

    fn run(mut self, receiver: Receiver<Queued>) {
        let mut batch: Vec<Queued> = Vec::new();
        let mut busy = false;
        loop {
            // Drain what is queued (a bounded number at a time), grouped per model.
            let disconnected = loop {
                match receiver.try_recv() {
                    Ok(queued) => {
                        batch.push(queued);
                        if batch.len() >= 1024 {
                            break false;
                        }
                    }
                    Err(mpsc::TryRecvError::Empty) => break false,
                    Err(mpsc::TryRecvError::Disconnected) => break true,
                }
            };
            if !batch.is_empty() {
                self.write_batch(&batch);
                // Large records, once written, are worth giving back when idle (below).
                busy |= batch.iter().map(|q| q.record.rows.len()).sum::<usize>() > 64 * 1024;
                // Each record's reservation is given back as it is dropped here.
                batch.clear();
            } else if disconnected {
                break;
            } else {
                if std::mem::take(&mut busy) {
                    // Idle now: what the records held goes back (crate::budget says why).
                    crate::budget::release_idle_memory();
                    crate::budget::note_large_work();
                }
                std::thread::sleep(NAP);
            }
        }
        for (_, open) in self.files.open.iter() {
            let _ = open.file.sync_data();
        }
    }

    fn write_batch(&mut self, batch: &[Queued]) {
        // Stable grouping by model, so each model's lines go out in arrival order.
        let mut order: Vec<&Record> = batch.iter().map(|q| &q.record).collect();
        order.sort_by(|a, b| a.production.model.name().cmp(b.production.model.name()));
        let Self {
            files,
            chunk,
            formatter,
        } = self;
        let mut current: Option<(&str, String)> = None;
        for record in order {
            let model = record.production.model.name();
            let day = day_of(record.at);
            if current
                .as_ref()
                .is_some_and(|(m, d)| *m != model || *d != day)
            {
                if let Some((m, d)) = current.take() {
                    files.write(m, &d, chunk);
                }
            }
            if !files.admits(model, &day, record) {
                continue;
            }
            let mut spill = |chunk: &mut Chunk| {
                if chunk.bytes.len() >= CHUNK {
                    files.write(model, &day, chunk);
                }
            };
            formatter.format(record, chunk, &mut spill);
            current = Some((model, day));
        }
        if let Some((m, d)) = current {
            files.write(m, &d, chunk);
        }
        // A huge line may have grown the buffer: give the memory back.
        chunk.bytes.shrink_to(CHUNK + 4096);
    }
}

impl Files {
    /// Whether `record` may be written now: not while backing off from a refused write, not past
    /// the model's bytes for the day. Counts what it turns away.
    fn admits(&mut self, model: &str, day: &str, record: &Record) -> bool {
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            self.dropped.write_failed.inc_by(lines_of(record));
            return false;
        }
        let written = match self.today.get(model) {
            Some((d, bytes)) if d == day => *bytes,
            _ => 0,
        };
        if written >= self.config.max_day_bytes {
            self.dropped.day_cap.inc_by(lines_of(record));
            self.warn(model, "its inference log reached --inference-log-max-day for today; dropping its lines until midnight UTC (counted in limen_inference_log_dropped_total{reason=\"day_cap\"})");
            return false;
        }
        true
    }

    fn warn(&mut self, model: &str, what: &str) {
        if self
            .last_warning
            .is_none_or(|t| t.elapsed() > Duration::from_secs(60))
        {
            tracing::warn!(model = %model, "{what}");
            self.last_warning = Some(Instant::now());
        }
    }

    /// Writes `chunk` to `model`'s file for `day` and empties it; on a refused write the lines
    /// are dropped and counted, the file closed (and removed if it was left empty), and writing
    /// paused.
    fn write(&mut self, model: &str, day: &str, chunk: &mut Chunk) {
        if chunk.bytes.is_empty() {
            return;
        }
        let result = self.append(model, day, &chunk.bytes);
        match result {
            Ok(()) => {
                self.lines.inc_by(chunk.lines);
                self.retry_at = None;
                self.backoff = FIRST_BACKOFF;
                let entry = self
                    .today
                    .entry(model.to_owned())
                    .or_insert_with(|| (day.to_owned(), 0));
                if entry.0 != day {
                    *entry = (day.to_owned(), 0);
                }
                entry.1 += chunk.bytes.len() as u64;
            }
            Err(e) => {
                self.dropped.write_failed.inc_by(chunk.lines);
                if self
                    .last_warning
                    .is_none_or(|t| t.elapsed() > Duration::from_secs(60))
                {
                    tracing::warn!(model = %model, error = %e, pause = ?self.backoff, "cannot write the inference log; dropping lines (counted in limen_inference_log_dropped_total{{reason=\"write_failed\"}}) and pausing");
                    self.last_warning = Some(Instant::now());
                }
                if let Some(open) = self.open.pop(model) {
                    if open.bytes == 0 {
                        // Never leave an empty file behind a refused write.
                        let _ = std::fs::remove_file(&open.path);
                    }
                }
                self.retry_at = Some(Instant::now() + self.backoff);
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
        chunk.bytes.clear();
        chunk.lines = 0;
    }

    /// Appends whole lines to `model`'s current file for `day`, as many per `write` as fit,
    /// opening (or rotating to) a new file when the day changed, the next line would pass the
    /// size limit, or the file's path no longer leads to it. A line is never split between
    /// files or writes.
    fn append(&mut self, model: &str, day: &str, lines: &[u8]) -> std::io::Result<()> {
        let max = self.config.max_file_bytes;
        let mut start = 0;
        while start < lines.len() {
            self.check_still_there(model);
            let room = self
                .open
                .peek(model)
                .filter(|open| open.day == day)
                .map_or(0, |open| max.saturating_sub(open.bytes));
            // The longest run of whole lines that fits (at least one line, in an empty file):
            // all of them, or those up to the last line end within `room` bytes.
            let pending = &lines[start..];
            let mut end = if pending.len() as u64 <= room {
                lines.len()
            } else {
                let fits = usize::try_from(room).map_or(pending.len(), |r| r.min(pending.len()));
                pending[..fits]
                    .iter()
                    .rposition(|b| *b == b'\n')
                    .map_or(start, |i| start + i + 1)
            };
            if end == start {
                let fresh = self
                    .open
                    .peek(model)
                    .is_some_and(|o| o.day == day && o.bytes == 0);
                if fresh {
                    // A single line longer than the limit: it gets a file of its own.
                    end = lines[start..]
                        .iter()
                        .position(|b| *b == b'\n')
                        .map_or(lines.len(), |i| start + i + 1);
                } else {
                    let next_seq = self
                        .open
                        .peek(model)
                        .filter(|open| open.day == day)
                        .and_then(|open| open.seq.checked_add(1));
                    let open = self.open_file(model, day, next_seq)?;
                    // The least recently written file is closed if this is one too many.
                    self.open.put(model.to_owned(), open);
                    continue;
                }
            }
            let Some(open) = self.open.get_mut(model) else {
                return Err(std::io::Error::other("no open file"));
            };
            open.file.write_all(&lines[start..end])?;
            open.bytes += (end - start) as u64;
            start = end;
        }
        Ok(())
    }

    /// Closes `model`'s file if its path no longer leads to it (checked at most once a second),
    /// so the next write opens a new one where the folder now is.
    fn check_still_there(&mut self, model: &str) {
        let Some(open) = self.open.peek_mut(model) else {
            return;
        };
        if open.checked.elapsed() < RECHECK {
            return;
        }
        open.checked = Instant::now();
        let there = std::fs::metadata(&open.path).map(|m| (m.dev(), m.ino()));
        if there.ok() != Some(open.identity) {
            let path = open.path.clone();
            self.open.pop(model);
            tracing::warn!(model = %model, file = %path.display(), "the inference log file was removed or replaced; continuing in a new file");
        }
    }

    /// Opens a new `<dir>/<model>/<day>/<instance>-<seq>.jsonl`: `seq` after any file of this
    /// instance already there (a restarted server never appends to or overwrites an old file;
    /// names that are not this instance's, or sequence numbers no limen writes, are ignored).
    fn open_file(&self, model: &str, day: &str, seq: Option<u64>) -> std::io::Result<Open> {
        let folder = self.config.dir.join(model).join(day);
        std::fs::create_dir_all(&folder)?;
        let instance = &self.config.instance;
        let mut seq = match seq {
            Some(seq) => seq,
            None => next_seq(&folder, instance),
        };
        // A file taken meanwhile (planted, or from before a restart): the next free number.
        let mut last_error = None;
        for _ in 0..64 {
            let path = folder.join(format!("{instance}-{seq}.jsonl"));
            match OpenOptions::new().create_new(true).append(true).open(&path) {
                Ok(file) => {
                    let meta = file.metadata()?;
                    return Ok(Open {
                        file,
                        path,
                        day: day.to_owned(),
                        seq,
                        bytes: 0,
                        identity: (meta.dev(), meta.ino()),
                        checked: Instant::now(),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    seq = next_seq(&folder, instance).max(seq + 1);
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| std::io::Error::other("no free file name")))
    }
}

/// One more than the largest `<instance>-<n>.jsonl` in `folder` (n ≤ 10^9), or 0.
fn next_seq(folder: &Path, instance: &str) -> u64 {
    let prefix = format!("{instance}-");
    std::fs::read_dir(folder)
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| {
                    let name = e.file_name();
                    let n = name
                        .to_str()?
                        .strip_prefix(&prefix)?
                        .strip_suffix(".jsonl")?;
                    // Only digits, no sign or leading zeros limen would not write.
                    let plain = !n.is_empty()
                        && n.bytes().all(|b| b.is_ascii_digit())
                        && (n == "0" || !n.starts_with('0'));
                    n.parse::<u64>().ok().filter(|n| plain && *n <= MAX_SEQ)
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

    /// Appends `record`'s lines to `chunk` (what the writer does per record), calling `spill`
    /// after each line so that a large record is written out as it is formatted.
    pub fn format(
        &mut self,
        record: &Record,
        chunk: &mut Chunk,
        spill: &mut dyn FnMut(&mut Chunk),
    ) {
        let ts = self.timestamp(record.at);
        format_record(record, ts, chunk, spill);
    }
}

/// `record`'s lines, stamped `ts`, appended to `chunk`, with `spill` offered the chunk after
/// every line.
///
/// A line is written field by field from the models' rendered templates (the names, labels and
/// versions were escaped once, at load), in this order:
///
/// ```text
/// {"ts":…,"model":…,"version":…,"request_id":…[,"index":…[,"batch":true]],"route":…,"status":…
///  [,"error":…][,"features":{…},"label":…,"probabilities":{…}]
///  [,"shadow":{"version":…,"label":…,"probabilities":{…}}]}
/// ```
///
/// Every instance carries its `index` (0 for a request of one instance); instances of a batch
/// also carry `"batch":true`, which is how labels join them (`request_id#index`).
fn format_record(record: &Record, ts: &str, chunk: &mut Chunk, spill: &mut dyn FnMut(&mut Chunk)) {
    let production = &record.production;
    let template = &production.template;
    // Every line of the record starts with the same fields: made once, copied per line.
    let mut head = Vec::with_capacity(96 + record.request_id.len());
    head.extend_from_slice(b"{\"ts\":\"");
    head.extend_from_slice(ts.as_bytes());
    head.extend_from_slice(b"\",");
    head.extend_from_slice(template.model_fields());
    head.extend_from_slice(b"\"request_id\":");
    write_str(&mut head, &record.request_id);
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
        let out = &mut chunk.bytes;
        out.extend_from_slice(&head);
        rest(out);
        out.extend_from_slice(b"}\n");
        chunk.lines += 1;
        spill(chunk);
        return;
    }
    let model = &production.model;
    let width = model.feature_names().len().max(1);
    let mut probabilities = Vec::new();
    let mut shadow_p = Vec::new();
    let mut gathered = Vec::new();
    // The candidate is scored on the same values by feature name, as the shadow worker does.
    let columns = record
        .candidate
        .as_ref()
        .map(|candidate| crate::model::ColumnMap::between(model, &candidate.model));
    for (i, row) in record.rows.chunks_exact(width).enumerate() {
        let Ok(class) = model.predict_into(row, &mut probabilities) else {
            continue;
        };
        let out = &mut chunk.bytes;
        out.extend_from_slice(&head);
        out.extend_from_slice(b",\"index\":");
        out.extend_from_slice(itoa::Buffer::new().format(i).as_bytes());
        if record.batch {
            out.extend_from_slice(b",\"batch\":true");
        }
        rest(out);
        out.extend_from_slice(b",\"features\":");
        template.write_inputs(out, row, &record.unseen);
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
        chunk.lines += 1;
        spill(chunk);
    }
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
        let handles =
            metrics.model_handles("iris", &version.to_string(), model.feature_names(), &[]);
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

    fn config(dir: &Path, max_file_bytes: u64) -> LogConfig {
        LogConfig {
            dir: dir.to_owned(),
            rate: 1.0,
            max_file_bytes,
            max_day_bytes: u64::MAX,
            instance: "pod".into(),
        }
    }

    fn writer(config: LogConfig) -> Writer {
        let metrics = Metrics::new();
        let dropped = Dropped::new(&metrics);
        Writer::new(config, &metrics, dropped)
    }

    /// Formats `record` the way the writer does, all lines in one chunk.
    fn format(record: &Record) -> (u64, Vec<u8>) {
        let mut chunk = Chunk::default();
        Formatter::default().format(record, &mut chunk, &mut |_| {});
        (chunk.lines, chunk.bytes)
    }

    #[test]
    fn a_buffer_of_lines_is_split_between_files_only_at_line_ends() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = writer(config(dir.path(), 100));
        let mut written = Vec::new();
        for round in 0..3 {
            // Lines of 1 to 61 bytes, and one longer than a whole file in the middle.
            let mut chunk = Chunk::default();
            for i in 0..40 {
                let len = if i == 20 { 250 } else { (i * 7 + round) % 61 };
                chunk
                    .bytes
                    .extend(std::iter::repeat_n(b'a' + i as u8 % 26, len));
                chunk.bytes.push(b'\n');
                chunk.lines += 1;
            }
            written.extend_from_slice(&chunk.bytes);
            writer.files.write("iris", "2026-11-29", &mut chunk);
            assert!(chunk.bytes.is_empty());
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

    #[test]
    fn planted_and_foreign_file_names_do_not_stop_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("iris").join("2026-11-29");
        std::fs::create_dir_all(&folder).unwrap();
        // The top sequence number, a negative one, leading zeros, another instance, a folder.
        for name in [
            "pod-18446744073709551615.jsonl",
            "pod--1.jsonl",
            "pod-007.jsonl",
            "pod-2x.jsonl",
            "podium-9.jsonl",
        ] {
            std::fs::write(folder.join(name), b"").unwrap();
        }
        assert_eq!(
            next_seq(&folder, "pod"),
            0,
            "none of those is a name limen writes"
        );
        // A name limen writes, taken by a folder: skipped over.
        std::fs::create_dir(folder.join("pod-0.jsonl")).unwrap();
        assert_eq!(next_seq(&folder, "pod"), 1);
        let mut writer = writer(config(dir.path(), MIN_FILE_BYTES));
        let mut chunk = Chunk {
            bytes: b"{}\n".to_vec(),
            lines: 1,
        };
        writer.files.write("iris", "2026-11-29", &mut chunk);
        assert!(writer.files.retry_at.is_none(), "the line was written");
        assert_eq!(std::fs::read(folder.join("pod-1.jsonl")).unwrap(), b"{}\n");
    }

    #[test]
    fn a_deleted_folder_is_noticed_and_logging_continues_in_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = writer(config(dir.path(), MIN_FILE_BYTES));
        let line = |n: u8| Chunk {
            bytes: vec![b'a' + n, b'\n'],
            lines: 1,
        };
        writer.files.write("iris", "2026-11-29", &mut line(0));
        std::fs::remove_dir_all(dir.path().join("iris")).unwrap();
        // As if a second had passed since the file was last checked.
        if let Some(open) = writer.files.open.peek_mut("iris") {
            open.checked = Instant::now() - RECHECK;
        }
        writer.files.write("iris", "2026-11-29", &mut line(1));
        let folder = dir.path().join("iris").join("2026-11-29");
        assert_eq!(std::fs::read(folder.join("pod-0.jsonl")).unwrap(), b"b\n");
    }

    #[test]
    fn at_most_sixteen_files_are_open_and_a_model_written_again_gets_a_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = writer(config(dir.path(), MIN_FILE_BYTES));
        for round in 0..2 {
            for m in 0..40 {
                let mut chunk = Chunk {
                    bytes: format!("{round}\n").into_bytes(),
                    lines: 1,
                };
                writer
                    .files
                    .write(&format!("m{m}"), "2026-11-29", &mut chunk);
                assert!(writer.files.open.len() <= OPEN_FILES);
            }
        }
        let folder = dir.path().join("m0").join("2026-11-29");
        assert_eq!(std::fs::read(folder.join("pod-0.jsonl")).unwrap(), b"0\n");
        assert_eq!(std::fs::read(folder.join("pod-1.jsonl")).unwrap(), b"1\n");
    }

    #[test]
    fn a_refused_write_leaves_no_empty_file_and_pauses() {
        let dir = tempfile::tempdir().unwrap();
        // A file where the model's folder should be: every open fails.
        std::fs::write(dir.path().join("iris"), b"").unwrap();
        let mut writer = writer(config(dir.path(), MIN_FILE_BYTES));
        let mut chunk = Chunk {
            bytes: b"x\n".to_vec(),
            lines: 1,
        };
        writer.files.write("iris", "2026-11-29", &mut chunk);
        assert!(chunk.bytes.is_empty());
        assert!(writer.files.retry_at.is_some());
        assert_eq!(writer.files.dropped.write_failed.get(), 1);
        // While paused, records are turned away (counted) without touching the disk.
        let record = Record {
            production: loaded(7, -7.0),
            candidate: None,
            request_id: "r".into(),
            route: "/predict",
            rows: vec![1.0, 2.0],
            unseen: Vec::new(),
            batch: true,
            status: 200,
            error: None,
            at: SystemTime::now(),
        };
        assert!(!writer.files.admits("iris", "2026-11-29", &record));
        assert_eq!(writer.files.dropped.write_failed.get(), 3);
    }

    #[test]
    fn a_day_over_its_cap_is_dropped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = config(dir.path(), MIN_FILE_BYTES);
        cfg.max_day_bytes = 4;
        let mut writer = writer(cfg);
        let record = Record {
            production: loaded(7, -7.0),
            candidate: None,
            request_id: "r".into(),
            route: "/predict",
            rows: vec![1.0],
            unseen: Vec::new(),
            batch: false,
            status: 200,
            error: None,
            at: SystemTime::now(),
        };
        assert!(writer.files.admits("iris", "2026-11-29", &record));
        let mut chunk = Chunk {
            bytes: b"12345\n".to_vec(),
            lines: 1,
        };
        writer.files.write("iris", "2026-11-29", &mut chunk);
        assert!(!writer.files.admits("iris", "2026-11-29", &record));
        assert_eq!(writer.files.dropped.day_cap.get(), 1);
        // A new day starts from zero.
        assert!(writer.files.admits("iris", "2026-11-30", &record));
    }

    #[test]
    fn a_large_record_is_written_in_chunks_as_it_is_formatted() {
        let record = Record {
            production: loaded(7, -7.0),
            candidate: None,
            request_id: "r".into(),
            route: "/predict",
            rows: vec![1.5; 20_000],
            unseen: Vec::new(),
            batch: true,
            status: 200,
            error: None,
            at: SystemTime::now(),
        };
        let mut largest = 0;
        let mut spilled = 0;
        let mut chunk = Chunk::default();
        Formatter::default().format(&record, &mut chunk, &mut |c: &mut Chunk| {
            largest = largest.max(c.bytes.len());
            if c.bytes.len() >= CHUNK {
                spilled += c.lines;
                c.bytes.clear();
                c.lines = 0;
            }
        });
        assert_eq!(spilled + chunk.lines, 20_000);
        assert!(largest < CHUNK + 1024, "{largest}");
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
                unseen: Vec::new(),
                status: 200,
                error: error.clone(),
                at: SystemTime::UNIX_EPOCH,
            };
            let (n, out) = format(&record);
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
            unseen: Vec::new(),
            batch: true,
            status: 200,
            error: None,
            at: SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_795_901_812_551),
        };
        let (n, out) = format(&record);
        assert_eq!(n, 2);
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
        let (n, out) = format(&failed);
        assert_eq!(n, 1);
        let line: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(line["error"], "bad");
        assert_eq!(line["status"], 422);
        assert!(line.get("features").is_none() && line.get("index").is_none());
    }
}
