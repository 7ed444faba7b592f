//! The crate's import graph, checked: every module imports only from layers below its own, so
//! the graph has no circle and nothing lower knows anything higher. The layers are the picture in
//! `src/lib.rs`; a new module must be given a layer here.

use std::collections::BTreeMap;
use std::path::Path;

/// Crate modules by layer, lowest first.
const LAYERS: &[&[&str]] = &[
    &["budget", "columnar", "remote"],
    &["input", "telemetry", "model"],
    &["data", "forest", "logistic"],
    &["preprocess"],
    &["evaluate", "holdout"],
    &["train", "import", "api", "oip", "columns"],
    &["store"],
    &["catalog", "evidence"],
    &["fleet"],
    &["switch"],
    &["validate", "ops", "drift", "report"],
    &["watch", "guardrails"],
    &["registry"],
    &["shadow", "inference_log"],
    &["serve"],
    &["cli"],
    &["app"],
];

/// `serve`'s own files by layer, lowest first.
const SERVE_LAYERS: &[&[&str]] = &[
    &["error", "status", "activity", "http"],
    &["auth"],
    &["state"],
    &["body", "reply", "lookup", "track"],
    &["pipeline"],
    &["handlers", "v2", "pages"],
    &["mod"],
    &["tests"],
];

fn layer_of(layers: &[&[&str]], module: &str) -> usize {
    layers
        .iter()
        .position(|l| l.contains(&module))
        .unwrap_or_else(|| panic!("module {module} has no layer in tests/architecture.rs"))
}

/// The modules `prefix` names in the code of `source`, and in its doc links (`` [`crate::x`] ``,
/// which rustdoc resolves, so a lower module's docs linking a higher one is a dependency too).
/// A group (`crate::{a, b::c}`) names each of its top-level members. Other comment text is
/// skipped.
fn imports(source: &str, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut names_after = |text: &str, prefix: &str| {
        let mut rest = text;
        while let Some(at) = rest.find(prefix) {
            rest = &rest[at + prefix.len()..];
            let names = match rest.strip_prefix('{') {
                Some(group) => group_members(group),
                None => vec![leading_name(rest)],
            };
            found.extend(names.into_iter().filter(|n| !n.is_empty() && n != "tests"));
        }
    };
    // A group may span lines: join each statement's lines first.
    let code: String = source
        .lines()
        .map(|line| line.split_once("//").map_or(line, |(code, _)| code))
        .collect::<Vec<_>>()
        .join(" ");
    names_after(&code, prefix);
    for line in source.lines() {
        if let Some((_, comment)) = line.split_once("//") {
            names_after(comment, &format!("[`{prefix}"));
        }
    }
    found
}

/// The lowercase identifier at the start of `text`.
fn leading_name(text: &str) -> String {
    text.chars()
        .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
        .collect()
}

/// The first path segment of each top-level member of a `{…}` group, `group` being the text
/// after its opening brace.
fn group_members(group: &str) -> Vec<String> {
    let mut members = Vec::new();
    let mut depth = 0usize;
    let mut start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => start = true,
            c if start && !c.is_whitespace() => {
                members.push(leading_name(&group[i..]));
                start = false;
            }
            _ => {}
        }
    }
    members
}

#[test]
fn grouped_and_multi_line_imports_are_seen() {
    let source = "use crate::{\n    api::Template,\n    budget::{Budget, Reservation},\n    model,\n};\nuse crate::store::X; // crate::app is only a comment\n/// [`crate::serve`] links\n";
    assert_eq!(
        imports(source, "crate::"),
        ["api", "budget", "model", "store", "serve"]
    );
    assert_eq!(
        imports("use super::{error::ApiError, state};", "super::"),
        ["error", "state"]
    );
}

#[test]
fn no_module_imports_from_a_higher_layer_or_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    let mut graph: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap().flatten() {
        let path = entry.path();
        let Some(module) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if matches!(module, "lib" | "main") {
            continue;
        }
        let files: Vec<std::path::PathBuf> = if path.is_dir() {
            std::fs::read_dir(&path)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .collect()
        } else {
            vec![path.clone()]
        };
        let own = layer_of(LAYERS, module);
        for file in files
            .into_iter()
            .filter(|f| f.extension().is_some_and(|e| e == "rs"))
        {
            let source = std::fs::read_to_string(&file).unwrap();
            for used in imports(&source, "crate::") {
                let theirs = layer_of(LAYERS, &used);
                if theirs >= own && used != module {
                    violations.push(format!("{module} ({}) uses {used}", file.display()));
                }
                graph.entry(module.to_owned()).or_default().push(used);
            }
            if module == "serve" {
                let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                let own = layer_of(SERVE_LAYERS, stem);
                for used in imports(&source, "super::") {
                    // A name that is no file of serve's is an item of serve/mod.rs itself.
                    let known = SERVE_LAYERS.iter().any(|l| l.contains(&used.as_str()));
                    let used = if known { used } else { "mod".to_owned() };
                    if layer_of(SERVE_LAYERS, &used) >= own {
                        violations.push(format!("serve/{stem} uses serve/{used}"));
                    }
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the layers: {violations:#?}"
    );
    assert!(
        graph.contains_key("app") && graph.contains_key("catalog"),
        "{graph:?}"
    );
}

#[test]
fn only_the_catalog_moves_pointers_or_writes_history() {
    // Every source file but the store (which defines these) and the catalog (the one caller).
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let allowed = [src.join("store.rs"), src.join("catalog.rs")];
    let checked: Vec<_> = files.iter().filter(|f| !allowed.contains(f)).collect();
    assert!(checked.len() > 30, "only {} files found", checked.len());
    for file in checked {
        let source = std::fs::read_to_string(file).unwrap();
        for forbidden in [
            "write_pointer",
            "append_history",
            "remove_version",
            "write_move",
            "Store::new",
        ] {
            let used = source
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .any(|l| l.contains(forbidden));
            assert!(
                !used,
                "{} calls {forbidden}: go through the catalog",
                file.display()
            );
        }
    }
}
