//! Where things are in a YAML file: field path ⇄ (line, column), per document.
//!
//! serde tells us *what* is wrong and at which position; the semantic checks tell us *which field*
//! is wrong. This index joins the two so every error a user sees names file, line, column and
//! field path. It is built from the parser's event stream (no second YAML parser, no guessing).
//!
//! Must hold:
//! - Lines and columns are 1-based and absolute in the file, also for the second and later
//!   documents of a multi-document file.
//! - Paths have one spelling everywhere (`spec.containers[0].ports[1].port`; keys that are not
//!   plain identifiers are quoted: `labels["app.kubernetes.io/name"]`). [`push_key`] and
//!   [`push_index`] are that spelling; the validator uses them too.
//! - A syntax error never loses the documents before it: they are indexed and reported as complete.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, Span};

/// A position in a file: 1-based line and 1-based (character) column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

impl Pos {
    pub const fn new(line: usize, column: usize) -> Self {
        Self { line, column }
    }

    fn start_of(span: &Span) -> Self {
        Self::new(span.start.line(), span.start.col() + 1)
    }

    fn end_of(span: &Span) -> Self {
        Self::new(span.end.line(), span.end.col() + 1)
    }
}

/// The three kinds of YAML node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Scalar,
    Mapping,
    Sequence,
}

impl NodeKind {
    /// How a message names this kind: "a mapping", "a list", "a scalar".
    pub fn describe(self) -> &'static str {
        match self {
            NodeKind::Scalar => "a scalar",
            NodeKind::Mapping => "a mapping",
            NodeKind::Sequence => "a list",
        }
    }
}

/// One node of a document: a mapping value or sequence item (or the root).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Field path; empty for the document root.
    pub path: String,
    /// Where the key of this value starts (`None` for sequence items and the root).
    pub key: Option<Pos>,
    /// Where the value starts.
    pub start: Pos,
    /// Where the value ends (exclusive); far away while a collection is still open, so a syntax
    /// error inside an unfinished collection is attributed to it.
    pub end: Pos,
    pub kind: NodeKind,
    /// The text of a scalar value (after YAML unescaping); `None` for collections.
    pub scalar: Option<String>,
    depth: usize,
}

impl Node {
    /// Whether `pos` falls on this node: its key or its value.
    fn covers(&self, pos: Pos) -> bool {
        let from = self.key.unwrap_or(self.start).min(self.start);
        // Zero-width values (an empty scalar) still own the position they sit on.
        let to = if self.end > self.start {
            self.end
        } else {
            Pos::new(self.start.line, self.start.column + 1)
        };
        from <= pos && pos < to
    }
}

/// The index of one YAML document of a file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DocumentIndex {
    /// First line of the file that belongs to this document (its `---` line, or line 1).
    pub first_line: usize,
    /// Last line of the file that belongs to this document (inclusive).
    pub last_line: usize,
    /// Position of the root node, when the document has one.
    pub root: Option<Pos>,
    /// Whether the document holds nothing but an implicit null (only comments, or `---` alone).
    pub empty: bool,
    /// What the root node is, when the document has one.
    pub root_kind: Option<NodeKind>,
    /// Whether the parser reached the end of this document (false when a syntax error cut it).
    pub complete: bool,
    nodes: Vec<Node>,
    by_path: HashMap<String, usize>,
}

/// A YAML syntax error as the parser reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub pos: Pos,
    pub message: String,
}

/// Every document of one file, and the syntax error that stopped the parser, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileIndex {
    /// Documents in file order. When `syntax_error` is set, the last one may be incomplete.
    pub documents: Vec<DocumentIndex>,
    pub syntax_error: Option<SyntaxError>,
}

/// Append a mapping key to a path, quoting keys that are not plain identifiers.
pub fn push_key(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_string(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{}]", serde_json::Value::from(key)),
    }
}

/// Append a sequence index to a path.
pub fn push_index(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// The path one level up (`a.b[0]` → `a.b` → `a` → ``); `None` for the root.
pub fn parent_path(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    if path.ends_with(']') {
        let open = if path.ends_with("\"]") {
            path.rfind("[\"")
        } else {
            path.rfind('[')
        };
        return Some(open.map_or("", |i| &path[..i]));
    }
    Some(path.rfind('.').map_or("", |i| &path[..i]))
}

impl DocumentIndex {
    fn node(&self, path: &str) -> Option<&Node> {
        self.by_path.get(path).map(|&i| &self.nodes[i])
    }

    /// Where the value at `path` starts.
    pub fn value(&self, path: &str) -> Option<Pos> {
        self.node(path).map(|n| n.start)
    }

    /// Where the key of the value at `path` starts.
    pub fn key(&self, path: &str) -> Option<Pos> {
        self.node(path).and_then(|n| n.key)
    }

    /// The best position for a message about `path`: its value when written, else the key or
    /// value of the closest written ancestor (a defaulted field is reported where its parent is).
    pub fn locate(&self, path: &str) -> Pos {
        let mut current = Some(path);
        while let Some(p) = current {
            if let Some(node) = self.node(p) {
                return if p == path {
                    node.start
                } else {
                    node.key.unwrap_or(node.start)
                };
            }
            current = parent_path(p);
        }
        self.root.unwrap_or(Pos::new(self.first_line, 1))
    }

    /// The deepest path whose key or value covers `pos`; the root path (empty) when none does.
    pub fn path_at(&self, pos: Pos) -> &str {
        self.node_at(pos).map_or("", |n| n.path.as_str())
    }

    /// The deepest node covering `pos` (see [`Self::path_at`]).
    pub fn node_at(&self, pos: Pos) -> Option<&Node> {
        self.nodes
            .iter()
            .filter(|n| n.covers(pos))
            .max_by_key(|n| n.depth)
    }

    /// The path of the value whose *key* starts exactly at `pos`.
    pub fn path_of_key_at(&self, pos: Pos) -> Option<&str> {
        self.nodes
            .iter()
            .find(|n| n.key == Some(pos))
            .map(|n| n.path.as_str())
    }

    /// Every indexed path, in document order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.nodes.iter().map(|n| n.path.as_str())
    }

    /// The file's text with every line outside this document blanked, so a single-document
    /// parser sees only this document and still reports absolute line numbers.
    pub fn isolate(&self, file_text: &str) -> String {
        let mut out = String::with_capacity(file_text.len());
        for (i, line) in file_text.split_inclusive('\n').enumerate() {
            let number = i + 1;
            if number > self.last_line {
                break;
            }
            if number >= self.first_line {
                out.push_str(line);
            } else {
                out.push('\n');
            }
        }
        out
    }
}

/// End of a collection whose end event has not been seen yet.
const OPEN_END: Pos = Pos::new(usize::MAX, usize::MAX);

enum Frame {
    Mapping {
        node: usize,
        key: Option<(String, Pos)>,
    },
    Sequence {
        node: usize,
        next: usize,
    },
}

#[derive(Clone, Copy)]
enum Kind<'a> {
    Scalar { value: &'a str, plain: bool },
    Mapping,
    Sequence,
}

/// Builds one document's index from events.
struct Builder {
    doc: DocumentIndex,
    stack: Vec<Frame>,
    /// Nesting depth inside a complex (non-scalar) mapping key; nothing there is indexed, since no
    /// schema field has such a key.
    skip: usize,
}

impl Builder {
    fn start(first_line: usize) -> Self {
        Self {
            doc: DocumentIndex {
                first_line,
                ..DocumentIndex::default()
            },
            stack: Vec::new(),
            skip: 0,
        }
    }

    fn node(&mut self, span: &Span, kind: Kind<'_>) {
        let container = !matches!(kind, Kind::Scalar { .. });
        if self.skip > 0 {
            self.skip += usize::from(container);
            return;
        }
        let start = Pos::start_of(span);
        let (path, key) = match self.stack.last_mut() {
            None => (String::new(), None),
            Some(Frame::Mapping { node, key }) => match key.take() {
                Some((k, key_pos)) => (push_key(&self.doc.nodes[*node].path, &k), Some(key_pos)),
                None => {
                    let name = match kind {
                        Kind::Scalar { value, .. } => value.to_string(),
                        _ => {
                            self.skip = 1;
                            "?".to_string()
                        }
                    };
                    *key = Some((name, start));
                    return;
                }
            },
            Some(Frame::Sequence { node, next }) => {
                let path = push_index(&self.doc.nodes[*node].path, *next);
                *next += 1;
                (path, None)
            }
        };
        let index = self.doc.nodes.len();
        if self.stack.is_empty() {
            self.doc.root = Some(start);
            self.doc.empty = matches!(kind, Kind::Scalar { value, plain: true } if is_null(value));
        }
        let node_kind = match kind {
            Kind::Scalar { .. } => NodeKind::Scalar,
            Kind::Mapping => NodeKind::Mapping,
            Kind::Sequence => NodeKind::Sequence,
        };
        if self.stack.is_empty() {
            self.doc.root_kind = Some(node_kind);
        }
        let end = if container {
            OPEN_END
        } else {
            Pos::end_of(span)
        };
        self.doc.by_path.entry(path.clone()).or_insert(index);
        let scalar = match kind {
            Kind::Scalar { value, .. } => Some(value.to_string()),
            Kind::Mapping | Kind::Sequence => None,
        };
        self.doc.nodes.push(Node {
            path,
            key,
            start,
            end,
            kind: node_kind,
            scalar,
            depth: self.stack.len(),
        });
        match kind {
            Kind::Mapping => self.stack.push(Frame::Mapping {
                node: index,
                key: None,
            }),
            Kind::Sequence => self.stack.push(Frame::Sequence {
                node: index,
                next: 0,
            }),
            Kind::Scalar { .. } => {}
        }
    }

    fn end(&mut self, span: &Span) {
        if self.skip > 0 {
            self.skip -= 1;
            return;
        }
        if let Some(Frame::Mapping { node, .. } | Frame::Sequence { node, .. }) = self.stack.pop() {
            self.doc.nodes[node].end = Pos::end_of(span);
        }
    }

    fn finish(mut self, last_line: usize, complete: bool) -> DocumentIndex {
        self.doc.last_line = last_line.max(self.doc.first_line);
        self.doc.complete = complete;
        self.doc
    }
}

fn is_null(s: &str) -> bool {
    matches!(s, "" | "~" | "null" | "Null" | "NULL")
}

/// Index every document of a YAML file.
pub fn index_file(text: &str) -> FileIndex {
    let mut out = FileIndex::default();
    let total_lines = text.lines().count().max(1);
    let mut current: Option<Builder> = None;
    // Where the next document's text begins: line 1 for the first, then after the previous one.
    let mut next_first_line = 1;
    for item in Parser::new_from_str(text) {
        let (event, span) = match item {
            Ok(pair) => pair,
            Err(e) => {
                let pos = Pos::new(e.marker().line(), e.marker().col() + 1);
                out.syntax_error = Some(SyntaxError {
                    pos,
                    message: e.info().to_string(),
                });
                if let Some(b) = current.take() {
                    out.documents.push(b.finish(total_lines, false));
                } else {
                    let first_line = next_first_line.min(pos.line);
                    out.documents
                        .push(Builder::start(first_line).finish(total_lines, false));
                }
                return out;
            }
        };
        match event {
            Event::DocumentStart(explicit, _) => {
                // An explicit `---` starts the document on its own line; anything before it
                // (comments, directives) belongs to nobody.
                let first_line = if explicit {
                    span.start.line()
                } else {
                    next_first_line
                };
                current = Some(Builder::start(first_line));
            }
            Event::DocumentEnd => {
                if let Some(b) = current.take() {
                    // An explicit `...` ends on its own line; an implicit end sits at the start of
                    // whatever comes next (the next `---` or the end of the file).
                    let explicit = span.end != span.start;
                    let last_line = if explicit || span.start.col() > 0 {
                        span.end.line()
                    } else {
                        span.start.line().saturating_sub(1)
                    };
                    next_first_line = last_line + 1;
                    out.documents
                        .push(b.finish(last_line.min(total_lines), true));
                }
            }
            Event::Scalar(value, style, _, _) => {
                if let Some(b) = current.as_mut() {
                    b.node(
                        &span,
                        Kind::Scalar {
                            value: &value,
                            plain: style == ScalarStyle::Plain,
                        },
                    );
                }
            }
            Event::Alias(_) | Event::UnresolvedAlias(_) => {
                if let Some(b) = current.as_mut() {
                    b.node(
                        &span,
                        Kind::Scalar {
                            value: "*",
                            plain: false,
                        },
                    );
                }
            }
            Event::MappingStart(..) => {
                if let Some(b) = current.as_mut() {
                    b.node(&span, Kind::Mapping);
                }
            }
            Event::SequenceStart(..) => {
                if let Some(b) = current.as_mut() {
                    b.node(&span, Kind::Sequence);
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                if let Some(b) = current.as_mut() {
                    b.end(&span);
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TWO_DOCS: &str = "\
# leading comment
name: a
spec:
  containers:
    - name: server
      ports:
        - {name: game, port: 7777}
        - name: http
          port: 8080
labels: {app.kubernetes.io/name: arena}
---
# second
name: b
list: [x, y]
";

    #[test]
    fn paths_map_to_value_and_key_positions() {
        let index = index_file(TWO_DOCS);
        assert!(index.syntax_error.is_none());
        assert_eq!(index.documents.len(), 2);
        let doc = &index.documents[0];
        assert_eq!((doc.first_line, doc.last_line), (1, 10));
        assert_eq!(doc.value("name"), Some(Pos::new(2, 7)));
        assert_eq!(doc.key("name"), Some(Pos::new(2, 1)));
        assert_eq!(doc.value("spec.containers[0].name"), Some(Pos::new(5, 13)));
        assert_eq!(
            doc.value("spec.containers[0].ports[0].port"),
            Some(Pos::new(7, 30))
        );
        assert_eq!(
            doc.key("spec.containers[0].ports[1].port"),
            Some(Pos::new(9, 11))
        );
        assert_eq!(
            doc.value("spec.containers[0].ports[1].port"),
            Some(Pos::new(9, 17))
        );
        assert_eq!(
            doc.value(r#"labels["app.kubernetes.io/name"]"#),
            Some(Pos::new(10, 34))
        );
    }

    #[test]
    fn second_document_has_absolute_lines() {
        let index = index_file(TWO_DOCS);
        let doc = &index.documents[1];
        assert_eq!((doc.first_line, doc.last_line), (11, 14));
        assert_eq!(doc.value("name"), Some(Pos::new(13, 7)));
        assert_eq!(doc.value("list[1]"), Some(Pos::new(14, 11)));
        assert_eq!(doc.value("spec"), None);
    }

    #[test]
    fn position_maps_back_to_deepest_path() {
        let index = index_file(TWO_DOCS);
        let doc = &index.documents[0];
        assert_eq!(
            doc.path_at(Pos::new(9, 18)),
            "spec.containers[0].ports[1].port"
        );
        assert_eq!(
            doc.path_at(Pos::new(9, 11)),
            "spec.containers[0].ports[1].port"
        );
        assert_eq!(
            doc.path_at(Pos::new(7, 18)),
            "spec.containers[0].ports[0].name"
        );
        assert_eq!(doc.path_at(Pos::new(5, 9)), "spec.containers[0].name");
        assert_eq!(doc.path_at(Pos::new(2, 1)), "name");
        assert_eq!(doc.path_at(Pos::new(1, 1)), "");
    }

    #[test]
    fn locate_falls_back_to_the_closest_written_ancestor() {
        let index = index_file(TWO_DOCS);
        let doc = &index.documents[0];
        assert_eq!(doc.locate("spec.containers[0].name"), Pos::new(5, 13));
        // Not written: reported at the key of its closest written ancestor.
        assert_eq!(
            doc.locate("spec.containers[0].ports[1].protocol"),
            Pos::new(8, 11)
        );
        assert_eq!(doc.locate("timeouts.ping"), Pos::new(2, 1));
    }

    #[test]
    fn isolate_keeps_line_numbers() {
        let index = index_file(TWO_DOCS);
        let text = index.documents[1].isolate(TWO_DOCS);
        assert_eq!(text.lines().count(), 14);
        assert_eq!(text.lines().nth(12), Some("name: b"));
        assert!(text.lines().take(10).all(str::is_empty));
    }

    #[test]
    fn empty_documents_are_marked() {
        let index = index_file("---\n# nothing\n---\nname: x\n...\n---\n");
        let empties: Vec<bool> = index.documents.iter().map(|d| d.empty).collect();
        assert_eq!(empties, [true, false, true]);
        assert_eq!(index.documents[1].last_line, 5);
        assert!(index_file("").documents.iter().all(|d| d.empty));
        assert!(
            index_file("# only a comment\n")
                .documents
                .iter()
                .all(|d| d.empty)
        );
    }

    #[test]
    fn syntax_error_keeps_earlier_documents() {
        let index = index_file("name: a\n---\nname: [b\nother: 1\n");
        let err = index.syntax_error.as_ref().expect("syntax error");
        assert!(err.pos.line >= 3, "{err:?}");
        assert_eq!(index.documents.len(), 2);
        assert!(index.documents[0].complete);
        assert!(!index.documents[1].complete);
        assert_eq!(index.documents[1].first_line, 2);
    }

    #[test]
    fn path_spelling_round_trips() {
        let p = push_key(
            &push_index(&push_key("", "spec"), 0),
            "app.kubernetes.io/name",
        );
        assert_eq!(p, r#"spec[0]["app.kubernetes.io/name"]"#);
        assert_eq!(parent_path(&p), Some("spec[0]"));
        assert_eq!(parent_path("spec[0]"), Some("spec"));
        assert_eq!(parent_path("spec"), Some(""));
        assert_eq!(parent_path(""), None);
    }
}
