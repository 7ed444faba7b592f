//! Optional bearer tokens per route group (`--auth-token-file GROUP=PATH`): inference
//! (`/predict`, `/explain`, `/v2/.../infer` and their model and version routes), metadata and pages
//! (`/`, `/models…`, `/version`, `/v2` metadata), and metrics (`/metrics`). Health routes
//! (`/healthcheck`, `/ready`, `/v2/health/*`, `/v2/.../ready`), the stylesheet and the OpenAPI
//! document never ask for one: probes and docs must work without.
//!
//! A token file holds one token per line (two during a rotation), at least 16 characters each.
//! It is read at start (a missing, unreadable or empty file stops the server: a group meant to be
//! closed is never silently open) and again every poll interval, so a Kubernetes Secret that
//! rotates is picked up without a restart; a file that cannot be read later keeps the tokens it
//! last held. Presented tokens are compared by their SHA-256 digests in constant time, so
//! neither a token's bytes nor its length leak through timing. Without the flag a group is open,
//! as before, at the cost of one branch per request.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::http::{header, HeaderMap};
#[cfg(test)]
use axum::response::IntoResponse as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use super::error::{ApiError, ErrorKind};

/// The route groups a token can close.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    Inference,
    Metadata,
    Metrics,
}

impl Group {
    pub const ALL: [Group; 3] = [Group::Inference, Group::Metadata, Group::Metrics];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Inference => "inference",
            Self::Metadata => "metadata",
            Self::Metrics => "metrics",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl std::str::FromStr for Group {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|g| g.as_str() == s)
            .ok_or_else(|| {
                format!("{s:?} is not a route group; use inference, metadata or metrics")
            })
    }
}

/// The shortest token accepted.
const MIN_TOKEN: usize = 16;
/// The largest token file read.
const MAX_FILE: u64 = 64 * 1024;

/// Why a token file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read the {group} token file {path}: {source}")]
    Read {
        group: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the {group} token file {path} {why}; put one token of at least {MIN_TOKEN} characters per line (e.g. `openssl rand -hex 32`)")]
    Unusable {
        group: &'static str,
        path: PathBuf,
        why: &'static str,
    },
}

/// The accepted tokens of one group, as digests, and the file they come from.
pub struct Tokens {
    group: Group,
    path: PathBuf,
    digests: ArcSwap<Vec<[u8; 32]>>,
}

impl Tokens {
    fn load(group: Group, path: &Path) -> Result<Self, AuthError> {
        Ok(Self {
            group,
            path: path.to_owned(),
            digests: ArcSwap::from_pointee(read(group, path)?),
        })
    }

    /// Admits a request whose `Authorization: Bearer …` holds one of the tokens; otherwise the
    /// 401 to answer.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            });
        let Some(token) = presented else {
            return Err(self.refusal("no bearer token: send `Authorization: Bearer <token>`"));
        };
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        // Every accepted digest is compared, whichever matches: the time does not say which.
        let matched = self
            .digests
            .load()
            .iter()
            .fold(subtle::Choice::from(0), |any, d| any | d.ct_eq(&digest));
        if bool::from(matched) {
            Ok(())
        } else {
            Err(self.refusal("the bearer token is not one this server accepts"))
        }
    }

    fn refusal(&self, why: &str) -> ApiError {
        ApiError::new(
            ErrorKind::Unauthorized,
            format!("{why} (route group {})", self.group.as_str()),
        )
    }

    /// Reads the file again; swaps the tokens in when they changed. Blocking.
    fn reload(&self) {
        match read(self.group, &self.path) {
            Ok(digests) => {
                if **self.digests.load() != digests {
                    self.digests.store(Arc::new(digests));
                    tracing::info!(group = self.group.as_str(), file = %self.path.display(), "auth tokens reloaded");
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "keeping the auth tokens read before");
            }
        }
    }
}

/// The digests of the tokens in `path`: one per non-empty line.
fn read(group: Group, path: &Path) -> Result<Vec<[u8; 32]>, AuthError> {
    use std::io::Read as _;
    let group_name = group.as_str();
    let io = |source| AuthError::Read {
        group: group_name,
        path: path.to_owned(),
        source,
    };
    let mut text = String::new();
    // Secrets are mounted as symbolic links (Kubernetes swaps them on rotation): followed.
    std::fs::File::open(path)
        .map_err(io)?
        .take(MAX_FILE + 1)
        .read_to_string(&mut text)
        .map_err(io)?;
    let unusable = |why| AuthError::Unusable {
        group: group_name,
        path: path.to_owned(),
        why,
    };
    if text.len() as u64 > MAX_FILE {
        return Err(unusable("is larger than 64 KiB"));
    }
    let tokens: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if tokens.is_empty() {
        return Err(unusable("holds no token"));
    }
    if tokens.iter().any(|t| t.len() < MIN_TOKEN) {
        return Err(unusable("holds a token shorter than 16 characters"));
    }
    if tokens
        .iter()
        .any(|t| t.bytes().any(|b| !b.is_ascii_graphic()))
    {
        return Err(unusable(
            "holds a token with a character a header cannot carry",
        ));
    }
    Ok(tokens
        .iter()
        .map(|t| Sha256::digest(t.as_bytes()).into())
        .collect())
}

/// The tokens of every group that has a file.
#[derive(Clone, Default)]
pub struct Auth {
    groups: [Option<Arc<Tokens>>; 3],
}

impl Auth {
    /// No group asks for a token.
    pub fn none() -> Self {
        Self::default()
    }

    /// Reads each group's token file; refuses one that cannot be used.
    pub fn load(files: &[(Group, PathBuf)]) -> Result<Self, AuthError> {
        let mut auth = Self::default();
        for (group, path) in files {
            auth.groups[group.index()] = Some(Arc::new(Tokens::load(*group, path)?));
        }
        Ok(auth)
    }

    /// The tokens that close `group`, if any do.
    pub fn tokens(&self, group: Option<Group>) -> Option<Arc<Tokens>> {
        group.and_then(|g| self.groups[g.index()].clone())
    }

    /// Whether any group asks for a token.
    pub fn enabled(&self) -> bool {
        self.groups.iter().any(Option::is_some)
    }

    /// Re-reads every token file (blocking; every poll interval).
    pub fn reload(&self) {
        for tokens in self.groups.iter().flatten() {
            tokens.reload();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn a_token_from_the_file_is_admitted_and_anything_else_is_a_401() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inference");
        std::fs::write(&path, "0123456789abcdef0123\nrotated-token-2222\n").unwrap();
        let auth = Auth::load(&[(Group::Inference, path.clone())]).unwrap();
        let tokens = auth.tokens(Some(Group::Inference)).unwrap();
        assert!(auth.tokens(Some(Group::Metrics)).is_none());
        assert!(tokens
            .check(&headers("Bearer 0123456789abcdef0123"))
            .is_ok());
        assert!(tokens
            .check(&headers("bearer  rotated-token-2222 "))
            .is_ok());
        for bad in [
            "Bearer 0123456789abcdef012",
            "Basic 0123456789abcdef0123",
            "Bearer",
            "0123456789abcdef0123",
        ] {
            let refused = tokens.check(&headers(bad)).unwrap_err().into_response();
            assert_eq!(refused.status(), 401, "{bad}");
            assert_eq!(
                refused.headers()[header::WWW_AUTHENTICATE],
                "Bearer realm=\"limen\""
            );
        }
        assert!(tokens.check(&HeaderMap::new()).is_err());
        // Rotated: the new token only, picked up by a reload.
        std::fs::write(&path, "a-brand-new-token-3333\n").unwrap();
        auth.reload();
        assert!(tokens
            .check(&headers("Bearer a-brand-new-token-3333"))
            .is_ok());
        assert!(tokens
            .check(&headers("Bearer 0123456789abcdef0123"))
            .is_err());
        // A file gone later keeps the tokens it held: a group never opens by itself.
        std::fs::remove_file(&path).unwrap();
        auth.reload();
        assert!(tokens
            .check(&headers("Bearer a-brand-new-token-3333"))
            .is_ok());
    }

    #[test]
    fn an_unusable_token_file_stops_the_start() {
        let dir = tempfile::tempdir().unwrap();
        for (text, says) in [
            ("", "no token"),
            ("short\n", "shorter than 16"),
            ("0123456789abcdef\u{7}\n", "cannot carry"),
        ] {
            let path = dir.path().join("t");
            std::fs::write(&path, text).unwrap();
            let err = Auth::load(&[(Group::Metrics, path)]).err().unwrap();
            assert!(err.to_string().contains(says), "{err}");
        }
        let err = Auth::load(&[(Group::Metrics, dir.path().join("missing"))])
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .contains("cannot read the metrics token file"),
            "{err}"
        );
    }
}
