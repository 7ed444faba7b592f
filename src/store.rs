//! The versioned model store on a filesystem (a local folder, or Amazon EFS / NFSv4 in production).
//!
//! ```text
//! <root>/<model>/<version>/model.json   immutable once published
//! <root>/<model>/candidate              text file: a version id
//! <root>/<model>/production             text file: a version id
//! <root>/<model>/history.jsonl          append-only, one JSON line per promotion, rollback or gc
//! <root>/<model>/.lock                  advisory lock held while changing pointers or history
//! <root>/<model>/.move                  the production move in progress, if one was cut short
//! <root>/<model>/switch                 the version production is switching to, for the fleet
//! ```
//!
//! Every write is atomic: a version is written into a `.`-prefixed temporary folder, fsynced and
//! renamed into place; a pointer is written to a temporary file, fsynced and renamed over the old
//! one. Readers — other processes, other NFS clients — see the old state or the new one, never a
//! partial file, and ignore every name that starts with `.`. Every write of a pointer, the
//! history or a deletion takes the model's [`ModelLock`]. Knows nothing of model contents, nor of
//! what a sequence of writes means: that protocol belongs to `catalog`, the layer above.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::num::NonZeroU64;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The file inside a version folder that holds the model.
pub const MODEL_FILE: &str = "model.json";
/// The default largest `model.json` read (`--max-model-size`). The reference model is 1.5 KB; the
/// widest logistic model (4,096 features) is about 0.4 MB binary, 1.2 MB with 10 classes; a tree
/// ensemble takes about 120 bytes per node: 500 trees of depth 6 about 8 MB, 1,000 of depth 8
/// 38 MB. A load holds [`crate::model::LOAD_BYTES_PER_FILE_BYTE`] bytes per byte at its peak
/// (a server reserves them from its memory budget first), so 32 MiB bounds a load near 96 MiB.
pub const DEFAULT_MAX_MODEL_BYTES: u64 = 32 * 1024 * 1024;
/// The largest history file read; a year of a promotion an hour is about 5 MB.
/// The longest history line read: a real one is a few hundred bytes, a promotion with its gate's
/// evidence a few KiB. Longer lines are skipped and counted, never held.
const MAX_HISTORY_LINE: usize = 16 * 1024;
/// A pointer is a version id and a newline; anything longer is not one.
const MAX_POINTER_BYTES: u64 = 64;
const HISTORY_FILE: &str = "history.jsonl";
const LOCK_FILE: &str = ".lock";
/// The production move in progress (a history entry), while its writer holds the lock.
const MOVE_FILE: &str = ".move";
/// Larger than any history entry limen writes; a bigger `.move` file is not one of ours.
const MAX_MOVE_BYTES: u64 = 64 * 1024;
/// The version production is switching to while a promoter waits for the fleet.
const SWITCH_FILE: &str = "switch";
/// Larger than any switch record limen writes (about 120 bytes).
const MAX_SWITCH_BYTES: u64 = 4096;
/// How many taken version ids `publish` steps over before giving up.
const MAX_VERSION_BUMPS: u64 = 10_000;

/// Errors from reading or changing the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot {action} {path}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("invalid model name {0:?}: use 1 to 64 characters from a-z, 0-9, '.', '_' and '-', starting with a letter or digit")]
    InvalidModelName(String),
    #[error("invalid version {0:?}: a version is a positive integer such as 1764330000000")]
    InvalidVersion(String),
    /// The content is never echoed: the file is untrusted, and may be a link to a secret.
    #[error("pointer file {path} does not hold a version id ({len} bytes{}); point it at a version with `limen models promote`", if *.truncated { " or more" } else { "" })]
    BadPointer {
        path: PathBuf,
        len: usize,
        truncated: bool,
    },
    #[error("{path} is {found}, not a regular file; limen reads only regular files in the store (no symbolic links, FIFOs, sockets or devices)")]
    NotAFile { path: PathBuf, found: &'static str },
    #[error(
        "{path} is {size} bytes, over the limit of {max} (--max-model-size / LIMEN_MAX_MODEL_SIZE)"
    )]
    TooLarge { path: PathBuf, size: u64, max: u64 },
    #[error("model {name:?} does not exist in store {root}{}", list_suffix(.available))]
    UnknownModel {
        name: String,
        root: PathBuf,
        available: Vec<String>,
    },
    #[error("model {name:?} has no version {version} in store {root} (a complete version has a {MODEL_FILE})")]
    UnknownVersion {
        name: String,
        version: VersionId,
        root: PathBuf,
    },
    #[error("store folder {0} does not exist (is the volume mounted? check --store, LIMEN_STORE or MOUNT_PATH)")]
    Missing(PathBuf),
    #[error("could not find a free version id for model {0:?} after {MAX_VERSION_BUMPS} tries")]
    NoFreeVersion(String),
    /// The content is never echoed (see `BadPointer`).
    #[error("switch record {path} is not one limen wrote ({len} bytes); the next `limen validate` or `limen models promote|rollback` replaces it")]
    BadSwitch { path: PathBuf, len: usize },
}

fn list_suffix(available: &[String]) -> String {
    if available.is_empty() {
        "; the store holds no models yet: run `limen train` first".to_owned()
    } else {
        format!("; models present: {}", available.join(", "))
    }
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// A validated model name: `[a-z0-9][a-z0-9._-]{0,63}`, so always one safe path component.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ModelName(String);

impl ModelName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// 1 to 64 of `a-z 0-9 . _ -`, starting with a letter or digit.
    fn is_valid(s: &str) -> bool {
        let bytes = s.as_bytes();
        matches!(bytes.first(), Some(b'a'..=b'z' | b'0'..=b'9'))
            && bytes.len() <= 64
            && bytes
                .iter()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-'))
    }
}

impl FromStr for ModelName {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::try_from(s.to_owned())
    }
}

/// Lets maps keyed by `ModelName` be searched with the `&str` from a URL.
impl std::borrow::Borrow<str> for ModelName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ModelName {
    type Error = StoreError;
    /// Like `parse`, keeping the string it is given.
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if Self::is_valid(&s) {
            Ok(Self(s))
        } else {
            Err(StoreError::InvalidModelName(s))
        }
    }
}

impl From<ModelName> for String {
    fn from(n: ModelName) -> Self {
        n.0
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A version id: a positive integer, by default the creation time in Unix milliseconds, so
/// versions sort numerically in creation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
pub struct VersionId(NonZeroU64);

impl VersionId {
    pub fn get(self) -> u64 {
        self.0.get()
    }

    fn next(self) -> Option<Self> {
        self.0.checked_add(1).map(Self)
    }
}

impl TryFrom<u64> for VersionId {
    type Error = StoreError;
    fn try_from(v: u64) -> Result<Self, Self::Error> {
        NonZeroU64::new(v)
            .map(Self)
            .ok_or_else(|| StoreError::InvalidVersion(v.to_string()))
    }
}

impl From<VersionId> for u64 {
    fn from(v: VersionId) -> Self {
        v.get()
    }
}

impl FromStr for VersionId {
    type Err = StoreError;

    /// Accepts only plain decimal digits (no sign, no spaces, no leading zero), so a path
    /// segment like `+1`, `01e3` or `007` is never mistaken for (or an alias of) a version.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || StoreError::InvalidVersion(s.to_owned());
        if s.is_empty()
            || s.len() > 20
            || s.starts_with('0')
            || !s.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(invalid());
        }
        s.parse::<u64>()
            .ok()
            .and_then(NonZeroU64::new)
            .map(Self)
            .ok_or_else(invalid)
    }
}

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The two named pointers a model has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pointer {
    /// The newest trained version, waiting for `limen validate`.
    Candidate,
    /// The version the servers answer with.
    Production,
}

impl Pointer {
    pub fn file_name(self) -> &'static str {
        match self {
            Self::Candidate => "candidate",
            Self::Production => "production",
        }
    }
}

/// `<model>/switch`: the version `production` is about to become, written under the lock by a
/// promoter that waits for every live server to load it first. Servers load `version` ahead
/// and, once the pointer names it, switch at `activate_at_ms` by their own clocks. The pointer
/// stays the truth: a record that does not name what the pointer names is only a preload hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchRecord {
    pub version: VersionId,
    /// The production version it replaces.
    pub previous: Option<VersionId>,
    /// When the record was written (unix milliseconds, the writer's clock).
    pub written_at_ms: u64,
    /// Absent while the fleet loads `version`; then the unix millisecond at which every server
    /// switches to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activate_at_ms: Option<u64>,
}

/// What a history line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `production` moved to `version` (by `limen validate` or `limen models promote`).
    Promote,
    /// `production` moved back to `version` (`limen models rollback`).
    Rollback,
    /// Old versions were deleted (`limen models gc`); `details.deleted` lists them.
    Gc,
}

impl Action {
    /// The word `history.jsonl` writes for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Promote => "promote",
            Action::Rollback => "rollback",
            Action::Gc => "gc",
        }
    }
}

/// One line of `history.jsonl`: who changed the model, when, how and to what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// RFC 3339 UTC time of the change.
    pub at: String,
    pub action: Action,
    /// The production version after a promotion or rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<VersionId>,
    /// The production version before the change, if there was one.
    #[serde(default)]
    pub previous: Option<VersionId>,
    pub user: String,
    pub host: String,
    /// The command line that made the change.
    pub command: String,
    /// Free-form evidence, such as the validation metrics.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
}

impl HistoryEntry {
    /// An entry stamped with the current time, user, host and command line.
    pub fn now(action: Action, version: Option<VersionId>, previous: Option<VersionId>) -> Self {
        Self {
            at: now_rfc3339(),
            action,
            version,
            previous,
            user: current_user(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            details: serde_json::Value::Null,
        }
    }
}

/// `$USER`, else `$LOGNAME`, else `uid:<n>` (containers often set neither variable).
fn current_user() -> String {
    use std::os::unix::fs::MetadataExt as _;
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            fs::metadata("/proc/self")
                .ok()
                .map(|m| format!("uid:{}", m.uid()))
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The current UTC time as RFC 3339 with milliseconds.
pub fn now_rfc3339() -> String {
    rfc3339_millis(SystemTime::now())
}

/// Unix milliseconds as [`rfc3339_millis`] shows them.
pub fn rfc3339_from_ms(ms: u64) -> String {
    rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms))
}

/// `t` as RFC 3339 (UTC) with milliseconds. A time the format cannot show (a clock set before
/// 1970, or past 9999) is written as the nearest one it can: humantime would panic.
pub fn rfc3339_millis(t: SystemTime) -> String {
    // 9999-12-31T23:59:59.999Z
    const LAST: Duration = Duration::from_millis(253_402_300_799_999);
    let t = match t.duration_since(UNIX_EPOCH) {
        Err(_) => UNIX_EPOCH,
        Ok(since) if since > LAST => UNIX_EPOCH + LAST,
        Ok(_) => t,
    };
    humantime::format_rfc3339_millis(t).to_string()
}

/// An exclusive lock on one model's pointers and history; released on drop.
///
/// It is an advisory `flock` on `<model>/.lock`, which Linux maps to a POSIX byte-range lock on
/// NFSv4, so it also holds between EFS clients.
///
/// Every store call that changes a pointer, the history or the set of versions takes this token,
/// so nothing can change them without holding the lock of the model it changes.
#[derive(Debug)]
pub struct ModelLock {
    name: ModelName,
    _file: File,
}

impl ModelLock {
    /// The model this lock guards.
    pub fn name(&self) -> &ModelName {
        &self.name
    }
}

/// A model store rooted at a folder. Cheap to clone; every call goes to the filesystem.
///
/// Everything below the root is untrusted: other hosts write it. Files are opened without
/// blocking and without following symbolic links, checked to be regular files, and read with a
/// hard size cap; version and model folders that are symbolic links are not versions or models.
/// Only the root itself may be a link (a volume mount point often is).
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    max_model_bytes: u64,
}

impl Store {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            max_model_bytes: DEFAULT_MAX_MODEL_BYTES,
        }
    }

    /// The same store, reading `model.json` files of at most `max` bytes.
    pub fn with_max_model_bytes(mut self, max: u64) -> Self {
        self.max_model_bytes = max;
        self
    }

    pub fn max_model_bytes(&self) -> u64 {
        self.max_model_bytes
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn model_dir(&self, name: &ModelName) -> PathBuf {
        self.root.join(name.as_str())
    }

    pub fn model_file(&self, name: &ModelName, version: VersionId) -> PathBuf {
        self.model_dir(name)
            .join(version.to_string())
            .join(MODEL_FILE)
    }

    pub fn pointer_path(&self, name: &ModelName, pointer: Pointer) -> PathBuf {
        self.model_dir(name).join(pointer.file_name())
    }

    /// Publishes a new immutable version of `name` and returns its id.
    ///
    /// The id is the current Unix time in milliseconds, or one more than the newest existing
    /// version if that is larger (clocks of different hosts disagree), bumped again while taken.
    /// `render` turns the chosen id into the bytes of `model.json`; it is called again if the id
    /// had to be bumped, because the file names its own version. Concurrent publishers on one
    /// store always get distinct ids: the rename of a folder onto a taken, non-empty one fails.
    pub fn publish(
        &self,
        name: &ModelName,
        mut render: impl FnMut(VersionId) -> Vec<u8>,
    ) -> Result<VersionId, StoreError> {
        let dir = self.model_dir(name);
        fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_millis() as u64);
        let after_newest = self.versions(name)?.last().and_then(|v| v.next());
        let mut version = VersionId::try_from(now_ms.max(1))?;
        if let Some(next) = after_newest {
            version = version.max(next);
        }

        let staging = tempfile::Builder::new()
            .prefix(".publish-")
            .tempdir_in(&dir)
            .map_err(io_err("create a temporary folder in", &dir))?;
        fs::set_permissions(staging.path(), fs::Permissions::from_mode(0o755))
            .map_err(io_err("set permissions on", staging.path()))?;
        let staged_file = staging.path().join(MODEL_FILE);
        for _ in 0..MAX_VERSION_BUMPS {
            write_synced(&staged_file, &render(version))?;
            sync_dir(staging.path())?;
            let target = dir.join(version.to_string());
            match fs::rename(staging.path(), &target) {
                Ok(()) => {
                    // The folder now lives under its final name; nothing is left to clean up.
                    let _ = staging.keep();
                    sync_dir(&dir)?;
                    return Ok(version);
                }
                Err(e) if is_taken(&e) => {
                    version = version
                        .next()
                        .ok_or_else(|| StoreError::NoFreeVersion(name.to_string()))?;
                }
                Err(e) => return Err(io_err("publish into", &target)(e)),
            }
        }
        Err(StoreError::NoFreeVersion(name.to_string()))
    }

    /// Reads a pointer by opening and reading the file afresh, so that on NFS the close-to-open
    /// revalidation sees another client's change at once (a `stat` can lag a minute).
    ///
    /// `Ok(None)` when the pointer does not exist; an error when it holds anything but a version.
    pub fn read_pointer(
        &self,
        name: &ModelName,
        pointer: Pointer,
    ) -> Result<Option<VersionId>, StoreError> {
        let path = self.pointer_path(name, pointer);
        match read_untrusted(&path, MAX_POINTER_BYTES + 1, false) {
            Ok(bytes) => parse_pointer(&path, &bytes).map(Some),
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Atomically points `pointer` of the locked model at `version` (temp file, fsync, rename,
    /// fsync of the folder).
    pub fn write_pointer(
        &self,
        lock: &ModelLock,
        pointer: Pointer,
        version: VersionId,
    ) -> Result<(), StoreError> {
        let name = lock.name();
        self.replace_file(
            name,
            &self.pointer_path(name, pointer),
            format!("{version}\n").as_bytes(),
        )
    }

    /// Records the production move about to be made (see `catalog`): the entry its history line
    /// will hold, written atomically to `<model>/.move`.
    pub fn write_move(&self, lock: &ModelLock, entry: &HistoryEntry) -> Result<(), StoreError> {
        let name = lock.name();
        let bytes = serde_json::to_vec(entry).expect(
            "a history entry is strings, integers and a JSON value, which always serialize",
        );
        self.replace_file(name, &self.model_dir(name).join(MOVE_FILE), &bytes)
    }

    /// The move a holder of the lock recorded and did not finish, if any. A `.move` file that is
    /// not a history entry (or is larger than one) is reported as `Ok(None)`: it cannot be ours.
    pub fn read_move(&self, lock: &ModelLock) -> Result<Option<HistoryEntry>, StoreError> {
        let path = self.model_dir(lock.name()).join(MOVE_FILE);
        match read_untrusted(&path, MAX_MOVE_BYTES, true) {
            Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(None)
            }
            // Not a file of ours (a link, a FIFO, too large): as good as no record.
            Err(StoreError::NotAFile { .. } | StoreError::TooLarge { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes `<model>/switch` atomically (see [`SwitchRecord`]).
    pub fn write_switch(&self, lock: &ModelLock, record: &SwitchRecord) -> Result<(), StoreError> {
        let name = lock.name();
        let bytes = serde_json::to_vec(record)
            .expect("a switch record is integers, which always serialize");
        self.replace_file(name, &self.model_dir(name).join(SWITCH_FILE), &bytes)
    }

    /// The switch record, if there is one: read afresh (like a pointer) and refused when it is
    /// not a regular file of at most 4 KiB holding a record.
    ///
    /// On NFS a lookup that found no file is remembered (a negative dentry) until the folder's
    /// cached attributes expire, up to a minute: a server that looked for `switch` before a
    /// promoter first wrote it would not see it for that long (measured in the nfs-vm guest:
    /// 28 s). Opening the folder first makes the client fetch its attributes afresh, which
    /// invalidates that memory; one extra `open` per model and poll.
    pub fn read_switch(&self, name: &ModelName) -> Result<Option<SwitchRecord>, StoreError> {
        let dir = self.model_dir(name);
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            let opened = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(&dir);
            if let Err(e) = opened {
                if e.kind() == io::ErrorKind::NotFound {
                    return Ok(None);
                }
                return Err(io_err("open", &dir)(e));
            }
        }
        let path = dir.join(SWITCH_FILE);
        match read_untrusted(&path, MAX_SWITCH_BYTES, true) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|_| StoreError::BadSwitch {
                        len: bytes.len(),
                        path,
                    })
            }
            Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Removes the switch record; a missing one is fine.
    pub fn clear_switch(&self, lock: &ModelLock) -> Result<(), StoreError> {
        let path = self.model_dir(lock.name()).join(SWITCH_FILE);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("delete", &path)(e)),
            _ => Ok(()),
        }
    }

    /// Removes the record of a finished (or abandoned) move.
    pub fn clear_move(&self, lock: &ModelLock) -> Result<(), StoreError> {
        let path = self.model_dir(lock.name()).join(MOVE_FILE);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("delete", &path)(e)),
            _ => Ok(()),
        }
    }

    /// Replaces `path` in `name`'s folder atomically (see [`replace_atomically`]).
    fn replace_file(&self, name: &ModelName, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
        replace_atomically(&self.model_dir(name), path, bytes, ".pointer-")
    }

    /// The bytes of a published `model.json`: refused if it or its version folder is not what
    /// it should be (a regular file in a real folder), or larger than `max_model_bytes`.
    pub fn read_model(&self, name: &ModelName, version: VersionId) -> Result<Vec<u8>, StoreError> {
        let unknown = || StoreError::UnknownVersion {
            name: name.to_string(),
            version,
            root: self.root.clone(),
        };
        let folder = self.model_dir(name).join(version.to_string());
        match fs::symlink_metadata(&folder) {
            Ok(m) if m.is_dir() => {}
            Ok(m) => {
                return Err(StoreError::NotAFile {
                    path: folder,
                    found: describe(&m.file_type()),
                })
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(unknown()),
            Err(e) => return Err(io_err("inspect", &folder)(e)),
        }
        let path = folder.join(MODEL_FILE);
        read_untrusted(&path, self.max_model_bytes, true).map_err(|e| match e {
            StoreError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound => unknown(),
            e => e,
        })
    }

    /// What identifies the bytes of `name/version`'s `model.json` without reading them: size,
    /// modification time and inode. A failed load is retried when this changes.
    pub fn model_identity(&self, name: &ModelName, version: VersionId) -> Option<FileIdentity> {
        use std::os::unix::fs::MetadataExt as _;
        let m = fs::symlink_metadata(self.model_file(name, version)).ok()?;
        Some(FileIdentity {
            len: m.len(),
            modified: m.modified().ok(),
            inode: m.ino(),
        })
    }

    /// Whether `name/version` is a complete version: a real folder holding a regular
    /// `model.json` (neither a symbolic link). Two `lstat`s.
    pub fn has_version(&self, name: &ModelName, version: VersionId) -> bool {
        let folder = self.model_dir(name).join(version.to_string());
        fs::symlink_metadata(&folder).is_ok_and(|m| m.is_dir())
            && fs::symlink_metadata(folder.join(MODEL_FILE)).is_ok_and(|m| m.is_file())
    }

    /// When `pointer` was last replaced, by its mtime. Only for reporting (the swap lag): on NFS
    /// a `stat` can lag a minute behind another client's change, so never poll with it.
    pub fn pointer_modified(&self, name: &ModelName, pointer: Pointer) -> Option<SystemTime> {
        fs::metadata(self.pointer_path(name, pointer))
            .and_then(|m| m.modified())
            .ok()
    }

    /// Complete versions of `name` (folders with a `model.json`), oldest first. Temporary
    /// `.`-entries and anything that is not a version id are skipped.
    pub fn versions(&self, name: &ModelName) -> Result<Vec<VersionId>, StoreError> {
        let dir = self.model_dir(name);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("list", &dir)(e)),
        };
        let mut versions = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("list", &dir))?;
            let Some(version) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            // `file_type` does not follow links: a linked folder is not a version.
            let real_folder = entry.file_type().is_ok_and(|t| t.is_dir());
            if real_folder
                && fs::symlink_metadata(entry.path().join(MODEL_FILE)).is_ok_and(|m| m.is_file())
            {
                versions.push(version);
            }
        }
        versions.sort_unstable();
        Ok(versions)
    }

    /// Names of the models in the store, sorted. A missing root is an error, not an empty
    /// store: to a server, an unmounted volume must not look like every model was deleted.
    pub fn models(&self) -> Result<Vec<ModelName>, StoreError> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::Missing(self.root.clone()))
            }
            Err(e) => return Err(io_err("list", &self.root)(e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("list", &self.root))?;
            let Some(name) = entry.file_name().to_str().and_then(|n| n.parse().ok()) else {
                continue;
            };
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                names.push(name);
            }
        }
        names.sort_unstable();
        Ok(names)
    }

    /// Fails with the list of models present unless `name` has a folder in the store.
    pub fn require_model(&self, name: &ModelName) -> Result<(), StoreError> {
        if self.model_dir(name).is_dir() {
            return Ok(());
        }
        Err(StoreError::UnknownModel {
            name: name.to_string(),
            root: self.root.clone(),
            available: self
                .models()
                .unwrap_or_default()
                .into_iter()
                .map(String::from)
                .collect(),
        })
    }

    /// Deletes a published version of the locked model: first renamed to a `.deleting-*` name
    /// (readers stop seeing it at once, and never see it half-deleted), then removed.
    pub fn remove_version(&self, lock: &ModelLock, version: VersionId) -> Result<(), StoreError> {
        let dir = self.model_dir(lock.name());
        let from = dir.join(version.to_string());
        let to = dir.join(format!(".deleting-{version}-{}", std::process::id()));
        fs::rename(&from, &to).map_err(io_err("move aside", &from))?;
        fs::remove_dir_all(&to).map_err(io_err("delete", &to))?;
        sync_dir(&dir)
    }

    /// Work-in-progress entries (`.publish-*`, `.pointer-*`, `.deleting-*`) of `name` that are
    /// older than `min_age`: what a writer killed mid-way leaves behind.
    pub fn stale_temporaries(
        &self,
        name: &ModelName,
        min_age: Duration,
    ) -> Result<Vec<PathBuf>, StoreError> {
        let dir = self.model_dir(name);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("list", &dir)(e)),
        };
        let now = SystemTime::now();
        let mut stale = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("list", &dir))?;
            let file_name = entry.file_name();
            let file_name = file_name.to_string_lossy();
            let temporary = [".publish-", ".pointer-", ".deleting-"]
                .iter()
                .any(|p| file_name.starts_with(p));
            if !temporary {
                continue;
            }
            let age = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .unwrap_or(Duration::ZERO);
            if age >= min_age {
                stale.push(entry.path());
            }
        }
        stale.sort();
        Ok(stale)
    }

    /// Removes a temporary entry of the locked model found by [`Store::stale_temporaries`]; a
    /// path outside that model's folder is left alone.
    pub fn remove_temporary(&self, lock: &ModelLock, path: &Path) -> Result<(), StoreError> {
        if path.parent() != Some(self.model_dir(lock.name()).as_path()) {
            return Ok(());
        }
        let result = if path.is_dir() {
            fs::remove_dir_all(path)
        } else {
            fs::remove_file(path)
        };
        match result {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("delete", path)(e)),
            _ => Ok(()),
        }
    }

    /// Takes the model's exclusive lock, waiting for other holders.
    pub fn lock(&self, name: &ModelName) -> Result<ModelLock, StoreError> {
        let path = self.model_dir(name).join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        file.lock().map_err(io_err("lock", &path))?;
        Ok(ModelLock {
            name: name.clone(),
            _file: file,
        })
    }

    /// Appends one line to the locked model's history, fsynced before it returns. The lock, not
    /// `O_APPEND`, is what keeps lines whole between NFS clients.
    pub fn append_history(&self, lock: &ModelLock, entry: &HistoryEntry) -> Result<(), StoreError> {
        let path = self.model_dir(lock.name()).join(HISTORY_FILE);
        let mut line = serde_json::to_vec(entry).expect(
            "a history entry is strings, integers and a JSON value, which always serialize",
        );
        line.push(b'\n');
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err("open", &path))?;
        file.write_all(&line)
            .and_then(|()| file.sync_data())
            .map_err(io_err("append to", &path))
    }

    /// Every well-formed history line, oldest first, and how many lines could not be read. It
    /// holds the whole history: servers and commands use [`Store::for_each_history`] or
    /// [`Store::history_tail`], whose memory does not grow with the file.
    pub fn history(&self, name: &ModelName) -> Result<(Vec<HistoryEntry>, usize), StoreError> {
        let mut entries = Vec::new();
        let bad = self.for_each_history(name, |e| entries.push(e))?;
        Ok((entries, bad))
    }

    /// Calls `each` with every well-formed line of `name`'s history, oldest first, streaming the
    /// file: memory stays at one line (at most 16 KiB) whatever its size. Returns how many lines
    /// could not be read (malformed, too long, or a last line cut mid-way). A missing history
    /// is an empty one.
    pub fn for_each_history(
        &self,
        name: &ModelName,
        mut each: impl FnMut(HistoryEntry),
    ) -> Result<usize, StoreError> {
        let path = self.model_dir(name).join(HISTORY_FILE);
        let Some((file, _)) = open_history(&path)? else {
            return Ok(0);
        };
        let mut bad = 0usize;
        let skipped = crate::data::for_each_line_up_to(file, MAX_HISTORY_LINE, |line| {
            if line.iter().all(u8::is_ascii_whitespace) {
                return;
            }
            match serde_json::from_slice(line) {
                Ok(entry) => each(entry),
                Err(_) => bad += 1,
            }
        });
        Ok(bad + skipped as usize)
    }

    /// The last `n` well-formed lines of `name`'s history for which `wanted` holds, oldest
    /// first, read backwards from the end of the file in 64 KiB blocks: memory stays at `n`
    /// lines and a block whatever the file's size, and only as much of the file is read as it
    /// takes to find them.
    pub fn history_tail(
        &self,
        name: &ModelName,
        n: usize,
        wanted: impl Fn(&HistoryEntry) -> bool,
    ) -> Result<HistoryTail, StoreError> {
        let path = self.model_dir(name).join(HISTORY_FILE);
        let mut tail = HistoryTail::default();
        let Some((file, len)) = open_history(&path)? else {
            return Ok(tail);
        };
        if n == 0 {
            tail.earlier = len > 0;
            return Ok(tail);
        }
        lines_backwards(&file, len, MAX_HISTORY_LINE, |line| {
            let parsed = line
                .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
                .map(serde_json::from_slice::<HistoryEntry>);
            match parsed {
                None if line.is_some() => {} // a blank line
                Some(Ok(entry)) => {
                    if wanted(&entry) {
                        if tail.entries.len() == n {
                            tail.earlier = true;
                            return false;
                        }
                        tail.entries.push(entry);
                    }
                }
                _ => tail.unreadable += 1,
            }
            true
        })
        .map_err(io_err("read", &path))?;
        tail.entries.reverse();
        Ok(tail)
    }
}

/// The end of a history, as [`Store::history_tail`] read it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HistoryTail {
    /// Oldest first.
    pub entries: Vec<HistoryEntry>,
    /// Lines that could not be read in the part of the file that was read.
    pub unreadable: usize,
    /// Whether the file holds earlier wanted lines than these.
    pub earlier: bool,
}

/// `path` opened as an untrusted regular file with its length; `None` when it does not exist.
fn open_history(path: &Path) -> Result<Option<(File, u64)>, StoreError> {
    match open_untrusted(path) {
        Ok(opened) => Ok(Some(opened)),
        Err(StoreError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Calls `each` with the lines of the first `len` bytes of `file`, last first: `Some(line)` for
/// a whole line of at most `max` bytes (without its newline), `None` for a longer one (not held)
/// and for bytes after the last newline (a line still being written). Stops when `each`
/// returns false. Reads 64 KiB blocks with `pread`; holds one block and one line.
fn lines_backwards(
    file: &File,
    len: u64,
    max: usize,
    mut each: impl FnMut(Option<&[u8]>) -> bool,
) -> io::Result<()> {
    use std::os::unix::fs::FileExt as _;
    const BLOCK: u64 = 64 * 1024;
    let mut buf = vec![0u8; BLOCK as usize];
    // The line being put together from its right end: bytes that follow the current block.
    let mut pending: Vec<u8> = Vec::new();
    let mut too_long = false;
    // Until the first newline from the end is found, the bytes after it are a line cut short.
    let mut at_end = true;
    let mut pos = len;
    while pos > 0 {
        let start = pos.saturating_sub(BLOCK);
        let block = &mut buf[..(pos - start) as usize];
        file.read_exact_at(block, start)?;
        pos = start;
        let mut end = block.len();
        while let Some(i) = block[..end].iter().rposition(|b| *b == b'\n') {
            let piece = &block[i + 1..end];
            let go_on = if std::mem::take(&mut at_end) {
                piece.is_empty() && pending.is_empty() && !too_long || each(None)
            } else if too_long || piece.len() + pending.len() > max {
                each(None)
            } else if pending.is_empty() {
                each(Some(piece))
            } else {
                pending.splice(0..0, piece.iter().copied());
                each(Some(&pending))
            };
            if !go_on {
                return Ok(());
            }
            pending.clear();
            too_long = false;
            end = i;
        }
        // `block[..end]` is the right part of a line that began in an earlier block.
        if !too_long {
            if end + pending.len() > max {
                too_long = true;
                pending.clear();
            } else {
                pending.splice(0..0, block[..end].iter().copied());
            }
        }
    }
    // The file's first line (nothing before it), unless no newline was found at all: then all
    // of it is one line still being written.
    if at_end {
        if too_long || !pending.is_empty() {
            each(None);
        }
    } else if too_long {
        each(None);
    } else if !pending.is_empty() {
        each(Some(&pending));
    }
    Ok(())
}

/// What identifies a file's content without reading it: size, modification time, inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileIdentity {
    pub len: u64,
    pub modified: Option<SystemTime>,
    pub inode: u64,
}

/// The kind of a file that is not a regular one, in words.
fn describe(t: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "not a regular file"
    }
}

/// Reads a file of the store, which anyone with write access to the share may have replaced by
/// anything: opened with `O_NONBLOCK` (a FIFO or device cannot block the open) and `O_NOFOLLOW`
/// (a link is refused, not followed out of the store), checked with `fstat` to be a regular file,
/// then read up to `max` bytes. With `exact`, a file larger than `max` is refused from its size
/// before a byte is read; without, the first `max` bytes are returned (pointers: a short read is
/// a whole pointer, and one that fills the buffer is reported as the bad pointer it is).
///
/// One `open`, one `fstat`, one or two `read`s: servers poll thousands of pointers a second.
pub(crate) fn read_untrusted(path: &Path, max: u64, exact: bool) -> Result<Vec<u8>, StoreError> {
    use std::io::Read as _;
    let (file, len) = open_untrusted(path)?;
    if exact && len > max {
        return Err(StoreError::TooLarge {
            path: path.to_owned(),
            size: len,
            max,
        });
    }
    // The size can change between `fstat` and the read (another host writing in place): the
    // read is capped at `max` + 1 all the same, and a file that grew past `max` is refused.
    let mut bytes = Vec::with_capacity(len.min(max) as usize);
    let limit = if exact { max + 1 } else { max };
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(io_err("read", path))?;
    if exact && bytes.len() as u64 > max {
        return Err(StoreError::TooLarge {
            path: path.to_owned(),
            size: bytes.len() as u64,
            max,
        });
    }
    Ok(bytes)
}

/// Opens a file of the store as [`read_untrusted`] does (non-blocking, no symbolic link, a
/// regular file only) and returns it with its length.
fn open_untrusted(path: &Path) -> Result<(File, u64), StoreError> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            let found = match e.raw_os_error() {
                Some(libc::ELOOP) => "a symbolic link",
                // Opening a Unix socket fails with "no such device or address".
                Some(libc::ENXIO) => "a socket",
                _ => return io_err("open", path)(e),
            };
            StoreError::NotAFile {
                path: path.to_owned(),
                found,
            }
        })?;
    let meta = file.metadata().map_err(io_err("inspect", path))?;
    if !meta.is_file() {
        return Err(StoreError::NotAFile {
            path: path.to_owned(),
            found: describe(&meta.file_type()),
        });
    }
    Ok((file, meta.len()))
}

fn parse_pointer(path: &Path, bytes: &[u8]) -> Result<VersionId, StoreError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .ok_or_else(|| StoreError::BadPointer {
            path: path.to_owned(),
            len: bytes.len(),
            truncated: bytes.len() as u64 > MAX_POINTER_BYTES,
        })
}

/// Replaces `path` (in `dir`) atomically: a temporary file named `<prefix>*` in `dir`, written,
/// made readable by every UID (0644: servers and pipelines need not share one), fsynced, renamed
/// over `path`, and `dir` fsynced. A reader sees the old file or the new one, never a part.
pub(crate) fn replace_atomically(
    dir: &Path,
    path: &Path,
    bytes: &[u8],
    prefix: &str,
) -> Result<(), StoreError> {
    let mut tmp = tempfile::Builder::new()
        .prefix(prefix)
        .tempfile_in(dir)
        .map_err(io_err("create a temporary file in", dir))?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))
        .and_then(|()| tmp.write_all(bytes))
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(io_err("write", tmp.path()))?;
    tmp.persist(path)
        .map_err(|e| io_err("replace", path)(e.error))?;
    sync_dir(dir)
}

/// `rename` onto an existing non-empty folder: that version id is taken.
fn is_taken(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::AlreadyExists | io::ErrorKind::DirectoryNotEmpty
    )
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut file = File::create(path).map_err(io_err("create", path))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_err("write", path))
}

/// Makes a rename or create inside `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("sync", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> ModelName {
        s.parse().unwrap()
    }

    #[test]
    fn any_clock_reading_formats_without_panicking() {
        let ms = Duration::from_millis;
        for (t, text) in [
            (
                UNIX_EPOCH + ms(1_795_901_812_551),
                "2026-11-28T21:36:52.551Z",
            ),
            (UNIX_EPOCH - ms(1), "1970-01-01T00:00:00.000Z"),
            (
                UNIX_EPOCH + ms(253_402_300_799_999),
                "9999-12-31T23:59:59.999Z",
            ),
            (
                UNIX_EPOCH + ms(253_402_300_800_000),
                "9999-12-31T23:59:59.999Z",
            ),
            (
                UNIX_EPOCH + Duration::from_secs(u64::MAX / 4),
                "9999-12-31T23:59:59.999Z",
            ),
        ] {
            assert_eq!(rfc3339_millis(t), text);
        }
    }

    #[test]
    fn model_names_are_single_safe_path_components() {
        for ok in ["iris", "iris-species", "a", "0", "a.b_c-d", &"a".repeat(64)] {
            assert!(ok.parse::<ModelName>().is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "-x",
            "_x",
            "Iris",
            "a/b",
            "a\\b",
            "/etc",
            "a b",
            "%2e%2e",
            "é",
            &"a".repeat(65),
        ] {
            assert!(bad.parse::<ModelName>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn version_ids_are_plain_positive_integers() {
        assert_eq!("42".parse::<VersionId>().unwrap().get(), 42);
        for bad in [
            "0",
            "007",
            "01",
            "",
            "-1",
            "+1",
            " 1",
            "1.0",
            "1e3",
            "18446744073709551616",
            "abc",
        ] {
            assert!(bad.parse::<VersionId>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn publish_then_pointers_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let iris = name("iris");
        assert_eq!(store.read_pointer(&iris, Pointer::Candidate).unwrap(), None);
        let v = store
            .publish(&iris, |v| format!("{{\"v\":{v}}}").into_bytes())
            .unwrap();
        assert_eq!(
            store.read_model(&iris, v).unwrap(),
            format!("{{\"v\":{v}}}").as_bytes()
        );
        store
            .write_pointer(&store.lock(&iris).unwrap(), Pointer::Candidate, v)
            .unwrap();
        assert_eq!(
            store.read_pointer(&iris, Pointer::Candidate).unwrap(),
            Some(v)
        );
        assert_eq!(store.versions(&iris).unwrap(), vec![v]);
        assert_eq!(store.models().unwrap(), vec![iris.clone()]);
        // Readable by servers running under another UID.
        let mode = |p: PathBuf| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(store.pointer_path(&iris, Pointer::Candidate)), 0o644);
        assert_eq!(mode(store.model_dir(&iris).join(v.to_string())), 0o755);
        // No temporary entries are left behind.
        let leftovers: Vec<_> = fs::read_dir(store.model_dir(&iris))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(".publish"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn a_taken_version_id_is_bumped_and_the_file_rendered_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let iris = name("iris");
        let far_future = u64::MAX / 2;
        let taken = store.model_dir(&iris).join(far_future.to_string());
        fs::create_dir_all(&taken).unwrap();
        fs::write(taken.join(MODEL_FILE), b"x").unwrap();
        let v = store
            .publish(&iris, |v| v.to_string().into_bytes())
            .unwrap();
        assert_eq!(v.get(), far_future + 1);
        assert_eq!(
            store.read_model(&iris, v).unwrap(),
            v.to_string().as_bytes()
        );
    }

    #[test]
    fn versions_skip_temporaries_and_incomplete_folders() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let iris = name("iris");
        let mdir = store.model_dir(&iris);
        for d in ["5", "7", ".publish-x", "abc", "9"] {
            fs::create_dir_all(mdir.join(d)).unwrap();
        }
        for d in ["7", ".publish-x", "abc", "5"] {
            fs::write(mdir.join(d).join(MODEL_FILE), b"{}").unwrap();
        }
        let got: Vec<u64> = store
            .versions(&iris)
            .unwrap()
            .into_iter()
            .map(u64::from)
            .collect();
        assert_eq!(got, vec![5, 7]);
    }

    #[test]
    fn bad_pointers_are_reported_not_guessed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let iris = name("iris");
        fs::create_dir_all(store.model_dir(&iris)).unwrap();
        for content in ["", "garbage", "0", "12 13", "-4"] {
            fs::write(store.pointer_path(&iris, Pointer::Production), content).unwrap();
            assert!(
                matches!(
                    store.read_pointer(&iris, Pointer::Production),
                    Err(StoreError::BadPointer { .. })
                ),
                "{content:?}"
            );
        }
        fs::write(store.pointer_path(&iris, Pointer::Production), "12\n").unwrap();
        assert_eq!(
            store
                .read_pointer(&iris, Pointer::Production)
                .unwrap()
                .map(u64::from),
            Some(12)
        );
    }

    #[test]
    fn history_appends_whole_lines_and_skips_torn_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let iris = name("iris");
        fs::create_dir_all(store.model_dir(&iris)).unwrap();
        let lock = store.lock(&iris).unwrap();
        let v1 = VersionId::try_from(1).unwrap();
        let v2 = VersionId::try_from(2).unwrap();
        store
            .append_history(&lock, &HistoryEntry::now(Action::Promote, Some(v1), None))
            .unwrap();
        let path = store.model_dir(&iris).join(HISTORY_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"torn\n").unwrap();
        store
            .append_history(
                &lock,
                &HistoryEntry::now(Action::Promote, Some(v2), Some(v1)),
            )
            .unwrap();
        let (entries, bad) = store.history(&iris).unwrap();
        assert_eq!(bad, 1);
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].previous, Some(v1));
    }

    /// Every line `lines_backwards` yields for `bytes`, in file order.
    fn backwards(bytes: &[u8], max: usize) -> Vec<Option<Vec<u8>>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, bytes).unwrap();
        let file = File::open(&path).unwrap();
        let mut out = Vec::new();
        lines_backwards(&file, bytes.len() as u64, max, |l| {
            out.push(l.map(<[u8]>::to_vec));
            true
        })
        .unwrap();
        out.reverse();
        out
    }

    /// What a forward reader makes of `bytes`: whole lines of at most `max`, `None` otherwise.
    fn forwards(bytes: &[u8], max: usize) -> Vec<Option<Vec<u8>>> {
        let mut out: Vec<Option<Vec<u8>>> = bytes
            .split(|b| *b == b'\n')
            .map(|l| (l.len() <= max).then(|| l.to_vec()))
            .collect();
        // The part after the last newline is a line cut short (or nothing).
        let last = out.pop().flatten();
        if last.as_ref().is_none_or(|l| !l.is_empty()) {
            out.push(None);
        }
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(100))]

        /// Read backwards in blocks, a file gives the lines a forward read gives, whatever
        /// their lengths and where the blocks fall.
        #[test]
        fn lines_read_backwards_are_the_lines_read_forwards(
            lines in proptest::collection::vec((0usize..200_000, proptest::prelude::any::<u8>()), 0..8),
            torn in proptest::option::of(1usize..5_000),
        ) {
            let mut bytes = Vec::new();
            for (len, fill) in &lines {
                let fill = if *fill == b'\n' { b'x' } else { *fill };
                bytes.extend(std::iter::repeat_n(fill, *len));
                bytes.push(b'\n');
            }
            if let Some(t) = torn {
                bytes.extend(std::iter::repeat_n(b'y', t));
            }
            let max = 70_000;
            proptest::prop_assert_eq!(backwards(&bytes, max), forwards(&bytes, max));
        }
    }

    #[test]
    fn the_tail_of_a_huge_history_is_read_without_reading_it_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let iris = name("iris");
        fs::create_dir_all(store.model_dir(&iris)).unwrap();
        let path = store.model_dir(&iris).join(HISTORY_FILE);
        let v = |n| VersionId::try_from(n).unwrap();
        let mut text = String::new();
        // 200,000 ordinary lines, one 60 MB line, a torn one, then the last promotion.
        let line = |n: u64| {
            let mut e = HistoryEntry::now(Action::Promote, Some(v(n + 1)), Some(v(n)));
            e.at = "2026-12-01T00:00:00Z".into();
            serde_json::to_string(&e).unwrap() + "\n"
        };
        for n in 1..200_000 {
            text += &line(n);
        }
        text += &"x".repeat(60 << 20);
        text += "\n{\"torn\n";
        text += &line(200_000);
        fs::write(&path, &text).unwrap();
        let tail = store.history_tail(&iris, 2, |_| true).unwrap();
        assert_eq!(tail.entries.len(), 2);
        assert_eq!(tail.entries[1].version, Some(v(200_001)));
        assert_eq!(tail.entries[0].version, Some(v(200_000)));
        assert!(tail.earlier);
        assert_eq!(tail.unreadable, 2, "the torn line and the 60 MB one");
        // Streaming forwards holds one line at a time and skips the long one, counted.
        let mut count = 0;
        let mut last = None;
        let bad = store
            .for_each_history(&iris, |e| {
                count += 1;
                last = e.version;
            })
            .unwrap();
        assert_eq!((count, bad, last), (200_000, 2, Some(v(200_001))));
        // A history without what is wanted: read to its start, and nothing found.
        let none = store
            .history_tail(&iris, 1, |e| e.action == Action::Gc)
            .unwrap();
        assert!(none.entries.is_empty() && !none.earlier);
    }

    #[test]
    fn removing_a_version_leaves_no_trace_and_stale_temporaries_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let iris = name("iris");
        let v = store.publish(&iris, |_| b"{}".to_vec()).unwrap();
        let lock = store.lock(&iris).unwrap();
        store.remove_version(&lock, v).unwrap();
        assert!(store.versions(&iris).unwrap().is_empty());
        fs::create_dir(store.model_dir(&iris).join(".publish-dead")).unwrap();
        fs::write(store.model_dir(&iris).join(".pointer-dead"), b"1").unwrap();
        fs::write(store.model_dir(&iris).join(".lock"), b"").unwrap();
        let stale = store.stale_temporaries(&iris, Duration::ZERO).unwrap();
        assert_eq!(stale.len(), 2, "{stale:?}");
        assert!(store
            .stale_temporaries(&iris, Duration::from_secs(3600))
            .unwrap()
            .is_empty());
        for p in &stale {
            store.remove_temporary(&lock, p).unwrap();
        }
        drop(lock);
        let left: Vec<_> = fs::read_dir(store.model_dir(&iris))
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from(".lock")]);
    }

    #[test]
    fn unknown_models_list_what_exists() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        let msg = store.require_model(&name("iris")).unwrap_err().to_string();
        assert!(msg.contains("run `limen train` first"), "{msg}");
        fs::create_dir_all(store.model_dir(&name("wine"))).unwrap();
        let msg = store.require_model(&name("iris")).unwrap_err().to_string();
        assert!(msg.contains("models present: wine"), "{msg}");
    }
}
