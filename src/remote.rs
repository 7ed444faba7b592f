//! Data in S3: `s3://bucket/key`, a prefix (`s3://bucket/tables/churn/`) or a glob
//! (`s3://bucket/logs/iris/2026-11-*/*.jsonl`), read through `object_store` with the AWS
//! credential chain — environment keys, IRSA on EKS (`AWS_WEB_IDENTITY_TOKEN_FILE` +
//! `AWS_ROLE_ARN`), ECS/EKS Pod Identity container credentials, the shared credentials file's
//! static keys (`AWS_PROFILE`, else `default`), then the instance metadata — and staged: each
//! object is streamed to a file in a private temporary folder (memory: one chunk at a time),
//! which the readers then open like any local file. The folder is removed when the
//! [`Staged`] value is dropped.
//!
//! `AWS_ENDPOINT_URL` (with `AWS_ALLOW_HTTP=true` for plain HTTP) points it at an S3-compatible
//! server; `AWS_EC2_METADATA_DISABLED=true` turns the metadata lookup off, so that having no
//! credentials is an error at once rather than after the metadata endpoint's timeouts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, RetryConfig};

/// The scheme limen reads remote data from.
pub const SCHEME: &str = "s3://";

/// Objects one location may name (a prefix or glob matching more is refused: the wrong prefix).
pub const MAX_OBJECTS: usize = 10_000;

/// Whether `location` names data in S3 rather than a local path.
pub fn is_remote(location: &str) -> bool {
    location.starts_with(SCHEME)
}

/// Why remote data could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("{location} is not an S3 location: write s3://BUCKET/KEY (or a prefix ending in /, or a glob such as s3://BUCKET/logs/*.jsonl)")]
    BadLocation { location: String },
    #[error("no AWS credentials for {location}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, run on EKS with IRSA (AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN), or name a profile of ~/.aws/credentials with AWS_PROFILE")]
    NoCredentials { location: String },
    #[error("nothing in S3 matches {location}{hint}")]
    NotFound { location: String, hint: String },
    #[error("{location} matches more than {MAX_OBJECTS} objects: name a narrower prefix or glob")]
    TooMany { location: String },
    #[error("could not read {location} from S3: {why}")]
    S3 { location: String, why: String },
    #[error("could not stage {location} in a local temporary folder: {source}")]
    Local {
        location: String,
        source: std::io::Error,
    },
}

/// Remote objects copied to a private temporary folder, removed on drop.
#[derive(Debug)]
pub struct Staged {
    /// The local copies, in key order (file names keep the keys' last segment and extension).
    pub files: Vec<PathBuf>,
    /// Each copy's object, as `s3://bucket/key` (for messages: the name the user knows).
    pub objects: Vec<String>,
    /// The folder holding them.
    pub dir: PathBuf,
    _guard: tempfile::TempDir,
}

/// An S3 location taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Location {
    bucket: String,
    /// The key, or the prefix a listing starts from (ending in `/` when it names a folder).
    key: String,
    /// The glob the keys under `key` must match, if the location had one.
    pattern: Option<glob::Pattern>,
}

impl Location {
    fn parse(location: &str) -> Result<Self, RemoteError> {
        let bad = || RemoteError::BadLocation {
            location: location.to_owned(),
        };
        let rest = location.strip_prefix(SCHEME).ok_or_else(bad)?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() || bucket.contains(['*', '?', '[']) {
            return Err(bad());
        }
        let (key, pattern) = match key.find(['*', '?', '[']) {
            None => (key.to_owned(), None),
            Some(at) => {
                let prefix = key[..at].rfind('/').map_or("", |slash| &key[..=slash]);
                let pattern = glob::Pattern::new(key).map_err(|_| bad())?;
                (prefix.to_owned(), Some(pattern))
            }
        };
        Ok(Location {
            bucket: bucket.to_owned(),
            key,
            pattern,
        })
    }
}

/// What this process staged, by location and the names it selected: a command that reads a
/// location twice (its header, then its rows) downloads it once. Emptied by [`clear_staged`].
static STAGED: std::sync::Mutex<Vec<(String, Arc<Staged>)>> = std::sync::Mutex::new(Vec::new());

/// [`stage`], once per location and selection per process (until [`clear_staged`]).
pub fn staged(location: &str, extensions: &[&str]) -> Result<Arc<Staged>, RemoteError> {
    let key = format!("{location}\n{}", extensions.join(","));
    let cached = |list: &Vec<(String, Arc<Staged>)>| {
        list.iter()
            .find(|(l, _)| *l == key)
            .map(|(_, s)| Arc::clone(s))
    };
    if let Some(found) = cached(&STAGED.lock().unwrap_or_else(|e| e.into_inner())) {
        return Ok(found);
    }
    // Downloaded without the lock held; a command reads its locations one after another.
    let fresh = Arc::new(stage(location, extensions)?);
    let mut list = STAGED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(found) = cached(&list) {
        return Ok(found);
    }
    list.push((key, Arc::clone(&fresh)));
    Ok(fresh)
}

/// Drops every staged copy (their temporary folders are removed once no reader holds them).
pub fn clear_staged() {
    STAGED.lock().unwrap_or_else(|e| e.into_inner()).clear();
}

/// Copies every object `location` names (one key; every key under a prefix ending in `/`, or
/// under `KEY/` when no object is named KEY; or every key matching a glob) to a new temporary
/// folder. Under a prefix, only keys ending in one of `extensions` (empty: any); a glob selects
/// by itself.
pub fn stage(location: &str, extensions: &[&str]) -> Result<Staged, RemoteError> {
    stage_keys(location, extensions, None)
}

/// Copies every object under the prefix `location` whose key, relative to that prefix, `keep`
/// accepts (the inference log's day folders from a date on, say); an empty selection is an empty
/// [`Staged`], not an error (a missing bucket still is).
pub fn stage_matching(location: &str, keep: &dyn Fn(&str) -> bool) -> Result<Staged, RemoteError> {
    stage_keys(location, &[], Some(keep))
}

fn stage_keys(
    location: &str,
    extensions: &[&str],
    keep: Option<&dyn Fn(&str) -> bool>,
) -> Result<Staged, RemoteError> {
    let parsed = Location::parse(location)?;
    let s3_err = |e: object_store::Error| classify(location, e);
    let store = client(location, &parsed.bucket)?;
    let local = |source| RemoteError::Local {
        location: location.to_owned(),
        source,
    };
    let guard = tempfile::Builder::new()
        .prefix("limen-s3-")
        .tempdir()
        .map_err(local)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(local)?;
    let fail = |e: Fetch| match e {
        Fetch::S3(e) => s3_err(e),
        Fetch::Other(e) => e,
    };
    let keys = runtime
        .block_on(keys(&store, &parsed, extensions, keep, location))
        .map_err(fail)?;
    let mut files = Vec::with_capacity(keys.len());
    for (i, key) in keys.iter().enumerate() {
        let name = key.filename().unwrap_or("object");
        let file = guard.path().join(format!("{i:05}-{name}"));
        runtime
            .block_on(download(&store, key, &file))
            .map_err(fail)?;
        files.push(file);
    }
    Ok(Staged {
        files,
        objects: keys
            .iter()
            .map(|key| format!("{SCHEME}{}/{key}", parsed.bucket))
            .collect(),
        dir: guard.path().to_owned(),
        _guard: guard,
    })
}

enum Fetch {
    S3(object_store::Error),
    Other(RemoteError),
}

impl From<object_store::Error> for Fetch {
    fn from(e: object_store::Error) -> Self {
        Fetch::S3(e)
    }
}

/// The keys `location` names, sorted.
async fn keys(
    store: &Arc<dyn ObjectStore>,
    location: &Location,
    extensions: &[&str],
    keep: Option<&dyn Fn(&str) -> bool>,
    shown: &str,
) -> Result<Vec<ObjectPath>, Fetch> {
    let exact = keep.is_none()
        && location.pattern.is_none()
        && !location.key.is_empty()
        && !location.key.ends_with('/');
    if exact {
        let key = ObjectPath::from(location.key.as_str());
        match store.head(&key).await {
            Ok(_) => return Ok(vec![key]),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let prefix = ObjectPath::from(location.key.trim_end_matches('/'));
    let prefix = (!location.key.is_empty()).then_some(prefix);
    let mut listed = store.list(prefix.as_ref());
    let mut keys = Vec::new();
    while let Some(meta) = listed.next().await {
        let key = meta?.location;
        let wanted = match (&location.pattern, keep) {
            (_, Some(keep)) => keep(
                key.as_ref()
                    .strip_prefix(location.key.as_str())
                    .unwrap_or(key.as_ref())
                    .trim_start_matches('/'),
            ),
            (Some(pattern), None) => pattern.matches(key.as_ref()),
            (None, None) => {
                extensions.is_empty()
                    || key
                        .extension()
                        .is_some_and(|e| extensions.iter().any(|want| want.eq_ignore_ascii_case(e)))
            }
        };
        if wanted {
            keys.push(key);
            if keys.len() > MAX_OBJECTS {
                return Err(Fetch::Other(RemoteError::TooMany {
                    location: shown.to_owned(),
                }));
            }
        }
    }
    if keys.is_empty() && keep.is_none() {
        let hint = match (&location.pattern, exact) {
            (Some(_), _) => String::new(),
            (None, true) => format!(
                ": no object has that key, and no key under {shown}/ ends in .{}",
                extensions.join(" or .")
            ),
            (None, false) => format!(": no key under it ends in .{}", extensions.join(" or .")),
        };
        return Err(Fetch::Other(RemoteError::NotFound {
            location: shown.to_owned(),
            hint,
        }));
    }
    keys.sort();
    Ok(keys)
}

/// Streams object `key` into a new file at `to`, chunk by chunk, and syncs it.
async fn download(store: &Arc<dyn ObjectStore>, key: &ObjectPath, to: &Path) -> Result<(), Fetch> {
    let local = |source| {
        Fetch::Other(RemoteError::Local {
            location: to.display().to_string(),
            source,
        })
    };
    let mut file = std::fs::File::create_new(to).map_err(local)?;
    let mut stream = store.get(key).await?.into_stream();
    while let Some(chunk) = stream.next().await {
        file.write_all(&chunk?).map_err(local)?;
    }
    file.sync_all().map_err(local)?;
    Ok(())
}

/// The S3 client for `bucket`: the environment's settings, the shared credentials file's keys
/// when nothing else supplies any, bounded retries.
fn client(location: &str, bucket: &str) -> Result<Arc<dyn ObjectStore>, RemoteError> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Some(region) = env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")) {
        builder = builder.with_region(region);
    }
    let has_keys = env("AWS_ACCESS_KEY_ID").is_some();
    let has_other = [
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ]
    .iter()
    .any(|name| env(name).is_some());
    if !has_keys && !has_other {
        match profile_keys(env("AWS_PROFILE").as_deref().unwrap_or("default")) {
            Some(keys) => {
                builder = builder
                    .with_access_key_id(keys.access_key_id)
                    .with_secret_access_key(keys.secret_access_key);
                if let Some(token) = keys.session_token {
                    builder = builder.with_token(token);
                }
            }
            None if env("AWS_EC2_METADATA_DISABLED")
                .is_some_and(|v| v.eq_ignore_ascii_case("true")) =>
            {
                return Err(RemoteError::NoCredentials {
                    location: location.to_owned(),
                })
            }
            None => {}
        }
    }
    let retry = RetryConfig {
        max_retries: 3,
        retry_timeout: Duration::from_secs(30),
        ..RetryConfig::default()
    };
    let store = builder
        .with_retry(retry)
        .build()
        .map_err(|e| classify(location, e))?;
    Ok(Arc::new(store))
}

/// Static keys of one profile of the shared credentials file.
#[derive(Debug, PartialEq, Eq)]
struct ProfileKeys {
    access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

/// `profile`'s keys in `AWS_SHARED_CREDENTIALS_FILE` (default `~/.aws/credentials`), if it has
/// both an access key id and a secret.
fn profile_keys(profile: &str) -> Option<ProfileKeys> {
    let path = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| Path::new(&home).join(".aws/credentials"))
        })?;
    let meta = std::fs::metadata(&path).ok()?;
    // A credentials file is a few lines; anything large is not one.
    if !meta.is_file() || meta.len() > 1 << 20 {
        return None;
    }
    parse_profile(&std::fs::read_to_string(path).ok()?, profile)
}

/// The INI-style credentials file's `[profile]` section: `aws_access_key_id`,
/// `aws_secret_access_key`, `aws_session_token`.
fn parse_profile(text: &str, profile: &str) -> Option<ProfileKeys> {
    let mut in_section = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_section = name.trim() == profile;
            continue;
        }
        if !in_section {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            let value = Some(value.trim().to_owned());
            match key.trim() {
                "aws_access_key_id" => id = value,
                "aws_secret_access_key" => secret = value,
                "aws_session_token" => token = value,
                _ => {}
            }
        }
    }
    Some(ProfileKeys {
        access_key_id: id?,
        secret_access_key: secret?,
        session_token: token,
    })
}

/// An `object_store` error as the user should read it.
fn classify(location: &str, e: object_store::Error) -> RemoteError {
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    if matches!(e, object_store::Error::NotFound { .. }) || lower.contains("nosuchbucket") {
        return RemoteError::NotFound {
            location: location.to_owned(),
            hint: if lower.contains("nosuchbucket") {
                ": the bucket does not exist".to_owned()
            } else {
                String::new()
            },
        };
    }
    if lower.contains("credential") && !lower.contains("invalidaccesskeyid") {
        return RemoteError::NoCredentials {
            location: location.to_owned(),
        };
    }
    // reqwest cannot build a TLS client without a root certificate to trust.
    let why = if lower.contains("builder error") {
        format!("{text} (is there a CA certificate store? install ca-certificates, or point SSL_CERT_FILE at a bundle)")
    } else {
        text
    };
    RemoteError::S3 {
        location: location.to_owned(),
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_are_taken_apart() {
        let l = Location::parse("s3://b/tables/churn.csv").unwrap();
        assert_eq!(
            (l.bucket.as_str(), l.key.as_str()),
            ("b", "tables/churn.csv")
        );
        assert!(l.pattern.is_none());
        let l = Location::parse("s3://b/logs/iris/2026-11-*/*.jsonl").unwrap();
        assert_eq!(l.key, "logs/iris/");
        assert!(l.pattern.unwrap().matches("logs/iris/2026-11-03/a.jsonl"));
        let l = Location::parse("s3://b").unwrap();
        assert_eq!(l.key, "");
        for bad in ["s3://", "s3:///key", "http://b/k", "s3://b*/k", "s3://b/[x"] {
            assert!(
                matches!(Location::parse(bad), Err(RemoteError::BadLocation { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_profiles_static_keys_are_read_and_other_profiles_ignored() {
        let text = "[default]\naws_access_key_id = A\naws_secret_access_key=S\n\n# note\n[team]\naws_access_key_id=T\naws_secret_access_key = U\naws_session_token = V\n[half]\naws_access_key_id=X\n";
        assert_eq!(
            parse_profile(text, "default"),
            Some(ProfileKeys {
                access_key_id: "A".into(),
                secret_access_key: "S".into(),
                session_token: None
            })
        );
        assert_eq!(
            parse_profile(text, "team").and_then(|k| k.session_token),
            Some("V".into())
        );
        assert_eq!(parse_profile(text, "half"), None);
        assert_eq!(parse_profile(text, "absent"), None);
    }
}
