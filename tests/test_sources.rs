//! The rule that keeps skips loud: the test suites reach the model folders (the zoo, the
//! benchmark zoo, the shared models) only through `tests/common`, whose helpers print
//! `SKIPPED: ...` (or fail under CI) when a folder is missing. A test that read one of their
//! variables itself could return early without a word, and report `ok` having checked
//! nothing; this scans the test sources for such reads.

use std::path::{Path, PathBuf};

/// What only `tests/common` may name in code: the variables, its private constants for them,
/// and the shared models' usual place.
const FORBIDDEN: &[&str] = &[
    "MULTITPU_TEST_MODELS",
    "MULTITPU_ZOO",
    "MULTITPU_BENCH_ZOO",
    "TEST_MODELS_ENV",
    "ZOO_ENV",
    "shared/models",
];

/// The test sources that include `tests/common`: this crate's, the emulator's and the
/// paper's integration tests.
const TEST_DIRS: &[&str] = &["tests", "edgetpu-emulator/tests", "paper/tests"];

/// `(line number, line)` of every code line of `source` that names something of
/// [`FORBIDDEN`]; comments may name them, to document what a test needs.
fn offences(source: &str) -> Vec<(usize, &str)> {
    source
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim_start().starts_with("//"))
        .filter(|(_, line)| FORBIDDEN.iter().any(|name| line.contains(name)))
        .map(|(i, line)| (i + 1, line.trim()))
        .collect()
}

/// Every `.rs` file under `dir`, recursively, except those of `tests/common`.
fn rust_files(dir: &Path, common: &Path, files: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("a directory entry").path();
        if path == common {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, common, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn only_the_helpers_read_the_model_folders_variables() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let common = root.join("tests/common");
    let mut files = Vec::new();
    for dir in TEST_DIRS {
        rust_files(&root.join(dir), &common, &mut files);
    }
    assert!(
        files.iter().any(|f| f.ends_with("tests/test_sources.rs")),
        "the scan missed this very file: {files:?}"
    );
    let mut found = Vec::new();
    for file in &files {
        let source =
            std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        // This file names them to forbid them.
        if file.ends_with("tests/test_sources.rs") {
            continue;
        }
        for (line, text) in offences(&source) {
            found.push(format!("{}:{line}: {text}", file.display()));
        }
    }
    assert!(
        found.is_empty(),
        "read the model folders through tests/common (shared_model, shared_dir, \
         shared_cpu_models, zoo_model, zoo_dir, bench_zoo_dir), which skip loudly:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_scan_finds_reads_in_code_and_not_in_comments() {
    let source = r#"//! Needs `MULTITPU_TEST_MODELS`.
fn models() -> Option<String> {
    // MULTITPU_ZOO is read by the helpers.
    std::env::var("MULTITPU_TEST_MODELS").ok()
}
fn zoo() -> Option<String> { common::require_env(common::ZOO_ENV, "zoo") }
fn shared() -> PathBuf { PathBuf::from("../shared/models") }
"#;
    let lines: Vec<usize> = offences(source).into_iter().map(|(n, _)| n).collect();
    assert_eq!(lines, [4, 6, 7]);
}
