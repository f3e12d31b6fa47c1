//! The three expositions of one registry, chosen by the scrape's `Accept` header as
//! Prometheus negotiates them:
//!
//! - Prometheus protobuf (`application/vnd.google.protobuf;
//!   proto=io.prometheus.client.MetricFamily; encoding=delimited`): classic buckets,
//!   native histograms and exemplars. Prometheus asks for it first when started with
//!   `--enable-feature=native-histograms`.
//! - OpenMetrics text (`application/openmetrics-text`): classic buckets with exemplars;
//!   what Prometheus asks for with `exemplar-storage` alone.
//! - Prometheus text 0.0.4 (anything else: curl, promtool, older scrapers): classic
//!   buckets only.

use crate::metrics::common::MetricsError;
use prometheus_client::registry::Registry;

/// An exposition format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    OpenMetrics,
    Protobuf,
}

pub const PROTOBUF_TYPE: &str =
    "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited";
pub const OPENMETRICS_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
pub const TEXT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_TYPE,
            Format::OpenMetrics => OPENMETRICS_TYPE,
            Format::Protobuf => PROTOBUF_TYPE,
        }
    }

    /// The format an `Accept` header prefers: the highest `q` among the media types
    /// served here (the first listed on a tie); text when none is.
    pub fn negotiate(accept: Option<&str>) -> Format {
        let Some(accept) = accept else {
            return Format::Text;
        };
        let mut best: Option<(f64, Format)> = None;
        for range in accept.split(',') {
            let mut parts = range.split(';').map(str::trim);
            let media = parts.next().unwrap_or_default().to_ascii_lowercase();
            let mut q = 1.0;
            let mut proto_ok = true;
            for p in parts {
                let Some((k, v)) = p.split_once('=') else {
                    continue;
                };
                match k.trim().to_ascii_lowercase().as_str() {
                    "q" => q = v.trim().parse().unwrap_or(0.0),
                    "proto" => proto_ok = v.trim() == "io.prometheus.client.MetricFamily",
                    "encoding" if media == "application/vnd.google.protobuf" => {
                        proto_ok &= v.trim() == "delimited"
                    }
                    _ => {}
                }
            }
            let format = match media.as_str() {
                "application/vnd.google.protobuf" if proto_ok => Format::Protobuf,
                "application/openmetrics-text" => Format::OpenMetrics,
                "text/plain" | "*/*" | "text/*" => Format::Text,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(bq, _)| q > bq) {
                best = Some((q, format));
            }
        }
        best.map_or(Format::Text, |(_, f)| f)
    }
}

/// A scrape's answer: the format its `Accept` header prefers, encoded by `encode`; a 500
/// with the reason if encoding failed.
pub fn scrape(
    accept: Option<&str>,
    encode: impl FnOnce(Format) -> Result<Vec<u8>, MetricsError>,
) -> (http::StatusCode, &'static str, Vec<u8>) {
    let format = Format::negotiate(accept);
    match encode(format) {
        Ok(body) => (http::StatusCode::OK, format.content_type(), body),
        Err(e) => (
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain; charset=utf-8",
            format!("{e}\n").into_bytes(),
        ),
    }
}

/// `registry` in `format`.
pub fn encode(registry: &Registry, format: Format) -> Result<Vec<u8>, MetricsError> {
    match format {
        Format::Text => {
            let mut s = String::new();
            prometheus_client::encoding::prometheus_text::encode(&mut s, registry)
                .map_err(|_| MetricsError::Encode("text"))?;
            Ok(s.into_bytes())
        }
        Format::OpenMetrics => {
            let mut s = String::new();
            prometheus_client::encoding::text::encode(&mut s, registry)
                .map_err(|_| MetricsError::Encode("OpenMetrics"))?;
            Ok(s.into_bytes())
        }
        Format::Protobuf => {
            prometheus_client::encoding::prometheus_protobuf::encode_to_vec(registry)
                .map_err(|_| MetricsError::Encode("protobuf"))
        }
    }
}

/// `registry` in the Prometheus text format; empty if it cannot be encoded (it always
/// can: the collectors only write numbers and bounded labels).
pub fn text(registry: &Registry) -> String {
    encode(registry, Format::Text)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiates_what_prometheus_asks_for() {
        // Prometheus 2.42 with --enable-feature=native-histograms.
        let native = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
        assert_eq!(Format::negotiate(Some(native)), Format::Protobuf);
        // Prometheus 2.42 by default (and with exemplar-storage alone).
        let om = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::negotiate(Some(om)), Format::OpenMetrics);
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        assert_eq!(Format::negotiate(None), Format::Text);
        assert_eq!(Format::negotiate(Some("application/json")), Format::Text);
        // A protobuf of another message is not ours to serve.
        assert_eq!(
            Format::negotiate(Some(
                "application/vnd.google.protobuf;proto=other.Message;encoding=delimited"
            )),
            Format::Text
        );
        assert_eq!(
            Format::negotiate(Some("text/plain;q=0.9,application/openmetrics-text;q=0.5")),
            Format::Text
        );
    }
}
