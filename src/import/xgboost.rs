//! XGBoost's `save_model` JSON (or UBJSON, when the file ends in `.ubj`, through
//! [`super::ubjson`]): gbtree boosters with a binary or multiclass objective, numeric and
//! categorical splits.

use std::path::Path;

use serde::Deserialize;

use super::{ImportError, Library, Read};
use crate::data::sha256_hex;
use crate::model::tree::{split, CategorySet, Comparison, Link, Tree, TreeEnsemble, MAX_CATEGORY};
use crate::model::Imported;

/// An XGBoost model as `save_model("….json")` writes it: the parts limen reads.
#[derive(Deserialize)]
struct XgbFile {
    learner: XgbLearner,
    #[serde(default)]
    version: Vec<u32>,
}

#[derive(Deserialize)]
struct XgbLearner {
    #[serde(default)]
    feature_names: Vec<String>,
    gradient_booster: XgbBooster,
    learner_model_param: XgbModelParam,
    objective: XgbObjective,
}

#[derive(Deserialize)]
struct XgbModelParam {
    base_score: String,
    num_class: String,
    num_feature: String,
}

#[derive(Deserialize)]
struct XgbObjective {
    name: String,
}

#[derive(Deserialize)]
struct XgbBooster {
    name: String,
    model: Option<XgbTrees>,
}

#[derive(Deserialize)]
struct XgbTrees {
    trees: Vec<XgbTree>,
    tree_info: Vec<usize>,
}

#[derive(Deserialize)]
struct XgbTree {
    left_children: Vec<i32>,
    right_children: Vec<i32>,
    split_indices: Vec<u32>,
    split_conditions: Vec<f64>,
    default_left: Vec<u8>,
    sum_hessian: Vec<f64>,
    #[serde(default)]
    split_type: Vec<u8>,
    /// Categorical splits: the categories of each categorical node (those that go right), one
    /// node after another: node `categories_nodes[k]` lists
    /// `categories[categories_segments[k]..][..categories_sizes[k]]`.
    #[serde(default)]
    categories: Vec<i64>,
    #[serde(default)]
    categories_nodes: Vec<i64>,
    #[serde(default)]
    categories_segments: Vec<u64>,
    #[serde(default)]
    categories_sizes: Vec<u64>,
}

/// Reads an XGBoost model (JSON, or UBJSON for a `.ubj` file) into a tree ensemble.
pub(super) fn read(path: &Path, bytes: &[u8]) -> Result<Read, ImportError> {
    let not = |why: String| ImportError::NotModel {
        path: path.to_owned(),
        library: Library::Xgboost,
        why,
    };
    let ubj = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("ubj"));
    let file: XgbFile = if ubj {
        let json = super::ubjson::to_json(bytes).map_err(|e| not(e.to_string()))?;
        serde_json::from_slice(&json).map_err(|e| not(e.to_string()))?
    } else {
        serde_json::from_slice(bytes).map_err(|e| not(e.to_string()))?
    };
    let learner = file.learner;
    if learner.gradient_booster.name != "gbtree" {
        return Err(ImportError::Unsupported(format!(
            "booster {:?}: limen imports gbtree models (dart and gblinear are not supported)",
            learner.gradient_booster.name
        )));
    }
    let Some(model) = learner.gradient_booster.model else {
        return Err(not("it has no trees".into()));
    };
    let num_class: usize = learner
        .learner_model_param
        .num_class
        .parse()
        .map_err(|_| not("num_class is not a number".into()))?;
    let num_feature: usize = learner
        .learner_model_param
        .num_feature
        .parse()
        .map_err(|_| not("num_feature is not a number".into()))?;
    // base_score: "0.5", "5E-1" or, from XGBoost 3, "[6.274165E-1]" (one per target).
    let base: Vec<f64> = learner
        .learner_model_param
        .base_score
        .trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .map(|v| v.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| not("base_score is not a number".into()))?;
    let objective = learner.objective.name;
    let (link, classes, base) = match objective.as_str() {
        "binary:logistic" => {
            let p = base.first().copied().unwrap_or(0.5);
            if !(p > 0.0 && p < 1.0) {
                return Err(not(format!("base_score {p} is not a probability")));
            }
            // The base score is a probability; the trees add to its log-odds.
            (Link::Logistic, 2, vec![(p / (1.0 - p)).ln()])
        }
        "multi:softprob" | "multi:softmax" => {
            if num_class < 2 {
                return Err(not(format!("{objective} with {num_class} classes")));
            }
            // Margins, one per class (one value is added to every class alike).
            let base = match base.len() {
                1 => vec![base[0]; num_class],
                n if n == num_class => base,
                n => return Err(not(format!("{n} base scores for {num_class} classes"))),
            };
            (Link::Softmax, num_class, base)
        }
        other => {
            return Err(ImportError::Unsupported(format!(
            "objective {other:?}: limen imports binary:logistic, multi:softprob and multi:softmax"
        )))
        }
    };
    if model.tree_info.len() != model.trees.len() {
        return Err(not("tree_info does not name a class for every tree".into()));
    }
    let mut trees = Vec::with_capacity(model.trees.len());
    for (i, (t, &class)) in model.trees.into_iter().zip(&model.tree_info).enumerate() {
        let n = t.left_children.len();
        // A leaf's value sits where a split's threshold would.
        let value: Vec<f64> = (0..n)
            .map(|node| {
                if t.left_children[node] < 0 {
                    t.split_conditions.get(node).copied().unwrap_or(f64::NAN)
                } else {
                    0.0
                }
            })
            .collect();
        let mut tree = Tree {
            output: if link == Link::Logistic { 0 } else { class },
            feature: t.split_indices,
            threshold: t.split_conditions,
            left: t.left_children,
            right: t.right_children,
            default_left: t.default_left.iter().map(|d| *d != 0).collect(),
            cover: t.sum_hessian,
            value,
            split: Vec::new(),
            categories: Vec::new(),
        };
        if t.split_type.iter().any(|s| *s != 0) {
            categorical(
                &mut tree,
                &t.split_type,
                &t.categories,
                &t.categories_nodes,
                &t.categories_segments,
                &t.categories_sizes,
            )
            .map_err(|why| not(format!("tree {i}: {why}")))?;
        }
        trees.push(tree);
    }
    let ensemble = TreeEnsemble {
        link,
        comparison: Comparison::Less,
        base,
        leaf_width: 1,
        trees,
    };
    // The file's feature names, or as many empty names (then --features must name them).
    let names = match learner.feature_names {
        names if names.is_empty() => vec![String::new(); num_feature],
        names if names.len() == num_feature => names,
        names => {
            return Err(not(format!(
                "{} feature names for {num_feature} features",
                names.len()
            )))
        }
    };
    let version = file
        .version
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(".");
    let imported = Imported {
        library: "xgboost".to_owned(),
        library_version: version,
        objective,
        file: path.display().to_string(),
        file_sha256: sha256_hex(bytes),
    };
    Ok((ensemble, names, classes, imported))
}

/// Makes `tree`'s categorical nodes (`split_type` 1) limen's: XGBoost sends the categories it
/// lists right and every other code (and an invalid one) left; limen's set goes left, so each
/// categorical node's children and default side are swapped and its listed categories become
/// its set.
fn categorical(
    tree: &mut Tree,
    split_type: &[u8],
    categories: &[i64],
    nodes: &[i64],
    segments: &[u64],
    sizes: &[u64],
) -> Result<(), String> {
    let n = tree.left.len();
    if split_type.len() != n || tree.right.len() != n || tree.default_left.len() != n {
        return Err(format!(
            "split_type, right_children and default_left must have one entry per node ({n})"
        ));
    }
    if nodes.len() != segments.len() || nodes.len() != sizes.len() {
        return Err(
            "categories_nodes, categories_segments and categories_sizes differ in length".into(),
        );
    }
    let mut sets: Vec<CategorySet> = Vec::with_capacity(nodes.len());
    for ((&node, &start), &size) in nodes.iter().zip(segments).zip(sizes) {
        let node = usize::try_from(node)
            .ok()
            .filter(|&node| node < n && split_type[node] == 1)
            .ok_or_else(|| {
                format!("categories_nodes names node {node}, which is not a categorical split")
            })?;
        let listed = usize::try_from(start)
            .ok()
            .zip(usize::try_from(size).ok())
            .and_then(|(start, size)| categories.get(start..start.checked_add(size)?))
            .ok_or_else(|| {
                format!("node {node}: its categories lie outside the categories array")
            })?;
        let mut left = listed
            .iter()
            .map(|&c| u32::try_from(c).ok().filter(|c| *c < MAX_CATEGORY))
            .collect::<Option<Vec<u32>>>()
            .ok_or_else(|| {
                format!("node {node}: a category is not a code from 0 to {MAX_CATEGORY}")
            })?;
        left.sort_unstable();
        left.dedup();
        sets.push(CategorySet {
            node: node as u32,
            left,
        });
    }
    // A categorical split that lists no category sends every code one way.
    let mut listed = vec![false; n];
    for set in &sets {
        listed[set.node as usize] = true;
    }
    for node in 0..n {
        if split_type[node] == 1 && tree.left[node] >= 0 && !listed[node] {
            sets.push(CategorySet {
                node: node as u32,
                left: Vec::new(),
            });
        }
    }
    sets.sort_by_key(|s| s.node);
    tree.split = split_type
        .iter()
        .map(|&kind| match kind {
            0 => Ok(split::NUMERIC),
            1 => Ok(split::CATEGORICAL),
            other => Err(format!(
                "split_type {other} is neither numeric (0) nor categorical (1)"
            )),
        })
        .collect::<Result<_, _>>()?;
    for set in &sets {
        let node = set.node as usize;
        std::mem::swap(&mut tree.left[node], &mut tree.right[node]);
        tree.default_left[node] = !tree.default_left[node];
    }
    tree.categories = sets;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A root split with two leaves, its node arrays as XGBoost writes them.
    fn stump() -> Tree {
        Tree {
            output: 0,
            feature: vec![0, 0, 0],
            threshold: vec![0.0, -1.0, 1.0],
            left: vec![1, -1, -1],
            right: vec![2, -1, -1],
            default_left: vec![true, false, false],
            cover: vec![2.0, 1.0, 1.0],
            value: vec![0.0, -1.0, 1.0],
            split: Vec::new(),
            categories: Vec::new(),
        }
    }

    #[test]
    fn a_categorical_node_is_turned_so_its_set_goes_left() {
        let mut tree = stump();
        categorical(&mut tree, &[1, 0, 0], &[7, 2, 5], &[0], &[0], &[3]).unwrap();
        // XGBoost sends 2, 5, 7 right and missing values left: limen's set goes left, so the
        // children and the default side swap.
        assert_eq!((tree.left[0], tree.right[0]), (2, 1));
        assert!(!tree.default_left[0]);
        assert_eq!(tree.categories[0].left, [2, 5, 7]);
        assert_eq!(tree.split, [split::CATEGORICAL, 0, 0]);
    }

    #[test]
    fn inconsistent_categories_are_refused() {
        type Args = (
            &'static [u8],
            &'static [i64],
            &'static [i64],
            &'static [u64],
            &'static [u64],
        );
        let cases: [(&str, Args); 5] = [
            ("one entry per node", (&[1, 0], &[1], &[0], &[0], &[1])),
            (
                "not a categorical split",
                (&[1, 0, 0], &[1], &[1], &[0], &[1]),
            ),
            (
                "outside the categories",
                (&[1, 0, 0], &[1], &[0], &[0], &[2]),
            ),
            (
                "outside the categories",
                (&[1, 0, 0], &[1], &[0], &[u64::MAX], &[2]),
            ),
            ("not a code", (&[1, 0, 0], &[-1], &[0], &[0], &[1])),
        ];
        for (says, (types, cats, nodes, segments, sizes)) in cases {
            let err = categorical(&mut stump(), types, cats, nodes, segments, sizes).unwrap_err();
            assert!(err.contains(says), "{says}: {err}");
        }
    }
}
