//! Loading a revision: the YAML files of one git revision (or directory) → located, validated
//! schedulers.
//!
//! Every `.yaml`/`.yml` file is read, every non-empty document in it is one [`Scheduler`].
//! Must hold:
//! - All problems of a revision are reported together, never just the first: every file, every
//!   document. Per document that is serde's first error (serde stops there) or, when the document
//!   parsed, every semantic issue; then duplicate scheduler names across the revision.
//! - Every problem names file, line, column (1-based) and field path, and the list is in a
//!   deterministic order (file, then line, then column), so CI output and plan diffs are stable.
//! - Any problem anywhere fails the whole revision: callers get either every scheduler or none.

use std::collections::HashMap;
use std::fmt;

use serde_saphyr::{MessageFormatter, UserMessageFormatter};

use super::yaml_index::{
    DocumentIndex, Node, NodeKind, Pos, index_file, parent_path, push_index, push_key,
};
use super::{Scheduler, validate};

/// One file of a revision, path relative to the source root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub path: String,
    pub contents: String,
}

/// A scheduler and where it was declared.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub file: String,
    /// Line of the document's first content (its root mapping), 1-based.
    pub line: usize,
    pub scheduler: Scheduler,
}

impl Document {
    /// Where the scheduler is declared.
    pub fn declared(&self) -> Declared {
        Declared {
            file: self.file.clone(),
            line: self.line,
        }
    }
}

/// Where a scheduler is declared in its revision: file (relative to the source root) and the
/// line its document starts on. Shown as `file:line`, before what is wrong with it.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct Declared {
    pub file: String,
    /// 1-based.
    pub line: usize,
}

impl fmt::Display for Declared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// Path shown for a problem that concerns a whole document rather than one of its fields.
pub const DOCUMENT_PATH: &str = "(document)";

/// One problem in a revision, located: file, line, column (1-based) and field path.
#[derive(
    Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct Located {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Field path inside the document, e.g. `spec.containers[0].ports[1].port`;
    /// [`DOCUMENT_PATH`] when the problem is the document itself.
    pub path: String,
    pub message: String,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.path, self.message
        )
    }
}

/// All problems of a revision at once, in file, line, column order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} error(s) in revision", .0.len())]
pub struct LoadError(pub Vec<Located>);

/// Whether a file of the source is a scheduler file.
pub fn is_scheduler_file(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    lower.ends_with(".yaml") || lower.ends_with(".yml")
}

/// Parse and validate every file of a revision; any error anywhere fails the whole revision.
pub fn load_documents(files: &[SourceFile]) -> Result<Vec<Document>, LoadError> {
    let mut files: Vec<&SourceFile> = files
        .iter()
        .filter(|f| is_scheduler_file(&f.path))
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));

    let mut loader = Loader::default();
    for file in files {
        loader.file(file);
    }
    loader.duplicate_names();

    let Loader {
        mut errors,
        documents,
    } = loader;
    if errors.is_empty() {
        return Ok(documents.into_iter().map(|(doc, _)| doc).collect());
    }
    errors.sort_by(|a, b| (&a.file, a.line, a.column).cmp(&(&b.file, b.line, b.column)));
    Err(LoadError(errors))
}

#[derive(Default)]
struct Loader {
    errors: Vec<Located>,
    /// Parsed documents with the position of their `name` value, in (file, line) order.
    documents: Vec<(Document, Pos)>,
}

impl Loader {
    fn error(&mut self, file: &str, pos: Pos, path: &str, message: impl Into<String>) {
        let path = if path.is_empty() { DOCUMENT_PATH } else { path };
        self.errors.push(Located {
            file: file.to_string(),
            line: pos.line,
            column: pos.column,
            path: path.to_string(),
            message: message.into(),
        });
    }

    fn file(&mut self, file: &SourceFile) {
        let index = index_file(&file.contents);
        for doc in index.documents.iter().filter(|d| d.complete && !d.empty) {
            self.document(file, doc);
        }
        if let Some(err) = &index.syntax_error {
            // The parser cannot resynchronise after a syntax error: later documents of this file
            // are unknown, earlier ones were loaded above.
            let path = index.documents.last().map_or("", |d| d.path_at(err.pos));
            self.error(
                &file.path,
                err.pos,
                path,
                format!("YAML syntax error: {}", err.message),
            );
        }
    }

    fn document(&mut self, file: &SourceFile, doc: &DocumentIndex) {
        if let Some(kind) = doc.root_kind.filter(|k| *k != NodeKind::Mapping) {
            let root = doc.root.unwrap_or(Pos::new(doc.first_line, 1));
            self.error(
                &file.path,
                root,
                "",
                format!(
                    "a scheduler document must be a mapping (name: ..., game: ..., spec: ...), found {}",
                    kind.describe()
                ),
            );
            return;
        }
        let text = doc.isolate(&file.contents);
        // Troupe's own types refuse unknown fields as they parse; Kubernetes' types (the pod
        // fields passed through) skip them, so every skipped key is collected and refused here.
        let mut unknown = Vec::new();
        let parsed = serde_saphyr::with_deserializer_from_str(&text, |de| {
            serde_ignored::deserialize(de, |path| unknown.push(field_path(&path)))
        });
        match parsed {
            Ok(scheduler) => {
                for path in unknown {
                    let pos = doc.key(&path).unwrap_or_else(|| doc.locate(&path));
                    let field = path.rsplit(['.', '[']).next().unwrap_or(&path);
                    let field = field.trim_matches(|c| c == '"' || c == ']');
                    self.error(&file.path, pos, &path, format!("unknown field `{field}`"));
                }
                for issue in validate(&scheduler) {
                    let key = if issue.on_key {
                        doc.key(&issue.path)
                    } else {
                        None
                    };
                    let pos = key.unwrap_or_else(|| doc.locate(&issue.path));
                    self.error(&file.path, pos, &issue.path, issue.message);
                }
                let root = doc.root.unwrap_or(Pos::new(doc.first_line, 1));
                let name_pos = doc.value("name").unwrap_or(root);
                let document = Document {
                    file: file.path.clone(),
                    line: root.line,
                    scheduler,
                };
                self.documents.push((document, name_pos));
            }
            Err(err) => {
                let (pos, path, message) = describe_serde_error(doc, &err);
                self.error(&file.path, pos, &path, message);
            }
        }
    }

    /// Scheduler names are unique across the revision: the later declaration is the error, and
    /// it names the earlier one.
    fn duplicate_names(&mut self) {
        let mut first: HashMap<String, (String, Pos)> = HashMap::new();
        let mut found = Vec::new();
        for (doc, pos) in &self.documents {
            let name = &doc.scheduler.name;
            match first.get(name) {
                Some((file, at)) => found.push((
                    doc.file.clone(),
                    *pos,
                    format!(
                        "scheduler name {name:?} is already declared at {file}:{}:{}; names must be unique across the repository",
                        at.line, at.column
                    ),
                )),
                None => {
                    first.insert(name.clone(), (doc.file.clone(), *pos));
                }
            }
        }
        for (file, pos, message) in found {
            self.error(&file, pos, "name", message);
        }
    }
}

/// A path as serde_ignored names it, in the index's spelling (`spec.containers[0].name`).
fn field_path(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => push_index(&field_path(parent), *index),
        Path::Map { parent, key } => push_key(&field_path(parent), key),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

/// Position, field path and user-facing message of a serde error in `doc`.
fn describe_serde_error(doc: &DocumentIndex, err: &serde_saphyr::Error) -> (Pos, String, String) {
    let root = doc.root.unwrap_or(Pos::new(doc.first_line, 1));
    let pos = err
        .location()
        .filter(|l| l.line() > 0)
        .map(|l| Pos::new(l.line() as usize, (l.column() as usize).max(1)))
        .unwrap_or(root);
    let inner = err.without_snippet();
    match inner {
        serde_saphyr::Error::SerdeMissingField { field, .. } => {
            // serde-saphyr reports a missing field at the last key it read in the mapping (or at
            // the mapping itself when it is empty). Report it where the mapping is, under the
            // path of the field that is missing.
            let mapping = match doc.path_of_key_at(pos) {
                Some(key_path) => parent_path(key_path).unwrap_or(""),
                None => doc.path_at(pos),
            };
            (
                doc.locate(mapping),
                push_key(mapping, field),
                format!("missing required field `{field}`"),
            )
        }
        serde_saphyr::Error::InvalidScalar { ty, .. } => (
            pos,
            doc.path_at(pos).to_string(),
            format!("expected {}{}", describe_scalar_type(ty), found(doc, pos)),
        ),
        serde_saphyr::Error::Unexpected { expected, .. } => {
            let expected = match *expected {
                "sequence start" => "a list",
                "mapping start" => "a mapping",
                "string scalar" => "a string",
                other => other,
            };
            (
                pos,
                doc.path_at(pos).to_string(),
                format!("expected {expected}{}", found(doc, pos)),
            )
        }
        _ => {
            let message = UserMessageFormatter.format_message(inner).into_owned();
            (pos, doc.path_at(pos).to_string(), message)
        }
    }
}

/// `, found "text"` (or `, found a list`) for the value at `pos`, when it is indexed.
fn found(doc: &DocumentIndex, pos: Pos) -> String {
    match doc.node_at(pos) {
        Some(Node {
            scalar: Some(text), ..
        }) => format!(", found {text:?}"),
        Some(node) => format!(", found {}", node.kind.describe()),
        None => String::new(),
    }
}

/// serde-saphyr names Rust types ("u16"); users wrote YAML. Say what a valid value looks like.
fn describe_scalar_type(ty: &str) -> String {
    match ty {
        "u8" => format!("a whole number from 0 to {}", u8::MAX),
        "u16" => format!("a whole number from 0 to {}", u16::MAX),
        "u32" => format!("a whole number from 0 to {}", u32::MAX),
        "u64" | "u128" | "usize" => "a whole number, 0 or more".to_string(),
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number".to_string(),
        "f32" | "f64" => "a number".to_string(),
        "bool" | "boolean" => "true or false".to_string(),
        "char" => "a single character".to_string(),
        other => format!("a value of type {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARENA: &str = "\
# The arena fleet.
name: arena-eu
game: arena
roomsReplicas: 4
portRange: {start: 40000, end: 40100}
spec:
  containers:
    - name: server
      image: registry.example/arena:1.4.2
      ports:
        - {name: game, protocol: UDP, port: 7777}
        - name: http
          port: 8080
";

    fn file(path: &str, contents: &str) -> SourceFile {
        SourceFile {
            path: path.to_string(),
            contents: contents.to_string(),
        }
    }

    /// 1-based (line, column) of the `nth` occurrence of `needle` in `text`.
    fn pos_of(text: &str, needle: &str, nth: usize) -> (usize, usize) {
        let (offset, _) = text
            .match_indices(needle)
            .nth(nth)
            .unwrap_or_else(|| panic!("{needle:?} not in fixture"));
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    fn errors(files: &[SourceFile]) -> Vec<Located> {
        match load_documents(files) {
            Ok(docs) => panic!("expected errors, loaded {} scheduler(s)", docs.len()),
            Err(LoadError(errors)) => errors,
        }
    }

    #[test]
    fn valid_revision_loads_every_document_in_file_order() {
        let racer = ARENA
            .replace("arena-eu", "racer-us")
            .replace("game: arena", "game: racer");
        let party = format!(
            "---\n# empty documents are skipped\n---\n{}",
            ARENA.replace("arena-eu", "arena-party")
        );
        let docs = load_documents(&[
            file("racer.yml", &racer),
            file("README.md", "not: [yaml"),
            file("arena.yaml", &format!("{ARENA}---\n{party}")),
        ])
        .expect("valid revision");
        let names: Vec<(&str, &str, usize)> = docs
            .iter()
            .map(|d| (d.file.as_str(), d.scheduler.name.as_str(), d.line))
            .collect();
        assert_eq!(
            names,
            [
                ("arena.yaml", "arena-eu", 2),
                ("arena.yaml", "arena-party", 19),
                ("racer.yml", "racer-us", 2)
            ]
        );
    }

    #[test]
    fn semantic_error_points_at_the_offending_value() {
        let text = ARENA.replace("port: 8080", "port: 0");
        let errs = errors(&[file("arena.yaml", &text)]);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        let (line, column) = pos_of(&text, "0\n", 0);
        assert_eq!(
            (errs[0].line, errs[0].column),
            (line, column),
            "{}",
            errs[0]
        );
        assert_eq!(errs[0].path, "spec.containers[0].ports[1].port");
        assert_eq!(
            errs[0].to_string(),
            format!(
                "arena.yaml:{line}:{column}: spec.containers[0].ports[1].port: port must be between 1 and 65535"
            )
        );
    }

    #[test]
    fn bad_label_key_is_reported_on_the_key() {
        let text = ARENA.replace("game: arena\n", "game: arena\nlabels:\n  Bad Key: x\n");
        let errs = errors(&[file("arena.yaml", &text)]);
        assert_eq!(
            (errs[0].line, errs[0].column),
            pos_of(&text, "Bad Key", 0),
            "{}",
            errs[0]
        );
        assert_eq!(errs[0].path, "labels[\"Bad Key\"]");
    }

    #[test]
    fn defaulted_field_is_reported_at_its_closest_written_parent() {
        let text = ARENA.replace("roomsReplicas: 4\n", "");
        let errs = errors(&[file("arena.yaml", &text)]);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert_eq!(
            (errs[0].line, errs[0].column, errs[0].path.as_str()),
            (2, 1, "roomsReplicas")
        );
    }

    #[test]
    fn unknown_field_names_the_field_and_where() {
        let text = ARENA.replace("      image:", "      imagee:");
        let errs = errors(&[file("arena.yaml", &text)]);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert_eq!((errs[0].line, errs[0].column), pos_of(&text, "imagee", 0));
        assert_eq!(errs[0].path, "spec.containers[0].imagee");
        assert!(
            errs[0].message.contains("unknown field `imagee`"),
            "{}",
            errs[0]
        );
        assert!(
            errs[0].message.contains("image"),
            "lists the expected fields: {}",
            errs[0]
        );
    }

    #[test]
    fn wrong_type_names_what_was_expected_and_found() {
        let text = ARENA.replace("port: 7777", "port: seven");
        let errs = errors(&[file("arena.yaml", &text)]);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert_eq!((errs[0].line, errs[0].column), pos_of(&text, "seven", 0));
        assert_eq!(errs[0].path, "spec.containers[0].ports[0].port");
        assert_eq!(
            errs[0].message,
            "expected a whole number from 0 to 65535, found \"seven\""
        );

        let text = ARENA.replace("  containers:\n", "  containers: server\n  x:\n");
        let errs = errors(&[file("arena.yaml", &text)]);
        assert_eq!(errs[0].path, "spec.containers");
        assert_eq!(errs[0].message, "expected a list, found \"server\"");
    }

    #[test]
    fn missing_field_is_named_under_its_mapping() {
        let text = ARENA.replace("      image: registry.example/arena:1.4.2\n", "");
        let errs = errors(&[file("arena.yaml", &text)]);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert_eq!(errs[0].path, "spec.containers[0].image");
        assert_eq!(errs[0].message, "missing required field `image`");
        assert_eq!(
            (errs[0].line, errs[0].column),
            pos_of(&text, "name: server", 0)
        );

        let errs = errors(&[file("arena.yaml", &ARENA.replace("game: arena\n", ""))]);
        assert_eq!(
            (errs[0].line, errs[0].column, errs[0].path.as_str()),
            (2, 1, "game")
        );
    }

    #[test]
    fn syntax_error_is_located_and_earlier_documents_still_checked() {
        let text = format!(
            "{}---\n{}",
            ARENA.replace("port: 8080", "port: 0"),
            "name: [broken\ngame: x\n"
        );
        let errs = errors(&[file("arena.yaml", &text)]);
        assert_eq!(errs.len(), 2, "{errs:#?}");
        assert_eq!(errs[0].path, "spec.containers[0].ports[1].port");
        assert!(
            errs[1].message.starts_with("YAML syntax error: "),
            "{}",
            errs[1]
        );
        assert!(
            errs[1].line > 14,
            "the syntax error is in the second document: {}",
            errs[1]
        );
    }

    #[test]
    fn errors_in_two_files_are_all_reported_in_order() {
        let a = ARENA
            .replace("name: arena-eu", "name: Arena")
            .replace("port: 7777", "port: 0");
        let b = ARENA
            .replace("arena-eu", "racer-us")
            .replace("roomsReplicas: 4", "roomsReplicas: many");
        let errs = errors(&[file("b.yaml", &b), file("a.yaml", &a)]);
        let got: Vec<(&str, usize, &str)> = errs
            .iter()
            .map(|e| (e.file.as_str(), e.line, e.path.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("a.yaml", 2, "name"),
                ("a.yaml", 11, "spec.containers[0].ports[0].port"),
                ("b.yaml", 4, "roomsReplicas")
            ]
        );
    }

    #[test]
    fn duplicate_scheduler_names_name_both_places() {
        let errs = errors(&[
            file("one.yaml", ARENA),
            file("two.yaml", &format!("\n\n{ARENA}")),
        ]);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert_eq!(
            (
                errs[0].file.as_str(),
                errs[0].line,
                errs[0].column,
                errs[0].path.as_str()
            ),
            ("two.yaml", 4, 7, "name")
        );
        assert!(
            errs[0].message.contains("already declared at one.yaml:2:7"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn non_mapping_document_is_refused() {
        let errs = errors(&[file("list.yaml", "- name: a\n- name: b\n")]);
        assert_eq!(
            (errs[0].line, errs[0].column, errs[0].path.as_str()),
            (1, 1, DOCUMENT_PATH)
        );
        assert!(errs[0].message.contains("must be a mapping"), "{}", errs[0]);
    }

    #[test]
    fn anchors_and_merge_keys_work_within_a_document() {
        let text = "\
name: arena-eu
game: arena
roomsReplicas: 1
portRange: {start: 40000, end: 40010}
labels: &labels {team: arena}
annotations: *labels
spec:
  containers:
    - &server
      name: server
      image: registry.example/arena:1
    - <<: *server
      name: sidecar
";
        let docs = load_documents(&[file("a.yaml", text)]).expect("valid");
        let containers = &docs[0].scheduler.spec.containers;
        assert_eq!(
            (containers[1].name.as_str(), containers[1].image.as_str()),
            ("sidecar", "registry.example/arena:1")
        );
        assert_eq!(
            docs[0]
                .scheduler
                .annotations
                .get("team")
                .map(String::as_str),
            Some("arena")
        );
    }

    #[test]
    fn loading_is_deterministic() {
        let files = [
            file("z.yaml", &ARENA.replace("game: arena", "game: ''")),
            file(
                "a.yaml",
                &ARENA
                    .replace("port: 7777", "port: 0")
                    .replace("name: server", "name: Server"),
            ),
        ];
        let first = errors(&files);
        let mut reversed = files.to_vec();
        reversed.reverse();
        assert_eq!(first, errors(&reversed));
    }

    /// Kubernetes' types skip fields they do not know; a typo inside a probe must not vanish.
    #[test]
    fn an_unknown_field_inside_a_kubernetes_field_is_an_error_at_its_key() {
        let text = ARENA.replace(
            "      ports:\n",
            "      readinessProbe:\n        httpGet: {path: /ready, port: 8080}\n        periodSecond: 5\n      ports:\n",
        );
        let errs = errors(&[file("arena.yaml", &text)]);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert_eq!(
            errs[0].path,
            "spec.containers[0].readinessProbe.periodSecond"
        );
        assert_eq!(
            (errs[0].line, errs[0].column),
            pos_of(&text, "periodSecond", 0)
        );
        assert_eq!(errs[0].message, "unknown field `periodSecond`");
    }

    #[test]
    fn a_wrong_type_inside_a_volume_is_an_error_at_its_value() {
        let text = ARENA.replace(
            "spec:\n",
            "spec:\n  volumes:\n    - name: config\n      configMap: {name: arena, defaultMode: rw}\n",
        );
        let errs = errors(&[file("arena.yaml", &text)]);
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert_eq!(errs[0].path, "spec.volumes[0].configMap.defaultMode");
        assert_eq!((errs[0].line, errs[0].column), pos_of(&text, "rw", 0));
    }

    #[test]
    fn what_troupe_owns_in_a_pod_is_refused_where_it_is_written() {
        let text = ARENA
            .replace(
                "{name: game, protocol: UDP, port: 7777}",
                "{name: game, protocol: UDP, containerPort: 7777, hostPort: 7777}",
            )
            .replace("roomsReplicas: 4", "roomsReplicas: 4\nlabels: {troupe.dev/room: mine}")
            .replace(
                "spec:\n",
                "spec:\n  restartPolicy: Always\n  initContainers:\n    - name: agent\n      image: registry.example/agent:1\n      restartPolicy: Always\n      env: [{name: TROUPE_ROOM, value: x}]\n",
            );
        let errs = errors(&[file("arena.yaml", &text)]);
        let got: Vec<(&str, (usize, usize))> = errs
            .iter()
            .map(|e| (e.path.as_str(), (e.line, e.column)))
            .collect();
        assert_eq!(
            got,
            [
                (
                    r#"labels["troupe.dev/room"]"#,
                    pos_of(&text, "troupe.dev/room", 0)
                ),
                ("spec.restartPolicy", pos_of(&text, "Always", 0)),
                (
                    "spec.initContainers[0].env[0].name",
                    pos_of(&text, "TROUPE_ROOM", 0)
                ),
                (
                    "spec.containers[0].ports[0].hostPort",
                    pos_of(&text, "7777}", 0)
                ),
            ],
            "{errs:#?}"
        );
    }

    #[test]
    fn a_whole_kubernetes_pod_loads() {
        let text = ARENA.replace(
            "spec:\n  containers:\n    - name: server\n",
            concat!(
                "spec:\n",
                "  terminationGracePeriodSeconds: 20\n",
                "  serviceAccountName: arena\n",
                "  imagePullSecrets: [{name: registry}]\n",
                "  priorityClassName: game\n",
                "  securityContext: {runAsNonRoot: true, runAsUser: 1000, seccompProfile: {type: RuntimeDefault}}\n",
                "  volumes:\n",
                "    - {name: config, configMap: {name: arena-config}}\n",
                "    - {name: scratch, emptyDir: {medium: Memory, sizeLimit: 64Mi}}\n",
                "  topologySpreadConstraints:\n",
                "    - {maxSkew: 1, topologyKey: zone, whenUnsatisfiable: ScheduleAnyway, labelSelector: {matchLabels: {game: arena}}}\n",
                "  initContainers:\n",
                "    - {name: logs, image: registry.example/vector:0.40, restartPolicy: Always}\n",
                "  containers:\n",
                "    - name: server\n",
                "      env:\n",
                "        - name: API_KEY\n",
                "          valueFrom: {secretKeyRef: {name: arena, key: api-key}}\n",
                "      envFrom: [{configMapRef: {name: arena-env}}]\n",
                "      volumeMounts: [{name: config, mountPath: /etc/arena, readOnly: true}]\n",
                "      readinessProbe: {httpGet: {path: /ready, port: 8080}, periodSeconds: 2}\n",
                "      securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}}\n",
                "      imagePullPolicy: IfNotPresent\n",
                "      requests: {cpu: 500m, nvidia.com/gpu: 1}\n",
            ),
        );
        let docs =
            load_documents(&[file("arena.yaml", &text)]).unwrap_or_else(|e| panic!("{:#?}", e.0));
        let spec = &docs[0].scheduler.spec;
        assert_eq!(spec.grace(), std::time::Duration::from_secs(20));
        assert_eq!(spec.volumes.as_ref().map(Vec::len), Some(2));
        let server = &spec.containers[0];
        assert_eq!(
            server.env[0]
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .map(|r| r.key.as_str()),
            Some("api-key")
        );
        assert_eq!(
            server.requests.get("nvidia.com/gpu").map(|q| q.to_string()),
            Some("1".into())
        );
        assert!(server.readiness_probe.is_some());
    }
}
