//! Crate-wide checks: the module map in the crate doc (`lib.rs`) stays true.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The top-level modules in the order the crate doc lists them (`//! - [`name`]: ...`).
fn documented_order() -> Vec<String> {
    include_str!("lib.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("//! - [`"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable src dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules `code` names through `crate::` paths, `use crate::{a, b::c}`
/// groups included. Comment lines are skipped.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let code: String = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut names = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // Top-level names of the group: after `{` and after each `,` at depth 0.
            let mut depth = 0;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && !c.is_whitespace() => {
                        names.insert(ident(&group[i..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            names.insert(ident(rest));
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

#[test]
fn dependency_order() {
    let order = documented_order();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut modules: BTreeSet<String> = BTreeSet::new();
    for entry in std::fs::read_dir(&src).expect("src") {
        let path = entry.expect("entry").path();
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        if (path.is_dir() || path.extension().is_some_and(|e| e == "rs"))
            && !["lib", "main", "tests"].contains(&stem)
        {
            modules.insert(stem.to_owned());
        }
    }
    let listed: BTreeSet<String> = order.iter().cloned().collect();
    assert_eq!(listed, modules, "the crate doc lists every module once");
    assert_eq!(
        order.len(),
        listed.len(),
        "no module listed twice: {order:?}"
    );

    let rank = |m: &str| order.iter().position(|o| o == m);
    let mut wrong = Vec::new();
    for module in &order {
        let mut files = Vec::new();
        let dir = src.join(module);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        }
        let file = src.join(format!("{module}.rs"));
        if file.is_file() {
            files.push(file);
        }
        for file in files {
            let code = std::fs::read_to_string(&file).expect("readable source");
            for used in crate_paths(&code) {
                match rank(&used) {
                    Some(r) if r < rank(module).unwrap_or(0) => {}
                    _ if used == *module => {}
                    _ => wrong.push(format!("{} uses crate::{used}", file.display())),
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "a module may use only those before it in the crate doc's order {order:?}:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn crate_paths_reads_single_paths_and_groups() {
    let code = "use crate::config::Config;\n\
                // use crate::app;\n\
                use crate::{events::{Event, EventBus}, ledger,\n    metrics::Metrics};\n\
                let x = crate::util::unix_ms(t);";
    let names: Vec<String> = crate_paths(code).into_iter().collect();
    assert_eq!(names, ["config", "events", "ledger", "metrics", "util"]);
}
