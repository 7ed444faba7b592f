//! Recent activity per model for the status page: every 10 seconds, how many instances each
//! served model has scored and how many inputs fell outside their training range, kept for the
//! last five minutes. Read from the counters the server keeps anyway; nothing per request.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::registry::Registry;

/// How often a sample is taken, and how many are kept (five minutes).
pub const EVERY: Duration = Duration::from_secs(10);
const KEPT: usize = 31;

/// Per model: (instances scored, inputs out of range) so far, by the served version's counters.
type Counts = HashMap<String, (u64, u64)>;

#[derive(Default)]
pub struct Activity {
    samples: Mutex<VecDeque<(Instant, Counts)>>,
}

impl Activity {
    /// Takes one sample of every served model's counters.
    pub fn sample(&self, registry: &Registry) {
        let counts = registry
            .counters()
            .into_iter()
            .map(|(name, c)| (name, (c.predictions, c.out_of_range)))
            .collect();
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        if samples.len() == KEPT {
            samples.pop_front();
        }
        samples.push_back((Instant::now(), counts));
    }

    /// Per-second rates of `model` between consecutive samples, oldest first: (instances,
    /// out of range). A counter that went down (a new version's) counts as 0 for that interval.
    pub fn rates(&self, model: &str) -> (Vec<f64>, Vec<f64>) {
        let samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        let mut rate = Vec::new();
        let mut out = Vec::new();
        for ((t0, c0), (t1, c1)) in samples.iter().zip(samples.iter().skip(1)) {
            let dt = t1.duration_since(*t0).as_secs_f64().max(1e-3);
            let (a0, o0) = c0.get(model).copied().unwrap_or_default();
            let (a1, o1) = c1.get(model).copied().unwrap_or_default();
            rate.push(a1.saturating_sub(a0) as f64 / dt);
            out.push(o1.saturating_sub(o0) as f64 / dt);
        }
        (rate, out)
    }
}

/// Samples every [`EVERY`] until dropped.
pub async fn run(activity: Arc<Activity>, registry: Arc<Registry>) {
    let mut ticker = tokio::time::interval(EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        activity.sample(&registry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_per_second_between_samples_and_a_reset_counts_zero() {
        let activity = Activity::default();
        let start = Instant::now();
        let counts = |scored: u64, out: u64| Counts::from([("iris".to_owned(), (scored, out))]);
        {
            let mut samples = activity.samples.lock().unwrap();
            samples.push_back((start, counts(100, 0)));
            samples.push_back((start + EVERY, counts(600, 20)));
            // A new version's counters start again from zero.
            samples.push_back((start + 2 * EVERY, counts(50, 1)));
        }
        assert_eq!(activity.rates("iris"), (vec![50.0, 0.0], vec![2.0, 0.0]));
        assert_eq!(activity.rates("other"), (vec![0.0, 0.0], vec![0.0, 0.0]));
    }
}
