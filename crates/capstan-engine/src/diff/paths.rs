//! Concrete paths into a JSON value: parsing RFC 6901 pointers, removing the fields a set of
//! paths names, and listing where two values differ. `ignoreDifferences` in all its forms
//! (pointers, jq, managed fields) ends up here as a list of concrete paths.

use serde_json::Value;

use super::DiffError;

/// One step of a concrete path: an object key or an array index.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Seg {
    /// An object key.
    Key(String),
    /// An array index.
    Index(usize),
}

/// A path from the root of a value.
pub(crate) type Path = Vec<Seg>;

/// Parses an RFC 6901 pointer into its reference tokens (still unresolved: a token may be a
/// key or an index, decided against the value it is applied to).
pub(crate) fn parse_pointer(pointer: &str) -> Result<Vec<String>, DiffError> {
    if pointer.is_empty() {
        return Err(DiffError::InvalidPointer {
            pointer: pointer.to_owned(),
            reason: "the empty pointer would ignore the whole object; name a field such as /spec/replicas",
        });
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(DiffError::InvalidPointer {
            pointer: pointer.to_owned(),
            reason: "it must start with '/', e.g. /spec/replicas",
        });
    };
    // `~1` before `~0`, as RFC 6901 says: `~01` is the key `~1`, not `/`.
    Ok(rest
        .split('/')
        .map(|p| p.replace("~1", "/").replace("~0", "~"))
        .collect())
}

/// Resolves pointer tokens against `obj`: the concrete path when it leads to a value.
pub(crate) fn resolve_pointer(obj: &Value, tokens: &[String]) -> Option<Path> {
    let mut cur = obj;
    let mut path = Vec::with_capacity(tokens.len());
    for t in tokens {
        match cur {
            Value::Object(m) => {
                cur = m.get(t.as_str())?;
                path.push(Seg::Key(t.clone()));
            }
            Value::Array(a) => {
                let i: usize = t.parse().ok()?;
                cur = a.get(i)?;
                path.push(Seg::Index(i));
            }
            _ => return None,
        }
    }
    Some(path)
}

/// Removes every field `paths` names from `obj`. Paths are removed deepest-first and, within
/// one array, highest index first, so removing one never shifts another; a path leading to
/// nothing (or under an already removed field) is skipped. The empty path is ignored: nothing
/// may remove a whole object.
pub(crate) fn remove_paths(obj: &mut Value, mut paths: Vec<Path>) {
    paths.sort();
    paths.dedup();
    for path in paths.iter().rev() {
        remove_path(obj, path);
    }
}

fn remove_path(obj: &mut Value, path: &[Seg]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for seg in parents {
        let next = match (cur, seg) {
            (Value::Object(m), Seg::Key(k)) => m.get_mut(k.as_str()),
            (Value::Array(a), Seg::Index(i)) => a.get_mut(*i),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match (cur, last) {
        (Value::Object(m), Seg::Key(k)) => {
            m.shift_remove(k.as_str());
        }
        (Value::Array(a), Seg::Index(i)) if *i < a.len() => {
            a.remove(*i);
        }
        _ => {}
    }
}

/// Escapes an object key for a JSON pointer.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// Renders a path as an RFC 6901 pointer (`/spec/replicas`; the root is `""`).
pub(crate) fn to_pointer(path: &[Seg]) -> String {
    path.iter()
        .map(|s| match s {
            Seg::Key(k) => format!("/{}", escape(k)),
            Seg::Index(i) => format!("/{i}"),
        })
        .collect()
}

/// The pointers at which `a` and `b` differ, in document order: a key present on one side
/// only, a changed scalar, a value of another type. Arrays of the same length are compared
/// item by item; arrays of different lengths are one difference at the array.
pub(crate) fn changed_paths(a: Option<&Value>, b: Option<&Value>) -> Vec<String> {
    let mut out = Vec::new();
    let mut path = Vec::new();
    walk_changes(a, b, &mut path, &mut out);
    out
}

fn walk_changes(a: Option<&Value>, b: Option<&Value>, path: &mut Path, out: &mut Vec<String>) {
    match (a, b) {
        (Some(Value::Object(x)), Some(Value::Object(y))) => {
            // Keys of `a` in its order, then keys only `b` has: stable output for the API.
            let keys = x
                .keys()
                .chain(y.keys().filter(|k| !x.contains_key(k.as_str())));
            for k in keys {
                path.push(Seg::Key(k.clone()));
                walk_changes(x.get(k), y.get(k), path, out);
                path.pop();
            }
        }
        (Some(Value::Array(x)), Some(Value::Array(y))) if x.len() == y.len() => {
            for (i, (xv, yv)) in x.iter().zip(y).enumerate() {
                path.push(Seg::Index(i));
                walk_changes(Some(xv), Some(yv), path, out);
                path.pop();
            }
        }
        (x, y) if x == y => {}
        _ => out.push(to_pointer(path)),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn pointers_parse_with_escapes_and_reject_bad_input() {
        assert_eq!(
            parse_pointer("/metadata/labels/a~1b~0c").expect("valid"),
            vec!["metadata", "labels", "a/b~c"]
        );
        assert_eq!(parse_pointer("/a/~01").expect("valid"), vec!["a", "~1"]);
        assert!(parse_pointer("").is_err());
        assert!(parse_pointer("spec").is_err());
    }

    #[test]
    fn removal_goes_deepest_and_highest_index_first() {
        let mut v = json!({"l": [0, 1, 2, 3], "m": {"a": {"b": 1}, "c": 2}});
        remove_paths(
            &mut v,
            vec![
                vec![Seg::Key("l".into()), Seg::Index(1)],
                vec![Seg::Key("l".into()), Seg::Index(3)],
                vec![Seg::Key("m".into()), Seg::Key("a".into())],
                vec![
                    Seg::Key("m".into()),
                    Seg::Key("a".into()),
                    Seg::Key("b".into()),
                ],
                vec![Seg::Key("nothing".into()), Seg::Index(9)],
                vec![],
            ],
        );
        assert_eq!(v, json!({"l": [0, 2], "m": {"c": 2}}));
    }

    #[test]
    fn changed_paths_name_leaves_and_escape_keys() {
        let a = json!({"spec": {"replicas": 1, "l": [1, 2], "s": [1]},
            "metadata": {"labels": {"a/b": "x"}}});
        let b = json!({"spec": {"replicas": 2, "l": [1, 3], "s": [1, 2], "new": true},
            "metadata": {"labels": {"a/b": "y"}}});
        assert_eq!(
            changed_paths(Some(&a), Some(&b)),
            vec![
                "/spec/replicas",
                "/spec/l/1",
                "/spec/s",
                "/spec/new",
                "/metadata/labels/a~1b"
            ]
        );
        assert_eq!(changed_paths(None, Some(&b)), vec![""]);
        assert!(changed_paths(Some(&a), Some(&a)).is_empty());
    }
}
