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
    &["units", "sysinfo", "challenges", "phases", "promql"],
    &["metrics", "schedule"],
    &["events", "template"],
    &["protos"],
    &["config"],
    &["pg"],
    &["drivers"],
    &["engine"],
    &["capacity", "history", "slo"],
    &["dashboard"],
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
    assert!(g["engine"].contains("drivers"), "{:?}", g["engine"]);
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
