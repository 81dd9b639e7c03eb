//! The runtime's layers, checked on its source (`netabase/src`):
//!
//! - no import circle spans more than two files;
//! - the replica core (`node/replica`) uses no libp2p type (the writer's
//!   identity comes from `libp2p-identity`, as the envelope's signature
//!   does) and never calls the network shell or the handle;
//! - the network shell never calls the handle.
//!
//! An edge is a `use` or a path (`crate::..`, `super::..`, `self::..`, or a
//! child module's name) in one file naming an item of another, followed
//! through `pub use` re-exports to the file that defines it. `mod`
//! declarations and re-exports themselves are not edges: a facade is not a
//! dependency. Test modules and comments are left out.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

struct Crate {
    /// Each module's source, without comments and test modules.
    sources: BTreeMap<Module, String>,
    /// `pub use` re-exports: module -> name -> the absolute path it names.
    exports: HashMap<Module, HashMap<String, Vec<String>>>,
}

fn load(root: &Path) -> Crate {
    let mut files = Vec::new();
    collect(root, &mut files);
    let mut sources = BTreeMap::new();
    for file in files {
        let relative = file.strip_prefix(root).expect("under root");
        let mut module: Module = relative
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
            module.pop();
        }
        let text = std::fs::read_to_string(&file).expect("read source");
        sources.insert(module, strip(&text));
    }
    let mut source_crate = Crate {
        sources,
        exports: HashMap::new(),
    };
    let mut exports = HashMap::new();
    for (module, source) in &source_crate.sources {
        let mut names = HashMap::new();
        for tree in uses(source, true) {
            for path in expand(&tree) {
                let Some((last, head)) = path.split_last() else {
                    continue;
                };
                let (name, alias) = match last.split_once(" as ") {
                    Some((name, alias)) => (name.trim(), alias.trim()),
                    None => (last.as_str(), last.as_str()),
                };
                if name == "self" || name == "*" {
                    continue;
                }
                let mut full = head.to_vec();
                full.push(name.to_string());
                if let Some(absolute) = source_crate.absolute(module, &full) {
                    names.insert(alias.to_string(), absolute);
                }
            }
        }
        exports.insert(module.clone(), names);
    }
    source_crate.exports = exports;
    source_crate
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without comments and without a trailing `mod tests { .. }`.
fn strip(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(at) => &text[..at],
        None => text,
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The trees of the `use` items of a source: `pub use` ones only, or every
/// other one.
fn uses(source: &str, public: bool) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = source.as_bytes();
    let mut at = 0;
    while let Some(found) = source[at..].find("use ") {
        let start = at + found;
        at = start + 4;
        let before = &source[..start];
        // A whole word, starting an item.
        if start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_') {
            continue;
        }
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let prefix = source[line_start..start].trim();
        let is_public = prefix.starts_with("pub");
        if !(prefix.is_empty() || is_public || prefix.starts_with("#[")) {
            continue;
        }
        if is_public != public {
            continue;
        }
        let Some(end) = source[at..].find(';') else {
            break;
        };
        out.push(
            source[at..at + end]
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
        );
        at += end;
    }
    out
}

/// The paths of a use tree (`a::{b, c::{d, e as f}}`); `as` is kept as
/// `name as alias` in the last segment.
fn expand(tree: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    expand_into(&[], tree.trim(), &mut out);
    out
}

fn expand_into(prefix: &[String], tree: &str, out: &mut Vec<Vec<String>>) {
    let tree = tree.trim();
    if let Some(inner) = tree.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        let mut depth = 0;
        let mut part = String::new();
        for c in inner.chars().chain([',']) {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            if c == ',' && depth == 0 {
                if !part.trim().is_empty() {
                    expand_into(prefix, &part, out);
                }
                part.clear();
            } else {
                part.push(c);
            }
        }
        return;
    }
    if let Some(at) = tree.find("::{") {
        let mut next = prefix.to_vec();
        next.extend(tree[..at].split("::").map(|s| s.trim().to_string()));
        expand_into(&next, &tree[at + 2..], out);
        return;
    }
    let mut path = prefix.to_vec();
    path.extend(tree.split("::").map(|s| s.trim().to_string()));
    out.push(path);
}

impl Crate {
    /// `path` as written in `module`, made absolute (from the crate root);
    /// `None` for another crate's path.
    fn absolute(&self, module: &Module, path: &[String]) -> Option<Vec<String>> {
        let (head, rest) = path.split_first()?;
        let mut base = match head.as_str() {
            "crate" => Vec::new(),
            "self" => module.clone(),
            "super" => {
                let mut base = module.clone();
                base.pop();
                base
            }
            child => {
                // A child module's name, relative to this one.
                let mut candidate = module.clone();
                candidate.push(child.to_string());
                if !self.sources.contains_key(&candidate) {
                    return None;
                }
                module.clone()
            }
        };
        let mut rest = rest;
        if !matches!(head.as_str(), "crate" | "self" | "super") {
            rest = path;
        }
        let mut segments = rest.iter().peekable();
        while segments.peek().is_some_and(|s| *s == "super") {
            base.pop();
            segments.next();
        }
        base.extend(segments.cloned());
        Some(base)
    }

    /// The file that defines what an absolute path names.
    fn resolve(&self, path: &[String], depth: usize) -> Option<Module> {
        for split in (0..=path.len()).rev() {
            let module = path[..split].to_vec();
            if self.sources.contains_key(&module) {
                if let Some(name) = path.get(split) {
                    if let Some(target) = self.exports.get(&module).and_then(|e| e.get(name)) {
                        if depth < 16 {
                            let mut target = target.clone();
                            target.extend(path[split + 1..].iter().cloned());
                            return self.resolve(&target, depth + 1);
                        }
                    }
                }
                return Some(module);
            }
        }
        None
    }

    fn edges(&self) -> BTreeMap<Module, BTreeSet<Module>> {
        let mut edges = BTreeMap::new();
        for (module, source) in &self.sources {
            let mut targets = BTreeSet::new();
            let mut add = |path: &[String]| {
                if let Some(absolute) = self.absolute(module, path) {
                    if let Some(target) = self.resolve(&absolute, 0) {
                        if &target != module {
                            targets.insert(target);
                        }
                    }
                }
            };
            for tree in uses(source, false) {
                for mut path in expand(&tree) {
                    if let Some(last) = path.last_mut() {
                        if let Some((name, _)) = last.split_once(" as ") {
                            *last = name.trim().to_string();
                        }
                    }
                    if matches!(path.last().map(String::as_str), Some("self" | "*")) {
                        path.pop();
                    }
                    add(&path);
                }
            }
            let children: Vec<String> = self
                .sources
                .keys()
                .filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
                .filter_map(|m| m.last().cloned())
                .collect();
            for path in inline_paths(source, &children) {
                add(&path);
            }
            edges.insert(module.clone(), targets);
        }
        edges
    }
}

/// Paths written inline (`crate::a::b`, `super::c`, `self::d`, or a child
/// module's `child::e`), outside `use` items.
fn inline_paths(source: &str, children: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut body = String::new();
    // Drop `use` items: they are read as trees.
    let mut rest = source;
    while let Some(at) = rest.find("use ") {
        let word_start = at == 0 || {
            let b = rest.as_bytes()[at - 1];
            !(b.is_ascii_alphanumeric() || b == b'_')
        };
        body.push_str(&rest[..at]);
        if word_start {
            match rest[at..].find(';') {
                Some(end) => rest = &rest[at + end + 1..],
                None => {
                    rest = "";
                    break;
                }
            }
        } else {
            body.push_str("use ");
            rest = &rest[at + 4..];
        }
    }
    body.push_str(rest);
    let bytes = body.as_bytes();
    let heads = ["crate", "super", "self"]
        .into_iter()
        .map(str::to_string)
        .chain(children.iter().cloned())
        .map(|head| format!("{head}::"));
    for head in heads {
        let head = head.as_str();
        let mut at = 0;
        while let Some(found) = body[at..].find(head) {
            let start = at + found;
            at = start + head.len();
            if start > 0 {
                let b = bytes[start - 1];
                if b.is_ascii_alphanumeric() || b == b'_' || b == b':' {
                    continue;
                }
            }
            let end = body[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .map_or(body.len(), |e| start + e);
            let path: Vec<String> = body[start..end]
                .split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
            out.push(path);
        }
    }
    out
}

/// Strongly connected components (Tarjan), iteratively.
fn components(edges: &BTreeMap<Module, BTreeSet<Module>>) -> Vec<Vec<Module>> {
    let nodes: Vec<&Module> = edges.keys().collect();
    let index_of: HashMap<&Module, usize> =
        nodes.iter().enumerate().map(|(i, m)| (*m, i)).collect();
    let adjacency: Vec<Vec<usize>> = nodes
        .iter()
        .map(|m| {
            edges[*m]
                .iter()
                .filter_map(|t| index_of.get(t).copied())
                .collect()
        })
        .collect();
    let n = nodes.len();
    let (mut index, mut low, mut on_stack) = (vec![usize::MAX; n], vec![0; n], vec![false; n]);
    let (mut stack, mut out, mut counter) = (Vec::new(), Vec::new(), 0);
    for root in 0..n {
        if index[root] != usize::MAX {
            continue;
        }
        let mut work = vec![(root, 0usize)];
        while let Some((v, next)) = work.pop() {
            if next == 0 {
                index[v] = counter;
                low[v] = counter;
                counter += 1;
                stack.push(v);
                on_stack[v] = true;
            }
            if let Some(&w) = adjacency[v].get(next) {
                work.push((v, next + 1));
                if index[w] == usize::MAX {
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
                continue;
            }
            if let Some(&(parent, _)) = work.last() {
                low[parent] = low[parent].min(low[v]);
            }
            if low[v] == index[v] {
                let mut component = Vec::new();
                while let Some(w) = stack.pop() {
                    on_stack[w] = false;
                    component.push(nodes[w].clone());
                    if w == v {
                        break;
                    }
                }
                out.push(component);
            }
        }
    }
    out
}

fn name(module: &Module) -> String {
    if module.is_empty() {
        "lib".into()
    } else {
        module.join("/")
    }
}

fn netabase_src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("netabase/src")
}

#[test]
fn no_import_circle_spans_more_than_two_files() {
    let source = load(&netabase_src());
    let edges = source.edges();
    // The check sees the node's layers at all.
    let handle: Module = vec!["node".into(), "handle".into()];
    assert!(
        edges[&handle]
            .iter()
            .any(|m| m.starts_with(&["node".to_string(), "replica".to_string()])),
        "the handle's imports of the replica were not found: the check reads nothing"
    );
    let circles: Vec<String> = components(&edges)
        .into_iter()
        .filter(|c| c.len() > 2)
        .map(|c| c.iter().map(name).collect::<Vec<_>>().join(" "))
        .collect();
    assert!(
        circles.is_empty(),
        "import circles over two files: {circles:#?}"
    );
}

#[test]
fn the_replica_core_knows_no_network_and_the_shell_no_handle() {
    let source = load(&netabase_src());
    let edges = source.edges();
    let under = |m: &Module, prefix: &[&str]| {
        m.len() >= prefix.len() && m.iter().zip(prefix).all(|(a, b)| a == b)
    };
    let mut wrong = Vec::new();
    for (module, targets) in &edges {
        for target in targets {
            let core_up = under(module, &["node", "replica"])
                && (under(target, &["node", "shell"]) || under(target, &["node", "handle"]));
            let shell_up = under(module, &["node", "shell"]) && under(target, &["node", "handle"]);
            if core_up || shell_up {
                wrong.push(format!("{} -> {}", name(module), name(target)));
            }
        }
        if under(module, &["node", "replica"]) {
            let text = &source.sources[module];
            if text.contains("libp2p::") || text.contains("use libp2p;") {
                wrong.push(format!("{} uses libp2p", name(module)));
            }
        }
    }
    assert!(wrong.is_empty(), "layers crossed: {wrong:#?}");
}
