//! Which columns a training run uses: the flags given, checked against the table's own header
//! (or the inference log's lines and the labels file), with defaults that fit any table: the
//! label column must be named unless the table is Iris; the features are every other column
//! (from the log: the features its lines carry). Every error names the flag to change.

use std::path::Path;

use crate::data::DataError;
use crate::model::MAX_FEATURES;

/// The columns of scikit-learn's Iris table, which alone has defaults for every flag.
pub const IRIS_COLUMNS: [&str; 5] = [
    "sepal_length",
    "sepal_width",
    "petal_length",
    "petal_width",
    "species",
];
/// The reference example's feature, label column and positive class.
pub const IRIS_FEATURE: &str = "petal_width";
pub const IRIS_LABEL: &str = "species";
pub const IRIS_TARGET: &str = "virginica";

/// The resolved columns of one training run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Columns {
    pub features: Vec<String>,
    pub label_column: String,
    /// No label column was named and the table is Iris: the reference example's defaults
    /// (petal width; virginica against the rest unless told otherwise) apply.
    pub iris: bool,
}

/// Why the columns asked for do not fit the table.
#[derive(Debug, thiserror::Error)]
pub enum ColumnsError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("--label-column is required: name the column of {place} that holds the labels (its columns are: {columns}); only the Iris table has a default")]
    NoLabel { place: String, columns: String },
    #[error("--label-column {label:?}: {place} has no such column; its columns are: {columns}")]
    NoSuchLabel {
        label: String,
        place: String,
        columns: String,
    },
    #[error("--features names {feature:?}, which {place} does not have; it has: {columns}")]
    NoSuchFeature {
        feature: String,
        place: String,
        columns: String,
    },
    #[error("--features lists {label:?}, the label column: a model cannot take its answer as an input; leave it out of --features")]
    LabelAsFeature { label: String },
    #[error("{place} has no column but the label {label:?}: a model needs at least one feature")]
    NoFeatures { place: String, label: String },
    #[error("{place} has {count} feature columns; a limen model takes at most {MAX_FEATURES}: choose them with --features")]
    TooMany { place: String, count: usize },
}

/// The columns of a CSV table whose header is `header`: `label` (required unless the table
/// has the Iris columns) and `features` (default: every other column, in the file's order).
pub fn for_table(
    path: &Path,
    header: &[String],
    features: Option<&[String]>,
    label: Option<&str>,
) -> Result<Columns, ColumnsError> {
    let place = format!("data file {}", path.display());
    let columns = header.join(", ");
    let iris = label.is_none() && IRIS_COLUMNS.iter().all(|c| header.iter().any(|h| h == c));
    let label = match label {
        Some(label) => label.to_owned(),
        None if iris => IRIS_LABEL.to_owned(),
        None => return Err(ColumnsError::NoLabel { place, columns }),
    };
    if !header.contains(&label) {
        return Err(ColumnsError::NoSuchLabel {
            label,
            place,
            columns,
        });
    }
    let features = match features {
        Some(given) => given.to_vec(),
        None if iris => vec![IRIS_FEATURE.to_owned()],
        None => header.iter().filter(|h| **h != label).cloned().collect(),
    };
    check_features(&place, &features, header, &label)?;
    Ok(Columns {
        features,
        label_column: label,
        iris,
    })
}

/// The columns of rows from the inference log: `features` (default: those the first logged
/// line of the model carries) among `logged`, and `label` among the labels file's `header`
/// (default: its one column besides `request_id`).
pub fn for_log(
    labels: &Path,
    logged: &[String],
    header: &[String],
    features: Option<&[String]>,
    label: Option<&str>,
) -> Result<Columns, ColumnsError> {
    let place = format!("labels file {}", labels.display());
    let columns = header.join(", ");
    let others: Vec<&String> = header.iter().filter(|h| *h != "request_id").collect();
    let label = match (label, others.as_slice()) {
        (Some(label), _) => label.to_owned(),
        (None, [only]) => (*only).clone(),
        (None, _) => return Err(ColumnsError::NoLabel { place, columns }),
    };
    if !header.contains(&label) {
        return Err(ColumnsError::NoSuchLabel {
            label,
            place,
            columns,
        });
    }
    let features = features.map_or_else(|| logged.to_vec(), <[String]>::to_vec);
    check_features("the logged requests", &features, logged, &label)?;
    Ok(Columns {
        features,
        label_column: label,
        iris: false,
    })
}

fn check_features(
    place: &str,
    features: &[String],
    available: &[String],
    label: &str,
) -> Result<(), ColumnsError> {
    if let Some(missing) = features.iter().find(|f| !available.contains(f)) {
        return Err(ColumnsError::NoSuchFeature {
            feature: missing.clone(),
            place: place.to_owned(),
            columns: available.join(", "),
        });
    }
    if features.iter().any(|f| f == label) {
        return Err(ColumnsError::LabelAsFeature {
            label: label.to_owned(),
        });
    }
    if features.is_empty() {
        return Err(ColumnsError::NoFeatures {
            place: place.to_owned(),
            label: label.to_owned(),
        });
    }
    if features.len() > MAX_FEATURES {
        return Err(ColumnsError::TooMany {
            place: place.to_owned(),
            count: features.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(s: &str) -> Vec<String> {
        s.split(',').map(str::to_owned).collect()
    }

    #[test]
    fn any_table_needs_its_label_named_and_then_uses_every_other_column() {
        let path = Path::new("churn.csv");
        let header = names("tenure,plan_cost,calls,churned");
        let err = for_table(path, &header, None, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("--label-column is required") && err.contains("churned"),
            "{err}"
        );
        let c = for_table(path, &header, None, Some("churned")).unwrap();
        assert_eq!(c.features, names("tenure,plan_cost,calls"));
        assert!(!c.iris);
        let err = for_table(path, &header, None, Some("churn"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("--label-column \"churn\""), "{err}");
        let err = for_table(path, &header, Some(&names("tenure,cost")), Some("churned"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("--features names \"cost\""), "{err}");
        let err = for_table(path, &header, Some(&names("churned")), Some("churned"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("the label column"), "{err}");
    }

    #[test]
    fn the_iris_table_keeps_the_reference_defaults_unless_a_label_is_named() {
        let header = names("sepal_length,sepal_width,petal_length,petal_width,species");
        let c = for_table(Path::new("iris.csv"), &header, None, None).unwrap();
        assert_eq!(
            (c.features, c.label_column, c.iris),
            (names("petal_width"), "species".into(), true)
        );
        let c = for_table(Path::new("iris.csv"), &header, None, Some("species")).unwrap();
        assert_eq!(c.features.len(), 4);
        assert!(!c.iris);
    }

    #[test]
    fn log_rows_take_their_features_from_the_lines_and_the_label_from_the_labels_file() {
        let labels = Path::new("labels.csv");
        let logged = names("petal_width");
        let c = for_log(labels, &logged, &names("request_id,species"), None, None).unwrap();
        assert_eq!(
            (c.features, c.label_column),
            (logged.clone(), "species".into())
        );
        let err = for_log(labels, &logged, &names("request_id,a,b"), None, None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("--label-column is required"), "{err}");
        let err = for_log(
            labels,
            &logged,
            &names("request_id,a"),
            Some(&names("x")),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("--features names \"x\"") && err.contains("petal_width"),
            "{err}"
        );
    }
}
