//! Tree ensembles (`tree_ensemble`): gradient-boosted trees imported from XGBoost and LightGBM
//! (numeric and categorical splits, each library's missing-value rules) and forests. Each tree's
//! arrays are checked before anything scores with it: children in range and forming one tree
//! from the root (no cycle, no shared node, no unreachable node), features within the width,
//! depth and node counts capped, thresholds, values and covers finite, one category set per
//! categorical split. A row is scored without recursion; it is explained exactly by
//! path-dependent TreeSHAP (Lundberg, Erion & Lee 2018, Algorithm 2: the algorithm behind
//! XGBoost's `pred_contribs` and LightGBM's `pred_contrib`), whose recursion is bounded by the
//! checked depth.

use serde::{Deserialize, Serialize};

use super::{Explanation, ModelArtifact, ModelError, PredictError, Prediction};

/// The deepest tree accepted (XGBoost's default is 6, LightGBM grows by leaves; 64 is far past
/// any useful tree and bounds the explanation's recursion and its path buffers).
pub const MAX_DEPTH: usize = 64;
/// The most nodes an ensemble may hold in all (a 1,000-tree depth-8 model has 511,000).
pub const MAX_NODES: usize = 8 << 20;
/// The most trees.
pub const MAX_TREES: usize = 100_000;
/// Category codes are below this (2^24, XGBoost's limit: every code is exact in float32).
pub const MAX_CATEGORY: u32 = 1 << 24;
/// The most category codes the sets of an ensemble may list in all.
pub const MAX_CATEGORY_CODES: usize = 8 << 20;

/// How a node splits: its entry in [`Tree::split`].
pub mod split {
    /// `x` against the threshold; a missing value (NaN) takes the default side.
    pub const NUMERIC: u8 = 0;
    /// As [`NUMERIC`], and a zero (|x| ≤ 1e-35) takes the default side too (LightGBM's
    /// `missing_type` Zero).
    pub const NUMERIC_ZERO_MISSING: u8 = 1;
    /// `x` is a category code: left when its set lists `x` (truncated to an integer); a missing
    /// value takes the default side; a negative or unlisted code goes right.
    pub const CATEGORICAL: u8 = 2;
}

/// LightGBM's `kZeroThreshold`: a value this close to 0 is a zero.
const ZERO: f64 = 1e-35_f32 as f64;

/// How an ensemble's summed outputs become class probabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// One output, a margin: P(second class) = 1 / (1 + e^-margin) (XGBoost `binary:logistic`,
    /// LightGBM `binary`).
    Logistic,
    /// One output per class, margins: softmax over them (`multi:softprob`, `multiclass`).
    Softmax,
    /// One output per class: the mean over the trees of their leaves' class probabilities (a
    /// random forest).
    Mean,
}

/// Where a value equal to a split's threshold goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    /// Left when `x < threshold`, with `x` rounded to float32 first (XGBoost, which reads
    /// every input as float32).
    Less,
    /// Left when `x <= threshold` (LightGBM, scikit-learn).
    LessEqual,
}

/// A tree ensemble, as `model.json` holds it under `trees`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TreeEnsemble {
    pub link: Link,
    pub comparison: Comparison,
    /// Per output, what the trees' sum starts from: a margin (XGBoost's base score through its
    /// link's inverse, LightGBM's init score), 0 for a forest.
    pub base: Vec<f64>,
    /// Values per leaf: 1 (each tree adds to its `output`) or one per output (a forest's class
    /// probabilities).
    pub leaf_width: usize,
    pub trees: Vec<Tree>,
}

/// One tree as arrays indexed by node (structure of arrays: compact in the file and in memory).
/// Node 0 is the root.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    /// The output (class) this tree adds to when its leaves hold one value each.
    #[serde(default)]
    pub output: usize,
    /// Per node: the feature it splits on (ignored at a leaf).
    pub feature: Vec<u32>,
    /// Per node: the split's threshold (ignored at a leaf).
    pub threshold: Vec<f64>,
    /// Per node: its children, -1 at a leaf.
    pub left: Vec<i32>,
    pub right: Vec<i32>,
    /// Per node: where a missing value (JSON `null`, NaN) goes.
    pub default_left: Vec<bool>,
    /// Per node: the training weight that reached it (XGBoost's `sum_hessian`, LightGBM's
    /// counts): what TreeSHAP weighs the paths by.
    pub cover: Vec<f64>,
    /// `leaf_width` values per node (only leaves' are read).
    pub value: Vec<f64>,
    /// Per node, how it splits (a [`split`] kind); empty when every node is
    /// [`split::NUMERIC`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split: Vec<u8>,
    /// The category sets of the [`split::CATEGORICAL`] nodes, one each, in node order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub categories: Vec<CategorySet>,
}

/// The categories a categorical node sends left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategorySet {
    pub node: u32,
    /// Category codes, ascending, each below [`MAX_CATEGORY`].
    pub left: Vec<u32>,
}

impl Tree {
    /// Whether `x` goes left at split `node`.
    #[inline]
    fn goes_left(&self, node: usize, x: f64, comparison: Comparison) -> bool {
        // XGBoost reads every input as float32, category codes included.
        let x = match comparison {
            Comparison::Less => f64::from(x as f32),
            Comparison::LessEqual => x,
        };
        let kind = self.split.get(node).copied().unwrap_or(split::NUMERIC);
        if x.is_nan() || (kind == split::NUMERIC_ZERO_MISSING && x.abs() <= ZERO) {
            return self.default_left[node];
        }
        if kind == split::CATEGORICAL {
            // `check` gave every categorical node its set.
            return x >= 0.0
                && self
                    .categories
                    .binary_search_by_key(&(node as u32), |s| s.node)
                    .is_ok_and(|i| self.categories[i].left.binary_search(&(x as u32)).is_ok());
        }
        match comparison {
            Comparison::Less => x < f64::from(self.threshold[node] as f32),
            Comparison::LessEqual => x <= self.threshold[node],
        }
    }

    /// The child `x` goes to at split `node`.
    #[inline]
    fn next(&self, node: usize, x: f64, comparison: Comparison) -> usize {
        if self.goes_left(node, x, comparison) {
            self.left[node] as usize
        } else {
            self.right[node] as usize
        }
    }
}

/// Whether a node is a leaf.
fn is_leaf(tree: &Tree, node: usize) -> bool {
    tree.left[node] < 0
}

/// Checks `ensemble` against the artifact's features and classes (see the module docs); every
/// refusal names the tree and the node.
pub fn check(ensemble: &TreeEnsemble, artifact: &ModelArtifact) -> Result<(), ModelError> {
    let bad = |what: String| Err(ModelError::Schema(what));
    let n_features = artifact.features.len();
    let n_classes = artifact.classes.len();
    let outputs = match ensemble.link {
        Link::Logistic => {
            if n_classes != 2 {
                return bad(format!(
                    "a logistic tree ensemble has 2 classes, not {n_classes}"
                ));
            }
            1
        }
        Link::Softmax | Link::Mean => n_classes,
    };
    if ensemble.base.len() != outputs || ensemble.base.iter().any(|b| !b.is_finite()) {
        return bad(format!(
            "the ensemble needs {outputs} finite base value(s), has {}",
            ensemble.base.len()
        ));
    }
    let width = ensemble.leaf_width;
    if width != 1 && width != outputs {
        return bad(format!(
            "leaf_width must be 1 or the {outputs} outputs, is {width}"
        ));
    }
    if ensemble.link == Link::Mean && width != outputs {
        return bad("a mean (forest) ensemble holds one value per class in each leaf".into());
    }
    if ensemble.trees.is_empty() || ensemble.trees.len() > MAX_TREES {
        return bad(format!(
            "{} trees; an ensemble has 1 to {MAX_TREES}",
            ensemble.trees.len()
        ));
    }
    let (mut total, mut codes) = (0usize, 0usize);
    for (t, tree) in ensemble.trees.iter().enumerate() {
        let n = tree.left.len();
        total = total.saturating_add(n);
        if total > MAX_NODES {
            return bad(format!("more than {MAX_NODES} nodes in all (at tree {t})"));
        }
        let at =
            |node: usize, what: &str| ModelError::Schema(format!("tree {t} node {node}: {what}"));
        let same = [
            tree.feature.len(),
            tree.threshold.len(),
            tree.right.len(),
            tree.default_left.len(),
            tree.cover.len(),
        ];
        if n == 0 || same.iter().any(|l| *l != n) || tree.value.len() != n.saturating_mul(width) {
            return bad(format!(
                "tree {t}: its arrays must all have one entry per node ({n} nodes; value {width} per node)"
            ));
        }
        if width == 1 && tree.output >= outputs {
            return bad(format!(
                "tree {t} adds to output {}, but the ensemble has {outputs}",
                tree.output
            ));
        }
        if tree.value.iter().any(|v| !v.is_finite()) {
            return bad(format!("tree {t}: a leaf value is not a finite number"));
        }
        codes = codes.saturating_add(tree.categories.iter().map(|c| c.left.len()).sum());
        if codes > MAX_CATEGORY_CODES {
            return bad(format!(
                "more than {MAX_CATEGORY_CODES} category codes in all (at tree {t})"
            ));
        }
        check_splits(t, tree)?;
        // One tree from the root: every node reached exactly once, no deeper than MAX_DEPTH.
        let mut depth = vec![u16::MAX; n];
        depth[0] = 0;
        let mut stack = vec![0usize];
        let mut reached = 0usize;
        while let Some(node) = stack.pop() {
            reached += 1;
            let (l, r) = (tree.left[node], tree.right[node]);
            if !tree.cover[node].is_finite() || tree.cover[node] < 0.0 {
                return Err(at(node, "its cover must be a finite number ≥ 0"));
            }
            if l < 0 || r < 0 {
                if l != -1 || r != -1 {
                    return Err(at(node, "a leaf has both children -1"));
                }
                continue;
            }
            if tree.feature[node] as usize >= n_features {
                return Err(at(
                    node,
                    &format!(
                        "splits on feature {}, but the model has {n_features}",
                        tree.feature[node]
                    ),
                ));
            }
            let categorical = tree.split.get(node) == Some(&split::CATEGORICAL);
            if !categorical && !tree.threshold[node].is_finite() {
                return Err(at(node, "its threshold is not a finite number"));
            }
            let d = depth[node] + 1;
            if usize::from(d) > MAX_DEPTH {
                return Err(at(node, &format!("the tree is deeper than {MAX_DEPTH}")));
            }
            for child in [l, r] {
                let child = child as usize;
                if child >= n || child == 0 {
                    return Err(at(
                        node,
                        &format!("child {child} is out of range (the tree has {n} nodes)"),
                    ));
                }
                if depth[child] != u16::MAX {
                    return Err(at(
                        node,
                        &format!("child {child} is reached twice (a cycle or a shared node)"),
                    ));
                }
                depth[child] = d;
                stack.push(child);
            }
        }
        if reached != n {
            return bad(format!(
                "tree {t}: {} of its {n} nodes cannot be reached from the root",
                n - reached
            ));
        }
    }
    Ok(())
}

/// Tree `t`'s split kinds and category sets: a kind per node when any, known kinds, and one
/// sorted set of codes under [`MAX_CATEGORY`] for each categorical node and for nothing else.
fn check_splits(t: usize, tree: &Tree) -> Result<(), ModelError> {
    let bad = |what: String| Err(ModelError::Schema(format!("tree {t}: {what}")));
    let n = tree.left.len();
    if !tree.split.is_empty() && tree.split.len() != n {
        return bad(format!(
            "split has {} entries for {n} nodes (one per node, or none)",
            tree.split.len()
        ));
    }
    if let Some(node) = tree.split.iter().position(|k| *k > split::CATEGORICAL) {
        return bad(format!(
            "node {node}: split kind {} is not 0 (numeric), 1 (numeric, zero missing) or 2 (categorical)",
            tree.split[node]
        ));
    }
    let categorical = tree
        .split
        .iter()
        .enumerate()
        .filter(|(node, k)| **k == split::CATEGORICAL && !is_leaf(tree, *node))
        .map(|(node, _)| node as u32);
    let sets = tree.categories.iter().map(|c| c.node);
    if !categorical.eq(sets) {
        return bad(
            "categories must hold one set per categorical split, in node order, and no other"
                .into(),
        );
    }
    for set in &tree.categories {
        let sorted = set.left.windows(2).all(|w| w[0] < w[1]);
        if !sorted || set.left.last().is_some_and(|c| *c >= MAX_CATEGORY) {
            return bad(format!(
                "node {}: its categories must be ascending codes below {MAX_CATEGORY}",
                set.node
            ));
        }
    }
    Ok(())
}

impl TreeEnsemble {
    /// How many margins (or, for a forest, probabilities) the trees sum into.
    pub fn outputs(&self) -> usize {
        self.base.len()
    }

    /// The leaf `row` falls in, walking down from the root (no recursion).
    fn leaf(&self, tree: &Tree, row: &[f64]) -> usize {
        let mut node = 0;
        while !is_leaf(tree, node) {
            node = tree.next(node, row[tree.feature[node] as usize], self.comparison);
        }
        node
    }

    /// The summed outputs for `row` (margins, or a forest's mean probabilities), into `out`:
    /// the reference the flat scoring layout is tested against, and what explanations start from.
    pub fn margins(&self, row: &[f64], out: &mut Vec<f64>) {
        out.clear();
        out.extend_from_slice(&self.base);
        let width = self.leaf_width;
        for tree in &self.trees {
            let leaf = self.leaf(tree, row);
            if width == 1 {
                out[tree.output] += tree.value[leaf];
            } else {
                for (o, v) in out
                    .iter_mut()
                    .zip(&tree.value[leaf * width..(leaf + 1) * width])
                {
                    *o += v;
                }
            }
        }
        if self.link == Link::Mean {
            let n = self.trees.len() as f64;
            for (o, b) in out.iter_mut().zip(&self.base) {
                *o = b + (*o - b) / n;
            }
        }
    }

    /// `prediction` (this model's, for `row`) with each output's margin decomposed exactly by
    /// TreeSHAP: `baseline` is the base plus each tree's expected value (its leaves weighted by
    /// cover), and the contributions per feature add up to the margin.
    pub fn explain(
        &self,
        row: &[f64],
        n_features: usize,
        prediction: Prediction,
    ) -> Result<Explanation, PredictError> {
        let outputs = self.outputs();
        let width = self.leaf_width;
        let mut contributions = vec![vec![0.0; n_features]; outputs];
        let mut baseline = self.base.clone();
        let mut shap = Shap::default();
        for tree in &self.trees {
            for k in 0..outputs {
                let slot = match width {
                    1 if tree.output != k => continue,
                    1 => 0,
                    _ => k,
                };
                baseline[k] += expected_value(tree, width, slot);
                shap.tree(self, tree, row, width, slot, &mut contributions[k]);
            }
        }
        if self.link == Link::Mean {
            let n = self.trees.len() as f64;
            for (k, b) in baseline.iter_mut().enumerate() {
                *b = self.base[k] + (*b - self.base[k]) / n;
            }
            for c in contributions.iter_mut().flatten() {
                *c /= n;
            }
        }
        let mut logits = Vec::with_capacity(outputs);
        self.margins(row, &mut logits);
        Explanation::checked(prediction, baseline, logits, contributions)
    }
}

/// A tree's value in `slot` of its leaves, averaged over its training weight: what it adds on
/// average, the start of its explanation.
fn expected_value(tree: &Tree, width: usize, slot: usize) -> f64 {
    if is_leaf(tree, 0) {
        // A constant tree adds its one value, whatever its cover.
        return tree.value[slot];
    }
    let root = tree.cover[0];
    if root <= 0.0 {
        return 0.0;
    }
    (0..tree.left.len())
        .filter(|&n| is_leaf(tree, n))
        .map(|n| tree.cover[n] / root * tree.value[n * width + slot])
        .sum()
}

/// One element of a TreeSHAP path: the feature split on, the fractions of zero (cold) and one
/// (hot) paths through it, and the permutation weight.
#[derive(Debug, Clone, Copy)]
struct PathElement {
    feature: Option<usize>,
    zero: f64,
    one: f64,
    weight: f64,
}

/// TreeSHAP's working memory, reused across trees.
#[derive(Default)]
struct Shap {
    paths: Vec<PathElement>,
}

impl Shap {
    /// Adds one tree's contributions for `row` to `phi` (per feature).
    fn tree(
        &mut self,
        ensemble: &TreeEnsemble,
        tree: &Tree,
        row: &[f64],
        width: usize,
        slot: usize,
        phi: &mut [f64],
    ) {
        self.paths.clear();
        // Each level holds a copy of the path so far: depth + 2 levels of depth + 2 elements.
        self.paths.resize(
            (MAX_DEPTH + 2) * (MAX_DEPTH + 3) / 2 + MAX_DEPTH + 3,
            PathElement {
                feature: None,
                zero: 0.0,
                one: 0.0,
                weight: 0.0,
            },
        );
        let mut walk = Walk {
            ensemble,
            tree,
            row,
            width,
            slot,
            phi,
            paths: &mut self.paths,
        };
        walk.recurse(0, 0, 0, 1.0, 1.0, None);
    }
}

struct Walk<'a> {
    ensemble: &'a TreeEnsemble,
    tree: &'a Tree,
    row: &'a [f64],
    width: usize,
    slot: usize,
    phi: &'a mut [f64],
    /// The unique path at each depth, stored one after another: the path at depth `d` starts
    /// where the one at `d - 1` ends.
    paths: &'a mut [PathElement],
}

impl Walk<'_> {
    /// Algorithm 2's RECURSE, with the path of the caller at `start` and `len` elements. The
    /// recursion goes one level per tree level, which [`check`] caps at [`MAX_DEPTH`].
    fn recurse(
        &mut self,
        node: usize,
        start: usize,
        len: usize,
        zero: f64,
        one: f64,
        feature: Option<usize>,
    ) {
        // This level's path: a copy of the caller's, extended.
        let here = start + len;
        self.paths.copy_within(start..start + len, here);
        let len = extend(&mut self.paths[here..], len, zero, one, feature);
        let tree = self.tree;
        if is_leaf(tree, node) {
            let value = tree.value[node * self.width + self.slot];
            let path = &self.paths[here..here + len];
            for i in 1..len {
                let w = unwound_sum(path, len, i);
                let e = path[i];
                if let Some(f) = e.feature {
                    self.phi[f] += w * (e.one - e.zero) * value;
                }
            }
            return;
        }
        let split = tree.feature[node] as usize;
        let go_left = tree.goes_left(node, self.row[split], self.ensemble.comparison);
        let (l, r) = (tree.left[node] as usize, tree.right[node] as usize);
        let (hot, cold) = if go_left { (l, r) } else { (r, l) };
        let cover = tree.cover[node];
        let ratio = |child: usize| {
            if cover > 0.0 {
                tree.cover[child] / cover
            } else {
                0.5
            }
        };
        // A feature already on the path: its earlier fractions are undone and carried down.
        let mut len = len;
        let (mut incoming_zero, mut incoming_one) = (1.0, 1.0);
        if let Some(k) = (1..len).find(|&k| self.paths[here + k].feature == Some(split)) {
            incoming_zero = self.paths[here + k].zero;
            incoming_one = self.paths[here + k].one;
            unwind(&mut self.paths[here..here + len], len, k);
            len -= 1;
        }
        let next = here;
        self.recurse(
            hot,
            next,
            len,
            incoming_zero * ratio(hot),
            incoming_one,
            Some(split),
        );
        self.recurse(
            cold,
            next,
            len,
            incoming_zero * ratio(cold),
            0.0,
            Some(split),
        );
    }
}

/// EXTEND: appends an element to the path of `len` elements and updates the permutation
/// weights; returns the new length.
fn extend(
    path: &mut [PathElement],
    len: usize,
    zero: f64,
    one: f64,
    feature: Option<usize>,
) -> usize {
    path[len] = PathElement {
        feature,
        zero,
        one,
        weight: if len == 0 { 1.0 } else { 0.0 },
    };
    let l = len as f64;
    for i in (0..len).rev() {
        let w = path[i].weight;
        path[i + 1].weight += one * w * (i as f64 + 1.0) / (l + 1.0);
        path[i].weight = zero * w * (l - i as f64) / (l + 1.0);
    }
    len + 1
}

/// UNWIND: removes element `i` from the path of `len` elements, undoing its weights.
fn unwind(path: &mut [PathElement], len: usize, i: usize) {
    let l = len - 1;
    let (one, zero) = (path[i].one, path[i].zero);
    let mut next = path[l].weight;
    for j in (0..l).rev() {
        if one != 0.0 {
            let t = path[j].weight;
            path[j].weight = next * (l as f64 + 1.0) / ((j as f64 + 1.0) * one);
            next = t - path[j].weight * zero * (l - j) as f64 / (l as f64 + 1.0);
        } else {
            path[j].weight = path[j].weight * (l as f64 + 1.0) / (zero * (l - j) as f64);
        }
    }
    for j in i..l {
        path[j].feature = path[j + 1].feature;
        path[j].zero = path[j + 1].zero;
        path[j].one = path[j + 1].one;
    }
}

/// The sum of the weights the path would have with element `i` unwound (without changing it).
fn unwound_sum(path: &[PathElement], len: usize, i: usize) -> f64 {
    let l = len - 1;
    let (one, zero) = (path[i].one, path[i].zero);
    let mut next = path[l].weight;
    let mut total = 0.0;
    for j in (0..l).rev() {
        if one != 0.0 {
            let t = next * (l as f64 + 1.0) / ((j as f64 + 1.0) * one);
            total += t;
            next = path[j].weight - t * zero * (l - j) as f64 / (l as f64 + 1.0);
        } else {
            total += path[j].weight / zero * (l as f64 + 1.0) / (l - j) as f64;
        }
    }
    total
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::tests::binary_artifact;
    use crate::model::{Model, ModelKind};

    /// A depth-2 tree on one feature: x < 1 → -1, else (x < 2 → 0.5, else 2).
    fn tree() -> Tree {
        Tree {
            output: 0,
            feature: vec![0, 0, 0, 0, 0],
            threshold: vec![1.0, 0.0, 2.0, 0.0, 0.0],
            left: vec![1, -1, 3, -1, -1],
            right: vec![2, -1, 4, -1, -1],
            default_left: vec![true, false, false, false, false],
            cover: vec![10.0, 4.0, 6.0, 3.0, 3.0],
            value: vec![0.0, -1.0, 0.0, 0.5, 2.0],
            split: Vec::new(),
            categories: Vec::new(),
        }
    }

    fn artifact(trees: Vec<Tree>) -> ModelArtifact {
        let mut a = binary_artifact();
        a.kind = ModelKind::TreeEnsemble;
        a.coefficients = Vec::new();
        a.intercepts = Vec::new();
        a.trees = Some(TreeEnsemble {
            link: Link::Logistic,
            comparison: Comparison::Less,
            base: vec![0.0],
            leaf_width: 1,
            trees,
        });
        a
    }

    /// A binary tree model on `petal_width` (the binary Iris artifact's feature) of one tree,
    /// [`tree`]: the smallest model that scores missing values.
    pub(crate) fn one_tree_artifact() -> ModelArtifact {
        artifact(vec![tree()])
    }

    #[test]
    fn a_row_walks_to_its_leaf_and_a_missing_value_takes_the_default_side() {
        let model = Model::new(artifact(vec![tree()])).unwrap();
        let p = |x: f64| model.predict(&[x]).unwrap().probabilities[1];
        let sigmoid = |m: f64| 1.0 / (1.0 + (-m).exp());
        assert_eq!(p(0.5), sigmoid(-1.0));
        assert_eq!(p(1.0), sigmoid(0.5), "x < 1 is false at 1: right");
        assert_eq!(p(5.0), sigmoid(2.0));
        assert_eq!(
            p(f64::NAN),
            sigmoid(-1.0),
            "the root sends missing values left"
        );
        // The explanation adds up: the expected value (cover-weighted leaves) plus one
        // contribution equals the margin.
        let e = model.explain(&[5.0]).unwrap();
        let expected = -0.4 + 0.3 * 0.5 + 0.3 * 2.0;
        assert!((e.baseline[0] - expected).abs() < 1e-12);
        assert!((e.baseline[0] + e.contributions[0][0] - 2.0).abs() < 1e-12);
    }

    #[test]
    fn a_categorical_split_sends_its_listed_codes_left() {
        let mut t = tree();
        t.split = vec![split::CATEGORICAL, 0, 0, 0, 0];
        t.categories = vec![CategorySet {
            node: 0,
            left: vec![1, 3],
        }];
        let model = Model::new(artifact(vec![t.clone()])).unwrap();
        let p = |x: f64| model.predict(&[x]).unwrap().probabilities[1];
        let sigmoid = |m: f64| 1.0 / (1.0 + (-m).exp());
        assert_eq!(p(1.0), sigmoid(-1.0), "listed: left");
        assert_eq!(
            p(3.7),
            sigmoid(-1.0),
            "a code is truncated, as both libraries do"
        );
        assert_eq!(p(2.0), sigmoid(2.0), "unlisted: right, then 2 < 2 is false");
        assert_eq!(p(-1.0), sigmoid(0.5), "negative: right, then -1 < 2");
        assert_eq!(p(5e9), sigmoid(2.0), "past every code: right");
        assert_eq!(p(f64::NAN), sigmoid(-1.0), "missing: the default side");
        let e = model.explain(&[2.0]).unwrap();
        assert!((e.baseline[0] + e.contributions[0][0] - 2.0).abs() < 1e-12);

        type Break = fn(&mut Tree);
        let cases: [(&str, Break); 6] = [
            ("one per node, or none", |t| t.split.push(0)),
            ("split kind 3", |t| t.split[2] = 3),
            ("one set per categorical split", |t| t.categories.clear()),
            ("one set per categorical split", |t| {
                t.categories.push(CategorySet {
                    node: 1,
                    left: vec![],
                })
            }),
            ("ascending", |t| t.categories[0].left = vec![3, 1]),
            ("below 16777216", |t| {
                t.categories[0].left = vec![MAX_CATEGORY]
            }),
        ];
        for (says, break_it) in cases {
            let mut broken = t.clone();
            break_it(&mut broken);
            let err = Model::new(artifact(vec![broken]))
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains(says), "{says}: {err}");
            assert!(err.contains("tree 0"), "{err}");
        }
    }

    #[test]
    fn a_zero_takes_the_default_side_where_zero_is_missing() {
        let mut t = tree();
        t.threshold[0] = -1.0; // 0 would go right by comparison
        t.split = vec![split::NUMERIC_ZERO_MISSING, 0, 0, 0, 0];
        let model = Model::new(artifact(vec![t])).unwrap();
        let p = |x: f64| model.predict(&[x]).unwrap().probabilities[1];
        assert_eq!(p(0.0), p(-5.0), "zero is missing: left, the default");
        assert_eq!(p(1e-36), p(-5.0));
        assert_ne!(p(1e-3), p(-5.0));
    }

    #[test]
    fn hostile_trees_are_refused_naming_the_tree_and_node() {
        type Break = fn(&mut Tree);
        let cases: [(&str, Break); 9] = [
            ("out of range", |t| t.right[2] = 99),
            ("reached twice", |t| t.right[2] = 3),
            ("out of range", |t| t.left[2] = 0),
            ("cannot be reached", |t| {
                t.left[0] = -1;
                t.right[0] = -1;
            }),
            ("splits on feature 7", |t| t.feature[2] = 7),
            ("threshold is not a finite", |t| t.threshold[2] = f64::NAN),
            ("one entry per node", |t| {
                t.cover.pop();
            }),
            ("both children -1", |t| t.right[1] = 3),
            ("cover must be", |t| t.cover[3] = -1.0),
        ];
        for (says, break_it) in cases {
            let mut t = tree();
            break_it(&mut t);
            let err = Model::new(artifact(vec![t])).err().unwrap().to_string();
            assert!(err.contains(says), "{says}: {err}");
            assert!(err.contains("tree 0"), "{err}");
        }
        // Deeper than the cap: a chain of MAX_DEPTH + 1 splits, each with a leaf on its left.
        let splits = MAX_DEPTH + 1;
        let n = 2 * splits + 1;
        let internal = |i: usize| i.is_multiple_of(2) && i < 2 * splits;
        let chain = Tree {
            output: 0,
            feature: vec![0; n],
            threshold: vec![0.0; n],
            left: (0..n)
                .map(|i| if internal(i) { i as i32 + 1 } else { -1 })
                .collect(),
            right: (0..n)
                .map(|i| if internal(i) { i as i32 + 2 } else { -1 })
                .collect(),
            default_left: vec![false; n],
            cover: vec![1.0; n],
            value: vec![0.0; n],
            split: Vec::new(),
            categories: Vec::new(),
        };
        let err = Model::new(artifact(vec![chain])).err().unwrap().to_string();
        assert!(err.contains("deeper than 64"), "{err}");
    }
}
