//! Random forests (`limen train --kind random-forest`): decision trees fitted by `linfa-trees`
//! on bootstrap samples, each on a random subset of the features, turned into limen's tree
//! ensemble artifact (a [`Link::Mean`] of the trees' leaf class probabilities) so that the server
//! scores and explains them like any imported ensemble.
//!
//! Why `linfa-trees` directly and not `linfa-ensemble`'s `RandomForest` (BENCHMARKS.md, "Random
//! forests"): `linfa-ensemble` 0.8 keeps only each tree's majority vote and drops the rows each
//! tree was fitted on, so neither the class probabilities a forest answers with nor the node
//! covers TreeSHAP weighs paths by can be recovered, and it unwraps a tree's fit error. Here the
//! bootstrap is scikit-learn's (each row drawn n times with replacement, passed as sample
//! weights), and after each fit the tree's own weighted rows are routed down it: a leaf's values
//! are their class shares and every node's cover their weight, as scikit-learn's `tree_.value`
//! and `weighted_n_node_samples`.
//!
//! `linfa-trees` has no per-split feature sampling (scikit-learn's `max_features`), so each tree
//! sees ⌈√p⌉ features drawn for it (the random-subspace forest `linfa-ensemble` also builds);
//! measured against scikit-learn's `RandomForestClassifier(n_estimators=100)` on the shipped
//! tables, its cross-validated accuracy is within 0.02 (`tests/forest.rs`).

use crate::model::tree::{self, Comparison, Link, Tree, TreeEnsemble};
use crate::model::ForestParams;
use linfa::traits::Fit;
use linfa::DatasetBase;
use linfa_trees::{DecisionTree, TreeNode};
use ndarray::{Array1, ArrayView2, Axis};

/// scikit-learn's default forest size.
pub const DEFAULT_TREES: usize = 100;
/// The most trees `limen train` grows (each holds up to 2 × rows nodes).
pub const MAX_TREES: usize = 10_000;

/// Checked hyperparameters: 1 to [`MAX_TREES`] trees, a depth of 1 to [`tree::MAX_DEPTH`], at
/// least one feature per tree.
pub fn params(
    trees: usize,
    max_depth: Option<usize>,
    max_features: Option<usize>,
    seed: u64,
) -> Result<ForestParams, String> {
    if trees == 0 || trees > MAX_TREES {
        return Err(format!("--trees must be 1 to {MAX_TREES}, is {trees}"));
    }
    if let Some(d) = max_depth {
        if d == 0 || d > tree::MAX_DEPTH {
            return Err(format!(
                "--max-depth must be 1 to {}, is {d}",
                tree::MAX_DEPTH
            ));
        }
    }
    if max_features == Some(0) {
        return Err("--max-features must be at least 1".into());
    }
    Ok(ForestParams {
        trees,
        max_depth,
        max_features,
        seed,
    })
}

/// Features per tree for `p` features: `max_features` (at most `p`), else ⌈√p⌉.
fn features_per_tree(params: &ForestParams, p: usize) -> usize {
    params
        .max_features
        .unwrap_or_else(|| (p as f64).sqrt().ceil() as usize)
        .clamp(1, p.max(1))
}

/// Why a forest could not be fitted.
#[derive(Debug, thiserror::Error)]
pub enum ForestError {
    #[error("no rows or no features to fit a forest on")]
    Empty,
    #[error("fitting tree {tree} failed: {source}")]
    Fit {
        tree: usize,
        #[source]
        source: linfa::error::Error,
    },
}

/// Fits a forest on `x` (rows × features) and class indices `y` (each below `n_classes`).
/// Deterministic for a given `params.seed`.
pub fn fit(
    x: ArrayView2<'_, f64>,
    y: &[usize],
    n_classes: usize,
    params: &ForestParams,
) -> Result<TreeEnsemble, ForestError> {
    let (n, p) = x.dim();
    if n == 0 || p == 0 || y.len() != n {
        return Err(ForestError::Empty);
    }
    let k = features_per_tree(params, p);
    let depth = params.max_depth.unwrap_or(tree::MAX_DEPTH);
    let mut rng = fastrand::Rng::with_seed(params.seed);
    let mut trees = Vec::with_capacity(params.trees);
    let mut counts = vec![0u32; n];
    let mut features: Vec<usize> = (0..p).collect();
    for t in 0..params.trees {
        // scikit-learn's bootstrap: n draws with replacement, as weights.
        counts.fill(0);
        for _ in 0..n {
            counts[rng.usize(..n)] += 1;
        }
        let rows: Vec<usize> = (0..n).filter(|&i| counts[i] > 0).collect();
        rng.shuffle(&mut features);
        let mut chosen = features[..k].to_vec();
        chosen.sort_unstable();

        let sample = x.select(Axis(0), &rows).select(Axis(1), &chosen);
        let labels = Array1::from_iter(rows.iter().map(|&i| y[i]));
        let weights = Array1::from_iter(rows.iter().map(|&i| counts[i] as f32));
        let dataset = DatasetBase::new(sample, labels).with_weights(weights);
        let fitted = DecisionTree::params()
            .max_depth(Some(depth))
            .fit(&dataset)
            .map_err(|source| ForestError::Fit { tree: t, source })?;

        let mut tree = flatten(fitted.root_node(), &chosen, n_classes);
        for &i in &rows {
            route(&mut tree, x.row(i), y[i], f64::from(counts[i]), n_classes);
        }
        finish_leaves(&mut tree, n_classes);
        trees.push(tree);
    }
    Ok(TreeEnsemble {
        link: Link::Mean,
        comparison: Comparison::LessEqual,
        base: vec![0.0; n_classes],
        leaf_width: n_classes,
        trees,
    })
}

/// `root`'s nodes as limen's arrays (pre-order, no recursion), features mapped back from the
/// tree's subset to the table's columns; covers and values left at zero for [`route`].
fn flatten(root: &TreeNode<f64, usize>, chosen: &[usize], n_classes: usize) -> Tree {
    let mut tree = Tree::default();
    // Each node with the parent's child slot it fills: (parent, is_left).
    type Pending<'t> = (&'t TreeNode<f64, usize>, Option<(usize, bool)>);
    let mut stack: Vec<Pending<'_>> = vec![(root, None)];
    while let Some((node, slot)) = stack.pop() {
        let index = tree.left.len();
        if let Some((parent, is_left)) = slot {
            let at = i32::try_from(index).unwrap_or(i32::MAX);
            if is_left {
                tree.left[parent] = at;
            } else {
                tree.right[parent] = at;
            }
        }
        let (feature, threshold, _) = node.split();
        let children = node.children();
        let (left, right) = match (children.first(), children.get(1)) {
            (Some(Some(l)), Some(Some(r))) if !node.is_leaf() => (Some(l), Some(r)),
            _ => (None, None),
        };
        let split = left.is_some();
        tree.feature.push(if split {
            chosen.get(feature).copied().unwrap_or(0) as u32
        } else {
            0
        });
        tree.threshold.push(if split { threshold } else { 0.0 });
        tree.left.push(-1);
        tree.right.push(-1);
        // Training data has no missing values; one sent later goes the way of the larger side,
        // decided in `finish_leaves` once the covers are known.
        tree.default_left.push(false);
        tree.cover.push(0.0);
        tree.value.extend(std::iter::repeat_n(0.0, n_classes));
        if let (Some(l), Some(r)) = (left, right) {
            stack.push((r, Some((index, false))));
            stack.push((l, Some((index, true))));
        }
    }
    tree
}

/// Adds one training row of class `class` and weight `weight` to every node on its path: covers,
/// and class weights (in `value`, made shares by [`finish_leaves`]).
fn route(
    tree: &mut Tree,
    row: ndarray::ArrayView1<'_, f64>,
    class: usize,
    weight: f64,
    width: usize,
) {
    let mut node = 0usize;
    loop {
        tree.cover[node] += weight;
        tree.value[node * width + class] += weight;
        let (l, r) = (tree.left[node], tree.right[node]);
        if l < 0 || r < 0 {
            return;
        }
        let x = row[tree.feature[node] as usize];
        node = if x <= tree.threshold[node] { l } else { r } as usize;
    }
}

/// Turns every node's class weights into shares (a node no row reached takes its parent's), and
/// sends a missing value to the heavier child.
fn finish_leaves(tree: &mut Tree, width: usize) {
    // Pre-order: a parent is finished before its children.
    for node in 0..tree.left.len() {
        let values = &mut tree.value[node * width..(node + 1) * width];
        let total: f64 = values.iter().sum();
        if total > 0.0 {
            values.iter_mut().for_each(|v| *v /= total);
        }
        let (l, r) = (tree.left[node], tree.right[node]);
        if l >= 0 && r >= 0 {
            let (l, r) = (l as usize, r as usize);
            tree.default_left[node] = tree.cover[l] >= tree.cover[r];
            for child in [l, r] {
                if tree.cover[child] <= 0.0 {
                    let parent: Vec<f64> = tree.value[node * width..(node + 1) * width].to_vec();
                    tree.value[child * width..(child + 1) * width].copy_from_slice(&parent);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn a_forest_is_deterministic_for_its_seed_and_its_leaves_are_class_shares() {
        let x = array![
            [0.0, 5.0],
            [1.0, 4.0],
            [2.0, 3.0],
            [3.0, 2.0],
            [4.0, 1.0],
            [5.0, 0.0]
        ];
        let y = [0, 0, 0, 1, 1, 1];
        let params = params(20, None, Some(2), 7).unwrap();
        let a = fit(x.view(), &y, 2, &params).unwrap();
        let b = fit(x.view(), &y, 2, &params).unwrap();
        assert_eq!(a, b, "the same seed must give the same forest");
        let other = fit(x.view(), &y, 2, &ForestParams { seed: 8, ..params }).unwrap();
        assert_ne!(a, other, "another seed draws other samples");
        for tree in &a.trees {
            // The root's cover is the bootstrap's size; every node's shares add up to 1.
            assert_eq!(tree.cover[0], 6.0);
            for node in 0..tree.left.len() {
                let sum: f64 = tree.value[node * 2..node * 2 + 2].iter().sum();
                assert!((sum - 1.0).abs() < 1e-12, "{sum}");
                if tree.left[node] >= 0 {
                    let (l, r) = (tree.left[node] as usize, tree.right[node] as usize);
                    assert_eq!(tree.cover[node], tree.cover[l] + tree.cover[r]);
                }
            }
        }
    }

    #[test]
    fn bad_numbers_are_refused() {
        assert!(params(0, None, None, 0).is_err());
        assert!(params(MAX_TREES + 1, None, None, 0).is_err());
        assert!(params(10, Some(0), None, 0).is_err());
        assert!(params(10, Some(tree::MAX_DEPTH + 1), None, 0).is_err());
        assert!(params(10, None, Some(0), 0).is_err());
        let p = params(10, None, None, 0).unwrap();
        assert_eq!(features_per_tree(&p, 30), 6);
        assert_eq!(features_per_tree(&p, 4), 2);
        assert_eq!(features_per_tree(&p, 1), 1);
        let two = params(10, None, Some(2), 0).unwrap();
        assert_eq!(features_per_tree(&two, 1), 1);
    }
}
