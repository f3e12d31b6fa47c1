//! gRPC request messages encoded straight from their templates.
//!
//! The general way from a message template to protobuf bytes is the driver's three
//! steps: render the JSON, [`fit`] it, decode it by the proto3 JSON mapping into a
//! dynamic message and encode that. On the hot path that is most of a call's CPU (a
//! JSON tree, a dynamic message and two walks over it per call), so a template is
//! compiled once against its message type into parts:
//!
//! - the fields whose values are known before the run (literals) are encoded once;
//! - a scalar field (string, number, bool, enum) filled by a template is rendered and
//!   fitted as before, then encoded directly;
//! - a nested message (not a well-known type) with some templated fields is compiled
//!   the same way, its bytes length-prefixed per call;
//! - anything else (repeated fields, maps, bytes, well-known types) takes the general
//!   way for that one field, which also names any value that does not fit.
//!
//! Protobuf decoders read fields in any order and merge, so the parts concatenate into
//! the same message the general way builds (the unit tests decode both and compare).

use super::fit::{field as field_of, fit, fit_value, is_well_known};
use crate::template::{JsonTemplate, RenderError, Template, Vars};
use bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{self, encode_key, encode_varint, WireType};
use prost::Message as _;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Value as J};

/// Why a message could not be encoded: both are the op's `template` errors.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("request does not fit {0}: {1}")]
    Fit(String, String),
}

/// A message template compiled against its type.
#[derive(Debug)]
pub struct MessageTemplate {
    parts: Vec<Part>,
}

#[derive(Debug)]
enum Part {
    /// Fields whose values are literals, encoded at compile time.
    Fixed(Bytes),
    /// A singular scalar or enum field filled by a template.
    Scalar {
        field: FieldDescriptor,
        template: Template,
    },
    /// A singular message field with templated fields of its own.
    Message { number: u32, parts: Vec<Part> },
    /// One field the general way: rendered, fitted and decoded as `{name: value}` of
    /// `parent`, then encoded.
    Field {
        parent: MessageDescriptor,
        name: String,
        template: JsonTemplate,
    },
    /// The whole message the general way (a template that is not an object).
    Whole {
        desc: MessageDescriptor,
        template: JsonTemplate,
    },
}

impl MessageTemplate {
    pub fn compile(desc: &MessageDescriptor, t: &JsonTemplate) -> MessageTemplate {
        MessageTemplate {
            parts: compile(desc, t),
        }
    }

    /// Appends the message's encoding (without a length prefix) to `buf`.
    pub fn encode(&self, vars: &mut dyn Vars, buf: &mut BytesMut) -> Result<(), EncodeError> {
        encode_parts(&self.parts, vars, buf)
    }
}

/// The value of a template without placeholders; None when any part is templated.
fn literal(t: &JsonTemplate) -> Option<J> {
    Some(match t {
        JsonTemplate::Value(v) => v.clone(),
        JsonTemplate::Str(_) => return None,
        JsonTemplate::Array(a) => J::Array(a.iter().map(literal).collect::<Option<_>>()?),
        JsonTemplate::Object(o) => J::Object(
            o.iter()
                .map(|(k, t)| literal(t).map(|v| (k.clone(), v)))
                .collect::<Option<_>>()?,
        ),
    })
}

fn is_scalar(k: &Kind) -> bool {
    !matches!(k, Kind::Message(_) | Kind::Bytes)
}

fn compile(desc: &MessageDescriptor, t: &JsonTemplate) -> Vec<Part> {
    let whole = || {
        vec![Part::Whole {
            desc: desc.clone(),
            template: t.clone(),
        }]
    };
    let JsonTemplate::Object(fields) = t else {
        return whole();
    };
    let mut fixed = Map::new();
    let mut parts = Vec::new();
    for (name, ft) in fields {
        let Some(f) = field_of(desc, name) else {
            // Unknown to the type: the general way names it (the config's check
            // already did, so this is not expected).
            return whole();
        };
        let singular = !f.is_list() && !f.is_map();
        let general = || Part::Field {
            parent: desc.clone(),
            name: name.clone(),
            template: ft.clone(),
        };
        if let Some(v) = literal(ft) {
            fixed.insert(name.clone(), v);
        } else if let (true, JsonTemplate::Str(template)) = (singular && is_scalar(&f.kind()), ft) {
            parts.push(Part::Scalar {
                field: f,
                template: template.clone(),
            });
        } else if let (true, Kind::Message(m), JsonTemplate::Object(_)) = (singular, f.kind(), ft) {
            if is_well_known(&m) {
                parts.push(general());
            } else {
                parts.push(Part::Message {
                    number: f.number(),
                    parts: compile(&m, ft),
                });
            }
        } else {
            parts.push(general());
        }
    }
    if !fixed.is_empty() {
        match general_bytes(desc, J::Object(fixed.clone())) {
            Ok(b) => parts.insert(0, Part::Fixed(b)),
            // Does not fit: left to each call, which reports it as before.
            Err(_) => {
                for (name, v) in fixed {
                    parts.push(Part::Field {
                        parent: desc.clone(),
                        name,
                        template: JsonTemplate::Value(v),
                    });
                }
            }
        }
    }
    parts
}

/// The general way: fit, decode by the JSON mapping, encode.
fn general_bytes(desc: &MessageDescriptor, mut v: J) -> Result<Bytes, EncodeError> {
    fit(desc, &mut v);
    let msg = DynamicMessage::deserialize(desc.clone(), v)
        .map_err(|e| EncodeError::Fit(desc.full_name().to_string(), e.to_string()))?;
    Ok(msg.encode_to_vec().into())
}

fn encode_parts(
    parts: &[Part],
    vars: &mut dyn Vars,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    for p in parts {
        match p {
            Part::Fixed(b) => buf.extend_from_slice(b),
            Part::Scalar { field, template } => {
                let mut v = template.render_json(vars)?;
                fit_value(&field.kind(), &mut v);
                if !put_scalar(field, &v, buf) {
                    // Does not fit: the general way names the problem.
                    let mut one = Map::with_capacity(1);
                    one.insert(field.name().to_string(), v);
                    buf.extend_from_slice(&general_bytes(field.parent_message(), J::Object(one))?);
                }
            }
            Part::Message { number, parts } => {
                let mut inner = BytesMut::new();
                encode_parts(parts, vars, &mut inner)?;
                encode_key(*number, WireType::LengthDelimited, buf);
                encode_varint(inner.len() as u64, buf);
                buf.extend_from_slice(&inner);
            }
            Part::Field {
                parent,
                name,
                template,
            } => {
                let mut one = Map::with_capacity(1);
                one.insert(name.clone(), template.render(vars)?);
                buf.extend_from_slice(&general_bytes(parent, J::Object(one))?);
            }
            Part::Whole { desc, template } => {
                buf.extend_from_slice(&general_bytes(desc, template.render(vars)?)?);
            }
        }
    }
    Ok(())
}

/// Encodes a fitted scalar or enum value as `field`; false when it does not fit the
/// field's kind (left to the general way). A value equal to the kind's default is not
/// written for a field without presence, as proto3 encoders do; null means unset.
fn put_scalar(field: &FieldDescriptor, v: &J, buf: &mut BytesMut) -> bool {
    if v.is_null() {
        return true;
    }
    let n = field.number();
    let presence = field.supports_presence();
    macro_rules! put {
        ($module:ident, $value:expr, $default:expr) => {{
            let Some(x) = $value else { return false };
            if presence || x != $default {
                encoding::$module::encode(n, &x, buf);
            }
            true
        }};
    }
    // The value as each integer width reads it (None: not an integer, or out of range).
    let i64v = v.as_i64();
    let u64v = v.as_u64();
    let i32v = i64v.and_then(|x| i32::try_from(x).ok());
    let u32v = u64v.and_then(|x| u32::try_from(x).ok());
    match field.kind() {
        Kind::Double => put!(double, float_of(v), 0.0),
        Kind::Float => put!(
            float,
            float_of(v)
                .filter(|x| !x.is_finite() || x.abs() <= f32::MAX as f64)
                .map(|x| x as f32),
            0.0
        ),
        Kind::Int32 => put!(int32, i32v, 0),
        Kind::Sint32 => put!(sint32, i32v, 0),
        Kind::Sfixed32 => put!(sfixed32, i32v, 0),
        Kind::Int64 => put!(int64, i64v, 0),
        Kind::Sint64 => put!(sint64, i64v, 0),
        Kind::Sfixed64 => put!(sfixed64, i64v, 0),
        Kind::Uint32 => put!(uint32, u32v, 0),
        Kind::Fixed32 => put!(fixed32, u32v, 0),
        Kind::Uint64 => put!(uint64, u64v, 0),
        Kind::Fixed64 => put!(fixed64, u64v, 0),
        Kind::Bool => put!(bool, v.as_bool(), false),
        Kind::String => {
            let Some(s) = v.as_str() else { return false };
            if presence || !s.is_empty() {
                encoding::encode_key(n, WireType::LengthDelimited, buf);
                encoding::encode_varint(s.len() as u64, buf);
                buf.put_slice(s.as_bytes());
            }
            true
        }
        Kind::Enum(e) => {
            let number = match v {
                J::String(name) => e.get_value_by_name(name).map(|x| x.number()),
                J::Number(_) => i32v.filter(|x| e.get_value(*x).is_some()),
                _ => None,
            };
            put!(int32, number, 0)
        }
        Kind::Bytes | Kind::Message(_) => false,
    }
}

/// A float as the JSON mapping reads it: a number, or `"NaN"`, `"Infinity"`,
/// `"-Infinity"`.
fn float_of(v: &J) -> Option<f64> {
    match v {
        J::Number(x) => x.as_f64(),
        J::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "Infinity" => Some(f64::INFINITY),
            "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protos::tests::{kinds, template};
    use serde_json::json;

    /// Variables read from one JSON object (a fixture row, say).
    struct Row(J);

    impl Vars for Row {
        fn lookup(&mut self, path: &[String]) -> Option<&J> {
            path.iter().try_fold(&self.0, |v, k| v.get(k))
        }
        fn seq(&self) -> u64 {
            7
        }
    }

    /// The message the general way sends for `yaml` with `row`'s values, as the
    /// server decodes it.
    fn general(desc: &MessageDescriptor, yaml: &str, row: &J) -> Result<DynamicMessage, String> {
        let mut v = template(yaml)
            .render(&mut Row(row.clone()))
            .map_err(|e| e.to_string())?;
        fit(desc, &mut v);
        let sent = DynamicMessage::deserialize(desc.clone(), v).map_err(|e| e.to_string())?;
        DynamicMessage::decode(desc.clone(), &sent.encode_to_vec()[..]).map_err(|e| e.to_string())
    }

    fn as_json(m: &DynamicMessage) -> J {
        serde_json::to_value(m).unwrap()
    }

    fn compiled(desc: &MessageDescriptor, yaml: &str, row: &J) -> Result<DynamicMessage, String> {
        let mut buf = BytesMut::new();
        MessageTemplate::compile(desc, &template(yaml))
            .encode(&mut Row(row.clone()), &mut buf)
            .map_err(|e| e.to_string())?;
        DynamicMessage::decode(desc.clone(), &buf[..]).map_err(|e| e.to_string())
    }

    #[test]
    fn every_kind_encodes_as_the_general_way_does() {
        let d = kinds();
        let row = json!({
            "n": 42, "neg": -5, "big": "9007199254740993", "f": 2.5, "t": true, "s": "hello",
            "color": "GREEN", "cnum": 1, "zero": 0, "empty": "", "ts": 1700000000123u64,
            "list": [1, 2, 3], "u": {"id": "u-9", "name": "Ann"}
        });
        let cases = [
            // Every scalar kind from a template, from numbers and numeric text.
            "{d: '{{f}}', f: '{{f}}', i32: '{{neg}}', i64: '{{big}}', u32: '{{n}}', u64: '{{big}}', s32: '{{neg}}', s64: '{{neg}}', fx32: '{{n}}', fx64: '{{n}}', sf32: '{{neg}}', sf64: '{{neg}}', b: '{{t}}', s: 'x-{{s}}'}",
            // Text from numbers and bools; enums by name and number; defaults.
            "{s: '{{n}}', color: '{{color}}', i32: '{{zero}}', b: 'false', i64: '{{zero}}'}",
            "{color: '{{cnum}}', s: '{{empty}}', maybe: '{{zero}}'}",
            // Literals mixed with templates, at the top and nested.
            "{s: fixed, i32: 3, inner: {name: '{{u.name}}', n: 4, color: RED}, d: '{{f}}'}",
            "{inner: {name: fixed}, i64: '{{n}}'}",
            // The general way's fields: repeated, maps, bytes, well-known types, oneofs.
            "{ints: '{{list}}', strs: ['{{s}}', b], labels: {a: '{{s}}'}, counts: {x: '{{n}}'}, by: aGk=}",
            "{at: '{{ts}}', took: 250ms, maybe_i64: '{{n}}', maybe_s: '{{s}}', attrs: {k: '{{n}}'}}",
            "{nested: {name: '{{s}}', n: '{{n}}'}, inners: [{name: '{{s}}'}]}",
            "{number: '{{big}}'}",
            "{text: '{{s}}', times: ['{{ts}}'], timeouts: {a: 1s}}",
            // Values the same whether literal or rendered.
            "{d: NaN, f: '{{f}}', u64: 18446744073709551615}",
        ];
        for yaml in cases {
            let want = general(&d, yaml, &row).unwrap_or_else(|e| panic!("{yaml}: {e}"));
            let got = compiled(&d, yaml, &row).unwrap_or_else(|e| panic!("{yaml}: {e}"));
            // Compared as the JSON mapping prints them: NaN is not equal to itself.
            assert_eq!(as_json(&got), as_json(&want), "{yaml}");
        }
    }

    #[test]
    fn a_value_that_does_not_fit_is_named_as_the_general_way_names_it() {
        let d = kinds();
        let row = json!({"word": "many", "big": 5000000000u64, "c": "PURPLE", "half": 2.5});
        for yaml in [
            "{i32: '{{word}}'}",
            "{i32: '{{big}}'}",
            "{color: '{{c}}'}",
            "{u64: '{{half}}'}",
            "{inner: {n: '{{word}}'}}",
            "{ints: ['{{word}}']}",
        ] {
            let want = general(&d, yaml, &row).expect_err(yaml);
            let got = compiled(&d, yaml, &row).expect_err(yaml);
            assert!(got.contains("does not fit"), "{yaml}: {got}");
            // The general way's own words (the field and the value), not a new message.
            let tail = want.rsplit(':').next().unwrap_or_default().trim();
            assert!(got.contains(tail), "{yaml}: {got} vs {want}");
        }
        let missing = compiled(&d, "{s: '{{nobody}}'}", &row).unwrap_err();
        assert!(missing.contains("nobody"), "{missing}");
    }

    #[test]
    fn literals_are_encoded_once_and_templates_per_call() {
        let d = kinds();
        let t = MessageTemplate::compile(
            &d,
            &template("{s: fixed, i32: 3, inner: {name: '{{x}}', n: 4}, ints: [1, 2]}"),
        );
        let kinds: Vec<&str> = t
            .parts
            .iter()
            .map(|p| match p {
                Part::Fixed(_) => "fixed",
                Part::Scalar { .. } => "scalar",
                Part::Message { .. } => "message",
                Part::Field { .. } => "field",
                Part::Whole { .. } => "whole",
            })
            .collect();
        assert_eq!(kinds, ["fixed", "message"]);
        let Part::Message { parts, .. } = &t.parts[1] else {
            unreachable!()
        };
        assert!(matches!(parts[..], [Part::Fixed(_), Part::Scalar { .. }]));
    }
}
