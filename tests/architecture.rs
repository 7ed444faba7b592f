//! The crate's import graph, checked: every module imports only from layers below its own, so
//! the graph has no circle and nothing lower knows anything higher. The layers are the picture in
//! `src/lib.rs`; a new module must be given a layer here.

use std::collections::BTreeMap;
use std::path::Path;

/// Crate modules by layer, lowest first.
const LAYERS: &[&[&str]] = &[
    &["budget"],
    &["data", "input", "telemetry"],
    &["model"],
    &["train", "api", "oip"],
    &["store"],
    &["catalog", "evidence"],
    &["validate", "ops", "drift", "report"],
    &["watch"],
    &["registry"],
    &["shadow", "inference_log"],
    &["serve"],
    &["cli"],
    &["app"],
];

/// `serve`'s own files by layer, lowest first.
const SERVE_LAYERS: &[&[&str]] = &[
    &["error", "status", "activity", "http"],
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
/// Other comment text is skipped.
fn imports(source: &str, prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut names_after = |text: &str, prefix: &str| {
        let mut rest = text;
        while let Some(at) = rest.find(prefix) {
            rest = &rest[at + prefix.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() && name != "tests" {
                found.push(name);
            }
        }
    };
    for line in source.lines() {
        let (code, comment) = line.split_once("//").unwrap_or((line, ""));
        names_after(code, prefix);
        names_after(comment, &format!("[`{prefix}"));
    }
    found
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
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for module in ["validate.rs", "ops.rs", "app.rs", "registry.rs", "cli.rs"] {
        let source = std::fs::read_to_string(src.join(module)).unwrap();
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
            assert!(!used, "{module} calls {forbidden}: go through the catalog");
        }
    }
}
