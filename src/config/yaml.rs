//! The one YAML stack: serde-saphyr reads values, and its parser (granit-parser,
//! re-exported by serde-saphyr) marks where every node starts, so errors found after
//! parsing (type errors, validation) still name a line and column.
//!
//! Why serde-saphyr: serde_yaml is archived and deprecated, and pairing a fork of it with
//! a second parser for positions (yaml-rust2, as before) meant two grammars reading every
//! config. serde-saphyr is maintained, has no unsafe code, rejects duplicate keys at the
//! duplicate's own line, and exposes its parser, so values and positions come from one
//! YAML implementation. Options are YAML 1.2 as serde_yaml was: `yes`/`no`/`on`/`off`
//! stay strings, and tags it does not know are errors rather than silently dropped. One
//! difference from serde_yaml: a number written with leading zeros (`01234`) is a
//! string, so an id or a zip code keeps its zeros.

use serde_json::Value;
use serde_saphyr::granit_parser::{Event, Parser, Span, SpannedEventReceiver};
use serde_saphyr::MessageFormatter;
use std::collections::HashMap;

/// A YAML syntax or structure error (a duplicate key, say) with where it is.
#[derive(Debug, Clone, PartialEq)]
pub struct YamlError {
    pub message: String,
    pub pos: Option<Pos>,
}

/// Parses a document into a JSON value tree (mappings keep their order).
pub fn parse(text: &str) -> Result<Value, YamlError> {
    let options = serde_saphyr::options! {
        strict_booleans: true,
        // `zip: 01234` keeps its zeros: a number would silently lose them.
        leading_zero_numbers_as_strings: true,
        reject_unsupported_tags: true,
        with_snippet: false,
    };
    serde_saphyr::from_str_with_options::<Value>(text, options).map_err(|e| YamlError {
        message: match e.without_snippet() {
            serde_saphyr::Error::DuplicateMappingKey { key: Some(k), .. } => {
                format!("duplicate key {k:?} (each key may appear once in a mapping)")
            }
            inner => serde_saphyr::DefaultMessageFormatter
                .format_message(inner)
                .into_owned(),
        },
        pos: e.location().map(|l| Pos {
            line: l.line() as usize,
            col: l.column() as usize,
        }),
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, Default)]
pub struct PosIndex {
    map: HashMap<String, Pos>,
}

impl PosIndex {
    pub fn build(text: &str) -> PosIndex {
        let mut b = Builder::default();
        let mut parser = Parser::new_from_str(text);
        // A syntax error is reported by `parse` with its own position; an index of what
        // parsed so far is still useful.
        let _ = parser.load(&mut b, false);
        PosIndex { map: b.map }
    }

    /// The position of `path`, or of its nearest ancestor that has one.
    pub fn find(&self, path: &str) -> Option<Pos> {
        let mut p = path.to_string();
        loop {
            if let Some(pos) = self.map.get(&p) {
                return Some(*pos);
            }
            let cut = p.rfind(['.', '['])?;
            p.truncate(cut);
        }
    }
}

enum Frame {
    /// In a mapping: the key just read (None while expecting a key).
    Map {
        key: Option<String>,
    },
    Seq {
        index: usize,
    },
}

#[derive(Default)]
struct Builder {
    map: HashMap<String, Pos>,
    stack: Vec<(String, Frame)>,
}

impl Builder {
    /// The path of the node that the next value event starts, or None when the next
    /// scalar is a mapping key.
    fn next_path(&mut self) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some((base, Frame::Seq { index })) => {
                let p = format!("{base}[{index}]");
                *index += 1;
                Some(p)
            }
            Some((base, Frame::Map { key })) => {
                let k = key.take()?;
                Some(if base.is_empty() {
                    k
                } else {
                    format!("{base}.{k}")
                })
            }
        }
    }
}

impl<'input> SpannedEventReceiver<'input> for Builder {
    fn on_event(&mut self, ev: Event<'input>, span: Span) {
        let pos = Pos {
            line: span.start.line(),
            col: span.start.col() + 1,
        };
        match ev {
            Event::Scalar(s, ..) => match self.next_path() {
                Some(path) => {
                    // A value's position wins over its key's.
                    self.map.insert(path, pos);
                }
                None => {
                    if let Some((base, Frame::Map { key })) = self.stack.last_mut() {
                        let path = if base.is_empty() {
                            s.to_string()
                        } else {
                            format!("{base}.{s}")
                        };
                        self.map.entry(path).or_insert(pos);
                        *key = Some(s.into_owned());
                    }
                }
            },
            Event::Alias(_) => {
                let _ = self.next_path();
            }
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                // A complex key (a mapping used as a key) has no path; give it one
                // that no lookup will ask for.
                let path = self.next_path().unwrap_or_else(|| "\u{0}complex".into());
                self.map.insert(path.clone(), pos);
                let frame = if matches!(ev, Event::MappingStart(..)) {
                    Frame::Map { key: None }
                } else {
                    Frame::Seq { index: 0 }
                };
                self.stack.push((path, frame));
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_positions() {
        let text = "a: 1\nb:\n  c: [x, y, z]\n  d:\n    - e: 5\n      f: 6\n";
        let idx = PosIndex::build(text);
        assert_eq!(idx.find("a"), Some(Pos { line: 1, col: 4 }));
        assert_eq!(idx.find("b.c[2]"), Some(Pos { line: 3, col: 13 }));
        assert_eq!(idx.find("b.d[0].f"), Some(Pos { line: 6, col: 10 }));
        // Missing leaf falls back to its parent.
        assert_eq!(idx.find("b.d[0].nope"), idx.find("b.d[0]"));
        assert_eq!(idx.find("zzz"), None);
    }

    #[test]
    fn parse_is_yaml_1_2_and_keeps_mapping_order() {
        let v = parse("z: yes\na: no\nm: on\nn: 0755\nt: true\n").unwrap();
        assert_eq!(
            v,
            serde_json::json!({"z": "yes", "a": "no", "m": "on", "n": "0755", "t": true})
        );
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["z", "a", "m", "n", "t"]);
    }

    #[test]
    fn duplicate_keys_are_reported_at_the_duplicate() {
        let e = parse("a: 1\nb:\n  c: 2\n  d: 3\n  c: 4\n").unwrap_err();
        assert_eq!(
            e.message,
            "duplicate key \"c\" (each key may appear once in a mapping)"
        );
        assert_eq!(e.pos, Some(Pos { line: 5, col: 3 }));
    }

    #[test]
    fn anchors_aliases_and_merge_keys_work() {
        let v = parse("base: &b {timeout: 5s, max_in_flight: 10}\nscen:\n  <<: *b\n  max_in_flight: 20\nalias: *b\n")
            .unwrap();
        assert_eq!(
            v["scen"],
            serde_json::json!({"timeout": "5s", "max_in_flight": 20})
        );
        assert_eq!(v["alias"], v["base"]);
    }

    #[test]
    fn unknown_tags_are_errors() {
        let e = parse("a: !vault secret\n").unwrap_err();
        assert!(e.message.contains("vault"), "{e:?}");
        assert_eq!(e.pos.map(|p| p.line), Some(1));
    }
}
