//! Every public item of the crate has one path: submodules are private and their items are
//! re-exported flat where a user looks for them, so no `pub use` may re-export an item of a
//! module that is public itself, and no item may be re-exported by two modules.
//!
//! Reads the crate's own sources, which rustfmt keeps in a shape this relies on: a module's
//! `mod` and `pub use` declarations start at column 0 (those of modules declared inline in a
//! file are indented, and not followed).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// A `pub use` leaf: the module that re-exports it and the path it names (from the crate root).
struct Reexport {
    module: String,
    target: Vec<String>,
}

#[derive(Default)]
struct Scan {
    /// Modules reachable from outside the crate, as `a::b` (the root is `""`).
    public_modules: Vec<String>,
    reexports: Vec<Reexport>,
}

/// A file's column-0 `mod NAME;` declarations (any visibility) and `pub use` statements,
/// each joined onto one line.
fn statements(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut lines = source.lines();
    while let Some(line) = lines.next() {
        let declares_mod = ["mod ", "pub mod ", "pub(crate) mod ", "pub(super) mod "]
            .iter()
            .any(|start| line.starts_with(start));
        if declares_mod && line.ends_with(';') {
            out.push(line.to_string());
        } else if line.starts_with("pub use ") {
            let mut statement = line.to_string();
            while !statement.ends_with(';') {
                let next = lines.next().expect("a `pub use` ends with `;`");
                statement.push_str(next.trim());
            }
            out.push(statement);
        }
    }
    out
}

/// The leaf paths of a use tree (`a::{b, c::{self, d}}` gives `a::b`, `a::c`, `a::c::d`).
fn leaves(tree: &str, prefix: &[String], out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(open) = tree.find('{') {
        let mut base = prefix.to_vec();
        base.extend(segments(&tree[..open]));
        let inner = &tree[open + 1..tree.rfind('}').expect("a use tree's braces close")];
        let (mut depth, mut start) = (0, 0);
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    leaves(&inner[start..i], &base, out);
                    start = i + 1;
                }
                _ => {}
            }
        }
        leaves(&inner[start..], &base, out);
    } else if !tree.is_empty() {
        let name = tree.split(" as ").next().unwrap_or(tree);
        let mut path = prefix.to_vec();
        path.extend(segments(name).into_iter().filter(|s| s != "self"));
        out.push(path);
    }
}

fn segments(path: &str) -> Vec<String> {
    path.split("::")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// Scans the module at `file`, `module` being its path from the root, `public` whether it is
/// reachable from outside the crate.
fn scan(file: &Path, module: &[String], public: bool, scan_out: &mut Scan) {
    let source = fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let dir: PathBuf = match file.file_name().and_then(|n| n.to_str()) {
        Some("lib.rs" | "mod.rs") => file.parent().expect("a parent").to_path_buf(),
        _ => file.with_extension(""),
    };
    if public {
        scan_out.public_modules.push(module.join("::"));
    }
    let statements = statements(&source);
    let mut children = Vec::new();
    for statement in &statements {
        let Some((visibility, name)) = statement.split_once("mod ") else {
            continue;
        };
        if statement.starts_with("pub use ") {
            continue;
        }
        let name = name.trim_end_matches(';').trim().to_string();
        let child_public = public && visibility == "pub ";
        let mut path = module.to_vec();
        path.push(name.clone());
        let flat = dir.join(format!("{name}.rs"));
        let child = if flat.exists() {
            flat
        } else {
            dir.join(&name).join("mod.rs")
        };
        scan(&child, &path, child_public, scan_out);
        children.push(name);
    }
    for statement in statements.iter().filter(|s| s.starts_with("pub use ")) {
        let tree = statement["pub use ".len()..].trim_end_matches(';');
        let mut found = Vec::new();
        leaves(tree, &[], &mut found);
        for leaf in found {
            let target = match leaf[0].as_str() {
                "crate" => leaf[1..].to_vec(),
                "self" => [module, &leaf[1..]].concat(),
                "super" => [&module[..module.len() - 1], &leaf[1..]].concat(),
                first if children.iter().any(|c| c == first) => [module, &leaf[..]].concat(),
                _ => continue, // another crate's item: its one path here is this re-export
            };
            scan_out.reexports.push(Reexport {
                module: module.join("::"),
                target,
            });
        }
    }
}

#[test]
fn every_public_item_has_one_path() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs");
    let mut found = Scan::default();
    scan(&root, &[], true, &mut found);
    // The scan must have seen the crate's layout, or this test would pass on nothing.
    assert!(
        found.public_modules.iter().any(|m| m == "backend"),
        "{:?}",
        found.public_modules
    );
    assert!(
        found.reexports.len() > 20,
        "{} re-exports",
        found.reexports.len()
    );

    let mut problems = Vec::new();
    let mut by_target: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for reexport in &found.reexports {
        let source = reexport.target[..reexport.target.len() - 1].join("::");
        let target = reexport.target.join("::");
        if found.public_modules.contains(&source) {
            problems.push(format!(
                "crate::{} re-exports crate::{target}, which is public already",
                reexport.module
            ));
        }
        by_target.entry(target).or_default().push(&reexport.module);
    }
    for (target, modules) in by_target.iter().filter(|(_, m)| m.len() > 1) {
        problems.push(format!("crate::{target} is re-exported by {modules:?}"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
