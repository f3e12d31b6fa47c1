//! Fitting rendered templates to protobuf messages.
//!
//! A gRPC op's message is a JSON template; the request is decoded from the rendered JSON
//! by the proto3 JSON mapping (prost-reflect). [`fit`] bridges what templates naturally
//! produce and what the mapping accepts, field kind by field kind, so a template need
//! not care whether `{{seq}}` lands in a string, an int64 or a map value:
//!
//! | field kind | fitted from |
//! |---|---|
//! | string | a number or bool (its text) |
//! | integers, floats | a numeric string (`"12"`, `" 12.5 "`); an integral float for an integer |
//! | bool | `"true"`/`"false"`, 0/1 |
//! | enum | a name, a number, or a numeric string |
//! | bytes | base64 text, as the mapping says (nothing is guessed) |
//! | repeated | a list, each item fitted; a lone value becomes a one-item list |
//! | map | an object, each value fitted by the map's value type (keys are JSON text) |
//! | message | an object, fitted field by field; oneof members like any field |
//! | Timestamp | RFC 3339 text, or Unix time as a number or numeric string: seconds, or milli-, micro- or nanoseconds told apart by size (`{{now_ms}}` works) |
//! | Duration | `"1.5s"`, seconds as a number, or a duration like `"250ms"`, `"1m30s"` |
//! | wrappers | the bare value, fitted as the wrapped kind (or `{value: …}`) |
//! | Struct, Value, ListValue | any JSON, as is |
//!
//! What cannot be fitted is left for the decoder to reject, which names the problem.
//!
//! [`check`] runs at config load: unknown fields, two members of one oneof, and every
//! value whose type is known before the run — literals, and templates made only of
//! generators (`{{seq}}`, `{{uuid}}`, `{{rand_int 1 9}}`, …) — is fitted and decoded
//! then, so a mismatch is a config error at its path instead of a `template` error on
//! every call. Values read from fixtures or extracted are checked when sent.

use crate::template::JsonTemplate;
use prost_reflect::{DynamicMessage, FieldDescriptor, Kind, MessageDescriptor};
use serde_json::{Map, Number, Value as J};
use std::collections::HashMap;

/// Fits a rendered message (a JSON object) to `desc`'s field types, in place.
pub fn fit(desc: &MessageDescriptor, v: &mut J) {
    let J::Object(map) = v else { return };
    for (name, val) in map.iter_mut() {
        if let Some(f) = field(desc, name) {
            fit_field(&f, val);
        }
    }
}

pub(super) fn field(desc: &MessageDescriptor, name: &str) -> Option<FieldDescriptor> {
    desc.get_field_by_name(name)
        .or_else(|| desc.get_field_by_json_name(name))
}

fn fit_field(f: &FieldDescriptor, v: &mut J) {
    if f.is_map() {
        if let (J::Object(entries), Kind::Message(entry)) = (&mut *v, f.kind()) {
            let value_kind = entry.map_entry_value_field().kind();
            entries
                .values_mut()
                .for_each(|item| fit_value(&value_kind, item));
        }
        return;
    }
    if f.is_list() {
        if !matches!(v, J::Array(_) | J::Null) {
            *v = J::Array(vec![v.take()]);
        }
        if let J::Array(items) = v {
            let kind = f.kind();
            items.iter_mut().for_each(|item| fit_value(&kind, item));
        }
        return;
    }
    fit_value(&f.kind(), v);
}

pub(super) fn fit_value(kind: &Kind, v: &mut J) {
    match kind {
        Kind::Message(m) => fit_message_value(m, v),
        Kind::Enum(e) => {
            if let J::String(s) = v {
                let t = s.trim();
                if e.get_value_by_name(t).is_none() {
                    if let Ok(n) = t.parse::<i32>() {
                        *v = J::from(n);
                    }
                }
            }
        }
        Kind::String => match v {
            J::Number(n) => *v = J::String(n.to_string()),
            J::Bool(b) => *v = J::String(b.to_string()),
            _ => {}
        },
        Kind::Bool => match v {
            J::String(s) => match s.trim() {
                "true" => *v = J::Bool(true),
                "false" => *v = J::Bool(false),
                _ => {}
            },
            J::Number(n) => match n.as_u64() {
                Some(0) => *v = J::Bool(false),
                Some(1) => *v = J::Bool(true),
                _ => {}
            },
            _ => {}
        },
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => fit_int(v, |x| i32::try_from(x).is_ok()),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => fit_int(v, |_| true),
        Kind::Uint32 | Kind::Fixed32 => fit_int(v, |x| u32::try_from(x).is_ok()),
        Kind::Uint64 | Kind::Fixed64 => fit_int(v, |x| x >= 0),
        Kind::Float | Kind::Double => {
            if let J::String(s) = v {
                if let Some(n) = s.trim().parse::<f64>().ok().and_then(Number::from_f64) {
                    *v = J::Number(n);
                }
            }
        }
        Kind::Bytes => {}
    }
}

/// An integer field: a numeric string becomes the number, an integral float (`12.0`,
/// `"12.0"`) the integer; values out of the kind's range are left for the decoder.
fn fit_int(v: &mut J, in_range: impl Fn(i128) -> bool) {
    let parsed: Option<i128> = match &*v {
        J::String(s) => {
            let t = s.trim();
            t.parse::<i128>()
                .ok()
                .or_else(|| t.parse::<f64>().ok().and_then(integral))
        }
        J::Number(n) if n.is_f64() => n.as_f64().and_then(integral),
        _ => None,
    };
    if let Some(x) = parsed.filter(|x| in_range(*x)) {
        *v = if let Ok(u) = u64::try_from(x) {
            J::from(u)
        } else if let Ok(i) = i64::try_from(x) {
            J::from(i)
        } else {
            return;
        };
    }
}

fn integral(f: f64) -> Option<i128> {
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 1.9e19).then_some(f as i128)
}

fn fit_message_value(m: &MessageDescriptor, v: &mut J) {
    match m.full_name() {
        "google.protobuf.Timestamp" => {
            if let Some(secs) = number_or_numeric(v).map(unix_seconds) {
                let seconds = secs.floor();
                let nanos = ((secs - seconds) * 1e9).round().min(999_999_999.0);
                if seconds.abs() < 3.0e11 {
                    let ts = prost_types::Timestamp {
                        seconds: seconds as i64,
                        nanos: nanos as i32,
                    };
                    *v = J::String(ts.to_string());
                }
            }
        }
        "google.protobuf.Duration" => {
            let secs = number_or_numeric(v).or_else(|| match &*v {
                J::String(s) if !is_proto_duration(s) => {
                    crate::units::parse_duration(s.trim()).map(|d| d.as_secs_f64())
                }
                _ => None,
            });
            if let Some(secs) = secs.filter(|s| s.abs() < 3.0e11) {
                let d = prost_types::Duration {
                    seconds: secs.trunc() as i64,
                    nanos: (secs.fract() * 1e9).round() as i32,
                };
                *v = J::String(d.to_string());
            }
        }
        "google.protobuf.DoubleValue"
        | "google.protobuf.FloatValue"
        | "google.protobuf.Int64Value"
        | "google.protobuf.UInt64Value"
        | "google.protobuf.Int32Value"
        | "google.protobuf.UInt32Value"
        | "google.protobuf.BoolValue"
        | "google.protobuf.StringValue"
        | "google.protobuf.BytesValue" => {
            if let J::Object(o) = v {
                if o.len() == 1 {
                    if let Some(inner) = o.remove("value") {
                        *v = inner;
                    }
                }
            }
            if let Some(f) = m.get_field_by_name("value") {
                fit_value(&f.kind(), v);
            }
        }
        "google.protobuf.Struct"
        | "google.protobuf.Value"
        | "google.protobuf.ListValue"
        | "google.protobuf.Any"
        | "google.protobuf.FieldMask"
        | "google.protobuf.Empty" => {}
        _ => fit(m, v),
    }
}

/// Unix time in seconds from a count whose unit its size gives away: below 1e11 it is
/// seconds (up to the year 5138), then milliseconds, microseconds, nanoseconds — the
/// usual reading of an epoch number, and what makes `{{now_ms}}` a timestamp.
fn unix_seconds(n: f64) -> f64 {
    match n.abs() {
        a if a < 1e11 => n,
        a if a < 1e14 => n / 1e3,
        a if a < 1e17 => n / 1e6,
        _ => n / 1e9,
    }
}

fn number_or_numeric(v: &J) -> Option<f64> {
    match v {
        J::Number(n) => n.as_f64(),
        J::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

/// `"1.5s"`, `"-3s"`: already the mapping's form.
fn is_proto_duration(s: &str) -> bool {
    s.trim()
        .strip_suffix('s')
        .is_some_and(|n| n.parse::<f64>().is_ok())
}

pub(super) fn is_well_known(m: &MessageDescriptor) -> bool {
    m.full_name().starts_with("google.protobuf.")
}

/// Config-time problems in a message template, as (path inside the message, error).
pub fn check(desc: &MessageDescriptor, t: &JsonTemplate) -> Vec<(String, String)> {
    let mut out = Vec::new();
    check_message(desc, t, "", &mut out);
    out
}

fn check_message(
    desc: &MessageDescriptor,
    t: &JsonTemplate,
    path: &str,
    out: &mut Vec<(String, String)>,
) {
    let JsonTemplate::Object(fields) = t else {
        // A whole message from one template is checked when it is sent.
        return;
    };
    let mut oneofs: HashMap<String, &str> = HashMap::new();
    for (name, value) in fields {
        let p = join(path, name);
        let Some(f) = field(desc, name) else {
            let known: Vec<String> = desc.fields().map(|f| f.name().to_string()).collect();
            out.push((
                p,
                format!(
                    "{} has no field {name:?} (fields: {})",
                    desc.full_name(),
                    known.join(", ")
                ),
            ));
            continue;
        };
        // A proto3 `optional` field sits in a synthetic oneof of its own: not a choice.
        if let Some(o) = f
            .containing_oneof()
            .filter(|_| !f.field_descriptor_proto().proto3_optional())
        {
            if let Some(first) = oneofs.insert(o.name().to_string(), name) {
                out.push((
                    p.clone(),
                    format!(
                        "{first:?} and {name:?} are both members of oneof {}; set one",
                        o.name()
                    ),
                ));
            }
        }
        check_field(&f, value, &p, out);
    }
}

fn check_field(f: &FieldDescriptor, t: &JsonTemplate, path: &str, out: &mut Vec<(String, String)>) {
    match (f.kind(), t) {
        (Kind::Message(entry), JsonTemplate::Object(entries)) if f.is_map() => {
            let key = entry.map_entry_key_field();
            let before = out.len();
            for (k, _) in entries {
                if let Some(why) = bad_map_key(&key.kind(), k) {
                    out.push((join(path, k), why));
                }
            }
            if out.len() > before {
                return;
            }
            let value = entry.map_entry_value_field();
            match value.kind() {
                Kind::Message(m) if !is_well_known(&m) => {
                    for (k, item) in entries {
                        check_message(&m, item, &join(path, k), out);
                    }
                }
                _ => check_sample(f, t, path, out),
            }
        }
        (Kind::Message(m), JsonTemplate::Array(items)) if f.is_list() && !is_well_known(&m) => {
            for (i, item) in items.iter().enumerate() {
                let p = format!("{path}[{i}]");
                match item {
                    JsonTemplate::Object(_) => check_message(&m, item, &p, out),
                    _ => check_sample(f, item, &p, out),
                }
            }
        }
        (Kind::Message(m), JsonTemplate::Object(_))
            if !f.is_list() && !f.is_map() && !is_well_known(&m) =>
        {
            check_message(&m, t, path, out)
        }
        _ => check_sample(f, t, path, out),
    }
}

fn bad_map_key(kind: &Kind, k: &str) -> Option<String> {
    let ok = match kind {
        Kind::String => true,
        Kind::Bool => k == "true" || k == "false",
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => k.parse::<i32>().is_ok(),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => k.parse::<i64>().is_ok(),
        Kind::Uint32 | Kind::Fixed32 => k.parse::<u32>().is_ok(),
        Kind::Uint64 | Kind::Fixed64 => k.parse::<u64>().is_ok(),
        _ => true,
    };
    (!ok).then(|| format!("map key {k:?} is not a valid {} key", kind_name(kind)))
}

/// Fits and decodes the value alone (in an otherwise empty message) when its type is
/// known before the run.
fn check_sample(
    f: &FieldDescriptor,
    t: &JsonTemplate,
    path: &str,
    out: &mut Vec<(String, String)>,
) {
    let Some(sample) = t.sample() else { return };
    let parent = f.parent_message().clone();
    let mut msg = J::Object(Map::from_iter([(f.name().to_string(), sample.clone())]));
    fit(&parent, &mut msg);
    if let Err(e) = DynamicMessage::deserialize(parent, msg) {
        let what = match t {
            JsonTemplate::Str(tpl) => format!("{:?} (renders {sample})", tpl.source()),
            _ => sample.to_string(),
        };
        out.push((
            path.to_string(),
            format!("{what} does not fit {} field: {e}", field_type(f)),
        ));
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

/// The field's type as the .proto spells it: `int64`, `repeated string`,
/// `map<string, int64>`, `google.protobuf.Timestamp`, `enum soakd.Color`.
fn field_type(f: &FieldDescriptor) -> String {
    if let (true, Kind::Message(entry)) = (f.is_map(), f.kind()) {
        return format!(
            "map<{}, {}>",
            kind_name(&entry.map_entry_key_field().kind()),
            kind_name(&entry.map_entry_value_field().kind())
        );
    }
    let k = kind_name(&f.kind());
    if f.is_list() {
        format!("repeated {k}")
    } else {
        k
    }
}

fn kind_name(k: &Kind) -> String {
    match k {
        Kind::Message(m) => m.full_name().to_string(),
        Kind::Enum(e) => format!("enum {}", e.full_name()),
        Kind::Double => "double".into(),
        Kind::Float => "float".into(),
        Kind::Int32 => "int32".into(),
        Kind::Int64 => "int64".into(),
        Kind::Uint32 => "uint32".into(),
        Kind::Uint64 => "uint64".into(),
        Kind::Sint32 => "sint32".into(),
        Kind::Sint64 => "sint64".into(),
        Kind::Fixed32 => "fixed32".into(),
        Kind::Fixed64 => "fixed64".into(),
        Kind::Sfixed32 => "sfixed32".into(),
        Kind::Sfixed64 => "sfixed64".into(),
        Kind::Bool => "bool".into(),
        Kind::String => "string".into(),
        Kind::Bytes => "bytes".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protos::tests::{kinds, template};
    use crate::protos::{DescPool, STAT_METHOD};
    use prost_reflect::{MapKey, Value};
    use serde_json::json;

    /// Fits `v` into Kinds and decodes it (the driver's two steps).
    fn send(v: J) -> DynamicMessage {
        let d = kinds();
        let mut v = v;
        fit(&d, &mut v);
        DynamicMessage::deserialize(d, v.clone()).unwrap_or_else(|e| panic!("{v}: {e}"))
    }

    fn get(m: &DynamicMessage, name: &str) -> Value {
        m.get_field_by_name(name).unwrap().into_owned()
    }

    fn check_kinds(yaml: &str) -> Vec<(String, String)> {
        check(&kinds(), &template(yaml))
    }

    #[test]
    fn strings_take_numbers_and_bools_as_text() {
        let m = send(json!({"s": 12}));
        assert_eq!(get(&m, "s"), Value::String("12".into()));
        let m = send(json!({"s": true}));
        assert_eq!(get(&m, "s"), Value::String("true".into()));
    }

    #[test]
    fn every_integer_kind_takes_numeric_text_and_integral_floats() {
        let m = send(json!({
            "i32": "-7", "i64": " 9007199254740993 ", "u32": "4000000000", "u64": "18446744073709551615",
            "s32": "-3", "s64": 12.0, "fx32": "5", "fx64": "6.0", "sf32": "-8", "sf64": "-9"
        }));
        assert_eq!(get(&m, "i32"), Value::I32(-7));
        assert_eq!(get(&m, "i64"), Value::I64(9007199254740993));
        assert_eq!(get(&m, "u32"), Value::U32(4_000_000_000));
        assert_eq!(get(&m, "u64"), Value::U64(u64::MAX));
        assert_eq!(get(&m, "s32"), Value::I32(-3));
        assert_eq!(get(&m, "s64"), Value::I64(12));
        assert_eq!(get(&m, "fx32"), Value::U32(5));
        assert_eq!(get(&m, "fx64"), Value::U64(6));
        assert_eq!(get(&m, "sf32"), Value::I32(-8));
        assert_eq!(get(&m, "sf64"), Value::I64(-9));
        // Out of range or fractional: left for the decoder, which names the problem.
        let d = kinds();
        for bad in [
            json!({"i32": "3000000000"}),
            json!({"u32": -1}),
            json!({"i64": 1.5}),
        ] {
            let mut v = bad.clone();
            fit(&d, &mut v);
            assert!(DynamicMessage::deserialize(d.clone(), v).is_err(), "{bad}");
        }
    }

    #[test]
    fn floats_take_numeric_text() {
        let m = send(json!({"d": "12.5", "f": " 0.25 "}));
        assert_eq!(get(&m, "d"), Value::F64(12.5));
        assert_eq!(get(&m, "f"), Value::F32(0.25));
        // The mapping's special values pass through.
        let m = send(json!({"d": "NaN"}));
        assert!(get(&m, "d").as_f64().unwrap().is_nan());
    }

    #[test]
    fn bools_take_text_and_zero_or_one() {
        assert_eq!(get(&send(json!({"b": "true"})), "b"), Value::Bool(true));
        assert_eq!(get(&send(json!({"b": " false "})), "b"), Value::Bool(false));
        assert_eq!(get(&send(json!({"b": 1})), "b"), Value::Bool(true));
        assert_eq!(get(&send(json!({"b": 0})), "b"), Value::Bool(false));
    }

    #[test]
    fn enums_take_names_numbers_and_numeric_text() {
        assert_eq!(
            get(&send(json!({"color": "GREEN"})), "color"),
            Value::EnumNumber(2)
        );
        assert_eq!(
            get(&send(json!({"color": 1})), "color"),
            Value::EnumNumber(1)
        );
        assert_eq!(
            get(&send(json!({"color": "2"})), "color"),
            Value::EnumNumber(2)
        );
        let m = send(json!({"colors": ["RED", "2", 0]}));
        assert_eq!(
            get(&m, "colors"),
            Value::List(vec![
                Value::EnumNumber(1),
                Value::EnumNumber(2),
                Value::EnumNumber(0)
            ])
        );
    }

    #[test]
    fn bytes_are_base64_as_the_mapping_says() {
        assert_eq!(
            get(&send(json!({"by": "aGk="})), "by"),
            Value::Bytes(bytes::Bytes::from_static(b"hi"))
        );
    }

    #[test]
    fn repeated_fields_fit_each_item_and_wrap_a_lone_value() {
        let m = send(json!({"ints": ["1", 2, "3"], "strs": [1, "b", false]}));
        assert_eq!(
            get(&m, "ints"),
            Value::List(vec![Value::I32(1), Value::I32(2), Value::I32(3)])
        );
        assert_eq!(
            get(&m, "strs"),
            Value::List(vec![
                Value::String("1".into()),
                Value::String("b".into()),
                Value::String("false".into())
            ])
        );
        let m = send(json!({"ints": "7", "strs": 5}));
        assert_eq!(get(&m, "ints"), Value::List(vec![Value::I32(7)]));
        assert_eq!(
            get(&m, "strs"),
            Value::List(vec![Value::String("5".into())])
        );
        let m = send(json!({"inners": [{"name": 1, "n": "2", "color": "1"}]}));
        let Value::List(items) = get(&m, "inners") else {
            panic!()
        };
        let inner = items[0].as_message().unwrap();
        assert_eq!(get(inner, "name"), Value::String("1".into()));
        assert_eq!(get(inner, "n"), Value::I32(2));
        assert_eq!(get(inner, "color"), Value::EnumNumber(1));
    }

    #[test]
    fn map_values_fit_the_value_type_for_every_key_type() {
        // The reported case: a map<string,string> value from a bare numeric expression.
        let m = send(json!({
            "labels": {"run": 17, "ok": true},
            "counts": {"a": "5"},
            "by_id": {"1": 2, "-3": "x"},
            "flags": {"true": "0.5", "false": 2},
            "color_by_name": {"a": "GREEN", "b": "1"},
            "inner_by_name": {"x": {"n": "4"}},
        }));
        let map = |name: &str| match get(&m, name) {
            Value::Map(m) => m,
            v => panic!("{v:?}"),
        };
        assert_eq!(
            map("labels").get(&MapKey::String("run".into())),
            Some(&Value::String("17".into()))
        );
        assert_eq!(
            map("labels").get(&MapKey::String("ok".into())),
            Some(&Value::String("true".into()))
        );
        assert_eq!(
            map("counts").get(&MapKey::String("a".into())),
            Some(&Value::I64(5))
        );
        assert_eq!(
            map("by_id").get(&MapKey::I32(1)),
            Some(&Value::String("2".into()))
        );
        assert_eq!(
            map("by_id").get(&MapKey::I32(-3)),
            Some(&Value::String("x".into()))
        );
        assert_eq!(
            map("flags").get(&MapKey::Bool(true)),
            Some(&Value::F64(0.5))
        );
        assert_eq!(
            map("flags").get(&MapKey::Bool(false)),
            Some(&Value::F64(2.0))
        );
        assert_eq!(
            map("color_by_name").get(&MapKey::String("b".into())),
            Some(&Value::EnumNumber(1))
        );
        let x = map("inner_by_name");
        let x = x
            .get(&MapKey::String("x".into()))
            .unwrap()
            .as_message()
            .unwrap();
        assert_eq!(get(x, "n"), Value::I32(4));
    }

    #[test]
    fn nested_messages_and_oneof_members_fit_like_any_field() {
        let m = send(json!({"inner": {"name": 5, "n": "6", "color": "GREEN"}, "number": "42"}));
        let inner = get(&m, "inner");
        let inner = inner.as_message().unwrap();
        assert_eq!(get(inner, "name"), Value::String("5".into()));
        assert_eq!(get(inner, "n"), Value::I32(6));
        assert_eq!(get(&m, "number"), Value::I64(42));
        let m = send(json!({"text": 3}));
        assert_eq!(get(&m, "text"), Value::String("3".into()));
        let m = send(json!({"nested": {"n": "1"}}));
        assert_eq!(
            get(get(&m, "nested").as_message().unwrap(), "n"),
            Value::I32(1)
        );
    }

    fn ts(m: &DynamicMessage, name: &str) -> (i64, i32) {
        let v = get(m, name);
        let t = v.as_message().unwrap();
        let s = get(t, "seconds").as_i64().unwrap();
        (s, get(t, "nanos").as_i32().unwrap())
    }

    #[test]
    fn timestamps_take_rfc3339_or_unix_seconds() {
        assert_eq!(
            ts(&send(json!({"at": "2026-12-02T05:00:00Z"})), "at"),
            (1_796_187_600, 0)
        );
        assert_eq!(
            ts(&send(json!({"at": 1_796_187_600})), "at"),
            (1_796_187_600, 0)
        );
        // {{now_ms}}: milliseconds, told from seconds by size (so are micro- and nanoseconds).
        assert_eq!(
            ts(&send(json!({"at": 1_796_187_600_250u64})), "at"),
            (1_796_187_600, 250_000_000)
        );
        assert_eq!(
            ts(&send(json!({"at": 1_796_187_600_000_000u64})), "at"),
            (1_796_187_600, 0)
        );
        assert_eq!(
            ts(&send(json!({"at": "1796187600000000000"})), "at"),
            (1_796_187_600, 0)
        );
        assert_eq!(
            ts(&send(json!({"at": "1796187600.25"})), "at"),
            (1_796_187_600, 250_000_000)
        );
        let m = send(json!({"times": [0, "1970-01-01T00:00:01Z"]}));
        let Value::List(items) = get(&m, "times") else {
            panic!()
        };
        assert_eq!(
            get(items[1].as_message().unwrap(), "seconds"),
            Value::I64(1)
        );
    }

    #[test]
    fn durations_take_seconds_or_human_units() {
        assert_eq!(ts(&send(json!({"took": "1.5s"})), "took"), (1, 500_000_000));
        assert_eq!(ts(&send(json!({"took": 2})), "took"), (2, 0));
        assert_eq!(ts(&send(json!({"took": "0.25"})), "took"), (0, 250_000_000));
        assert_eq!(
            ts(&send(json!({"took": "250ms"})), "took"),
            (0, 250_000_000)
        );
        assert_eq!(ts(&send(json!({"took": "1m30s"})), "took"), (90, 0));
        let m = send(json!({"timeouts": {"a": "100ms", "b": 3}}));
        let Value::Map(map) = get(&m, "timeouts") else {
            panic!()
        };
        let b = map
            .get(&MapKey::String("b".into()))
            .unwrap()
            .as_message()
            .unwrap();
        assert_eq!(get(b, "seconds"), Value::I64(3));
    }

    fn wrapped(m: &DynamicMessage, name: &str) -> Value {
        get(get(m, name).as_message().unwrap(), "value")
    }

    #[test]
    fn wrappers_take_the_bare_value_fitted_as_the_wrapped_kind() {
        let m = send(json!({
            "maybe_i64": "12", "maybe_s": 5, "maybe_b": "true", "maybe_d": "0.5",
            "maybe_u32": {"value": "7"}
        }));
        assert_eq!(wrapped(&m, "maybe_i64"), Value::I64(12));
        assert_eq!(wrapped(&m, "maybe_s"), Value::String("5".into()));
        assert_eq!(wrapped(&m, "maybe_b"), Value::Bool(true));
        assert_eq!(wrapped(&m, "maybe_d"), Value::F64(0.5));
        assert_eq!(wrapped(&m, "maybe_u32"), Value::U32(7));
    }

    #[test]
    fn struct_value_and_list_value_take_any_json_as_is() {
        let m = send(json!({
            "attrs": {"n": "12", "nested": {"ok": true}},
            "any_value": 12,
            "list": [1, "two", null]
        }));
        let attrs = get(&m, "attrs");
        let fields = get(attrs.as_message().unwrap(), "fields");
        let Value::Map(f) = fields else { panic!() };
        let n = f
            .get(&MapKey::String("n".into()))
            .unwrap()
            .as_message()
            .unwrap();
        // "12" stays text: a Struct has no field types to fit to.
        assert_eq!(get(n, "string_value"), Value::String("12".into()));
        let v = get(&m, "any_value");
        assert_eq!(
            get(v.as_message().unwrap(), "number_value"),
            Value::F64(12.0)
        );
    }

    #[test]
    fn proto3_optional_fits_and_is_not_a_choice() {
        let m = send(json!({"maybe": "3"}));
        assert_eq!(get(&m, "maybe"), Value::I32(3));
        assert!(check_kinds("{maybe: 3, i32: 4}").is_empty());
    }

    #[test]
    fn the_seed_events_fit_numbers_into_strings_and_back() {
        let pool = DescPool::default();
        let m = pool.method(STAT_METHOD).unwrap();
        let mut v = json!({"id": 5, "version": "3", "timestamp": 1700000000000u64,
            "payload": {"statCode": "wins_ranked", "latestValue": "12.5"}});
        fit(&m.input(), &mut v);
        assert_eq!(v["id"], "5");
        assert_eq!(v["version"], 3);
        assert_eq!(v["timestamp"], "1700000000000");
        assert_eq!(v["payload"]["latestValue"], 12.5);
        let msg = DynamicMessage::deserialize(m.input(), v).unwrap();
        assert_eq!(msg.get_field_by_name("id").unwrap().as_str(), Some("5"));
    }

    #[test]
    fn check_names_unknown_fields_at_their_path() {
        let pool = DescPool::default();
        let m = pool.method(STAT_METHOD).unwrap();
        let t = template("{user_id: x, payload: {statCode: s, bogus: 1}, nope: 2}");
        let errs = check(&m.input(), &t);
        let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, vec!["payload.bogus", "nope"], "{errs:?}");
        let errs = check_kinds("{inners: [{n: 1}, {nope: 1}], inner_by_name: {a: {bad: 1}}}");
        let paths: Vec<&str> = errs.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            vec!["inners[1].nope", "inner_by_name.a.bad"],
            "{errs:?}"
        );
    }

    #[test]
    fn check_accepts_what_fit_can_fit() {
        let ok = check_kinds(
            r#"{s: 12, i32: "{{seq}}", i64: "{{now_ms}}", u32: "{{rand_int 1 9}}", d: "1.5",
                b: "true", color: GREEN, colors: [RED, 2], ints: "{{seq}}",
                labels: {run: "{{seq}}", id: "{{uuid}}"}, by_id: {"7": x},
                inner: {n: "{{seq}}"}, at: "{{now_ms}}", took: 250ms,
                maybe_i64: "{{seq}}", attrs: {a: 1}, number: "{{seq}}",
                by: aGk=, s64: "{{user.id}}"}"#,
        );
        assert!(ok.is_empty(), "{ok:#?}");
    }

    #[test]
    fn check_rejects_known_values_that_cannot_fit_at_their_path() {
        let errs = check_kinds(
            r#"{i32: abc, color: PURPLE, u32: "{{uuid}}", by: "not base64!",
                by_id: {x: a}, inner: {n: "{{rand_choice a b}}"}, took: soon,
                text: a, number: 1, ints: [1, x]}"#,
        );
        let got: Vec<(&str, &str)> = errs.iter().map(|(p, e)| (p.as_str(), e.as_str())).collect();
        let has = |path: &str, words: &[&str]| {
            assert!(
                got.iter()
                    .any(|(p, e)| *p == path && words.iter().all(|w| e.contains(w))),
                "{path} {words:?} not in {got:#?}"
            )
        };
        has("i32", &["\"abc\"", "int32 field"]);
        has("color", &["PURPLE", "enum soakd.kinds.v1.Color field"]);
        has("u32", &["{{uuid}}", "renders", "uint32 field"]);
        has("by", &["bytes field"]);
        has("by_id.x", &["map key \"x\" is not a valid int32 key"]);
        has("inner.n", &["{{rand_choice a b}}", "int32 field"]);
        has("took", &["soon", "google.protobuf.Duration field"]);
        has(
            "number",
            &["\"text\" and \"number\" are both members of oneof choice"],
        );
        has("ints", &["repeated int32 field"]);
        assert_eq!(got.len(), 9, "{got:#?}");
    }

    #[test]
    fn check_skips_values_read_from_fixtures() {
        // Their type is known only when a row is read: they are checked when sent.
        assert!(check_kinds(r#"{i32: "{{user.name}}", labels: {a: "{{user.id}}"}}"#).is_empty());
    }
}
