//! The crate's modules depend on each other without a cycle, so each can be read (and
//! changed) knowing only the ones below it.
//!
//! A module depends on another when its code (comments and unit tests left out) names it in a
//! path: `crate::a::b`, `super::x`, or a child module by its bare name. Declaring a child
//! (`mod x;`) is not a dependency; using one is. So a parent that re-exports from a child
//! which uses the parent is a cycle too.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

/// Every module of the crate under `dir`, by path (`communicator::commit`), with its source.
fn modules(dir: &Path, prefix: &str, out: &mut BTreeMap<String, String>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .expect("read src")
        .map(|e| e.expect("entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("utf-8 name")
            .to_owned();
        let join = |name: &str| {
            if prefix.is_empty() {
                name.to_owned()
            } else {
                format!("{prefix}::{name}")
            }
        };
        if path.is_dir() {
            modules(&path, &join(&name), out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let module = match name.as_str() {
                "lib" | "mod" => prefix.to_owned(),
                other => join(other),
            };
            out.insert(module, fs::read_to_string(&path).expect("read module"));
        }
    }
}

/// The code of a module: without comments, and without its unit tests.
fn code(source: &str) -> String {
    let source = source.split("#[cfg(test)]").next().unwrap_or("");
    source
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn parent(module: &str) -> String {
    module
        .rsplit_once("::")
        .map_or(String::new(), |(p, _)| p.to_owned())
}

fn join(base: &str, rest: &str) -> String {
    match (base.is_empty(), rest.is_empty()) {
        (true, _) => rest.to_owned(),
        (_, true) => base.to_owned(),
        _ => format!("{base}::{rest}"),
    }
}

/// The deepest known module that `path` (absolute, `a::b::item`) lies in.
fn owner(path: &str, known: &BTreeSet<String>) -> Option<String> {
    let mut candidate = path.to_owned();
    loop {
        if known.contains(&candidate) {
            return Some(candidate);
        }
        candidate = candidate.rsplit_once("::")?.0.to_owned();
    }
}

/// Paths written in `code` as `head::a::b` or `head::a::{b, c::d}`, as their segments after
/// `head` (`a::b`, `a::c::d`).
fn paths_after(code: &str, head: &str) -> Vec<String> {
    let is_path = |c: char| c.is_alphanumeric() || c == '_' || c == ':';
    let mut found = Vec::new();
    let pattern = format!("{head}::");
    let mut rest = code;
    while let Some(at) = rest.find(&pattern) {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at + pattern.len()..];
        rest = tail;
        if before.is_some_and(is_path) {
            continue;
        }
        let end = tail.find(|c: char| !is_path(c)).unwrap_or(tail.len());
        let prefix = &tail[..end];
        match tail[end..].strip_prefix('{') {
            Some(group) if prefix.is_empty() || prefix.ends_with("::") => {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                for item in group.split(',') {
                    let item = item.split(" as ").next().unwrap_or("").trim();
                    match item {
                        "" => {}
                        "self" => found.push(prefix.trim_end_matches(':').to_owned()),
                        item => found.push(format!("{prefix}{item}")),
                    }
                }
            }
            _ => found.push(prefix.trim_end_matches(':').to_owned()),
        }
    }
    found
}

fn graph(sources: &BTreeMap<String, String>) -> Graph {
    let known: BTreeSet<String> = sources.keys().cloned().collect();
    let mut graph = Graph::new();
    for (module, source) in sources {
        let code = code(source);
        let mut targets = BTreeSet::new();
        let mut add = |absolute: String| {
            if let Some(target) = owner(&absolute, &known) {
                if target != *module && !target.is_empty() {
                    targets.insert(target);
                }
            }
        };
        for path in paths_after(&code, "crate") {
            add(path);
        }
        for path in paths_after(&code, "super") {
            add(join(&parent(module), &path));
        }
        // A child module named by its bare name, as `use child::Item` or `child::f()`.
        for child in known
            .iter()
            .filter(|k| parent(k) == *module && !k.is_empty())
        {
            let name = child.rsplit("::").next().unwrap_or(child);
            if !paths_after(&code, name).is_empty() {
                add(child.clone());
            }
        }
        graph.insert(module.clone(), targets);
    }
    graph
}

/// A cycle of `graph`, if it has one.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        done: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, done, path) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut done, &mut Vec::new()))
}

fn crate_graph() -> Graph {
    let mut sources = BTreeMap::new();
    modules(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        "",
        &mut sources,
    );
    graph(&sources)
}

#[test]
fn the_module_graph_is_acyclic() {
    let graph = crate_graph();
    let listing: String = graph
        .iter()
        .map(|(module, uses)| format!("{module} -> {uses:?}\n"))
        .collect();
    assert!(
        cycle(&graph).is_none(),
        "cycle {:?} in\n{listing}",
        cycle(&graph)
    );
}

#[test]
fn the_checker_sees_each_kind_of_dependency_and_finds_a_cycle() {
    let sources: BTreeMap<String, String> = [
        (
            "a",
            "use crate::b::{Thing, other::More};\n// use crate::c;\n",
        ),
        (
            "b",
            "pub mod other;\nuse child::X;\nfn f() { crate::c::g() }\n",
        ),
        ("b::other", "use super::Thing;\n"),
        ("b::child", "pub struct X;\n"),
        ("c", "#[cfg(test)]\nmod tests { use crate::a; }\n"),
    ]
    .into_iter()
    .map(|(m, s)| (m.to_owned(), s.to_owned()))
    .collect();
    let graph = graph(&sources);
    let uses = |m: &str| graph[m].iter().cloned().collect::<Vec<_>>();
    assert_eq!(uses("a"), ["b", "b::other"]);
    assert_eq!(uses("b"), ["b::child", "c"]);
    assert_eq!(uses("b::other"), ["b"]);
    assert!(
        uses("c").is_empty(),
        "comments and unit tests are not dependencies"
    );
    assert!(cycle(&graph).is_none());

    let mut cyclic = sources.clone();
    cyclic.insert("b::child".into(), "use super::other::More;\n".into());
    cyclic.insert("b::other".into(), "use crate::b::child::X;\n".into());
    let found = cycle(&self::graph(&cyclic)).expect("a cycle");
    assert_eq!(found.first(), found.last());
    assert!(found.contains(&"b::child".to_owned()) && found.contains(&"b::other".to_owned()));
}

/// Prints the graph, for the docs: `cargo test -p thrifty-collective --test module_graph --
/// --ignored --nocapture`.
#[test]
#[ignore = "prints the module graph"]
fn print_the_module_graph() {
    for (module, uses) in crate_graph().into_iter().filter(|(m, _)| !m.is_empty()) {
        let uses: Vec<&str> = uses.iter().map(String::as_str).collect();
        println!("{module} -> {}", uses.join(", "));
    }
}
