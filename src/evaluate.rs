//! How a model does on labelled data: accuracy, log loss, and per class precision, recall, F1,
//! the confusion matrix and (binary) ROC AUC, counted row by row in memory that does not grow
//! with the rows. Above both the model and the data layer, so that neither knows the other.

use crate::data::Dataset;
use crate::model::{ClassReport, ClassScores, Model, PredictError};

/// Rows a tree model's mean |contribution| is measured on, at most (evenly spaced through the
/// data); fewer for a big ensemble, whose TreeSHAP costs milliseconds a row: about
/// [`IMPORTANCE_NODES`] nodes' worth of rows, and never fewer than [`IMPORTANCE_MIN_ROWS`].
pub const IMPORTANCE_ROWS: usize = 1_000;
pub const IMPORTANCE_NODES: usize = 4_000_000;
pub const IMPORTANCE_MIN_ROWS: usize = 100;

/// Per feature, the mean over up to [`IMPORTANCE_ROWS`] rows of `data` (evenly spaced) of its
/// |contribution| to `model`'s answer (the exact decomposition of [`Model::explain`]), averaged
/// over the outputs: what a tree model's page draws in place of a linear model's weights.
pub fn mean_abs_contributions(model: &Model, data: &Dataset) -> Result<Vec<f64>, PredictError> {
    let n = data.rows();
    let width = model.feature_names().len();
    let mut total = vec![0.0; width];
    let nodes: usize = model
        .artifact()
        .trees
        .as_ref()
        .map_or(0, |e| e.trees.iter().map(|t| t.left.len()).sum());
    let rows = (IMPORTANCE_NODES / nodes.max(1)).clamp(IMPORTANCE_MIN_ROWS, IMPORTANCE_ROWS);
    let take = n.min(rows);
    let recoder = crate::preprocess::recoder_for(data, model)?;
    let mut row = Vec::with_capacity(width);
    let mut recoded = Vec::with_capacity(width);
    for k in 0..take {
        row.clear();
        row.extend(data.x.row(k * n / take).iter().copied());
        if let Some(recoder) = &recoder {
            recoder.apply(&row, &mut recoded);
            std::mem::swap(&mut row, &mut recoded);
        }
        let e = model.explain(&row)?;
        let outputs = e.contributions.len().max(1) as f64;
        for parts in &e.contributions {
            for (t, c) in total.iter_mut().zip(parts) {
                *t += c.abs() / outputs;
            }
        }
    }
    let take = take.max(1) as f64;
    Ok(total.into_iter().map(|t| t / take).collect())
}

/// Accuracy and log loss on `data`, whose label column holds this model's training labels.
///
/// For a binary model a label equal to `positive_class` is positive and anything else
/// negative; for a multinomial one a label the model does not know counts as wrong.
pub fn evaluate(model: &Model, data: &Dataset) -> Result<Evaluation, PredictError> {
    let mut tally = Tally::new(model);
    score_into(model, data, &mut tally)?;
    Ok(tally.finish())
}

/// Scores every row of `data` into `tally`, row by row into one buffer (no `rows × classes`
/// matrix for millions of rows). Cross-validation adds each fold's held-out rows to one tally.
pub fn score_into(model: &Model, data: &Dataset, tally: &mut Tally) -> Result<(), PredictError> {
    let mut probabilities = Vec::with_capacity(model.classes().len());
    // Each of the data's labels as this model's class index, looked up once.
    let truth_of: Vec<Option<usize>> = data
        .label_names
        .iter()
        .map(|label| {
            match (
                &model.artifact().positive_class,
                model.positive_probability_index(),
            ) {
                // A binary model: its positive class against everything else.
                (Some(pos), Some(_)) => Some(usize::from(label == pos)),
                _ => model.classes().iter().position(|c| c == label),
            }
        })
        .collect();
    let recoder = crate::preprocess::recoder_for(data, model)?;
    let (mut scratch, mut recoded) = (Vec::new(), Vec::new());
    for (row, &label) in data.x.rows().into_iter().zip(&data.labels) {
        let mut row = match row.as_slice() {
            Some(row) => row,
            None => {
                scratch.clear();
                scratch.extend(row.iter().copied());
                &scratch
            }
        };
        if let Some(recoder) = &recoder {
            recoder.apply(row, &mut recoded);
            row = &recoded;
        }
        let predicted = model.predict_into(row, &mut probabilities)?;
        tally.add(truth_of[label as usize], predicted, &probabilities);
    }
    Ok(())
}

/// How a model did on a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub accuracy: f64,
    pub log_loss: f64,
    pub rows: usize,
    /// Per-class precision, recall, F1, the confusion matrix and (binary) ROC AUC.
    pub report: ClassReport,
}

/// Buckets of P(positive) for the ROC AUC: rank statistics in memory that does not grow with
/// the rows; pairs whose scores fall in one bucket (1/65,536 wide) count as ties.
const AUC_BUCKETS: usize = 1 << 16;

/// Running counts from which an [`Evaluation`] is made.
#[derive(Debug, Clone)]
pub struct Tally {
    classes: Vec<String>,
    binary: bool,
    rows: u64,
    correct: u64,
    loss: f64,
    confusion: Vec<Vec<u64>>,
    /// Binary models: per bucket of P(positive), how many negative and positive rows.
    buckets: Vec<[u64; 2]>,
}

impl Tally {
    pub fn new(model: &Model) -> Self {
        let n = model.classes().len();
        let binary = model.positive_probability_index().is_some();
        Self {
            classes: model.classes().to_vec(),
            binary,
            rows: 0,
            correct: 0,
            loss: 0.0,
            confusion: vec![vec![0; n]; n],
            buckets: if binary {
                vec![[0; 2]; AUC_BUCKETS]
            } else {
                Vec::new()
            },
        }
    }

    /// One scored row: its true class (if the model knows it), the predicted class and every
    /// probability.
    pub fn add(&mut self, truth: Option<usize>, predicted: usize, probabilities: &[f64]) {
        self.rows += 1;
        let p_true = truth.map_or(0.0, |t| probabilities[t]);
        self.loss -= p_true.clamp(1e-15, 1.0).ln();
        let Some(truth) = truth else { return };
        if truth == predicted {
            self.correct += 1;
        }
        self.confusion[truth][predicted] += 1;
        if self.binary {
            let bucket = (probabilities[1] * (AUC_BUCKETS - 1) as f64).round() as usize;
            self.buckets[bucket.min(AUC_BUCKETS - 1)][truth] += 1;
        }
    }

    pub fn finish(&self) -> Evaluation {
        let n = self.rows.max(1) as f64;
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let classes = self
            .classes
            .iter()
            .enumerate()
            .map(|(i, class)| {
                let tp = self.confusion[i][i];
                let support: u64 = self.confusion[i].iter().sum();
                let predicted: u64 = self.confusion.iter().map(|r| r[i]).sum();
                let (precision, recall) = (ratio(tp, predicted), ratio(tp, support));
                let f1 = if precision + recall > 0.0 {
                    2.0 * precision * recall / (precision + recall)
                } else {
                    0.0
                };
                ClassScores {
                    class: class.clone(),
                    precision,
                    recall,
                    f1,
                    support,
                }
            })
            .collect();
        Evaluation {
            accuracy: self.correct as f64 / n,
            log_loss: self.loss / n,
            rows: self.rows as usize,
            report: ClassReport {
                classes,
                confusion: self.confusion.clone(),
                roc_auc: self.binary.then(|| self.roc_auc()).flatten(),
            },
        }
    }

    /// The probability that a random positive row scores above a random negative one (ties
    /// half), from the buckets: Mann–Whitney's U over the pairs.
    fn roc_auc(&self) -> Option<f64> {
        let negatives: u64 = self.buckets.iter().map(|b| b[0]).sum();
        let positives: u64 = self.buckets.iter().map(|b| b[1]).sum();
        if negatives == 0 || positives == 0 {
            return None;
        }
        let mut below = 0u64;
        let mut pairs = 0.0f64;
        for [neg, pos] in &self.buckets {
            pairs += *pos as f64 * (below as f64 + 0.5 * *neg as f64);
            below += neg;
        }
        Some(pairs / (positives as f64 * negatives as f64))
    }
}
