//! Tells the registry when to look at the store again: inotify events (through `notify`) for an
//! instant reaction to local writes, and a periodic tick because inotify never sees what another
//! NFS/EFS client writes. Knows nothing of what is in the store.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::Notify;
use tokio::time::{Interval, MissedTickBehavior};

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
    watching: bool,
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
            watching: false,
        }
    }

    /// Waits for the next reason to scan. The first call returns at once.
    pub async fn changed(&mut self) {
        // In notify-only mode the tick still runs while the watch is not armed, to arm it.
        let tick = self.mode != WatchMode::Notify || !self.watching;
        tokio::select! {
            _ = self.ticker.tick(), if tick => {}
            _ = self.events.notified() => {}
        }
    }

    /// Arms the inotify watch after a scan that could read the root, and drops it after one that
    /// could not (the root was unmounted, removed or replaced, so the watch is stale).
    pub fn rearm(&mut self, root_readable: bool) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        if root_readable && !self.watching {
            match watcher.watch(&self.root, RecursiveMode::Recursive) {
                Ok(()) => {
                    self.watching = true;
                    tracing::debug!(root = %self.root.display(), "watching the store for changes");
                }
                Err(e) => tracing::debug!(error = %e, "cannot watch the store yet"),
            }
        } else if !root_readable && self.watching {
            let _ = watcher.unwatch(&self.root);
            self.watching = false;
        }
    }
}
