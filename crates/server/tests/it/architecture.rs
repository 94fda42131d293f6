//! The shape of the server's source, checked: the invariants `ARCHITECTURE.md` states about
//! what may import what, and the size limits that keep files and functions readable.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module path inside the crate: `["hub", "queue"]` for `src/hub/queue.rs`.
type ModulePath = Vec<String>;

/// One source file of `crates/server/src`, with comments and literals blanked out.
struct Source {
    path: PathBuf,
    module: ModulePath,
    /// Whether child modules of this file live in its folder (`mod.rs`, `lib.rs`, `main.rs`).
    owns_folder: bool,
    code: String,
    lines: usize,
}

fn sources(root: &Path) -> Vec<Source> {
    let mut found = Vec::new();
    let mut folders = vec![root.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let relative = path.strip_prefix(root).unwrap().with_extension("");
                let mut module: ModulePath = relative
                    .components()
                    .map(|part| part.as_os_str().to_string_lossy().into_owned())
                    .collect();
                let owns_folder = matches!(
                    module.last().map(String::as_str),
                    Some("mod" | "lib" | "main")
                );
                if owns_folder {
                    module.pop();
                }
                found.push(Source {
                    lines: text.lines().count(),
                    code: blank_comments_and_literals(&text),
                    path,
                    module,
                    owns_folder,
                });
            }
        }
    }
    found
}

/// `text` with comments, string and character literals replaced by spaces (lines kept), so
/// that what remains is code.
fn blank_comments_and_literals(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let blank = |out: &mut String, from: &[char]| {
        for c in from {
            out.push(if *c == '\n' { '\n' } else { ' ' });
        }
    };
    while i < chars.len() {
        let rest = &chars[i..];
        let end = if rest.starts_with(&['/', '/']) {
            rest.iter().position(|c| *c == '\n').unwrap_or(rest.len())
        } else if rest.starts_with(&['/', '*']) {
            (2..rest.len())
                .find(|j| rest[j - 1] == '*' && rest[*j] == '/')
                .map_or(rest.len(), |j| j + 1)
        } else if rest[0] == 'r'
            && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '_'))
            && matches!(rest.get(1), Some('"' | '#'))
        {
            let hashes = rest[1..].iter().take_while(|c| **c == '#').count();
            if rest.get(1 + hashes) == Some(&'"') {
                let close: Vec<char> = std::iter::once('"')
                    .chain(std::iter::repeat_n('#', hashes))
                    .collect();
                (2 + hashes..rest.len())
                    .find(|j| rest[*j..].starts_with(&close))
                    .map_or(rest.len(), |j| j + close.len())
            } else {
                0
            }
        } else if rest[0] == '"' {
            let mut j = 1;
            while j < rest.len() && rest[j] != '"' {
                j += if rest[j] == '\\' { 2 } else { 1 };
            }
            (j + 1).min(rest.len())
        } else if rest[0] == '\'' && rest.len() > 2 && (rest[2] == '\'' || rest[1] == '\\') {
            // A character literal ('x' or '\n'), not a lifetime.
            rest.iter()
                .skip(2)
                .position(|c| *c == '\'')
                .map_or(1, |j| j + 3)
        } else {
            0
        };
        if end == 0 {
            out.push(chars[i]);
            i += 1;
        } else {
            blank(&mut out, &rest[..end]);
            i += end;
        }
    }
    out
}

/// The paths a file names: each leaf of its `use` trees, every `crate::`, `super::` and
/// `self::` path in its code, and its `mod` declarations.
fn named_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let words: Vec<&str> = code.split("use ").skip(1).collect();
    for word in words {
        if let Some(end) = word.find(';') {
            let tree: String = word[..end].chars().filter(|c| !c.is_whitespace()).collect();
            if tree
                .chars()
                .all(|c| c.is_alphanumeric() || "_:{},*".contains(c))
            {
                expand_tree("", &tree, &mut paths);
            }
        }
    }
    let bytes = code.as_bytes();
    for start in ["crate::", "super::", "self::"] {
        for (at, _) in code.match_indices(start) {
            if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
                continue;
            }
            let path: String = code[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            paths.push(path);
        }
    }
    for (at, _) in code.match_indices("mod ") {
        let name: String = code[at + 4..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if code[at + 4 + name.len()..].trim_start().starts_with(';') {
            paths.push(format!("self::{name}"));
        }
    }
    paths
}

/// The leaves of a `use` tree such as `a::{b, c::{d, e}}`, each with its prefix.
fn expand_tree(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let mut depth = 0;
    let mut item = String::new();
    let mut items = Vec::new();
    for c in tree.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(std::mem::take(&mut item));
                continue;
            }
            _ => {}
        }
        item.push(c);
    }
    items.push(item);
    for item in items.into_iter().filter(|item| !item.is_empty()) {
        match item.split_once('{') {
            Some((head, rest)) => {
                let inner = rest.strip_suffix('}').unwrap_or(rest);
                expand_tree(&format!("{prefix}{head}"), inner, out);
            }
            None => out.push(format!("{prefix}{item}")),
        }
    }
}

/// The module files a file depends on: the longest module each of its paths names.
fn dependencies(source: &Source, modules: &BTreeSet<ModulePath>) -> BTreeSet<ModulePath> {
    let here = if source.owns_folder {
        source.module.clone()
    } else {
        source.module[..source.module.len() - 1].to_vec()
    };
    let mut found = BTreeSet::new();
    for path in named_paths(&source.code) {
        let mut segments = path.split("::").filter(|s| !s.is_empty()).peekable();
        let mut base = match segments.peek().copied() {
            Some("crate") => Vec::new(),
            Some("self") => here.clone(),
            Some("super") => source.module.clone(),
            _ => continue,
        };
        while let Some(segment) = segments.next_if(|s| matches!(*s, "crate" | "self" | "super")) {
            if segment == "super" {
                base.pop();
            }
        }
        let mut best = None;
        let mut candidate = base.clone();
        if modules.contains(&candidate) {
            best = Some(candidate.clone());
        }
        for segment in segments {
            candidate.push(segment.to_owned());
            if modules.contains(&candidate) {
                best = Some(candidate.clone());
            }
        }
        if let Some(module) = best.filter(|module| *module != source.module) {
            found.insert(module);
        }
    }
    found
}

fn server_sources() -> Vec<Source> {
    sources(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

/// The hub is the domain core and storage its boundary: neither knows of HTTP, sockets or the
/// configuration. What they need arrives as settings and traits of their own.
#[test]
fn the_hub_and_storage_import_no_transport_and_no_configuration() {
    let forbidden = [
        "axum",
        "hyper",
        "tower",
        "tokio::net",
        "socket2",
        "crate::http",
        "crate::stream",
        "crate::config",
        "crate::app",
    ];
    let mut offences = Vec::new();
    for source in server_sources() {
        let layer = source.module.first().map(String::as_str);
        if !matches!(layer, Some("hub" | "storage")) {
            continue;
        }
        for name in forbidden {
            let named = source.code.match_indices(name).any(|(at, _)| {
                let before = source.code[..at].chars().next_back();
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
            });
            if named {
                offences.push(format!("{} names {name}", source.path.display()));
            }
        }
    }
    assert!(offences.is_empty(), "{offences:#?}");
}

/// Modules depend on each other in one direction: among the children of any module, no two
/// import each other, directly or around a circle. Only a module and its parent may (the
/// parent declares the child, which uses what the parent holds).
#[test]
fn no_import_circle_between_modules() {
    let sources = server_sources();
    let modules: BTreeSet<ModulePath> = sources.iter().map(|s| s.module.clone()).collect();
    let edges: Vec<(ModulePath, ModulePath)> = sources
        .iter()
        .flat_map(|source| {
            dependencies(source, &modules)
                .into_iter()
                .map(|target| (source.module.clone(), target))
        })
        .collect();
    let mut circles = Vec::new();
    let parents: BTreeSet<ModulePath> = modules
        .iter()
        .filter(|module| !module.is_empty())
        .map(|module| module[..module.len() - 1].to_vec())
        .collect();
    for parent in parents {
        // The child of `parent` whose subtree holds `module`, if any.
        let child_of = |module: &ModulePath| {
            (module.len() > parent.len() && module.starts_with(&parent))
                .then(|| module[..=parent.len()].to_vec())
        };
        let mut graph: BTreeMap<ModulePath, BTreeSet<ModulePath>> = BTreeMap::new();
        for (from, to) in &edges {
            if let (Some(a), Some(b)) = (child_of(from), child_of(to))
                && a != b
            {
                graph.entry(a).or_default().insert(b);
            }
        }
        for (child, reaches) in &graph {
            if reaches_back(&graph, child) {
                circles.push(format!(
                    "{} is in an import circle among the children of {:?} (it imports {:?})",
                    child.join("::"),
                    parent.join("::"),
                    reaches
                        .iter()
                        .map(|module| module.join("::"))
                        .collect::<Vec<_>>()
                ));
            }
        }
    }
    assert!(circles.is_empty(), "{circles:#?}");
}

/// Whether `start` can reach itself in `graph`.
fn reaches_back(graph: &BTreeMap<ModulePath, BTreeSet<ModulePath>>, start: &ModulePath) -> bool {
    let mut seen = BTreeSet::new();
    let mut next: Vec<&ModulePath> = graph.get(start).into_iter().flatten().collect();
    while let Some(module) = next.pop() {
        if module == start {
            return true;
        }
        if seen.insert(module) {
            next.extend(graph.get(module).into_iter().flatten());
        }
    }
    false
}

/// The lengths a reader can take in: no source file over 600 lines, no function over 100,
/// in the server and its tests.
#[test]
fn files_and_functions_stay_short() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut too_long = Vec::new();
    for source in sources(&root.join("src"))
        .into_iter()
        .chain(sources(&root.join("tests")))
        .chain(sources(&root.join("benches")))
    {
        if source.lines > 600 {
            too_long.push(format!("{}: {} lines", source.path.display(), source.lines));
        }
        for (name, line, lines) in functions(&source.code) {
            if lines > 100 {
                too_long.push(format!(
                    "{}:{line}: fn {name} has {lines} lines",
                    source.path.display()
                ));
            }
        }
    }
    assert!(too_long.is_empty(), "{too_long:#?}");
}

/// Every function with a body: its name, first line and length in lines.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let bytes = code.as_bytes();
    let mut found = Vec::new();
    for (at, _) in code.match_indices("fn ") {
        if at > 0 && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_') {
            continue;
        }
        let name: String = code[at + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let Some(open) = code[at..].find(['{', ';']).map(|i| at + i) else {
            continue;
        };
        if bytes[open] == b';' {
            continue;
        }
        let mut depth = 0;
        let mut close = open;
        for (i, c) in code[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = open + i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let first = code[..at].matches('\n').count() + 1;
        let lines = code[at..close].matches('\n').count() + 1;
        found.push((name, first, lines));
    }
    found
}
