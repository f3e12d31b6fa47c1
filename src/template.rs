//! The small template language used in request paths, headers, bodies and (later) SQL
//! parameters and gRPC fields.
//!
//! `{{user.id}}` reads a field of the fixture row chosen for this iteration (or of a value
//! an earlier step extracted); `{{rand_int 0 1000}}`, `{{uuid}}`, `{{seq}}` (the iteration's
//! sequence number, the same everywhere in one iteration), `{{now_ms}}` and
//! `{{rand_choice a b c}}` are generators. `{{trace.id}}` (and `{{trace.sampled}}`) is the
//! iteration's trace when its target has `trace: on`. Templates compile when the config loads, so an
//! unknown function or a malformed expression is a config error with its key path.

use rand::Rng;
use serde::{de, Deserialize, Deserializer};
use serde_json::Value as Json;
use std::fmt::Write as _;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Var(Vec<String>),
    RandInt(i64, i64),
    RandChoice(Vec<String>),
    Uuid,
    Seq,
    NowMs,
}

/// A compiled string template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    src: String,
    parts: Vec<Part>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RenderError {
    #[error("template variable {0} is not available in this iteration")]
    Missing(String),
}

/// What a template can read while it renders: one iteration's fixture rows, extracted
/// values and sequence number.
pub trait Vars {
    /// The value at `path` (`["user", "id"]`), or None. Borrowed: rendering copies only
    /// the text it writes.
    fn lookup(&mut self, path: &[String]) -> Option<&Json>;
    fn seq(&self) -> u64;
}

impl Template {
    pub fn compile(src: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = src;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Lit(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unterminated \"{{{{\" in template {src:?}"))?;
            parts.push(compile_expr(after[..end].trim())?);
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Ok(Template {
            src: src.to_string(),
            parts,
        })
    }

    pub fn source(&self) -> &str {
        &self.src
    }

    /// True when the template has no expressions.
    pub fn is_static(&self) -> bool {
        self.parts.iter().all(|p| matches!(p, Part::Lit(_)))
    }

    /// The first segment of every variable it reads (`user` for `{{user.id}}`).
    pub fn roots(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(path) => path.first().map(String::as_str),
            _ => None,
        })
    }

    pub fn render(&self, vars: &mut dyn Vars) -> Result<String, RenderError> {
        let mut out = String::new();
        self.render_into(vars, &mut out)?;
        Ok(out)
    }

    pub fn render_into(&self, vars: &mut dyn Vars, out: &mut String) -> Result<(), RenderError> {
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Var(path) => match vars.lookup(path) {
                    Some(Json::String(s)) => out.push_str(s),
                    Some(Json::Null) | None => return Err(RenderError::Missing(path.join("."))),
                    Some(v) => {
                        let _ = write!(out, "{v}");
                    }
                },
                other => {
                    let v = eval_generator(other, vars);
                    match v {
                        Json::String(s) => out.push_str(&s),
                        v => {
                            let _ = write!(out, "{v}");
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Renders to a JSON value: a template that is exactly one expression keeps the
    /// expression's type (`{{rand_int 1 9}}` gives a number); anything else is a string.
    pub fn render_json(&self, vars: &mut dyn Vars) -> Result<Json, RenderError> {
        if let [single] = self.parts.as_slice() {
            match single {
                Part::Lit(s) => return Ok(Json::String(s.clone())),
                Part::Var(path) => {
                    return vars
                        .lookup(path)
                        .cloned()
                        .ok_or_else(|| RenderError::Missing(path.join(".")))
                }
                g => return Ok(eval_generator(g, vars)),
            }
        }
        self.render(vars).map(Json::String)
    }

    /// What the template renders when it reads no variables — literals and generators
    /// only (`{{seq}}`, `{{uuid}}`, `{{rand_int 1 9}}`) — so its type is known before a
    /// run; None when it reads fixture rows or extracted values.
    pub fn sample(&self) -> Option<Json> {
        struct NoVars;
        impl Vars for NoVars {
            fn lookup(&mut self, _: &[String]) -> Option<&Json> {
                None
            }
            fn seq(&self) -> u64 {
                1
            }
        }
        if self.parts.iter().any(|p| matches!(p, Part::Var(_))) {
            return None;
        }
        self.render_json(&mut NoVars).ok()
    }
}

fn eval_generator(p: &Part, vars: &mut dyn Vars) -> Json {
    match p {
        Part::RandInt(lo, hi) => Json::from(rand::rng().random_range(*lo..=*hi)),
        Part::RandChoice(items) => {
            let i = rand::rng().random_range(0..items.len());
            Json::String(items[i].clone())
        }
        Part::Uuid => Json::String(uuid::Uuid::new_v4().to_string()),
        Part::Seq => Json::from(vars.seq()),
        Part::NowMs => Json::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        ),
        Part::Lit(_) | Part::Var(_) => Json::Null,
    }
}

fn compile_expr(expr: &str) -> Result<Part, String> {
    let words: Vec<&str> = expr.split_whitespace().collect();
    let Some((&head, args)) = words.split_first() else {
        return Err("empty expression \"{{}}\"".into());
    };
    let nargs = |n: usize| -> Result<(), String> {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!("{head} takes {n} argument(s), got {}", args.len()))
        }
    };
    match head {
        "rand_int" => {
            nargs(2)?;
            let lo: i64 = args[0]
                .parse()
                .map_err(|_| format!("rand_int: {:?} is not an integer", args[0]))?;
            let hi: i64 = args[1]
                .parse()
                .map_err(|_| format!("rand_int: {:?} is not an integer", args[1]))?;
            if lo > hi {
                return Err(format!("rand_int: {lo} is greater than {hi}"));
            }
            Ok(Part::RandInt(lo, hi))
        }
        "rand_choice" => {
            if args.is_empty() {
                return Err("rand_choice needs at least one choice".into());
            }
            Ok(Part::RandChoice(
                args.iter().map(|s| s.to_string()).collect(),
            ))
        }
        "uuid" => nargs(0).map(|_| Part::Uuid),
        "seq" => nargs(0).map(|_| Part::Seq),
        "now_ms" => nargs(0).map(|_| Part::NowMs),
        _ if args.is_empty() => {
            let path: Vec<String> = head.split('.').map(str::to_string).collect();
            let ok = path.iter().all(|seg| {
                !seg.is_empty()
                    && seg
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
            if !ok {
                return Err(format!("{head:?} is not a variable like user.id"));
            }
            Ok(Part::Var(path))
        }
        _ => Err(format!(
            "unknown function {head:?} (known: rand_int, rand_choice, uuid, seq, now_ms)"
        )),
    }
}

impl<'de> Deserialize<'de> for Template {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Json::deserialize(d)?;
        let s = match v {
            Json::String(s) => s,
            Json::Number(n) => n.to_string(),
            Json::Bool(b) => b.to_string(),
            _ => return Err(de::Error::custom("expected a string template")),
        };
        Template::compile(&s).map_err(de::Error::custom)
    }
}

/// A JSON document whose string leaves are templates.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonTemplate {
    Value(Json),
    Str(Template),
    Array(Vec<JsonTemplate>),
    Object(Vec<(String, JsonTemplate)>),
}

impl JsonTemplate {
    /// A template from a config value: string leaves are templates, the rest literals.
    pub fn from_value(v: &Json) -> Result<JsonTemplate, String> {
        Ok(match v {
            Json::String(s) => {
                let t = Template::compile(s)?;
                if t.is_static() {
                    JsonTemplate::Value(Json::String(s.clone()))
                } else {
                    JsonTemplate::Str(t)
                }
            }
            Json::Array(items) => JsonTemplate::Array(
                items
                    .iter()
                    .map(JsonTemplate::from_value)
                    .collect::<Result<_, _>>()?,
            ),
            Json::Object(m) => JsonTemplate::Object(
                m.iter()
                    .map(|(k, v)| Ok((k.clone(), JsonTemplate::from_value(v)?)))
                    .collect::<Result<_, String>>()?,
            ),
            other => JsonTemplate::Value(other.clone()),
        })
    }

    pub fn roots(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_roots(&mut out);
        out
    }

    /// The value this renders when its type is known before a run (see
    /// [`Template::sample`]); None when any part reads variables.
    pub fn sample(&self) -> Option<Json> {
        Some(match self {
            JsonTemplate::Value(v) => v.clone(),
            JsonTemplate::Str(t) => t.sample()?,
            JsonTemplate::Array(a) => {
                Json::Array(a.iter().map(|t| t.sample()).collect::<Option<_>>()?)
            }
            JsonTemplate::Object(o) => Json::Object(
                o.iter()
                    .map(|(k, t)| t.sample().map(|v| (k.clone(), v)))
                    .collect::<Option<_>>()?,
            ),
        })
    }

    fn collect_roots<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            JsonTemplate::Value(_) => {}
            JsonTemplate::Str(t) => out.extend(t.roots()),
            JsonTemplate::Array(a) => a.iter().for_each(|t| t.collect_roots(out)),
            JsonTemplate::Object(o) => o.iter().for_each(|(_, t)| t.collect_roots(out)),
        }
    }

    pub fn render(&self, vars: &mut dyn Vars) -> Result<Json, RenderError> {
        Ok(match self {
            JsonTemplate::Value(v) => v.clone(),
            JsonTemplate::Str(t) => t.render_json(vars)?,
            JsonTemplate::Array(a) => {
                Json::Array(a.iter().map(|t| t.render(vars)).collect::<Result<_, _>>()?)
            }
            JsonTemplate::Object(o) => {
                let mut m = serde_json::Map::with_capacity(o.len());
                for (k, t) in o {
                    m.insert(k.clone(), t.render(vars)?);
                }
                Json::Object(m)
            }
        })
    }
}

impl<'de> Deserialize<'de> for JsonTemplate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Json::deserialize(d)?;
        JsonTemplate::from_value(&v).map_err(de::Error::custom)
    }
}

/// A named table of rows (users, tokens, ids) loaded from a JSON array.
#[derive(Debug, Clone, PartialEq)]
pub struct Fixture {
    pub name: String,
    pub rows: Arc<Vec<Json>>,
    pub sequential: bool,
}

impl Fixture {
    /// Estimated heap bytes of its rows.
    pub fn memory_bytes(&self) -> u64 {
        self.rows
            .iter()
            .map(crate::metrics::memory::json_bytes)
            .sum()
    }
}

/// The variables of one iteration: the fixture rows it drew (each drawn once, on first
/// use) and the values its steps extracted.
pub struct IterVars<'a> {
    fixtures: &'a [Fixture],
    drawn: Vec<Option<usize>>,
    bound: Vec<(String, Json)>,
    seq: u64,
    trace: Option<TraceContext>,
    /// `{{trace.*}}` as JSON, built on the first template that asks.
    trace_json: Option<Json>,
    /// What the iteration's HTTP requests spent their time on (the drivers add to it).
    pub phases: crate::phases::Phases,
}

/// An iteration's W3C trace context (targets with `trace: on`): one trace id for every
/// request the iteration makes, and whether the trace is marked sampled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: u128,
    pub sampled: bool,
}

impl TraceContext {
    /// A new random trace, marked sampled with probability `sampled`.
    pub fn random(sampled: f64) -> TraceContext {
        let mut rng = rand::rng();
        TraceContext {
            // All zeros is the W3C spec's invalid id.
            trace_id: rng.random::<u128>().max(1),
            sampled: rng.random::<f64>() < sampled,
        }
    }

    /// A `traceparent` header value for one request of the trace, with a new span id:
    /// `00-<32 hex trace id>-<16 hex span id>-<01 sampled | 00>`.
    pub fn traceparent(&self) -> [u8; 55] {
        let span = rand::rng().random::<u64>().max(1);
        let mut out = [0u8; 55];
        out[..3].copy_from_slice(b"00-");
        hex_into(&mut out[3..35], self.trace_id);
        out[35] = b'-';
        hex_into(&mut out[36..52], span as u128);
        out[52..].copy_from_slice(if self.sampled { b"-01" } else { b"-00" });
        out
    }

    /// The trace id as 32 lowercase hex digits (how tracing backends show it).
    pub fn id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

/// `v`'s low `out.len()` hex digits into `out`, most significant first.
fn hex_into(out: &mut [u8], mut v: u128) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
}

impl<'a> IterVars<'a> {
    pub fn new(fixtures: &'a [Fixture], seq: u64) -> Self {
        IterVars {
            fixtures,
            drawn: vec![None; fixtures.len()],
            bound: Vec::new(),
            seq,
            trace: None,
            trace_json: None,
            phases: crate::phases::Phases::default(),
        }
    }

    /// The iteration's trace context (its target has `trace: on`).
    pub fn with_trace(mut self, trace: Option<TraceContext>) -> Self {
        self.trace = trace;
        self
    }

    pub fn trace(&self) -> Option<TraceContext> {
        self.trace
    }

    pub fn bind(&mut self, name: &str, value: Json) {
        match self.bound.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.bound.push((name.to_string(), value)),
        }
    }

    /// Binds `write`: an object of every value bound so far (a write's extractions,
    /// its first row or its response's fields), for a visibility poll's templates.
    pub fn bind_write(&mut self) {
        let obj: serde_json::Map<String, Json> = self
            .bound
            .iter()
            .filter(|(n, _)| n != "write")
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        self.bind("write", Json::Object(obj));
    }
}

impl Vars for IterVars<'_> {
    fn lookup(&mut self, path: &[String]) -> Option<&Json> {
        let (root, rest) = path.split_first()?;
        let base: &Json = if let Some((_, v)) = self.bound.iter().find(|(n, _)| n == root) {
            v
        } else if root == "trace" && self.trace.is_some() {
            let t = self.trace?;
            self.trace_json
                .get_or_insert_with(|| serde_json::json!({"id": t.id_hex(), "sampled": t.sampled}))
        } else {
            let fi = self.fixtures.iter().position(|f| &f.name == root)?;
            let f = &self.fixtures[fi];
            if f.rows.is_empty() {
                return None;
            }
            let row = *self.drawn[fi].get_or_insert_with(|| {
                if f.sequential {
                    (self.seq % f.rows.len() as u64) as usize
                } else {
                    rand::rng().random_range(0..f.rows.len())
                }
            });
            &f.rows[row]
        };
        let mut cur = base;
        for seg in rest {
            cur = match cur {
                Json::Object(m) => m.get(seg)?,
                Json::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(cur)
    }

    fn seq(&self) -> u64 {
        self.seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn users() -> Vec<Fixture> {
        vec![Fixture {
            name: "user".into(),
            rows: Arc::new(vec![
                json!({"id": "user-000001", "token": "t1", "n": 7}),
                json!({"id": "user-000002", "token": "t2", "n": 8}),
            ]),
            sequential: true,
        }]
    }

    #[test]
    fn renders_fixture_fields_consistently() {
        let fx = users();
        let mut vars = IterVars::new(&fx, 1);
        let t = Template::compile("/u/{{user.id}}?t={{ user.token }}&n={{user.n}}").unwrap();
        assert_eq!(t.render(&mut vars).unwrap(), "/u/user-000002?t=t2&n=8");
        // The same row for the whole iteration.
        let t2 = Template::compile("{{user.id}}").unwrap();
        assert_eq!(t2.render(&mut vars).unwrap(), "user-000002");
    }

    #[test]
    fn generators() {
        let fx = users();
        let mut vars = IterVars::new(&fx, 42);
        let t = Template::compile("{{rand_int 5 7}}").unwrap();
        for _ in 0..100 {
            let n: i64 = t.render(&mut vars).unwrap().parse().unwrap();
            assert!((5..=7).contains(&n));
        }
        assert_eq!(
            Template::compile("{{seq}}-{{seq}}")
                .unwrap()
                .render(&mut vars)
                .unwrap(),
            "42-42"
        );
        let u = Template::compile("{{uuid}}")
            .unwrap()
            .render(&mut vars)
            .unwrap();
        assert!(uuid::Uuid::parse_str(&u).is_ok());
        let c = Template::compile("{{rand_choice a b}}")
            .unwrap()
            .render(&mut vars)
            .unwrap();
        assert!(c == "a" || c == "b");
    }

    #[test]
    fn compile_errors() {
        assert!(Template::compile("{{nope 1}}")
            .unwrap_err()
            .contains("unknown function"));
        assert!(Template::compile("{{rand_int 9 1}}").is_err());
        assert!(Template::compile("{{rand_int 1}}").is_err());
        assert!(Template::compile("{{user.id").is_err());
        assert!(Template::compile("{{}}").is_err());
        assert!(Template::compile("{{a..b}}").is_err());
    }

    #[test]
    fn missing_and_bound_values() {
        let fx = users();
        let mut vars = IterVars::new(&fx, 0);
        let t = Template::compile("{{goal.id}}").unwrap();
        assert_eq!(
            t.render(&mut vars),
            Err(RenderError::Missing("goal.id".into()))
        );
        vars.bind("goal", json!({"id": "g-3"}));
        assert_eq!(t.render(&mut vars).unwrap(), "g-3");
    }

    #[test]
    fn json_bodies_keep_types() {
        let fx = users();
        let mut vars = IterVars::new(&fx, 3);
        let y = crate::config::yaml::parse(
            "user: '{{user.id}}'\nvalue: '{{rand_int 10 10}}'\nlabel: 'n={{seq}}'\nfixed: [1, true]",
        )
        .unwrap();
        let jt = JsonTemplate::from_value(&y).unwrap();
        assert_eq!(jt.roots(), vec!["user"]);
        let v = jt.render(&mut vars).unwrap();
        assert_eq!(
            v,
            json!({"user": "user-000002", "value": 10, "label": "n=3", "fixed": [1, true]})
        );
    }

    #[test]
    fn traceparent_is_w3c_and_shares_the_iteration_trace() {
        let t = TraceContext {
            trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
            sampled: true,
        };
        let a = t.traceparent();
        let b = t.traceparent();
        let a = std::str::from_utf8(&a).unwrap();
        let b = std::str::from_utf8(&b).unwrap();
        assert!(a.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{a}");
        assert!(a.ends_with("-01"), "{a}");
        assert_eq!(&a[..36], &b[..36], "one trace");
        assert_ne!(&a[36..52], &b[36..52], "a span per request");
        assert!(a[36..52]
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        let unsampled = TraceContext {
            sampled: false,
            ..t
        }
        .traceparent();
        assert!(unsampled.ends_with(b"-00"));
        assert_eq!(
            format!("{:032x}", 1u128),
            TraceContext {
                trace_id: 1,
                sampled: false
            }
            .id_hex()
        );
        // About the asked fraction is sampled.
        let n = (0..10_000)
            .filter(|_| TraceContext::random(0.25).sampled)
            .count();
        assert!((2_200..2_800).contains(&n), "{n}");
        assert!((0..1000).all(|_| TraceContext::random(1.0).sampled));
        assert!((0..1000).all(|_| !TraceContext::random(0.0).sampled));
    }

    #[test]
    fn trace_id_renders_in_templates_only_with_a_trace() {
        let t = Template::compile("id={{trace.id}} s={{trace.sampled}}").unwrap();
        let fixtures = users();
        let mut v = IterVars::new(&fixtures, 0).with_trace(Some(TraceContext {
            trace_id: 0xab,
            sampled: true,
        }));
        assert_eq!(
            t.render(&mut v).unwrap(),
            format!("id={:032x} s=true", 0xab)
        );
        let mut none = IterVars::new(&fixtures, 0);
        assert!(t.render(&mut none).is_err());
    }
}
