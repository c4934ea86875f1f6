//! Builds [`Node`] trees from YAML text, without recursion.
//!
//! The input is first checked against a serde-saphyr [`serde_saphyr::Budget`] (nesting
//! depth, nodes, aliases, anchors, documents, merge keys), then walked event by event with
//! the parser serde-saphyr is built on (`granit_parser`, re-exported by serde-saphyr). The
//! tree is built with an explicit stack, so deeply nested input cannot overflow the thread's
//! stack, and alias expansion is bounded by the number of nodes and bytes it may copy
//! (defence against "billion laughs").
//!
//! Plain scalars are resolved as Kubernetes' YAML reader (go-yaml v2, YAML 1.1) resolves
//! them, so Capstan reads a file the way `kubectl` and Argo CD read it: `yes`/`on`/`y` are
//! `true`, `0755` is octal, `1_000` is a thousand, `~` is null. Timestamps stay text.

use super::node::{Location, Node, NodeValue};
use super::{MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_DOCUMENTS};
use crate::error::ParseError;
use serde_saphyr::budget::{BudgetBreach, EnforcingPolicy};
use serde_saphyr::granit_parser::{Event, Marker, Options, Parser, ScalarStyle, Tag};
use std::collections::HashMap;

/// Most nodes one input may produce, counting every copy an alias makes.
const MAX_NODES: usize = 2_000_000;
/// Most values alias expansion may copy in one input.
const MAX_ALIAS_NODES: usize = 200_000;
/// Most bytes of scalar text alias expansion may copy in one input.
const MAX_ALIAS_BYTES: usize = 16 * 1024 * 1024;

fn budget() -> serde_saphyr::Budget {
    let mut b = serde_saphyr::Budget::default();
    b.max_depth = MAX_DEPTH;
    b.max_documents = MAX_DOCUMENTS;
    b.max_nodes = MAX_NODES;
    b.max_events = 4 * MAX_NODES;
    b.max_aliases = 10_000;
    b.max_anchors = 10_000;
    b.max_merge_keys = 1_000;
    b
}

fn location(marker: &Marker) -> Location {
    Location {
        line: marker.line() as u64,
        column: marker.col() as u64 + 1,
    }
}

fn syntax(message: impl Into<String>, at: Option<Location>) -> ParseError {
    ParseError::Syntax {
        message: message.into(),
        location: at,
    }
}

/// A node under construction.
enum Frame {
    Seq {
        at: Location,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        at: Location,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        /// The pending key, and whether it is a plain `<<` (a merge key).
        key: Option<(Node, bool)>,
        merges: Vec<Node>,
    },
}

/// A completed anchored node, with its size for alias accounting.
struct Anchored {
    node: Node,
    nodes: usize,
    bytes: usize,
}

fn measure(node: &Node) -> (usize, usize) {
    let mut nodes = 0;
    let mut bytes = 0;
    let mut todo = vec![node];
    while let Some(n) = todo.pop() {
        nodes += 1;
        match &n.value {
            NodeValue::Str(s) => bytes += s.len(),
            NodeValue::Seq(items) => todo.extend(items.iter()),
            NodeValue::Map(entries) => {
                for (k, v) in entries {
                    todo.push(k);
                    todo.push(v);
                }
            }
            _ => {}
        }
    }
    (nodes, bytes)
}

/// Re-stamps a copied subtree with the alias's position (errors then point at the alias).
fn relocate(node: &mut Node, at: Location) {
    let mut todo = vec![node];
    while let Some(n) = todo.pop() {
        n.location = Some(at);
        match &mut n.value {
            NodeValue::Seq(items) => todo.extend(items.iter_mut()),
            NodeValue::Map(entries) => {
                for (k, v) in entries.iter_mut() {
                    todo.push(k);
                    todo.push(v);
                }
            }
            _ => {}
        }
    }
}

/// The text form a key has once converted to JSON (used for duplicate detection).
fn key_text(node: &Node) -> Option<String> {
    match &node.value {
        NodeValue::Str(s) => Some(s.clone()),
        NodeValue::Bool(b) => Some(b.to_string()),
        NodeValue::Int(i) => Some(i.to_string()),
        NodeValue::UInt(u) => Some(u.to_string()),
        NodeValue::Float(f) => Some(f.to_string()),
        NodeValue::Null => Some("null".to_owned()),
        NodeValue::Seq(_) | NodeValue::Map(_) => None,
    }
}

fn is_merge_key(node: &Node, plain_merge: bool) -> bool {
    plain_merge && matches!(&node.value, NodeValue::Str(s) if s == "<<")
}

struct Builder<'a> {
    input: &'a str,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Anchored>,
    docs: Vec<Node>,
    root: Option<Node>,
    doc_start: usize,
    nodes: usize,
    alias_nodes: usize,
    alias_bytes: usize,
}

impl Builder<'_> {
    fn count(&mut self, n: usize, at: Location) -> Result<(), ParseError> {
        self.nodes += n;
        if self.nodes > MAX_NODES {
            return Err(syntax(
                format!(
                    "the YAML has more than {MAX_NODES} values (aliases included); make it smaller"
                ),
                Some(at),
            ));
        }
        Ok(())
    }

    fn finish_node(&mut self, node: Node, anchor: usize) -> Result<(), ParseError> {
        if anchor != 0 {
            let (nodes, bytes) = measure(&node);
            self.anchors.insert(
                anchor,
                Anchored {
                    node: node.clone(),
                    nodes,
                    bytes,
                },
            );
        }
        self.attach(node, false)
    }

    /// Adds a completed node to its parent (or makes it the document root).
    fn attach(&mut self, node: Node, plain_merge_key: bool) -> Result<(), ParseError> {
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                Ok(())
            }
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                Ok(())
            }
            Some(Frame::Map {
                entries,
                key,
                merges,
                ..
            }) => match key.take() {
                None => {
                    if matches!(node.value, NodeValue::Seq(_) | NodeValue::Map(_)) {
                        return Err(syntax(
                            "a mapping key is a list or mapping; keys must be text",
                            node.location,
                        ));
                    }
                    *key = Some((node, plain_merge_key));
                    Ok(())
                }
                Some((k, plain)) => {
                    if is_merge_key(&k, plain) {
                        merges.push(node);
                        return Ok(());
                    }
                    let text = key_text(&k);
                    if entries.iter().any(|(e, _)| key_text(e) == text) {
                        let hint = match k.value {
                            NodeValue::Bool(_) | NodeValue::Null => {
                                " (YAML reads unquoted keys such as `yes`, `on`, `y`, `no`, `off`, `n` and `~` as booleans or null; quote them to keep them as text)"
                            }
                            _ => "",
                        };
                        return Err(syntax(
                            format!(
                                "duplicate key `{}`{hint}; each key may appear once in a mapping, remove one",
                                text.unwrap_or_default()
                            ),
                            k.location,
                        ));
                    }
                    entries.push((k, node));
                    Ok(())
                }
            },
        }
    }

    fn end_document(&mut self, end: usize) -> Result<(), ParseError> {
        let size = end.saturating_sub(self.doc_start);
        let number = self.docs.len() + 1;
        if size > MAX_DOCUMENT_BYTES {
            return Err(ParseError::TooLarge {
                what: "the document",
                size,
                limit: MAX_DOCUMENT_BYTES,
            }
            .in_document(number));
        }
        if let Some(root) = self.root.take() {
            // A document holding only `null` (or nothing) is skipped, like an empty file.
            if !matches!(root.value, NodeValue::Null) {
                self.docs.push(root);
            }
        }
        self.anchors.clear();
        Ok(())
    }
}

/// Applies YAML merge keys (`<<: *base`): merged entries never override keys the mapping
/// sets itself, and earlier merge sources win over later ones.
fn apply_merges(
    mut entries: Vec<(Node, Node)>,
    merges: Vec<Node>,
) -> Result<Vec<(Node, Node)>, ParseError> {
    for merge in merges {
        let sources = match merge.value {
            NodeValue::Map(_) => vec![merge],
            NodeValue::Seq(items) => items,
            _ => {
                return Err(syntax(
                    "the value of `<<` must be a mapping or a list of mappings",
                    merge.location,
                ));
            }
        };
        for source in sources {
            let NodeValue::Map(src_entries) = source.value else {
                return Err(syntax(
                    "the value of `<<` must be a mapping or a list of mappings",
                    source.location,
                ));
            };
            for (k, v) in src_entries {
                let text = key_text(&k);
                if !entries.iter().any(|(e, _)| key_text(e) == text) {
                    entries.push((k, v));
                }
            }
        }
    }
    Ok(entries)
}

fn parse_go_int(text: &str) -> Option<i128> {
    let (negative, digits) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if digits.is_empty() {
        return None;
    }
    let lower = digits.to_ascii_lowercase();
    let (radix, body) = if let Some(b) = lower.strip_prefix("0x") {
        (16, b.to_owned())
    } else if let Some(b) = lower.strip_prefix("0b") {
        (2, b.to_owned())
    } else if let Some(b) = lower.strip_prefix("0o") {
        (8, b.to_owned())
    } else if lower.len() > 1 && lower.starts_with('0') {
        (8, lower[1..].to_owned())
    } else {
        (10, lower)
    };
    if body.is_empty() || !body.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let value = i128::from_str_radix(&body, radix).ok()?;
    Some(if negative { -value } else { value })
}

/// YAML 1.1 float syntax as go-yaml v2 accepts it.
fn is_yaml_float(text: &str) -> bool {
    let s = text.strip_prefix(['-', '+']).unwrap_or(text);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            int.chars().all(|c| c.is_ascii_digit())
                && frac.chars().all(|c| c.is_ascii_digit())
                && !(int.is_empty() && frac.is_empty())
                && (!int.is_empty() || !frac.is_empty())
        }
        None => !mantissa.is_empty() && mantissa.chars().all(|c| c.is_ascii_digit()),
    };
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
    });
    mantissa_ok && exponent_ok
}

fn resolve_bool(text: &str) -> Option<bool> {
    match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            Some(true)
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            Some(false)
        }
        _ => None,
    }
}

fn resolve_number(text: &str) -> Option<NodeValue> {
    let plain = text.replace('_', "");
    if let Some(i) = parse_go_int(&plain) {
        if let Ok(i) = i64::try_from(i) {
            return Some(NodeValue::Int(i));
        }
        if let Ok(u) = u64::try_from(i) {
            return Some(NodeValue::UInt(u));
        }
    }
    if is_yaml_float(&plain) {
        return plain.parse::<f64>().ok().map(NodeValue::Float);
    }
    None
}

const NON_FINITE: &[&str] = &[
    ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF", ".nan", ".NaN",
    ".NAN",
];

/// Resolves a plain (unquoted, untagged) scalar.
pub(crate) fn resolve_plain(text: &str, at: Location) -> Result<NodeValue, ParseError> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(NodeValue::Null),
        _ => {}
    }
    if let Some(b) = resolve_bool(text) {
        return Ok(NodeValue::Bool(b));
    }
    if NON_FINITE.contains(&text) {
        return Err(syntax(
            format!(
                "{text} (infinity or not-a-number) cannot be stored as JSON; quote it to keep it as text"
            ),
            Some(at),
        ));
    }
    let first = text.as_bytes()[0];
    if (first.is_ascii_digit() || first == b'-' || first == b'+' || first == b'.')
        && let Some(v) = resolve_number(text)
    {
        return Ok(v);
    }
    Ok(NodeValue::Str(text.to_owned()))
}

fn resolve_tagged(text: &str, tag: &Tag, at: Location) -> Result<NodeValue, ParseError> {
    let wrong = |what: &str| {
        syntax(
            format!(
                "{text:?} is not {what} although it is tagged !!{}",
                tag.suffix()
            ),
            Some(at),
        )
    };
    if tag.is_yaml_core_schema() {
        return match tag.suffix() {
            "str" | "binary" | "timestamp" => Ok(NodeValue::Str(text.to_owned())),
            "null" => Ok(NodeValue::Null),
            "bool" => resolve_bool(text)
                .map(NodeValue::Bool)
                .ok_or_else(|| wrong("a boolean")),
            "int" => match resolve_number(text) {
                Some(v @ (NodeValue::Int(_) | NodeValue::UInt(_))) => Ok(v),
                _ => Err(wrong("a whole number")),
            },
            "float" => match resolve_number(text) {
                Some(NodeValue::Int(i)) => Ok(NodeValue::Float(i as f64)),
                Some(NodeValue::UInt(u)) => Ok(NodeValue::Float(u as f64)),
                Some(v @ NodeValue::Float(_)) => Ok(v),
                _ => Err(wrong("a number")),
            },
            other => Err(syntax(
                format!("the tag !!{other} cannot be used on a scalar; remove it"),
                Some(at),
            )),
        };
    }
    if tag.handle() == "!" && tag.suffix().is_empty() {
        // The non-specific tag `!` forces text.
        return Ok(NodeValue::Str(text.to_owned()));
    }
    Err(syntax(
        format!(
            "unsupported YAML tag `{}`; Kubernetes objects use plain YAML, so remove the tag",
            tag.original()
        ),
        Some(at),
    ))
}

fn check_collection_tag(tag: Option<&Tag>, expected: &str, at: Location) -> Result<(), ParseError> {
    match tag {
        None => Ok(()),
        Some(t) if t.is_yaml_core_schema() && t.suffix() == expected => Ok(()),
        Some(t) => Err(syntax(
            format!(
                "unsupported YAML tag `{}` on a collection; remove the tag",
                t.original()
            ),
            Some(at),
        )),
    }
}

/// Says which limit an input went over, and what to do.
fn describe_breach(breach: &BudgetBreach) -> String {
    let what = match breach {
        BudgetBreach::Depth { .. } => {
            format!("lists and mappings nest deeper than {MAX_DEPTH} levels")
        }
        BudgetBreach::Aliases { .. } | BudgetBreach::AliasAnchorRatio { .. } => {
            "it uses too many aliases (`*name`)".to_owned()
        }
        BudgetBreach::Anchors { .. } => "it defines too many anchors (`&name`)".to_owned(),
        BudgetBreach::Documents { .. } => format!("it holds more than {MAX_DOCUMENTS} documents"),
        BudgetBreach::Nodes { .. } | BudgetBreach::Events { .. } => {
            format!("it holds more than {MAX_NODES} values")
        }
        BudgetBreach::MergeKeys { .. } => "it uses too many merge keys (`<<`)".to_owned(),
        other => format!("it goes over a parser limit ({other:?})"),
    };
    format!(
        "the YAML is too large or too complex: {what}; simplify it or split it into smaller documents"
    )
}

/// Parses a YAML stream into one node per non-empty document.
pub(crate) fn parse_stream(input: &str) -> Result<Vec<Node>, ParseError> {
    // First pass: serde-saphyr's streaming budget check (no tree is built).
    match serde_saphyr::budget::check_yaml_budget(input, budget(), EnforcingPolicy::AllContent) {
        Ok(report) => {
            if let Some(breach) = report.breached {
                return Err(syntax(describe_breach(&breach), None));
            }
        }
        Err(e) => {
            return Err(syntax(
                format!("invalid YAML: {}", e.info()),
                Some(location(e.marker())),
            ));
        }
    }

    let mut options = Options::default();
    options.flow_nesting_limit = MAX_DEPTH;
    options.block_nesting_limit = MAX_DEPTH + 1;
    let parser = Parser::new_from_str_with_options(input, options);
    let mut b = Builder {
        input,
        stack: Vec::new(),
        anchors: HashMap::new(),
        docs: Vec::new(),
        root: None,
        doc_start: 0,
        nodes: 0,
        alias_nodes: 0,
        alias_bytes: 0,
    };
    for item in parser {
        let (event, span) = item.map_err(|e| {
            syntax(
                format!("invalid YAML: {}", e.info()),
                Some(location(e.marker())),
            )
        })?;
        let at = location(&span.start);
        let offset = span
            .start
            .byte_offset()
            .unwrap_or_else(|| span.start.index());
        match event {
            Event::StreamStart | Event::StreamEnd => {}
            Event::DocumentStart(..) => {
                b.doc_start = offset;
                b.root = None;
            }
            Event::DocumentEnd => {
                let end = span.end.byte_offset().unwrap_or(b.input.len());
                b.end_document(end.max(offset))?;
            }
            Event::Scalar(text, style, anchor, tag) => {
                b.count(1, at)?;
                let value = match (&tag, style) {
                    (Some(tag), _) => resolve_tagged(&text, tag, at)?,
                    (None, ScalarStyle::Plain) => resolve_plain(&text, at)?,
                    (None, _) => NodeValue::Str(text.into_owned()),
                };
                let plain_merge = tag.is_none() && style == ScalarStyle::Plain;
                let node = Node {
                    location: Some(at),
                    value,
                };
                if anchor != 0 {
                    let (nodes, bytes) = measure(&node);
                    b.anchors.insert(
                        anchor,
                        Anchored {
                            node: node.clone(),
                            nodes,
                            bytes,
                        },
                    );
                }
                b.attach(node, plain_merge)?;
            }
            Event::SequenceStart(_, anchor, tag) => {
                b.count(1, at)?;
                check_collection_tag(tag.as_deref(), "seq", at)?;
                if b.stack.len() >= MAX_DEPTH {
                    return Err(syntax(
                        format!("nesting is deeper than {MAX_DEPTH} levels; flatten the document"),
                        Some(at),
                    ));
                }
                b.stack.push(Frame::Seq {
                    at,
                    anchor,
                    items: Vec::new(),
                });
            }
            Event::MappingStart(_, anchor, tag) => {
                b.count(1, at)?;
                check_collection_tag(tag.as_deref(), "map", at)?;
                if b.stack.len() >= MAX_DEPTH {
                    return Err(syntax(
                        format!("nesting is deeper than {MAX_DEPTH} levels; flatten the document"),
                        Some(at),
                    ));
                }
                b.stack.push(Frame::Map {
                    at,
                    anchor,
                    entries: Vec::new(),
                    key: None,
                    merges: Vec::new(),
                });
            }
            Event::SequenceEnd => {
                let Some(Frame::Seq { at, anchor, items }) = b.stack.pop() else {
                    return Err(syntax("invalid YAML: unbalanced sequence end", Some(at)));
                };
                let node = Node {
                    location: Some(at),
                    value: NodeValue::Seq(items),
                };
                b.finish_node(node, anchor)?;
            }
            Event::MappingEnd => {
                let Some(Frame::Map {
                    at,
                    anchor,
                    entries,
                    key,
                    merges,
                }) = b.stack.pop()
                else {
                    return Err(syntax("invalid YAML: unbalanced mapping end", Some(at)));
                };
                if let Some((k, _)) = key {
                    return Err(syntax("invalid YAML: a key has no value", k.location));
                }
                let entries = apply_merges(entries, merges)?;
                let node = Node {
                    location: Some(at),
                    value: NodeValue::Map(entries),
                };
                b.finish_node(node, anchor)?;
            }
            Event::Alias(id) => {
                let Some(anchored) = b.anchors.get(&id) else {
                    return Err(syntax(
                        "an alias refers to a node that contains it (or is not defined); aliases must refer to a complete, earlier node",
                        Some(at),
                    ));
                };
                let (nodes, bytes) = (anchored.nodes, anchored.bytes);
                b.alias_nodes += nodes;
                b.alias_bytes += bytes;
                if b.alias_nodes > MAX_ALIAS_NODES || b.alias_bytes > MAX_ALIAS_BYTES {
                    return Err(syntax(
                        format!(
                            "aliases expand to more than {MAX_ALIAS_NODES} values or {MAX_ALIAS_BYTES} bytes of text; use fewer aliases"
                        ),
                        Some(at),
                    ));
                }
                let mut copy = anchored.node.clone();
                b.count(nodes, at)?;
                relocate(&mut copy, at);
                // An alias used as a key keeps `<<` semantics only when written plainly.
                b.attach(copy, false)?;
            }
            _ => {}
        }
    }
    Ok(b.docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(yaml: &str) -> NodeValue {
        let mut docs = parse_stream(yaml).expect("parses");
        assert_eq!(docs.len(), 1);
        docs.remove(0).value
    }

    fn scalar(text: &str) -> NodeValue {
        match one(&format!("k: {text}\n")) {
            NodeValue::Map(mut e) => e.remove(0).1.value,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn resolves_scalars_like_kubernetes() {
        assert_eq!(scalar("yes"), NodeValue::Bool(true));
        assert_eq!(scalar("off"), NodeValue::Bool(false));
        assert_eq!(scalar("y"), NodeValue::Bool(true));
        assert_eq!(scalar("~"), NodeValue::Null);
        assert_eq!(scalar(""), NodeValue::Null);
        assert_eq!(scalar("0755"), NodeValue::Int(493));
        assert_eq!(scalar("0x1F"), NodeValue::Int(31));
        assert_eq!(scalar("1_000"), NodeValue::Int(1000));
        assert_eq!(scalar("-12"), NodeValue::Int(-12));
        assert_eq!(scalar("1.5"), NodeValue::Float(1.5));
        assert_eq!(scalar("1e3"), NodeValue::Float(1000.0));
        assert_eq!(scalar("08"), NodeValue::Float(8.0));
        assert_eq!(scalar("18446744073709551615"), NodeValue::UInt(u64::MAX));
        assert_eq!(scalar("\"yes\""), NodeValue::Str("yes".into()));
        assert_eq!(scalar("'0755'"), NodeValue::Str("0755".into()));
        assert_eq!(scalar("!!str 12"), NodeValue::Str("12".into()));
        assert_eq!(scalar("!!int \"12\""), NodeValue::Int(12));
        assert_eq!(scalar("1.2.3"), NodeValue::Str("1.2.3".into()));
        assert_eq!(scalar("2024-01-01"), NodeValue::Str("2024-01-01".into()));
        assert_eq!(scalar("-x"), NodeValue::Str("-x".into()));
        assert!(parse_stream("k: .inf\n").is_err());
        assert!(parse_stream("k: !custom x\n").is_err());
    }

    #[test]
    fn anchors_aliases_and_merge_keys() {
        let v = one("base: &b {a: 1, b: 2}\nuse:\n  <<: *b\n  b: 3\n");
        let NodeValue::Map(entries) = v else { panic!() };
        let NodeValue::Map(used) = &entries[1].1.value else {
            panic!()
        };
        let keys: Vec<_> = used
            .iter()
            .map(|(k, v)| (key_text(k), v.value.clone()))
            .collect();
        assert_eq!(
            keys,
            vec![
                (Some("b".into()), NodeValue::Int(3)),
                (Some("a".into()), NodeValue::Int(1)),
            ]
        );
        assert!(parse_stream("a: &a [*a]\n").is_err());
        assert!(parse_stream("a: 1\na: 2\n").is_err());
    }

    #[test]
    fn documents_and_locations() {
        let docs =
            parse_stream("---\na: 1\n---\n# only a comment\n---\nb: [x]\n...\n").expect("parses");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].location, Some(Location { line: 6, column: 1 }));
    }

    #[test]
    fn deep_nesting_is_refused_without_overflowing_the_stack() {
        let flow = format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(parse_stream(&flow).is_err());
        let block: String = (0..200)
            .map(|i| format!("{}k:\n", "  ".repeat(i)))
            .collect();
        assert!(parse_stream(&block).is_err());
        let ok: String = (0..MAX_DEPTH)
            .map(|i| format!("{}k:\n", "  ".repeat(i)))
            .collect();
        assert!(parse_stream(&ok).is_ok());
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut yaml = String::from("a: &a [x,x,x,x,x,x,x,x,x,x]\n");
        let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
        for w in names.windows(2) {
            let refs = vec![format!("*{}", w[0]); 10].join(",");
            yaml.push_str(&format!("{}: &{} [{refs}]\n", w[1], w[1]));
        }
        assert!(parse_stream(&yaml).is_err());
    }
}
