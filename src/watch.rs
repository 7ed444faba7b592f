//! Tells the registry when to look at the store again: inotify events (through `notify`) for an
//! instant reaction to local writes, and a periodic tick because inotify never sees what another
//! NFS/EFS client writes. Knows nothing of what is in the store.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::Notify;
use tokio::time::{Interval, MissedTickBehavior};

/// What one scan of the store found, for re-arming the file watcher.
#[derive(Debug, Clone, Default)]
pub struct ScanOutcome {
    /// Whether the store root could be listed.
    pub readable: bool,
    /// The folder of every model in the store.
    pub model_dirs: Vec<PathBuf>,
}

/// Where change signals come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WatchMode {
    /// inotify events and polling: instant on local writes, bounded on shared filesystems.
    Auto,
    /// inotify events only; blind to writes by other NFS/EFS clients.
    Notify,
    /// Polling only.
    Poll,
}

/// A source of "the store may have changed" signals.
pub struct ChangeSource {
    root: PathBuf,
    mode: WatchMode,
    ticker: Interval,
    events: Arc<Notify>,
    watcher: Option<RecommendedWatcher>,
    /// Folders with an inotify watch: the root, and each model folder (where pointers change).
    /// Version folders are not watched: they never change after publication.
    watched: HashSet<PathBuf>,
}

impl ChangeSource {
    /// Sets up the sources for `root`. A root that does not exist yet is fine: the inotify watch
    /// is armed by [`ChangeSource::rearm`] once a scan finds the root readable.
    pub fn new(root: &Path, mode: WatchMode, poll_interval: Duration) -> Self {
        let mut ticker = tokio::time::interval(poll_interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let events = Arc::new(Notify::new());
        let watcher = match mode {
            WatchMode::Poll => None,
            WatchMode::Auto | WatchMode::Notify => {
                let events = Arc::clone(&events);
                let handler = move |res: notify::Result<notify::Event>| match res {
                    // Reads (ours included: every poll opens the pointers) are not changes.
                    Ok(event) if matches!(event.kind, EventKind::Access(_)) => {}
                    // Coalesces: many events before the next scan wake it once.
                    Ok(_) => events.notify_one(),
                    Err(e) => {
                        tracing::warn!(error = %e, "file watcher error; rescanning");
                        events.notify_one();
                    }
                };
                match notify::recommended_watcher(handler) {
                    Ok(w) => Some(w),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot start the file watcher; relying on polling");
                        None
                    }
                }
            }
        };
        Self {
            root: root.to_owned(),
            mode,
            ticker,
            events,
            watcher,
            watched: HashSet::new(),
        }
    }

    /// Waits for the next reason to scan. The first call returns at once.
    pub async fn changed(&mut self) {
        // In notify-only mode the tick still runs while the watch is not armed, to arm it.
        let tick = self.mode != WatchMode::Notify || !self.watched.contains(&self.root);
        tokio::select! {
            _ = self.ticker.tick(), if tick => {}
            _ = self.events.notified() => {}
        }
    }

    /// Keeps one non-recursive watch on the root and on each model folder the scan found, so a
    /// new model or a moved pointer wakes the next scan at once. After a scan that could not read
    /// the root (unmounted, removed, replaced) every watch is dropped as stale, and re-armed once
    /// the root is back.
    pub fn rearm(&mut self, scan: &ScanOutcome) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        let wanted: HashSet<PathBuf> = if scan.readable {
            std::iter::once(self.root.clone())
                .chain(scan.model_dirs.iter().cloned())
                .collect()
        } else {
            HashSet::new()
        };
        self.watched.retain(|dir| {
            let keep = wanted.contains(dir);
            if !keep {
                // The folder may be gone already, which removed the watch with it.
                let _ = watcher.unwatch(dir);
            }
            keep
        });
        for dir in wanted {
            if self.watched.contains(&dir) {
                continue;
            }
            match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    self.watched.insert(dir);
                }
                Err(e) => {
                    tracing::debug!(dir = %dir.display(), error = %e, "cannot watch yet; polling covers it")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `changed()` resolves within `limit`.
    async fn wakes_within(source: &mut ChangeSource, limit: Duration) -> bool {
        tokio::time::timeout(limit, source.changed()).await.is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn polling_wakes_at_once_then_every_interval() {
        let dir = tempfile::tempdir().unwrap();
        let mut source = ChangeSource::new(dir.path(), WatchMode::Poll, Duration::from_secs(1));
        assert!(
            wakes_within(&mut source, Duration::from_millis(1)).await,
            "first call"
        );
        assert!(!wakes_within(&mut source, Duration::from_millis(900)).await);
        assert!(wakes_within(&mut source, Duration::from_millis(200)).await);
    }

    #[tokio::test]
    async fn a_write_in_a_watched_folder_wakes_the_next_scan_without_polling() {
        let dir = tempfile::tempdir().unwrap();
        let model_dir = dir.path().join("iris");
        std::fs::create_dir(&model_dir).unwrap();
        // An hour between polls: only an inotify event can wake it in time.
        let mut source =
            ChangeSource::new(dir.path(), WatchMode::Notify, Duration::from_secs(3600));
        assert!(
            wakes_within(&mut source, Duration::from_secs(1)).await,
            "first call"
        );
        source.rearm(&ScanOutcome {
            readable: true,
            model_dirs: vec![model_dir.clone()],
        });
        assert!(source.watched.contains(dir.path()) && source.watched.contains(&model_dir));
        std::fs::write(model_dir.join("production"), b"1\n").unwrap();
        assert!(
            wakes_within(&mut source, Duration::from_secs(10)).await,
            "a pointer write raised no wake-up"
        );
    }

    #[tokio::test]
    async fn an_unreadable_store_drops_every_watch_until_it_is_back() {
        let dir = tempfile::tempdir().unwrap();
        let model_dir = dir.path().join("iris");
        std::fs::create_dir(&model_dir).unwrap();
        let mut source = ChangeSource::new(dir.path(), WatchMode::Auto, Duration::from_secs(1));
        let readable = ScanOutcome {
            readable: true,
            model_dirs: vec![model_dir.clone()],
        };
        source.rearm(&readable);
        assert_eq!(source.watched.len(), 2);
        source.rearm(&ScanOutcome::default());
        assert!(source.watched.is_empty());
        source.rearm(&readable);
        assert_eq!(source.watched.len(), 2);
        // A model folder that went away is unwatched; a missing one is simply not watched yet.
        source.rearm(&ScanOutcome {
            readable: true,
            model_dirs: vec![dir.path().join("not-yet")],
        });
        assert_eq!(source.watched.len(), 1);
    }
}
