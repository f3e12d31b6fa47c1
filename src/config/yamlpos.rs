//! Where each node of a YAML document starts, keyed by its path
//! (`scenarios.api.schedule.stages[0].hold.rate`), so that errors found after parsing
//! (type errors, validation) can still name a line and column.
//!
//! serde_yaml's `Value` carries no positions, so the document is walked a second time
//! with yaml-rust2's event parser, which marks every event.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

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
        // A syntax error is reported by serde_yaml with its own position; an index
        // of what parsed so far is still useful.
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

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = Pos {
            line: mark.line(),
            col: mark.col() + 1,
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
                            s.clone()
                        } else {
                            format!("{base}.{s}")
                        };
                        self.map.entry(path).or_insert(pos);
                        *key = Some(s);
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
}
