//! Extraction: the values an HTTP step binds from a JSON response body, by a JSON
//! pointer with `*` wildcards, filtered by `where` and picked first or at random.

use crate::config::{Extract, Pick};
use rand::Rng;
use serde_json::Value as Json;

/// Applies one extract rule: the bound values (one per wildcard, or the pointed value),
/// or None when nothing matched.
pub fn extract(doc: &Json, ex: &Extract) -> Option<Vec<Json>> {
    let segs: Vec<String> = if ex.from.is_empty() {
        vec![]
    } else {
        ex.from[1..]
            .split('/')
            .map(|s| s.replace("~1", "/").replace("~0", "~"))
            .collect()
    };
    let mut matches: Vec<Vec<&Json>> = Vec::new();
    walk(doc, &segs, &mut Vec::new(), &mut matches);
    // `where` applies to the last bound element (the value itself without wildcards).
    let keep = |m: &Vec<&Json>| -> bool {
        match m.last() {
            Some(v) => ex
                .filter
                .iter()
                .all(|(k, want)| v.get(k).unwrap_or(&Json::Null) == want),
            None => false,
        }
    };
    let candidates: Vec<&Vec<&Json>> = matches.iter().filter(|m| keep(m)).collect();
    if candidates.is_empty() {
        return None;
    }
    let chosen = match ex.pick {
        Pick::First => candidates[0],
        Pick::Random => candidates[rand::rng().random_range(0..candidates.len())],
    };
    Some(chosen.iter().map(|v| (*v).clone()).collect())
}

/// Collects, for every way the path matches, the elements bound by each wildcard (or,
/// with no wildcard, the value at the end).
fn walk<'a>(
    cur: &'a Json,
    segs: &[String],
    bound: &mut Vec<&'a Json>,
    out: &mut Vec<Vec<&'a Json>>,
) {
    let Some((head, rest)) = segs.split_first() else {
        if bound.is_empty() {
            out.push(vec![cur]);
        } else {
            out.push(bound.clone());
        }
        return;
    };
    if head == "*" {
        let children: Box<dyn Iterator<Item = &Json>> = match cur {
            Json::Array(a) => Box::new(a.iter()),
            Json::Object(o) => Box::new(o.values()),
            _ => return,
        };
        for c in children {
            bound.push(c);
            walk(c, rest, bound, out);
            bound.pop();
        }
    } else {
        let next = match cur {
            Json::Object(o) => o.get(head.as_str()),
            Json::Array(a) => head.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        };
        if let Some(n) = next {
            walk(n, rest, bound, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OnEmpty;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn ex(from: &str, bind: &[&str], filter: &[(&str, Json)]) -> Extract {
        Extract {
            from: from.into(),
            bind: bind.iter().map(|s| s.to_string()).collect(),
            filter: filter
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
            pick: Pick::First,
            on_empty: OnEmpty::Skip,
        }
    }

    #[test]
    fn extracts_nested_matches_with_parents() {
        let doc = json!({"challenges": [
            {"id": "c1", "goals": [{"id": "g1", "status": "in_progress"}]},
            {"id": "c2", "goals": [
                {"id": "g2", "status": "completed", "claimed_at": "2025-01-01"},
                {"id": "g3", "status": "completed", "claimed_at": null}
            ]}
        ]});
        let e = ex(
            "/challenges/*/goals/*",
            &["challenge", "goal"],
            &[("status", json!("completed")), ("claimed_at", Json::Null)],
        );
        let got = extract(&doc, &e).unwrap();
        assert_eq!(got[0]["id"], "c2");
        assert_eq!(got[1]["id"], "g3");
        // No wildcard: the pointed value.
        let got = extract(&doc, &ex("/challenges/0/id", &["cid"], &[])).unwrap();
        assert_eq!(got, vec![json!("c1")]);
        // Nothing matches.
        assert!(extract(
            &doc,
            &ex(
                "/challenges/*/goals/*",
                &["c", "g"],
                &[("status", json!("x"))]
            )
        )
        .is_none());
        assert!(extract(&doc, &ex("/nope", &["x"], &[])).is_none());
    }
}
