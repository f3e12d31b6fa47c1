//! The module graph stays a graph of layers: no module imports one above it, and no
//! two modules (files) import each other, directly or around a loop. The layers are
//! the ones docs/ARCHITECTURE.md draws; moving a module means moving it here too.
//!
//! Imports are read from the source text: `crate::a::b` anywhere outside comments and a
//! file's `#[cfg(test)] mod tests`, and `super::` resolved against the file's module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom to top. A module may use modules of lower layers and its own submodules.
const LAYERS: &[&[&str]] = &[
    &[
        "units",
        "sysinfo",
        "challenges",
        "phases",
        "promql",
        "threads",
    ],
    &["metrics", "schedule", "chart", "feeder"],
    &["events", "template", "shift"],
    &["protos"],
    &["config"],
    &["pg"],
    &["drivers", "observe"],
    &["engine"],
    &["capacity", "history", "slo", "soak"],
    &["dashboard", "deploy"],
    &["server"],
    &["app"],
    &["demo"],
];

/// Files of the binary (`src/main.rs` and the modules it declares), not of the library.
const BINARY_ONLY: &[&str] = &["main", "alloc"];

/// Every module (as `a::b`) with its file's text, tests and comments removed.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, prefix: &[String], out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_stem().unwrap().to_string_lossy().to_string();
            if p.is_dir() {
                let mut pre = prefix.to_vec();
                pre.push(name);
                walk(&p, &pre, out);
            } else if p.extension().is_some_and(|x| x == "rs")
                && !BINARY_ONLY.contains(&name.as_str())
            {
                let mut path = prefix.to_vec();
                if name != "mod" && name != "lib" {
                    path.push(name);
                }
                out.insert(
                    path.join("::"),
                    code_of(&std::fs::read_to_string(&p).unwrap()),
                );
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &[],
        &mut out,
    );
    out
}

fn code_of(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The modules `m` names: the longest known prefix of each `crate::`/`super::` path,
/// leaving out `m`'s own ancestors (a file using its module's helpers is not a loop).
fn imports(m: &str, code: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let own: Vec<&str> = if m.is_empty() {
        vec![]
    } else {
        m.split("::").collect()
    };
    for (i, _) in code
        .match_indices("crate::")
        .chain(code.match_indices("super::"))
    {
        if i > 0 && code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
            continue; // `super::super::x` is read from its first `super`
        }
        let tail: String = code[i..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let mut segs: Vec<&str> = tail.split("::").filter(|s| !s.is_empty()).collect();
        let mut base: Vec<&str> = if segs[0] == "crate" {
            segs.remove(0);
            vec![]
        } else {
            // `super` in module a::b is a, whether it is a/b.rs or a/b/mod.rs.
            let mut b = own.clone();
            b.pop();
            segs.remove(0);
            while segs.first() == Some(&"super") {
                segs.remove(0);
                b.pop();
            }
            b
        };
        base.extend(segs);
        while !base.is_empty() && !known.contains(&base.join("::")) {
            base.pop();
        }
        let target = base.join("::");
        if !target.is_empty() && target != m && !m.starts_with(&format!("{target}::")) {
            out.insert(target);
        }
    }
    out
}

fn top(m: &str) -> &str {
    m.split("::").next().unwrap_or(m)
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mods = modules();
    let known: BTreeSet<String> = mods.keys().cloned().collect();
    mods.iter()
        .map(|(m, code)| (m.clone(), imports(m, code, &known)))
        .collect()
}

#[test]
fn no_module_imports_one_above_it() {
    let layer = |m: &str| LAYERS.iter().position(|l| l.contains(&top(m)));
    let mut wrong = Vec::new();
    for (m, deps) in graph() {
        if m.is_empty() {
            continue; // lib.rs declares them all
        }
        let Some(lm) = layer(&m) else {
            panic!("module {m} is in no layer: add it to LAYERS (and to docs/ARCHITECTURE.md)")
        };
        for d in deps {
            let ld = layer(&d).unwrap_or(usize::MAX);
            if top(&d) != top(&m) && ld >= lm {
                wrong.push(format!("{m} -> {d}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports at or above their own layer: {wrong:#?}"
    );
}

#[test]
fn no_two_modules_import_each_other_around_a_loop() {
    let g = graph();
    // Depth-first search for a back edge; report the loop.
    fn visit(
        m: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(m.to_string(), 1);
        stack.push(m.to_string());
        for d in g.get(m).into_iter().flatten() {
            match state.get(d.as_str()) {
                Some(1) => {
                    let from = stack.iter().position(|x| x == d).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(d.clone());
                    return Some(cycle);
                }
                Some(_) => {}
                None => {
                    if let Some(c) = visit(d, g, state, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        state.insert(m.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in g.keys() {
        if !state.contains_key(m) {
            let cycle = visit(m, &g, &mut state, &mut Vec::new());
            assert!(
                cycle.is_none(),
                "module cycle: {}",
                cycle.unwrap_or_default().join(" -> ")
            );
        }
    }
}

#[test]
fn the_reader_finds_imports_a_cycle_check_needs() {
    // The parser above is what the two tests stand on: check it on a known edge of each kind.
    let g = graph();
    assert!(
        g["engine::plan"].contains("drivers"),
        "{:?}",
        g["engine::plan"]
    );
    assert!(
        g["config::http"].contains("template"),
        "crate:: from a file"
    );
    assert!(
        g["capacity::report::svg"].contains("capacity::report::cells"),
        "super:: to a sibling"
    );
    assert!(
        g["capacity::report::sections"].contains("capacity::store"),
        "crate:: to a module's file"
    );
    // A module's own parent is not an edge (mod.rs dispatches to its files by name).
    assert!(!g["config::http"].contains("config"));
    assert!(
        !g["drivers::h1"].contains("drivers::http"),
        "h1 and http no longer import each other"
    );
}

/// Every path a file names through `crate::` or `super::`, resolved to segments from the
/// crate root, with `use` groups (`a::{b, c::{d}}`) expanded. `self` inside a group is
/// the group's own path.
fn paths(m: &str, code: &str) -> Vec<Vec<String>> {
    let own: Vec<&str> = if m.is_empty() {
        vec![]
    } else {
        m.split("::").collect()
    };
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    for (i, _) in code
        .match_indices("crate::")
        .chain(code.match_indices("super::"))
    {
        if i > 0 && code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        // The path up to a group or its end.
        let mut j = i;
        while j < bytes.len()
            && (bytes[j].is_ascii_alphanumeric() || bytes[j] == b'_' || bytes[j] == b':')
        {
            j += 1;
        }
        let head: Vec<&str> = code[i..j].split("::").filter(|s| !s.is_empty()).collect();
        let mut base: Vec<String> = if head[0] == "crate" {
            vec![]
        } else {
            let mut b: Vec<String> = own.iter().map(|s| s.to_string()).collect();
            b.pop();
            b
        };
        for seg in &head[1..] {
            if *seg == "super" {
                base.pop();
            } else {
                base.push(seg.to_string());
            }
        }
        if code[j..].starts_with('{') {
            group(&code[j..], &base, &mut out);
        } else {
            out.push(base);
        }
    }
    out
}

/// Expands the use group at the start of `text` (`{…}`) under `base`.
fn group(text: &str, base: &[String], out: &mut Vec<Vec<String>>) {
    let mut depth = 0;
    let mut item = String::new();
    let mut items = Vec::new();
    for c in text.chars() {
        match c {
            '{' => {
                depth += 1;
                if depth > 1 {
                    item.push(c);
                }
            }
            '}' => {
                depth -= 1;
                if depth == 0 {
                    items.push(std::mem::take(&mut item));
                    break;
                }
                item.push(c);
            }
            ',' if depth == 1 => items.push(std::mem::take(&mut item)),
            _ => item.push(c),
        }
    }
    for it in items {
        let it: String = it.split_whitespace().collect::<Vec<_>>().join(" ");
        let (path, rest) = match it.find('{') {
            Some(b) => (it[..b].trim_end_matches("::").to_string(), Some(&it[b..])),
            // `X as Y` names X.
            None => (
                it.split(" as ").next().unwrap_or("").trim().to_string(),
                None,
            ),
        };
        if path.is_empty() && rest.is_none() {
            continue;
        }
        let mut p: Vec<String> = base.to_vec();
        for seg in path.split("::").filter(|s| !s.is_empty()) {
            if seg != "self" {
                p.push(seg.to_string());
            }
        }
        match rest {
            Some(r) => group(r, &p, out),
            None => out.push(p),
        }
    }
}

/// Imports of items from an enclosing folder's mod.rs: a file in folder `a/` (at any
/// depth) naming `crate::a::Item` or `super::Item` where `Item` is not a module of `a`.
/// A mod.rs is the roof of its folder: it re-exports and orchestrates, and nothing below
/// it imports from it. Globs (`super::*`) count too: they hide which file a name is from.
fn imports_from_a_roof() -> Vec<String> {
    let mods = modules();
    let known: BTreeSet<String> = mods.keys().cloned().collect();
    let mut found = Vec::new();
    for (m, code) in &mods {
        let segs: Vec<&str> = m.split("::").collect();
        for p in paths(m, code) {
            // The longest module prefix of the path, and what follows it.
            let mut k = p.len();
            while k > 0 && !known.contains(&p[..k].join("::")) {
                k -= 1;
            }
            let module = p[..k].join("::");
            let enclosing = k > 0
                && k < segs.len()
                && segs[..k] == p[..k].iter().map(String::as_str).collect::<Vec<_>>()[..];
            if enclosing && (p.len() > k || p.is_empty()) {
                found.push(format!("{m} -> {module}::{}", p[k..].join("::")));
            }
        }
        if code.contains("super::*") {
            found.push(format!("{m} -> super::* (a glob)"));
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn no_file_imports_from_its_folders_mod_rs() {
    let found = imports_from_a_roof();
    assert!(
        found.is_empty(),
        "{} imports of items from an enclosing mod.rs; import them from the file that defines them (a mod.rs only re-exports):\n{}",
        found.len(),
        found.join("\n")
    );
}

#[test]
fn the_path_reader_expands_use_groups_and_resolves_super() {
    let got = paths(
        "a::b",
        "use super::{X, c::{self, Y as Z}};\nfn f() { crate::a::W::new(); super::super::q::R; }",
    );
    let want: Vec<Vec<String>> = ["a::X", "a::c", "a::c::Y", "a::W::new", "q::R"]
        .iter()
        .map(|p| p.split("::").map(String::from).collect())
        .collect();
    for w in &want {
        assert!(got.contains(w), "{w:?} not in {got:?}");
    }
    assert_eq!(got.len(), want.len(), "{got:?}");
}
