//! LightGBM's `save_model` text: gbdt (and dart, goss) boosters with a `binary` or `multiclass`
//! objective, numeric splits with their `missing_type` and categorical splits.
//!
//! The file is a header of `key=value` lines, then one block per tree (`Tree=0`, its arrays as
//! space-separated `key=value` lines, a blank line), then `end of trees` and sections limen does
//! not read. A tree of `num_leaves` L has L − 1 splits, numbered 0…L − 2, whose children are a
//! split's number or, negative, `~leaf`; limen numbers the leaves after the splits.

use std::collections::HashMap;
use std::path::Path;

use super::{ImportError, Library, Read};
use crate::data::sha256_hex;
use crate::model::tree::{
    split, CategorySet, Comparison, Link, Tree, TreeEnsemble, MAX_CATEGORY, MAX_NODES,
};
use crate::model::Imported;

/// `decision_type`'s bits: a categorical split, the default side, the missing type.
const CATEGORICAL: u8 = 1;
const DEFAULT_LEFT: u8 = 2;
const MISSING_ZERO: u8 = 1;
const MISSING_NAN: u8 = 2;

/// Reads a LightGBM text model into a tree ensemble.
pub(super) fn read(path: &Path, bytes: &[u8]) -> Result<Read, ImportError> {
    let not = |why: String| ImportError::NotModel {
        path: path.to_owned(),
        library: Library::Lightgbm,
        why,
    };
    let text = std::str::from_utf8(bytes).map_err(|_| not("it is not UTF-8 text".into()))?;
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some("tree") {
        return Err(not("it does not start with the line `tree`".into()));
    }
    // The header, up to the first tree.
    let mut header: HashMap<&str, &str> = HashMap::new();
    let mut first_tree = None;
    for line in lines.by_ref() {
        let line = line.trim();
        if line.starts_with("Tree=") {
            first_tree = Some(line);
            break;
        }
        match line.split_once('=') {
            Some((key, value)) => {
                header.insert(key, value);
            }
            None if line == "average_output" => {
                return Err(ImportError::Unsupported(
                    "a random forest (boosting=rf, `average_output`): limen imports boosted LightGBM models; train a forest with `limen train --kind random-forest`".into(),
                ))
            }
            None => {}
        }
    }
    let get = |key: &str| {
        header
            .get(key)
            .copied()
            .ok_or_else(|| not(format!("its header has no `{key}=`")))
    };
    let number = |key: &str| -> Result<usize, ImportError> {
        get(key)?
            .trim()
            .parse()
            .map_err(|_| not(format!("`{key}` is not a count")))
    };
    let version = get("version")?.trim().to_owned();
    let num_class = number("num_class")?;
    let per_iteration = number("num_tree_per_iteration")?;
    let max_feature = number("max_feature_idx")?;
    let names: Vec<String> = get("feature_names")?
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if names.len() != max_feature.saturating_add(1) {
        return Err(not(format!(
            "{} feature names for max_feature_idx {max_feature}",
            names.len()
        )));
    }
    let objective = get("objective")?.trim().to_owned();
    let mut words = objective.split_whitespace();
    let name = words.next().unwrap_or_default();
    let params: HashMap<&str, &str> = words.filter_map(|w| w.split_once(':')).collect();
    let (link, classes) = match name {
        "binary" => {
            let sigmoid = params.get("sigmoid").copied().unwrap_or("1");
            if sigmoid.parse::<f64>() != Ok(1.0) {
                return Err(ImportError::Unsupported(format!(
                    "objective {objective:?}: limen scores the binary objective with sigmoid:1 (LightGBM's default) only"
                )));
            }
            if num_class != 1 || per_iteration != 1 {
                return Err(not(format!(
                    "a binary model with num_class {num_class} and {per_iteration} trees per iteration"
                )));
            }
            (Link::Logistic, 2)
        }
        "multiclass" => {
            if num_class < 2 || per_iteration != num_class {
                return Err(not(format!(
                    "a multiclass model with num_class {num_class} and {per_iteration} trees per iteration"
                )));
            }
            (Link::Softmax, num_class)
        }
        _ => {
            return Err(ImportError::Unsupported(format!(
                "objective {objective:?}: limen imports LightGBM's binary and multiclass objectives"
            )))
        }
    };
    // The trees, each a block of `key=value` lines ended by a blank line.
    let mut trees = Vec::new();
    let mut block: HashMap<&str, &str> = HashMap::new();
    let mut current = first_tree;
    let mut nodes = 0usize;
    for line in lines.chain(std::iter::once("")) {
        let line = line.trim();
        if line.is_empty() || line == "end of trees" {
            if let Some(title) = current.take() {
                let i = trees.len();
                let tree = convert(
                    &block,
                    if link == Link::Logistic {
                        0
                    } else {
                        i % per_iteration
                    },
                )
                .map_err(|why| not(format!("{title}: {why}")))?;
                nodes = nodes.saturating_add(tree.left.len());
                if nodes > MAX_NODES {
                    return Err(not(format!("more than {MAX_NODES} nodes in all")));
                }
                trees.push(tree);
                block.clear();
            }
            if line == "end of trees" {
                break;
            }
        } else if line.starts_with("Tree=") {
            current = Some(line);
        } else if let Some((key, value)) = line.split_once('=') {
            if current.is_some() {
                block.insert(key, value);
            }
        }
    }
    if trees.is_empty() {
        return Err(not("it has no trees".into()));
    }
    let ensemble = TreeEnsemble {
        link,
        comparison: Comparison::LessEqual,
        // LightGBM folds its initial score into the first trees' leaves.
        base: vec![0.0; if link == Link::Logistic { 1 } else { classes }],
        leaf_width: 1,
        trees,
    };
    let imported = Imported {
        library: "lightgbm".to_owned(),
        library_version: format!("model format {version}"),
        objective,
        file: path.display().to_string(),
        file_sha256: sha256_hex(bytes),
    };
    Ok((ensemble, names, classes, imported))
}

/// A space-separated array of `block`'s `key`, of exactly `len` entries.
fn array<T: std::str::FromStr>(
    block: &HashMap<&str, &str>,
    key: &str,
    len: usize,
) -> Result<Vec<T>, String> {
    let Some(text) = block.get(key) else {
        return Err(format!("no `{key}=`"));
    };
    let values = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<Vec<T>, _>>()
        .map_err(|_| format!("`{key}` holds a value that is not a number"))?;
    if values.len() != len {
        return Err(format!("`{key}` has {} entries, needs {len}", values.len()));
    }
    Ok(values)
}

/// One tree block as limen's tree: splits first, then leaves.
fn convert(block: &HashMap<&str, &str>, output: usize) -> Result<Tree, String> {
    if block.get("is_linear").is_some_and(|v| v.trim() != "0") {
        return Err("a linear tree (linear_tree=true), which limen does not score".into());
    }
    let leaves: usize = block
        .get("num_leaves")
        .and_then(|v| v.trim().parse().ok())
        .filter(|l| (1..=MAX_NODES).contains(l))
        .ok_or_else(|| format!("num_leaves is not a count from 1 to {MAX_NODES}"))?;
    let leaf_value: Vec<f64> = array(block, "leaf_value", leaves)?;
    if leaves == 1 {
        // A constant tree: one leaf, the whole weight.
        return Ok(Tree {
            output,
            feature: vec![0],
            threshold: vec![0.0],
            left: vec![-1],
            right: vec![-1],
            default_left: vec![false],
            cover: vec![1.0],
            value: leaf_value,
            split: Vec::new(),
            categories: Vec::new(),
        });
    }
    let splits = leaves - 1;
    let feature: Vec<u32> = array(block, "split_feature", splits)?;
    let threshold: Vec<f64> = array(block, "threshold", splits)?;
    let decision: Vec<u8> = array(block, "decision_type", splits)?;
    let left: Vec<i64> = array(block, "left_child", splits)?;
    let right: Vec<i64> = array(block, "right_child", splits)?;
    let internal_count: Vec<f64> = array(block, "internal_count", splits)?;
    let leaf_count: Vec<f64> = array(block, "leaf_count", leaves)?;
    let num_cat: usize = block
        .get("num_cat")
        .map_or(Ok(0), |v| v.trim().parse())
        .map_err(|_| "num_cat is not a count".to_owned())?;
    let (bounds, words): (Vec<usize>, Vec<u32>) = if num_cat > 0 {
        let bounds: Vec<usize> = array(block, "cat_boundaries", num_cat + 1)?;
        let words = block
            .get("cat_threshold")
            .map(|t| {
                t.split_whitespace()
                    .map(str::parse)
                    .collect::<Result<Vec<u32>, _>>()
            })
            .transpose()
            .map_err(|_| "`cat_threshold` holds a value that is not a number".to_owned())?
            .unwrap_or_default();
        (bounds, words)
    } else {
        (Vec::new(), Vec::new())
    };
    // Children: a split's number as is, `~leaf` after the splits.
    let node_of = |child: i64, at: usize| -> Result<i32, String> {
        let node = if child >= 0 {
            Some(child)
        } else {
            (splits as i64).checked_add(!child)
        };
        node.and_then(|n| i32::try_from(n).ok())
            .filter(|&n| (n as usize) < 2 * leaves - 1)
            .ok_or_else(|| format!("split {at}: child {child} is out of range"))
    };
    let n = 2 * leaves - 1;
    let mut tree = Tree {
        output,
        feature: Vec::with_capacity(n),
        threshold: Vec::with_capacity(n),
        left: Vec::with_capacity(n),
        right: Vec::with_capacity(n),
        default_left: Vec::with_capacity(n),
        cover: internal_count,
        value: vec![0.0; splits],
        split: Vec::with_capacity(n),
        categories: Vec::new(),
    };
    for s in 0..splits {
        let d = decision[s];
        let missing = (d >> 2) & 3;
        tree.feature.push(feature[s]);
        tree.left.push(node_of(left[s], s)?);
        tree.right.push(node_of(right[s], s)?);
        if d & CATEGORICAL != 0 {
            // Its threshold numbers its bitset; a missing or negative code goes right.
            let set = threshold[s];
            let k = set as usize;
            let words = (set >= 0.0 && set.fract() == 0.0)
                .then(|| bounds.get(k..k.checked_add(2)?))
                .flatten()
                .and_then(|b| words.get(b[0]..b[1]))
                .ok_or_else(|| format!("split {s}: category set {set} is not in cat_boundaries"))?;
            let mut codes = Vec::new();
            for (w, word) in words.iter().enumerate() {
                for bit in 0..32u32 {
                    if word & (1 << bit) != 0 {
                        let code = u32::try_from(w)
                            .ok()
                            .and_then(|w| w.checked_mul(32)?.checked_add(bit))
                            .filter(|c| *c < MAX_CATEGORY)
                            .ok_or_else(|| {
                                format!("split {s}: a category code past {MAX_CATEGORY}")
                            })?;
                        codes.push(code);
                    }
                }
            }
            tree.categories.push(CategorySet {
                node: s as u32,
                left: codes,
            });
            tree.split.push(split::CATEGORICAL);
            tree.threshold.push(0.0);
            tree.default_left.push(false);
        } else {
            // `inf` (every number left: the split only sorts out missing values) is written as
            // the largest finite number, which every finite input is ≤ too, so that model.json
            // stays JSON.
            let t = match threshold[s] {
                f64::INFINITY => f64::MAX,
                t => t,
            };
            tree.threshold.push(t);
            match missing {
                // A missing value is read as 0 and compared.
                0 => {
                    tree.split.push(split::NUMERIC);
                    tree.default_left.push(0.0 <= t);
                }
                MISSING_ZERO => {
                    tree.split.push(split::NUMERIC_ZERO_MISSING);
                    tree.default_left.push(d & DEFAULT_LEFT != 0);
                }
                MISSING_NAN => {
                    tree.split.push(split::NUMERIC);
                    tree.default_left.push(d & DEFAULT_LEFT != 0);
                }
                other => return Err(format!("split {s}: missing type {other} is unknown")),
            }
        }
    }
    // The leaves.
    tree.feature.resize(n, 0);
    tree.threshold.resize(n, 0.0);
    tree.left.resize(n, -1);
    tree.right.resize(n, -1);
    tree.default_left.resize(n, false);
    tree.split.resize(n, split::NUMERIC);
    tree.cover.extend(leaf_count);
    tree.value.extend(leaf_value);
    if tree.split.iter().all(|k| *k == split::NUMERIC) {
        tree.split.clear();
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hand-written two-split binary model: the shape of LightGBM's text, for the reader's
    /// failure cases (parity with LightGBM itself is tests/trees.rs', on files it wrote).
    const SMALL: &str = "tree
version=v4
num_class=1
num_tree_per_iteration=1
label_index=0
max_feature_idx=1
objective=binary sigmoid:1
feature_names=a b

Tree=0
num_leaves=3
num_cat=0
split_feature=0 1
threshold=1.5 inf
decision_type=10 8
left_child=-1 -2
right_child=1 -3
leaf_value=-0.5 0.25 0.75
leaf_count=10 5 5
internal_count=20 10
is_linear=0
shrinkage=1


end of trees
";

    fn read_text(text: &str) -> Result<Read, ImportError> {
        read(Path::new("model.txt"), text.as_bytes())
    }

    #[test]
    fn a_small_model_reads_as_splits_then_leaves() {
        let (ensemble, names, classes, imported) = read_text(SMALL).unwrap();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(classes, 2);
        assert_eq!(imported.library, "lightgbm");
        let tree = &ensemble.trees[0];
        // Splits 0, 1; leaves 0, 1, 2 at nodes 2, 3, 4.
        assert_eq!(tree.left, [2, 3, -1, -1, -1]);
        assert_eq!(tree.right, [1, 4, -1, -1, -1]);
        assert_eq!(tree.value[2..], [-0.5, 0.25, 0.75]);
        assert_eq!(tree.cover, [20.0, 10.0, 10.0, 5.0, 5.0]);
        assert_eq!(
            tree.threshold[1],
            f64::MAX,
            "inf is kept as JSON can hold it"
        );
        assert!(
            tree.default_left[0],
            "decision_type 10: NaN missing, default left"
        );
        assert!(!tree.default_left[1]);
    }

    #[test]
    fn malformed_files_are_refused_with_a_reason() {
        let cases = [
            ("", "does not start"),
            ("tree\nversion=v4\n", "no `num_class=`"),
            (
                &SMALL.replace("objective=binary sigmoid:1", "objective=regression"),
                "objective",
            ),
            (&SMALL.replace("sigmoid:1", "sigmoid:2"), "sigmoid:1"),
            (
                &SMALL.replace("feature_names=a b", "feature_names=a"),
                "feature names",
            ),
            (
                &SMALL.replace("num_leaves=3", "num_leaves=99999999999"),
                "num_leaves",
            ),
            (
                &SMALL.replace("num_leaves=3", "num_leaves=4"),
                "`leaf_value` has 3 entries",
            ),
            (
                &SMALL.replace("left_child=-1 -2", "left_child=-1 -9"),
                "out of range",
            ),
            (
                &SMALL.replace("left_child=-1 -2", "left_child=-1 -9223372036854775808"),
                "out of range",
            ),
            (
                &SMALL.replace("threshold=1.5 inf", "threshold=1.5 x"),
                "not a number",
            ),
            (
                &SMALL.replace("decision_type=10 8", "decision_type=14 8"),
                "missing type 3",
            ),
            (
                &SMALL.replace("decision_type=10 8", "decision_type=9 8"),
                "cat_boundaries",
            ),
            (&SMALL.replace("is_linear=0", "is_linear=1"), "linear tree"),
            (
                &SMALL.replace("feature_names=a b", "feature_names=a b\naverage_output"),
                "random forest",
            ),
            (
                &SMALL
                    .replace("Tree=0", "Tree=0\n")
                    .replace("num_leaves=3", ""),
                "num_leaves",
            ),
        ];
        for (text, says) in cases {
            let err = read_text(text)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains(says), "{says:?}: {err}");
        }
    }

    proptest::proptest! {
        #[test]
        fn mutated_files_never_panic(
            edits in proptest::collection::vec((0..SMALL.len(), proptest::prelude::any::<u8>()), 1..4),
            cut in 0..=SMALL.len(),
        ) {
            let mut bytes = SMALL.as_bytes().to_vec();
            for (at, byte) in edits {
                bytes[at] = byte;
            }
            bytes.truncate(cut.max(bytes.len() / 2));
            let _ = read(Path::new("model.txt"), &bytes);
        }
    }
}
