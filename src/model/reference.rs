//! A feature's training statistics and its drift reference: the training distribution over 12
//! bins that live inputs are compared with (the population stability index).

use serde::{Deserialize, Serialize};

/// Summary statistics of one feature over the rows it was computed on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FeatureStats {
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Population standard deviation (ddof = 0, as scikit-learn's `StandardScaler`).
    pub std: f64,
}

/// A feature's training distribution over 12 bins: below the training minimum, ten quantile
/// bins from the minimum to the maximum, and above the maximum. `edges` are the nine inner
/// quantile edges (the 10th … 90th percentiles); `shares` the fraction of training rows in each
/// bin (the two outer ones are 0 by construction). Production inputs binned the same way give
/// the population stability index ([`Reference::psi`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    pub edges: Vec<f64>,
    pub shares: Vec<f64>,
}

/// Bins of a [`Reference`]: below the minimum, ten quantile bins, above the maximum.
pub const DRIFT_BINS: usize = 12;

impl Reference {
    /// The reference of a column of values (any order), whose minimum and maximum are `stats`'.
    /// The edges are exact quantiles up to 100,000 values and quantiles of an evenly strided
    /// sample of 100,000 beyond (memory stays small for millions of rows); the shares always
    /// count every value.
    pub fn of<'a>(values: impl Iterator<Item = &'a f64> + Clone, stats: &FeatureStats) -> Self {
        const SAMPLE: usize = 100_000;
        let len = values.clone().count();
        let stride = len.div_ceil(SAMPLE).max(1);
        let mut sorted: Vec<f64> = values
            .clone()
            .step_by(stride)
            .copied()
            .filter(|v| v.is_finite())
            .collect();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let edges: Vec<f64> = (1..10)
            .map(|q| {
                if n == 0 {
                    stats.min
                } else {
                    sorted[((q * n) / 10).min(n - 1)]
                }
            })
            .collect();
        let mut reference = Self {
            edges,
            shares: vec![0.0; DRIFT_BINS],
        };
        let mut counts = [0u64; DRIFT_BINS];
        for v in values {
            counts[reference.bin(*v, stats)] += 1;
        }
        for (share, count) in reference.shares.iter_mut().zip(counts) {
            *share = count as f64 / len.max(1) as f64;
        }
        reference
    }

    /// The bin of `x`: 0 below the training minimum, 11 above the maximum, else 1 + the number
    /// of inner edges below it (a value equal to an edge belongs to the bin the edge closes).
    pub fn bin(&self, x: f64, stats: &FeatureStats) -> usize {
        if x < stats.min {
            0
        } else if x > stats.max {
            DRIFT_BINS - 1
        } else {
            1 + self.edges.partition_point(|e| *e < x)
        }
    }

    /// The population stability index of observed bin `counts` against these shares:
    /// Σ (a − e) · ln(a / e), each share floored at 1e-4 so an empty bin does not make it
    /// infinite. Under 0.1 is usually read as stable, over 0.25 as a shift. `None` without
    /// observations.
    pub fn psi(&self, counts: &[u64]) -> Option<f64> {
        psi(&self.shares, counts)
    }
}

/// The population stability index of observed bin `counts` against expected `shares` (see
/// [`Reference::psi`]); a categorical feature's bins are its indicators and one for unseen
/// values.
pub fn psi(shares: &[f64], counts: &[u64]) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    const FLOOR: f64 = 1e-4;
    Some(
        shares
            .iter()
            .zip(counts)
            .map(|(e, c)| {
                let (a, e) = ((*c as f64 / total as f64).max(FLOOR), e.max(FLOOR));
                (a - e) * (a / e).ln()
            })
            .sum(),
    )
}
