//! The house's shape, checked: these tests read `src/` and `README.md` as
//! text and fail when the layout a student relies on has faded.
//!
//! threadchat is read to learn how a server on threads is built, so its shape
//! is part of what it teaches, and shape fades one harmless-looking change at
//! a time. What is guarded here:
//!
//! - no import cycles: two top-level modules (`src/<x>/` or `src/<x>.rs`)
//!   never import each other, directly or around a loop, and neither do two
//!   files (a module and its own parent or children may use each other);
//! - the leaves stay leaves: `ids`, `net` and `config` import nothing else of
//!   the crate, `protocol` only those, `outbox` only those and `protocol`, so
//!   each can be read (and tested) on its own;
//! - files stay short enough to read in one sitting, unless a file's header
//!   says it is long on purpose and why;
//! - the README names files that exist, and its "How it works" names every
//!   thread.
//!
//! Why text and not a tool: `cargo modules` or a `syn` parse would be more
//! exact, but would add dependencies for a check this small. The reading here
//! is deliberately simple (paths written `crate::…` or `super::…` outside
//! comments and unit tests), which is also how the house writes them, so a
//! reader can check any failure by hand with `grep`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};

/// At most this many lines in a source file, not counting its unit tests:
/// about what fits in one sitting, with some slack over the house's aim of
/// ~400 so that a doc comment added to a full file does not fail the build.
const MAX_LINES: usize = 420;

/// The phrase a file's `//!` header uses to say it is long on purpose (and
/// then why).
const LONG_ON_PURPOSE: &str = "long on purpose";

/// Each leaf, and the only other top-level modules it may import.
const LEAVES: &[(&str, &[&str])] = &[
    ("ids", &[]),
    ("net", &[]),
    ("config", &[]),
    ("protocol", &["config", "ids", "net"]),
    ("outbox", &["protocol", "config", "ids", "net"]),
];

/// The threads the README's "How it works" must name, as a reader meets them.
const THREADS: &[&str] = &[
    "reader",
    "writer",
    "dispatcher",
    "archivist",
    "courier",
    "listener",
    "rejecter",
    "admin accept loop",
];

/// Folders the README may name that are not source: cargo's build output
/// and everything in it (reports, venvs).
const NOT_SOURCE_FOLDERS: &[&str] = &["target/"];

// ---------------------------------------------------------------------------
// Reading the source

/// The repository's root (where `Cargo.toml` is).
fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A source file: its path from the repository's root (`src/ids.rs`) and its text.
struct SourceFile {
    path: String,
    text: String,
}

/// Every `.rs` file under `src/`, sorted by path.
fn source_files() -> Vec<SourceFile> {
    let mut paths = Vec::new();
    collect_rust_files(&repo().join("src"), &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|full| {
            let path = full
                .strip_prefix(repo())
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let text = fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {path}: {e}"));
            SourceFile { path, text }
        })
        .collect()
}

fn collect_rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rust_files(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push(path);
        }
    }
}

/// Whether a file is unit tests moved out of their module (`#[cfg(test)] mod
/// tests;` with its body in `tests.rs` or under `tests/`): counted as tests.
fn is_unit_test_file(path: &str) -> bool {
    path.ends_with("/tests.rs") || path.contains("/tests/")
}

/// Whether a file belongs to the library's module graph: not the binary's
/// `main.rs` or `bin/`, which only wire the library, and not `lib.rs`, the
/// crate root that declares every module (and so is everyone's parent).
fn in_module_graph(path: &str) -> bool {
    path != "src/main.rs"
        && path != "src/lib.rs"
        && !path.starts_with("src/bin/")
        && !is_unit_test_file(path)
}

/// A file's module path, from where it lies: `src/dispatcher/mod.rs` is
/// `dispatcher`, `src/dispatcher/room.rs` is `dispatcher::room`, `src/ids.rs`
/// is `ids`.
fn module_of(path: &str) -> String {
    let inside = path
        .strip_prefix("src/")
        .unwrap()
        .strip_suffix(".rs")
        .unwrap();
    let inside = inside.strip_suffix("/mod").unwrap_or(inside);
    inside.replace('/', "::")
}

/// The first segment of a module path: the top-level module (`dispatcher` for
/// `dispatcher::room`).
fn top_of(module: &str) -> &str {
    module.split("::").next().unwrap()
}

/// Whether one module lies within the other (its parent, child, or further):
/// such a pair may use each other freely.
fn related(a: &str, b: &str) -> bool {
    let within = |inner: &str, outer: &str| inner.starts_with(&format!("{outer}::"));
    within(a, b) || within(b, a)
}

/// The lines of a file before its unit tests: everything before the first
/// `#[cfg(test)]` line that is followed by `mod tests`.
fn before_unit_tests(text: &str) -> Vec<&str> {
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if line.trim() != "#[cfg(test)]" {
            continue;
        }
        let next = lines[i + 1..].iter().find(|l| !l.trim().is_empty());
        if next.is_some_and(|l| l.trim_start().starts_with("mod tests")) {
            return lines[..i].to_vec();
        }
    }
    lines
}

/// A file's code as the module graph sees it: before its unit tests, without
/// comment lines (so a comment that names `crate::x` is not an import).
fn code_of(text: &str) -> String {
    before_unit_tests(text)
        .into_iter()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A file's `//!` header as one lower-case line of words.
fn header_of(text: &str) -> String {
    let header = text
        .lines()
        .map(str::trim)
        .skip_while(|line| line.is_empty())
        .take_while(|line| line.starts_with("//!"))
        .map(|line| line.trim_start_matches("//!"))
        .collect::<Vec<_>>()
        .join(" ");
    words(&header)
}

/// Text in lower case, with runs of white space made one space.
fn words(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

// ---------------------------------------------------------------------------
// Reading paths: `crate::a::{b, c::D}` is the two paths `crate::a::b` and
// `crate::a::c::D`.

/// Every path in `code` that starts with `crate::` or `super::`, each
/// as its segments (`["super", "Dispatcher"]`).
fn crate_paths_in(code: &str) -> Vec<Vec<String>> {
    let chars: Vec<char> = code.chars().collect();
    let mut paths = Vec::new();
    for start in 0..chars.len() {
        let at = |word: &str| {
            chars[start..]
                .iter()
                .take(word.len())
                .copied()
                .eq(word.chars())
        };
        // A path starts here, not in the middle of a word or of a longer path
        // (the second `super` of `super::super::x`).
        let mid_path = start > 0 && (is_ident(chars[start - 1]) || chars[start - 1] == ':');
        if !mid_path && (at("crate::") || at("super::")) {
            let mut pos = start;
            read_use_tree(&chars, &mut pos, Vec::new(), &mut paths);
        }
    }
    paths
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Reads one path or use tree at `pos` (after `prefix`), adding every full
/// path it names to `out`; `self` in a group names the group's own path.
fn read_use_tree(chars: &[char], pos: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    loop {
        skip_spaces(chars, pos);
        if chars.get(*pos) == Some(&'{') {
            *pos += 1;
            read_group(chars, pos, &path, out);
            return;
        }
        let segment = read_segment(chars, pos);
        if segment.is_empty() {
            break;
        }
        if segment != "self" {
            path.push(segment);
        }
        if chars[*pos..].starts_with(&[':', ':']) {
            *pos += 2;
        } else {
            break;
        }
    }
    out.push(path);
}

/// Reads the items of a `{…}` group up to and past its closing brace.
fn read_group(chars: &[char], pos: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
    loop {
        skip_spaces(chars, pos);
        match chars.get(*pos) {
            None => return,
            Some('}') => {
                *pos += 1;
                return;
            }
            Some(_) => read_use_tree(chars, pos, prefix.to_vec(), out),
        }
        // Past the item's end: an `as name`, then its comma.
        while let Some(&c) = chars.get(*pos) {
            if c == '}' {
                break;
            }
            *pos += 1;
            if c == ',' {
                break;
            }
        }
    }
}

/// A name (`dispatcher`, `Event`), or `*`, or nothing.
fn read_segment(chars: &[char], pos: &mut usize) -> String {
    if chars.get(*pos) == Some(&'*') {
        *pos += 1;
        return "*".to_string();
    }
    let start = *pos;
    while chars.get(*pos).is_some_and(|&c| is_ident(c)) {
        *pos += 1;
    }
    chars[start..*pos].iter().collect()
}

fn skip_spaces(chars: &[char], pos: &mut usize) {
    while chars.get(*pos).is_some_and(|c| c.is_whitespace()) {
        *pos += 1;
    }
}

// ---------------------------------------------------------------------------
// The module graph

/// One place where a module names another: `from` uses `to`, written as
/// `written` in `file`.
struct Use {
    from: String,
    to: String,
    file: String,
    written: String,
}

impl Use {
    fn evidence(&self) -> String {
        format!("{} uses {}", self.file, self.written)
    }
}

/// Every use of one module by another in `src/`, leaving out a module's use
/// of itself and of the modules it lies within or that lie within it.
fn crate_uses() -> Vec<Use> {
    let files = source_files();
    let modules: BTreeSet<String> = files
        .iter()
        .filter(|f| in_module_graph(&f.path))
        .map(|f| module_of(&f.path))
        .collect();
    let root_exports = root_reexports(&files);
    let mut uses = Vec::new();
    for file in files.iter().filter(|f| in_module_graph(&f.path)) {
        let from = module_of(&file.path);
        for path in crate_paths_in(&code_of(&file.text)) {
            let absolute = from_crate_root(&path, &from);
            let Some(to) = resolve(&absolute, &modules, &root_exports) else {
                continue;
            };
            if to != from && !related(&from, &to) {
                let written = path.join("::");
                uses.push(Use {
                    from: from.clone(),
                    to,
                    file: file.path.clone(),
                    written,
                });
            }
        }
    }
    uses
}

/// What the crate root re-exports (`pub use config::Config;` in `lib.rs`),
/// by the name it is known as at the root, so that `crate::Config` counts as
/// a use of `config`.
fn root_reexports(files: &[SourceFile]) -> BTreeMap<String, Vec<String>> {
    let lib = files
        .iter()
        .find(|f| f.path == "src/lib.rs")
        .expect("src/lib.rs");
    let code: Vec<char> = code_of(&lib.text).chars().collect();
    let mut paths = Vec::new();
    for start in 0..code.len() {
        if code[start..].starts_with(&"pub use ".chars().collect::<Vec<_>>()) {
            let mut pos = start + "pub use ".len();
            read_use_tree(&code, &mut pos, Vec::new(), &mut paths);
        }
    }
    paths
        .into_iter()
        .filter_map(|path| Some((path.last()?.clone(), path)))
        .collect()
}

/// A path as seen from the crate root: `crate::a::B` is `a::B`, and
/// `super::B` in module `x::y` is `x::B`.
fn from_crate_root(path: &[String], module: &str) -> Vec<String> {
    let mut base: Vec<String> = module.split("::").map(String::from).collect();
    let mut rest = path;
    if rest.first().is_some_and(|s| s == "crate") {
        base.clear();
        rest = &rest[1..];
    }
    while rest.first().is_some_and(|s| s == "super") {
        base.pop();
        rest = &rest[1..];
    }
    base.extend(rest.iter().cloned());
    base
}

/// The module a path lands in: its longest beginning that is a module
/// (`dispatcher::room::Room` is in `dispatcher::room` if that file exists,
/// else in `dispatcher`). None for a path that names no module, such as a
/// macro exported at the crate root.
fn resolve(
    path: &[String],
    modules: &BTreeSet<String>,
    root_exports: &BTreeMap<String, Vec<String>>,
) -> Option<String> {
    let longest = (1..=path.len())
        .rev()
        .map(|len| path[..len].join("::"))
        .find(|prefix| modules.contains(prefix));
    if longest.is_some() {
        return longest;
    }
    let exported = root_exports.get(path.first()?)?;
    resolve(exported, modules, &BTreeMap::new())
}

/// Who uses whom, as an adjacency list.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// The graph of `uses`, each module named by `name` (the file's module, or
/// its top-level module), without a module's edges to itself.
fn graph_of(uses: &[Use], name: impl Fn(&str) -> String) -> Graph {
    let mut graph = Graph::new();
    for u in uses {
        let (from, to) = (name(&u.from), name(&u.to));
        if from != to {
            graph.entry(from).or_default().insert(to);
        }
    }
    graph
}

/// One shortest cycle through each module that lies on one, each cycle once
/// (as `[a, b, a]`), the shortest first.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    let mut seen = BTreeSet::new();
    let mut found = Vec::new();
    for start in graph.keys() {
        if let Some(cycle) = shortest_cycle_through(graph, start) {
            let members: BTreeSet<String> = cycle.iter().cloned().collect();
            if seen.insert(members) {
                found.push(cycle);
            }
        }
    }
    found.sort_by_key(Vec::len);
    found
}

/// A breadth-first search from `start` back to itself.
fn shortest_cycle_through(graph: &Graph, start: &str) -> Option<Vec<String>> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for next in graph.get(node).into_iter().flatten() {
            if next == start {
                let mut cycle = vec![start.to_string(), node.to_string()];
                let mut at = node;
                while at != start {
                    at = came_from[at];
                    cycle.push(at.to_string());
                }
                cycle.reverse();
                return Some(cycle);
            }
            if !came_from.contains_key(next.as_str()) {
                came_from.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    None
}

/// "cycle: a -> b -> a", then the line of code behind each step.
fn describe_cycle(cycle: &[String], uses: &[Use], name: impl Fn(&str) -> String) -> String {
    let mut text = format!("cycle: {}", cycle.join(" -> "));
    for step in cycle.windows(2) {
        let why = uses
            .iter()
            .find(|u| name(&u.from) == step[0] && name(&u.to) == step[1])
            .map(Use::evidence)
            .unwrap_or_default();
        text += &format!("\n    {} -> {}: {why}", step[0], step[1]);
    }
    text
}

// ---------------------------------------------------------------------------
// The tests

#[test]
fn no_import_cycles_between_modules() {
    let uses = crate_uses();
    let top = |m: &str| top_of(m).to_string();
    let file = |m: &str| m.to_string();
    let mut failures = Vec::new();
    for cycle in cycles(&graph_of(&uses, top)) {
        failures.push(format!(
            "between top-level modules: {}",
            describe_cycle(&cycle, &uses, top)
        ));
    }
    for cycle in cycles(&graph_of(&uses, file)) {
        failures.push(format!(
            "between files: {}",
            describe_cycle(&cycle, &uses, file)
        ));
    }
    assert!(
        failures.is_empty(),
        "modules import each other (a module may use only its own parent and children \
         that way):\n{}",
        failures.join("\n")
    );
}

#[test]
fn leaf_modules_import_only_leaves() {
    let uses = crate_uses();
    let mut failures = Vec::new();
    for &(leaf, allowed) in LEAVES {
        let outward: Vec<&Use> = uses
            .iter()
            .filter(|u| top_of(&u.from) == leaf && top_of(&u.to) != leaf)
            .collect();
        let imports: BTreeSet<&str> = outward.iter().map(|u| top_of(&u.to)).collect();
        let wrong: Vec<&&Use> = outward
            .iter()
            .filter(|u| !allowed.contains(&top_of(&u.to)))
            .collect();
        if wrong.is_empty() {
            continue;
        }
        let allowed = if allowed.is_empty() {
            "nothing else of the crate".to_string()
        } else {
            allowed.join(", ")
        };
        let imports = imports.into_iter().collect::<Vec<_>>().join(", ");
        failures.push(format!(
            "{leaf} may import {allowed}, but imports: {imports}"
        ));
        for u in wrong {
            failures.push(format!("    {}", u.evidence()));
        }
    }
    assert!(
        failures.is_empty(),
        "a leaf module imports more than leaves:\n{}",
        failures.join("\n")
    );
}

#[test]
fn files_stay_short() {
    let mut offenders = Vec::new();
    for file in source_files() {
        if is_unit_test_file(&file.path) {
            continue;
        }
        let lines = before_unit_tests(&file.text).len();
        if lines > MAX_LINES && !header_of(&file.text).contains(LONG_ON_PURPOSE) {
            offenders.push(format!("    {}: {lines} lines", file.path));
        }
    }
    assert!(
        offenders.is_empty(),
        "files over {MAX_LINES} lines before their unit tests (split them, or say \
         \"{LONG_ON_PURPOSE}\" and why in the //! header):\n{}",
        offenders.join("\n")
    );
}

#[test]
fn readme_names_files_that_exist() {
    let readme = fs::read_to_string(repo().join("README.md")).expect("README.md");
    let mut failures = Vec::new();
    for (line, span) in inline_code(&readme) {
        let Some(path) = source_path_in(&span) else {
            continue;
        };
        let found = [repo().join("src").join(&path), repo().join(&path)]
            .iter()
            .any(|p| p.exists());
        if !found {
            failures.push(format!(
                "    README.md:{line}: `{span}`: neither src/{path} nor {path} exists"
            ));
        }
    }
    let how_it_works = words(&section(&readme, "How it works").replace(['*', '`'], ""));
    for thread in THREADS {
        if !how_it_works.contains(thread) {
            failures.push(format!("    \"How it works\" does not name the {thread}"));
        }
    }
    assert!(
        failures.is_empty(),
        "the README names what is not there:\n{}",
        failures.join("\n")
    );
}

/// The readers above, on small examples: what a failure above can be trusted
/// to have seen.
#[test]
fn the_readers_see_paths_as_written() {
    let code = "use crate::{ids::ConnId, dispatcher::{self, Event as E}};\n\
                let x = super::super::net::is_timeout(&e); pub(crate) fn f() {}";
    let paths: Vec<String> = crate_paths_in(code).iter().map(|p| p.join("::")).collect();
    assert_eq!(
        paths,
        [
            "crate::ids::ConnId",
            "crate::dispatcher",
            "crate::dispatcher::Event",
            "super::super::net::is_timeout"
        ]
    );
    let in_room = from_crate_root(&["super".into(), "history".into()], "dispatcher::room");
    assert_eq!(in_room, ["dispatcher", "history"]);
    assert_eq!(module_of("src/dispatcher/mod.rs"), "dispatcher");
    assert_eq!(module_of("src/dispatcher/room.rs"), "dispatcher::room");
    assert_eq!(
        before_unit_tests("a\n#[cfg(test)]\n\nmod tests {\n}\n"),
        ["a"]
    );

    assert_eq!(
        source_path_in("room.rs (flush)").as_deref(),
        Some("room.rs")
    );
    assert_eq!(
        source_path_in("outbox.rs::Inbox").as_deref(),
        Some("outbox.rs")
    );
    assert_eq!(source_path_in("cluster/").as_deref(), Some("cluster/"));
    assert_eq!(source_path_in("/r/<name>"), None);
    assert_eq!(source_path_in("target/"), None);
    let spans = inline_code("a `x.rs`\n```\n`not.rs`\n```\nb `y/\nz.rs`");
    assert_eq!(spans, [(1, "x.rs".to_string()), (5, "y/ z.rs".to_string())]);
}

// ---------------------------------------------------------------------------
// Reading the README

/// Every `inline code` span outside fenced blocks, with the line it starts on.
fn inline_code(markdown: &str) -> Vec<(usize, String)> {
    // Fenced blocks become empty lines, so that line numbers stay right.
    let mut in_fence = false;
    let prose: Vec<&str> = markdown
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("```") {
                in_fence = !in_fence;
                return "";
            }
            if in_fence { "" } else { line }
        })
        .collect();
    let prose = prose.join("\n");
    let mut spans = Vec::new();
    let mut line = 1;
    for (i, piece) in prose.split('`').enumerate() {
        if i % 2 == 1 {
            spans.push((line, piece.replace('\n', " ")));
        }
        line += piece.matches('\n').count();
    }
    spans
}

/// The source path a code span names, if it names one: `room.rs`,
/// `cluster/courier.rs (renew)`, `outbox.rs::Inbox`, or a folder such as
/// `cluster/`.
fn source_path_in(span: &str) -> Option<String> {
    let path = span.split(['(', ' ']).next()?.split("::").next()?.trim();
    let name_chars = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_/".contains(c))
    };
    let is_file = path.strip_suffix(".rs").is_some_and(name_chars);
    let built = NOT_SOURCE_FOLDERS
        .iter()
        .any(|folder| path.starts_with(folder));
    let is_folder = path.ends_with('/') && name_chars(path) && !built;
    let relative = !path.starts_with('/');
    (relative && (is_file || is_folder)).then(|| path.to_string())
}

/// The text of the `##` section whose heading contains `title`, up to the
/// next `##` heading (its `###` subsections included).
fn section(markdown: &str, title: &str) -> String {
    let mut lines = markdown
        .lines()
        .skip_while(|line| !(line.starts_with("## ") && line.contains(title)));
    let heading = lines
        .next()
        .unwrap_or_else(|| panic!("README.md has no \"## {title}\" section"));
    let body: Vec<&str> = lines.take_while(|line| !line.starts_with("## ")).collect();
    format!("{heading}\n{}", body.join("\n"))
}
