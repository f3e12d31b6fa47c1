//! `type: postgres` targets, SQL and event ops, the buffered writer's settings and the
//! statistics collector's — their schema next to their validation.

use crate::config::check::{check_roots, resolve};
use crate::config::errors::Errs;
use crate::template::{Fixture, Template};
use crate::units::Dur;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// `targets.<name>` with `type: postgres`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresTarget {
    /// `postgres://user:password@host:port/db?...` (use `${DATABASE_URL}`).
    pub url: String,
    /// Pool size (the seed's service uses 50).
    #[serde(default = "default_pg_max")]
    pub max_connections: u32,
    #[serde(default)]
    pub min_connections: u32,
    /// How long an operation waits for a pooled connection before `pool_timeout`.
    #[serde(default)]
    pub acquire_timeout: Option<Dur>,
    /// Idle connections above `min_connections` close after this.
    #[serde(default)]
    pub idle_timeout: Option<Dur>,
    /// Connections are replaced after this.
    #[serde(default)]
    pub max_lifetime: Option<Dur>,
    /// Prepared statements cached per connection (0 disables).
    #[serde(default)]
    pub statement_cache: Option<usize>,
    /// Overrides the URL's sslmode: disable, allow, prefer, require, verify-ca, verify-full.
    #[serde(default)]
    pub sslmode: Option<SslMode>,
    /// Create the seed's `user_goal_progress` table and indexes (sqlx migrations).
    #[serde(default)]
    pub bootstrap: bool,
    /// The statistics collector (postgres_exporter-compatible series).
    #[serde(default)]
    pub stats: PgStatsConfig,
}

pub(super) fn default_pg_max() -> u32 {
    10
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PgStatsConfig {
    pub enabled: bool,
    /// How often the collector queries the statistics views.
    pub interval: Dur,
    /// Per-query timeout of the collector's own connection.
    pub query_timeout: Dur,
    /// How many statements of pg_stat_statements to export, by total time.
    pub top_statements: usize,
    /// Tables exported from pg_stat_user_tables, by size of activity.
    pub max_tables: usize,
}

impl Default for PgStatsConfig {
    fn default() -> Self {
        PgStatsConfig {
            enabled: true,
            interval: Dur(Duration::from_secs(5)),
            query_timeout: Dur(Duration::from_secs(3)),
            top_statements: 20,
            max_tables: 50,
        }
    }
}

/// Replaces the password of a URL (`scheme://user:pass@host`) with `***`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..auth_end];
    match authority.rfind('@') {
        Some(at) if authority[..at].contains(':') => {
            let userinfo = &authority[..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!(
                "{}://{user}:***@{}{}",
                &url[..scheme_end],
                &authority[at + 1..],
                &rest[auth_end..]
            )
        }
        _ => url.to_string(),
    }
}

/// `sql:` — a statement with `$1, $2, ...` parameters.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlOp {
    pub query: String,
    /// One per `$n`: a template (bound as text) or `{value: template, type: T}` with
    /// T one of text, int4, int8, float8, bool, uuid, jsonb.
    #[serde(default)]
    pub params: Vec<SqlParam>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SqlParam {
    pub value: Template,
    pub ty: SqlType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SqlType {
    #[default]
    Text,
    Int4,
    Int8,
    Float8,
    Bool,
    Uuid,
    Jsonb,
}

impl<'de> Deserialize<'de> for SqlParam {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Typed {
            value: Template,
            #[serde(rename = "type", default)]
            ty: SqlType,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Plain(Template),
            Typed(Typed),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "expected a template string or {value: template, type: text|int4|int8|float8|bool|uuid|jsonb}",
            )
        })? {
            Raw::Plain(value) => Ok(SqlParam {
                value,
                ty: SqlType::Text,
            }),
            Raw::Typed(t) => Ok(SqlParam {
                value: t.value,
                ty: t.ty,
            }),
        }
    }
}

/// `event:` — a stat update for the buffered writer (the seed's statItemUpdated).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventOp {
    pub user: Template,
    pub stat_code: Template,
    /// The stat's latest value (an integer).
    pub value: Template,
    #[serde(default)]
    pub namespace: Option<Template>,
}

/// `buffer:` on a scenario with event ops: the seed's buffered writer.
#[derive(Debug, Clone, PartialEq)]
pub struct BufferConfig {
    /// Most entries (distinct user x goal rows) held; beyond it events are dropped.
    pub size_limit: usize,
    pub flush_interval: Duration,
    /// A flush starts early when this many entries wait, and writes at most this many.
    pub max_batch: usize,
    /// Concurrent UPSERT statements one flush is split into (rows partitioned by user).
    pub flush_connections: usize,
    pub namespace: String,
    pub challenges: Arc<crate::challenges::ChallengeIndex>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBuffer {
    #[serde(default)]
    size_limit: Option<usize>,
    #[serde(default)]
    flush_interval: Option<Dur>,
    #[serde(default)]
    max_batch: Option<usize>,
    #[serde(default)]
    flush_connections: Option<usize>,
    #[serde(default)]
    namespace: Option<String>,
    /// Challenge definitions (JSON) relative to the config; default: the seed's.
    #[serde(default)]
    challenges: Option<String>,
}

pub(super) fn build_buffer(
    v: &Value,
    path: &str,
    base_dir: &Path,
    errs: &mut Errs,
) -> Option<BufferConfig> {
    let v = if v.is_null() {
        Value::Object(Map::new())
    } else {
        v.clone()
    };
    let raw = errs.decode::<RawBuffer>(&v, path)?;
    let size_limit = raw.size_limit.unwrap_or(100_000);
    let max_batch = raw.max_batch.unwrap_or(10_000);
    let flush_interval = raw
        .flush_interval
        .map(|d| d.0)
        .unwrap_or(Duration::from_secs(1));
    if size_limit == 0 || size_limit > 100_000_000 {
        errs.push(
            format!("{path}.size_limit"),
            "must be between 1 and 100000000",
        );
    }
    if max_batch == 0 || max_batch > 1_000_000 {
        errs.push(format!("{path}.max_batch"), "must be between 1 and 1000000");
    }
    let flush_connections = raw.flush_connections.unwrap_or(1);
    if flush_connections == 0 || flush_connections > 64 {
        errs.push(
            format!("{path}.flush_connections"),
            "must be between 1 and 64",
        );
    }
    if flush_interval < Duration::from_millis(10) {
        errs.push(format!("{path}.flush_interval"), "must be at least 10ms");
    }
    let index = match &raw.challenges {
        None => crate::challenges::ChallengeIndex::embedded().map_err(|e| e.to_string()),
        Some(f) => {
            let file = resolve(base_dir, f);
            std::fs::read_to_string(&file)
                .map_err(|e| format!("{}: {e}", file.display()))
                .and_then(|t| {
                    crate::challenges::ChallengeIndex::parse(&t)
                        .map_err(|e| format!("{}: {e}", file.display()))
                })
        }
    };
    let challenges = match index {
        Ok(i) => Arc::new(i),
        Err(e) => {
            errs.push(format!("{path}.challenges"), e);
            return None;
        }
    };
    Some(BufferConfig {
        size_limit,
        flush_interval,
        max_batch,
        flush_connections,
        namespace: raw.namespace.unwrap_or_else(|| "test".to_string()),
        challenges,
    })
}

/// The highest `$n` placeholder in a query (0 when none), skipping quoted text.
pub(super) fn highest_placeholder(q: &str) -> usize {
    let b = q.as_bytes();
    let (mut i, mut max, mut quote) = (0, 0, None::<u8>);
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(qc) if c == qc => quote = None,
            Some(_) => {}
            None if c == b'\'' || c == b'"' => quote = Some(c),
            None if c == b'$' => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                if j > start {
                    max = max.max(q[start..j].parse().unwrap_or(0));
                    i = j;
                    continue;
                }
            }
            None => {}
        }
        i += 1;
    }
    max
}

/// Checks a `type: postgres` target: its URL, pool bounds and statistics settings.
pub(super) fn check_target(p: &PostgresTarget, path: &str, errs: &mut Errs) {
    if !(p.url.starts_with("postgres://") || p.url.starts_with("postgresql://")) {
        errs.push(format!("{path}.url"), "expected a postgres:// URL");
    }
    if p.max_connections == 0 || p.max_connections > 10_000 {
        errs.push(
            format!("{path}.max_connections"),
            "must be between 1 and 10000",
        );
    }
    if p.min_connections > p.max_connections {
        errs.push(
            format!("{path}.min_connections"),
            "must not exceed max_connections",
        );
    }
    if p.stats.interval.0 < Duration::from_millis(100) {
        errs.push(format!("{path}.stats.interval"), "must be at least 100ms");
    }
    if p.stats.top_statements > 1000 || p.stats.max_tables > 10_000 {
        errs.push(
            format!("{path}.stats"),
            "top_statements is capped at 1000 and max_tables at 10000",
        );
    }
}

/// Only one postgres target may export statistics: the pg_* series would collide.
pub(super) fn check_one_stats_target<'a>(
    targets: impl Iterator<Item = (&'a str, &'a PostgresTarget)>,
    errs: &mut Errs,
) {
    let with_stats: Vec<&str> = targets
        .filter(|(_, p)| p.stats.enabled)
        .map(|(name, _)| name)
        .collect();
    if with_stats.len() > 1 {
        errs.push(
            format!("targets.{}.stats", with_stats[1]),
            format!(
                "only one postgres target may export statistics (pg_* series would collide); set `stats: {{enabled: false}}` on all but one of: {}",
                with_stats.join(", ")
            ),
        );
    }
}

/// Checks a SQL op: a query, and exactly as many params as its highest `$n`.
pub(super) fn check_sql(sql: &SqlOp, path: &str, fixtures: &[Fixture], errs: &mut Errs) {
    check_statement(sql, &format!("{path}.sql"), fixtures, &HashSet::new(), errs);
}

/// Checks a statement at `sp`: not empty, one param per placeholder, and templates that
/// read only fixtures and the `bound` names.
pub(super) fn check_statement(
    sql: &SqlOp,
    sp: &str,
    fixtures: &[Fixture],
    bound: &HashSet<String>,
    errs: &mut Errs,
) {
    if sql.query.trim().is_empty() {
        errs.push(format!("{sp}.query"), "must not be empty");
    }
    let highest = highest_placeholder(&sql.query);
    if highest != sql.params.len() {
        errs.push(
            format!("{sp}.params"),
            format!(
                "the query uses ${highest} as its highest placeholder, but {} param(s) are given",
                sql.params.len()
            ),
        );
    }
    let roots: Vec<&str> = sql.params.iter().flat_map(|p| p.value.roots()).collect();
    check_roots(&roots, fixtures, bound, sp, errs);
}

/// Checks an event op's templates.
pub(super) fn check_event(ev: &EventOp, path: &str, fixtures: &[Fixture], errs: &mut Errs) {
    let ep = format!("{path}.event");
    let mut roots: Vec<&str> = ev.user.roots().collect();
    roots.extend(ev.stat_code.roots());
    roots.extend(ev.value.roots());
    roots.extend(ev.namespace.iter().flat_map(|t| t.roots()));
    check_roots(&roots, fixtures, &HashSet::new(), &ep, errs);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_placeholder_skips_quoted_text() {
        assert_eq!(highest_placeholder("SELECT $1, $12, '$99', \"$7\""), 12);
        assert_eq!(highest_placeholder("SELECT 1"), 0);
        assert_eq!(highest_placeholder("SELECT $ 1, $2"), 2);
    }

    #[test]
    fn urls_lose_their_password_when_shown() {
        assert_eq!(
            redact_url("postgres://u:pw@127.0.0.1:5432/app"),
            "postgres://u:***@127.0.0.1:5432/app"
        );
        assert_eq!(
            redact_url("postgres://127.0.0.1/app"),
            "postgres://127.0.0.1/app"
        );
    }
}
