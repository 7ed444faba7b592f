//! The scoring layout of a checked tree ensemble: every tree's nodes in one array of 16-byte
//! nodes (four to a cache line), each internal node's children side by side, so a step down a
//! tree reads one node instead of five arrays. Batches are scored tree by tree over blocks of
//! rows, so a tree's nodes stay in cache across the block (the layout and order XGBoost's and
//! LightGBM's own CPU predictors use). A leaf points to itself and passes every comparison, so a
//! row walks each tree for exactly its depth with no test for having arrived. Built by [`Flat::new`] from a [`TreeEnsemble`] that
//! [`super::tree::check`] accepted; [`TreeEnsemble::margins`] stays the reference it is tested
//! against, and TreeSHAP reads the artifact's arrays.

use super::tree::{split, Comparison, Link, TreeEnsemble};
use super::PredictError;

/// A node's `feature` word: the feature index in the low bits, then flags.
const FEATURE: u32 = (1 << 24) - 1;
/// The node is a leaf: its `value` is +∞ and its `next` itself, so a step leaves it where it is
/// (feature 0 against +∞ goes left; a missing value takes the slow path, which keeps it too);
/// its value, or its offset in `values`, is in `payload`.
const LEAF: u32 = 1 << 31;
/// A missing value goes left.
const DEFAULT_LEFT: u32 = 1 << 30;
/// The split kind ([`split`]) in bits 28-29.
const KIND_SHIFT: u32 = 28;
const KIND: u32 = 3 << KIND_SHIFT;

/// `x` rounded to float32 as XGBoost reads it, with ±∞ held at the largest finite f64: it
/// compares with every (finite) threshold as ±∞ does, and stays left of a leaf's +∞.
#[inline]
fn to_f32(x: f64) -> f64 {
    f64::from(x as f32).clamp(f64::MIN, f64::MAX)
}

/// LightGBM's `kZeroThreshold`, as in [`super::tree`].
const ZERO: f64 = 1e-35_f32 as f64;

/// Rows scored together in a batch: 64 rows × up to a few dozen features stay in L1 while a
/// tree's nodes are reused across them.
const BLOCK: usize = 64;
/// Rows that walk a tree together within a block.
const LANES: usize = 8;
/// Trees that one row walks together (measured with benches/trees.sh: 8 and 16 lanes both beat
/// one at a time; 16 is best for a lone row, 8 for a block's rows).
const TREE_LANES: usize = 16;

#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct Node {
    /// A split's threshold (float32-rounded for [`Comparison::Less`]); a categorical split's
    /// set index; +∞ at a leaf.
    value: f64,
    feature: u32,
    /// A split's left child (the right is `next + 1`); a leaf itself.
    next: u32,
}

/// A tree ensemble laid out for scoring.
#[derive(Debug, Clone)]
pub struct Flat {
    nodes: Vec<Node>,
    /// Per node: a one-output leaf's value, or a wide leaf's offset in `values`.
    payload: Vec<f64>,
    /// Per tree: its root, the output a one-value leaf adds to, and its depth.
    roots: Vec<(u32, u32, u32)>,
    /// Wide leaves' values, `width` each.
    values: Vec<f64>,
    /// Categorical splits' sets of codes that go left (ascending).
    sets: Vec<Vec<u32>>,
    width: usize,
    less: bool,
    link: Link,
    base: Vec<f64>,
}

impl Flat {
    /// Lays out `ensemble`, which [`super::tree::check`] accepted (children in range, one tree
    /// per root, features within the width, one set per categorical split).
    pub fn new(ensemble: &TreeEnsemble) -> Self {
        let width = ensemble.leaf_width;
        let less = ensemble.comparison == Comparison::Less;
        let total: usize = ensemble.trees.iter().map(|t| t.left.len()).sum();
        let mut flat = Self {
            nodes: Vec::with_capacity(total),
            payload: Vec::with_capacity(total),
            roots: Vec::with_capacity(ensemble.trees.len()),
            values: Vec::new(),
            sets: Vec::new(),
            width,
            less,
            link: ensemble.link,
            base: ensemble.base.clone(),
        };
        let blank = Node {
            value: 0.0,
            feature: 0,
            next: 0,
        };
        let mut queue: Vec<(usize, usize, u32)> = Vec::new();
        for tree in &ensemble.trees {
            let root = flat.nodes.len();
            flat.nodes.push(blank);
            flat.payload.push(0.0);
            // (node in the tree, its slot in `nodes`, its depth), breadth first: children get
            // two adjacent slots when their parent is placed.
            queue.clear();
            queue.push((0, root, 0));
            let (mut head, mut depth) = (0, 0);
            while head < queue.len() {
                let (node, slot, level) = queue[head];
                head += 1;
                depth = depth.max(level);
                let (l, r) = (tree.left[node], tree.right[node]);
                if l < 0 || r < 0 {
                    flat.payload[slot] = if width == 1 {
                        tree.value[node]
                    } else {
                        let at = flat.values.len();
                        flat.values
                            .extend_from_slice(&tree.value[node * width..(node + 1) * width]);
                        at as f64
                    };
                    flat.nodes[slot] = Node {
                        value: f64::INFINITY,
                        feature: LEAF,
                        next: slot as u32,
                    };
                    continue;
                }
                let kind = u32::from(tree.split.get(node).copied().unwrap_or(split::NUMERIC));
                let value = if kind == u32::from(split::CATEGORICAL) {
                    let set = tree
                        .categories
                        .binary_search_by_key(&(node as u32), |s| s.node)
                        .map(|i| tree.categories[i].left.clone())
                        .unwrap_or_default();
                    flat.sets.push(set);
                    (flat.sets.len() - 1) as f64
                } else if less {
                    f64::from(tree.threshold[node] as f32)
                } else {
                    tree.threshold[node]
                };
                let left = flat.nodes.len();
                flat.nodes.extend([blank, blank]);
                flat.payload.extend([0.0, 0.0]);
                flat.nodes[slot] = Node {
                    value,
                    feature: (tree.feature[node] & FEATURE)
                        | (kind << KIND_SHIFT)
                        | if tree.default_left[node] {
                            DEFAULT_LEFT
                        } else {
                            0
                        },
                    next: left as u32,
                };
                queue.push((l as usize, left, level + 1));
                queue.push((r as usize, left + 1, level + 1));
            }
            flat.roots.push((root as u32, tree.output as u32, depth));
        }
        flat
    }

    /// How many outputs the trees sum into.
    pub fn outputs(&self) -> usize {
        self.base.len()
    }

    /// The leaf `row` reaches from `root`, `depth` steps down.
    #[inline(always)]
    fn leaf<const LESS: bool>(&self, root: u32, depth: u32, row: &[f64]) -> usize {
        let mut node = root as usize;
        for _ in 0..depth {
            node = self.step::<LESS>(&self.nodes[node], row);
        }
        node
    }

    /// The child of split `node` that `row` goes to.
    #[inline(always)]
    fn step<const LESS: bool>(&self, node: &Node, row: &[f64]) -> usize {
        let x = row[(node.feature & FEATURE) as usize];
        let left = if node.feature & KIND == 0 && !x.is_nan() {
            // With LESS the row was rounded to float32 once (see `rounded`).
            if LESS {
                x < node.value
            } else {
                x <= node.value
            }
        } else {
            self.goes_left_slowly(node, x)
        };
        node.next as usize + usize::from(!left)
    }

    /// A missing value, a zero-as-missing split or a categorical one.
    #[cold]
    fn goes_left_slowly(&self, node: &Node, x: f64) -> bool {
        if node.feature & LEAF != 0 {
            // A leaf stays where it is.
            return true;
        }
        let kind = ((node.feature & KIND) >> KIND_SHIFT) as u8;
        if x.is_nan() || (kind == split::NUMERIC_ZERO_MISSING && x.abs() <= ZERO) {
            return node.feature & DEFAULT_LEFT != 0;
        }
        match kind {
            split::CATEGORICAL => {
                x >= 0.0
                    && self
                        .sets
                        .get(node.value as usize)
                        .is_some_and(|set| set.binary_search(&(x as u32)).is_ok())
            }
            _ if self.less => x < node.value,
            _ => x <= node.value,
        }
    }

    /// Adds the leaf `row` reaches from `root` to `sums` (one per output).
    #[inline(always)]
    fn add<const LESS: bool>(&self, tree: (u32, u32, u32), row: &[f64], sums: &mut [f64]) {
        let (root, output, depth) = tree;
        self.add_leaf(self.leaf::<LESS>(root, depth, row), output, sums);
    }

    #[inline(always)]
    fn add_leaf(&self, leaf: usize, output: u32, sums: &mut [f64]) {
        if self.width == 1 {
            sums[output as usize] += self.payload[leaf];
        } else {
            let at = self.payload[leaf] as usize;
            for (s, v) in sums.iter_mut().zip(&self.values[at..at + self.width]) {
                *s += v;
            }
        }
    }

    /// `row` as an XGBoost model compares it: every value rounded to float32 (XGBoost reads its
    /// input as float32), once per row rather than at every split.
    fn rounded<'r>(&self, row: &'r [f64], buf: &'r mut Vec<f64>) -> &'r [f64] {
        if !self.less {
            return row;
        }
        buf.clear();
        buf.extend(row.iter().map(|&x| to_f32(x)));
        buf
    }

    /// The summed outputs for `row` into `sums` (margins, or a forest's mean probabilities).
    pub fn margins(&self, row: &[f64], sums: &mut [f64]) {
        sums.copy_from_slice(&self.base);
        if self.less {
            // On the stack for up to 64 features (no allocation per row), else on the heap.
            let mut stack = [0.0; 64];
            let mut heap = Vec::new();
            let row: &[f64] = if row.len() <= stack.len() {
                let rounded = &mut stack[..row.len()];
                for (r, &x) in rounded.iter_mut().zip(row) {
                    *r = to_f32(x);
                }
                rounded
            } else {
                self.rounded(row, &mut heap)
            };
            self.add_row::<true>(row, sums);
        } else {
            self.add_row::<false>(row, sums);
        }
        self.finish(sums);
    }

    /// Adds every tree's leaf for one row to `sums`, [`TREE_LANES`] trees walked in lockstep (each
    /// for the deepest one's depth: a leaf stays where it is), so their independent loads
    /// overlap; leaves are added in tree order, so the sums are those of one tree at a time.
    fn add_row<const LESS: bool>(&self, row: &[f64], sums: &mut [f64]) {
        for group in self.roots.chunks(TREE_LANES) {
            let mut node = [0usize; TREE_LANES];
            let mut depth = 0;
            for (n, &(root, _, d)) in node.iter_mut().zip(group) {
                *n = root as usize;
                depth = depth.max(d);
            }
            let node = &mut node[..group.len()];
            for _ in 0..depth {
                for n in node.iter_mut() {
                    *n = self.step::<LESS>(&self.nodes[*n], row);
                }
            }
            for (&n, &(_, output, _)) in node.iter().zip(group) {
                self.add_leaf(n, output, sums);
            }
        }
    }

    /// A forest's sums become means.
    fn finish(&self, sums: &mut [f64]) {
        if self.link == Link::Mean {
            let n = self.roots.len() as f64;
            for (s, b) in sums.iter_mut().zip(&self.base) {
                *s = b + (*s - b) / n;
            }
        }
    }

    /// `row`'s class probabilities appended to `out`; the predicted class.
    pub fn predict_append(&self, row: &[f64], out: &mut Vec<f64>) -> Result<usize, PredictError> {
        let mut sums = [0.0; 16];
        let mut heap = Vec::new();
        let sums: &mut [f64] = if self.outputs() <= sums.len() {
            &mut sums[..self.outputs()]
        } else {
            heap.resize(self.outputs(), 0.0);
            &mut heap
        };
        self.margins(row, sums);
        self.probabilities(sums, out)
    }

    /// The link applied to one row's `sums`, appended to `out`; the predicted class.
    fn probabilities(&self, sums: &[f64], out: &mut Vec<f64>) -> Result<usize, PredictError> {
        let start = out.len();
        match self.link {
            Link::Logistic => {
                let p = 1.0 / (1.0 + (-sums[0]).exp());
                out.extend([1.0 - p, p]);
            }
            Link::Softmax => {
                let max = sums.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let total: f64 = sums.iter().map(|m| (m - max).exp()).sum();
                out.extend(sums.iter().map(|m| (m - max).exp() / total));
            }
            Link::Mean => out.extend_from_slice(sums),
        }
        let probabilities = &out[start..];
        if probabilities.iter().any(|p| !p.is_finite()) {
            return Err(PredictError::NonFinite);
        }
        Ok(super::argmax(probabilities))
    }

    /// Class probabilities of `rows` (row-major, `width` values each) appended to `out`, one
    /// row after another; a row whose probabilities are not finite gets NaNs. Scored tree by
    /// tree over blocks of [`BLOCK`] rows.
    pub fn predict_rows(&self, rows: &[f64], width: usize, out: &mut Vec<f64>) {
        let outputs = self.outputs();
        let n = rows.len().checked_div(width).unwrap_or(0);
        let mut sums = vec![0.0; BLOCK * outputs];
        let mut buf = Vec::new();
        for start in (0..n).step_by(BLOCK) {
            let count = BLOCK.min(n - start);
            let block = self.rounded(&rows[start * width..(start + count) * width], &mut buf);
            let sums = &mut sums[..count * outputs];
            for s in sums.chunks_exact_mut(outputs) {
                s.copy_from_slice(&self.base);
            }
            if self.less {
                self.add_block::<true>(block, width, sums);
            } else {
                self.add_block::<false>(block, width, sums);
            }
            for s in sums.chunks_exact_mut(outputs) {
                self.finish(s);
                let at = out.len();
                if self.probabilities(s, out).is_err() {
                    out.truncate(at);
                    out.extend(std::iter::repeat_n(f64::NAN, self.classes()));
                }
            }
        }
    }

    fn add_block<const LESS: bool>(&self, block: &[f64], width: usize, sums: &mut [f64]) {
        let outputs = self.outputs();
        for &(root, output, depth) in &self.roots {
            // LANES rows walk each tree in lockstep, all for its depth: their loads are
            // independent, so the CPU overlaps them.
            let mut rows = block.chunks_exact(width * LANES);
            let mut at = 0;
            for lanes in rows.by_ref() {
                let mut node = [root as usize; LANES];
                for _ in 0..depth {
                    for (k, n) in node.iter_mut().enumerate() {
                        *n = self.step::<LESS>(&self.nodes[*n], &lanes[k * width..(k + 1) * width]);
                    }
                }
                for (k, n) in node.iter().enumerate() {
                    self.add_leaf(
                        *n,
                        output,
                        &mut sums[(at + k) * outputs..(at + k + 1) * outputs],
                    );
                }
                at += LANES;
            }
            for row in rows.remainder().chunks_exact(width) {
                let s = &mut sums[at * outputs..(at + 1) * outputs];
                self.add::<LESS>((root, output, depth), row, s);
                at += 1;
            }
        }
    }

    /// Probabilities per row: two for a logistic link, else one per output.
    fn classes(&self) -> usize {
        match self.link {
            Link::Logistic => 2,
            Link::Softmax | Link::Mean => self.outputs(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tree::{CategorySet, Tree};
    use proptest::prelude::*;

    /// A random valid tree on `p` features: up to `depth` deep, every split kind, categorical
    /// sets, default directions, `width` values per node.
    fn random_tree(rng: &mut fastrand::Rng, p: usize, depth: usize, width: usize) -> Tree {
        let mut t = Tree::default();
        // (node, its depth), depth first so node numbers are scattered.
        let mut stack = vec![(0usize, 0usize)];
        let push = |t: &mut Tree, rng: &mut fastrand::Rng| {
            t.feature.push(rng.u32(..p as u32));
            // Thresholds on a grid the rows also sit near (see `cell`).
            t.threshold.push(f64::from(rng.i32(-20..20)) * 0.1);
            t.left.push(-1);
            t.right.push(-1);
            t.default_left.push(rng.bool());
            t.cover.push(1.0);
            t.value.extend((0..width).map(|_| rng.f64() - 0.5));
            t.split.push(split::NUMERIC);
        };
        push(&mut t, rng);
        while let Some((node, d)) = stack.pop() {
            if d >= depth || (d > 0 && rng.u8(..4) == 0) {
                continue;
            }
            let kind = rng.u8(..3);
            t.split[node] = kind;
            if kind == split::CATEGORICAL {
                let mut left: Vec<u32> = (0..6).filter(|_| rng.bool()).collect();
                left.dedup();
                t.categories.push(CategorySet {
                    node: node as u32,
                    left,
                });
            }
            let l = t.left.len();
            push(&mut t, rng);
            push(&mut t, rng);
            t.left[node] = l as i32;
            t.right[node] = l as i32 + 1;
            stack.push((l, d + 1));
            stack.push((l + 1, d + 1));
        }
        t.categories.sort_by_key(|c| c.node);
        t
    }

    fn random_ensemble(seed: u64) -> (TreeEnsemble, usize) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let p = rng.usize(1..6);
        let link = [Link::Logistic, Link::Softmax, Link::Mean][rng.usize(..3)];
        let outputs = if link == Link::Logistic { 1 } else { 3 };
        let width = if link == Link::Mean || (outputs > 1 && rng.bool()) {
            outputs
        } else {
            1
        };
        let trees = (0..rng.usize(1..30))
            .map(|i| {
                let depth = rng.usize(0..7);
                let mut t = random_tree(&mut rng, p, depth, width);
                t.output = if width == 1 { i % outputs } else { 0 };
                t
            })
            .collect();
        let comparison = if rng.bool() {
            Comparison::Less
        } else {
            Comparison::LessEqual
        };
        let base = (0..outputs).map(|_| rng.f64() - 0.5).collect();
        let ensemble = TreeEnsemble {
            link,
            comparison,
            base,
            leaf_width: width,
            trees,
        };
        (ensemble, p)
    }

    /// A value that exercises every path: missing, zero, tiny, category codes, thresholds.
    fn cell() -> impl Strategy<Value = f64> {
        prop_oneof![
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(1e300),
            Just(0.0),
            Just(1e-36),
            (0u32..8).prop_map(f64::from),
            (-3.0f64..3.0),
            (-2.0f64..2.0).prop_map(|x| f64::from(x as f32)),
            // Just below a float32 threshold, but the same float32: XGBoost's `<` sees them
            // equal.
            (-20i32..20).prop_map(|k| f64::from((f64::from(k) * 0.1) as f32) - 1e-12),
            (-20i32..20).prop_map(|k| f64::from(k) * 0.1),
        ]
    }

    proptest! {
        #[test]
        fn the_flat_layout_scores_exactly_as_the_tree_arrays(
            seed in any::<u64>(),
            cells in prop::collection::vec(cell(), 5 * 70),
        ) {
            let (ensemble, p) = random_ensemble(seed);
            let flat = Flat::new(&ensemble);
            let rows: Vec<f64> = cells[..p * 70].to_vec();
            let mut batch = Vec::new();
            flat.predict_rows(&rows, p, &mut batch);
            let classes = flat.classes();
            prop_assert_eq!(batch.len(), 70 * classes);
            for (i, row) in rows.chunks_exact(p).enumerate() {
                let mut want = Vec::new();
                ensemble.margins(row, &mut want);
                let mut got = vec![0.0; flat.outputs()];
                flat.margins(row, &mut got);
                prop_assert_eq!(&got, &want, "row {}", i);
                let mut one = Vec::new();
                flat.predict_append(row, &mut one).unwrap();
                prop_assert_eq!(&one[..], &batch[i * classes..(i + 1) * classes]);
            }
        }
    }
}
