//! `${VAR}` and `${VAR:-default}` in string values, applied after parsing so that a
//! missing variable is reported with the key path that used it. `$${` writes a literal `${`.

use serde_json::Value;

/// Looks variables up; the process environment in production, a map in tests.
pub trait Env {
    fn get(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        std::collections::HashMap::get(self, name).cloned()
    }
}

/// Expands one string. Errors are messages without a path.
pub fn expand(s: &str, env: &dyn Env) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(lit) = after.strip_prefix("${") {
            out.push_str("${");
            rest = lit;
            continue;
        }
        let Some(body_start) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body_start.find('}') else {
            return Err(format!("unterminated \"${{\" in {s:?}"));
        };
        let body = &body_start[..end];
        let (name, default) = match body.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (body, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid variable name {name:?} in \"${{{body}}}\""));
        }
        match env.get(name).filter(|v| !(v.is_empty() && default.is_some())) {
            Some(v) => out.push_str(&v),
            None => match default {
                Some(d) => out.push_str(d),
                None => {
                    return Err(format!(
                        "environment variable {name} is not set (write ${{{name}:-default}} for a default)"
                    ))
                }
            },
        }
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Expands every string in `v`; errors come back as (path, message).
pub fn expand_value(v: &mut Value, path: &str, env: &dyn Env, errors: &mut Vec<(String, String)>) {
    match v {
        Value::String(s) if s.contains('$') => match expand(s, env) {
            Ok(new) => {
                // `max_in_flight: ${MAX}` should give a number, not the string "500".
                *v = match super::yaml::parse(&new) {
                    Ok(n @ (Value::Number(_) | Value::Bool(_))) => n,
                    _ => Value::String(new),
                };
            }
            Err(e) => errors.push((path.to_string(), e)),
        },
        Value::Array(seq) => {
            for (i, item) in seq.iter_mut().enumerate() {
                expand_value(item, &format!("{path}[{i}]"), env, errors);
            }
        }
        Value::Object(m) => {
            for (k, item) in m.iter_mut() {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                expand_value(item, &p, env, errors);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env() -> HashMap<String, String> {
        HashMap::from([
            ("TOKEN".to_string(), "s3cret".to_string()),
            ("EMPTY".to_string(), String::new()),
        ])
    }

    #[test]
    fn expands_and_defaults() {
        let e = env();
        assert_eq!(expand("Bearer ${TOKEN}", &e).unwrap(), "Bearer s3cret");
        assert_eq!(expand("${NOPE:-x}", &e).unwrap(), "x");
        assert_eq!(expand("${EMPTY:-d}", &e).unwrap(), "d");
        assert_eq!(expand("${EMPTY}", &e).unwrap(), "");
        assert_eq!(expand("cost $5 $${LIT}", &e).unwrap(), "cost $5 ${LIT}");
        assert!(expand("${NOPE}", &e)
            .unwrap_err()
            .contains("NOPE is not set"));
        assert!(expand("${TOKEN", &e).is_err());
        assert!(expand("${BAD NAME}", &e).is_err());
    }

    #[test]
    fn numbers_stay_numbers() {
        let e = HashMap::from([("MAX".to_string(), "500".to_string())]);
        let mut v: Value = super::super::yaml::parse("a: ${MAX}\nb: x${MISSING}").unwrap();
        let mut errs = vec![];
        expand_value(&mut v, "", &e, &mut errs);
        assert_eq!(v["a"], Value::from(500));
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].0, "b");
    }
}
