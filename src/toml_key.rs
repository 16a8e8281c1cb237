//! Which key a byte offset of a TOML document falls in, so that a type error
//! from serde (`invalid type: string "one", expected i64`, which names no
//! key) can say `key `limits.max_sessions``. The document is re-read with
//! toml_edit, which keeps every key's and value's span.

use std::ops::Range;
use toml_edit::{ImDocument, InlineTable, Item, Table, Value};

/// The dotted path (`limits.max_sessions`, `trusted_keys[1]`,
/// `test[3].service`) of the innermost key or value whose text holds
/// `offset`, or `None` when the document does not parse or no key holds it.
pub fn key_at(text: &str, offset: usize) -> Option<String> {
    let doc = ImDocument::parse(text).ok()?;
    let mut path = Vec::new();
    table(doc.as_table(), offset, &mut path).then(|| path.join("."))
}

fn holds(span: Option<Range<usize>>, at: usize) -> bool {
    span.is_some_and(|s| s.start <= at && at < s.end.max(s.start + 1))
}

fn table(t: &Table, at: usize, path: &mut Vec<String>) -> bool {
    let entries = t
        .iter()
        .map(|(name, i)| (name, t.key(name).and_then(|k| k.span()), i));
    entries_hold(entries, at, path, item)
}

fn inline(t: &InlineTable, at: usize, path: &mut Vec<String>) -> bool {
    let entries = t
        .iter()
        .map(|(name, v)| (name, t.key(name).and_then(|k| k.span()), v));
    entries_hold(entries, at, path, value)
}

/// The entries of a table (name, key span, value): whether one holds `at`,
/// in its key or (through `inner`) its value, with `path` left naming it.
fn entries_hold<'a, T: 'a>(
    entries: impl Iterator<Item = (&'a str, Option<Range<usize>>, &'a T)>,
    at: usize,
    path: &mut Vec<String>,
    inner: fn(&T, usize, &mut Vec<String>) -> bool,
) -> bool {
    for (name, key, v) in entries {
        path.push(name.to_string());
        if holds(key, at) || inner(v, at, path) {
            return true;
        }
        path.pop();
    }
    false
}

fn item(i: &Item, at: usize, path: &mut Vec<String>) -> bool {
    match i {
        Item::None => false,
        Item::Value(v) => value(v, at, path),
        Item::Table(t) => table(t, at, path) || holds(t.span(), at),
        Item::ArrayOfTables(a) => a.iter().enumerate().any(|(n, t)| {
            index(path, n);
            let hit = table(t, at, path) || holds(t.span(), at);
            if !hit {
                unindex(path);
            }
            hit
        }),
    }
}

fn value(v: &Value, at: usize, path: &mut Vec<String>) -> bool {
    if !holds(v.span(), at) {
        return false;
    }
    match v {
        Value::Array(a) => {
            for (n, e) in a.iter().enumerate() {
                index(path, n);
                if value(e, at, path) {
                    return true;
                }
                unindex(path);
            }
        }
        Value::InlineTable(t) => {
            inline(t, at, path);
        }
        _ => {}
    }
    true
}

/// `key` becomes `key[n]`.
fn index(path: &mut [String], n: usize) {
    if let Some(last) = path.last_mut() {
        last.push_str(&format!("[{n}]"));
    }
}

fn unindex(path: &mut [String]) {
    if let Some(last) = path.last_mut() {
        if let Some(cut) = last.rfind('[') {
            last.truncate(cut);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::key_at;

    fn at(text: &str, needle: &str) -> Option<String> {
        key_at(text, text.find(needle).expect("needle in text"))
    }

    #[test]
    fn names_top_level_section_array_and_inline_keys() {
        let text = "threshold = \"one\"\n\
                    trusted_keys = [\n  \"a\",\n  \"bad\",\n]\n\
                    [limits]\nmax_sessions = -3\n\
                    [[test]]\nuser = \"x\"\n\
                    [[test]]\nuser = \"y\"\nwhere = { a = 1, b = \"two\" }\n";
        assert_eq!(at(text, "\"one\"").as_deref(), Some("threshold"));
        assert_eq!(at(text, "\"bad\"").as_deref(), Some("trusted_keys[1]"));
        assert_eq!(at(text, "-3").as_deref(), Some("limits.max_sessions"));
        assert_eq!(at(text, "\"y\"").as_deref(), Some("test[1].user"));
        assert_eq!(at(text, "\"two\"").as_deref(), Some("test[1].where.b"));
        assert_eq!(
            at(text, "max_sessions").as_deref(),
            Some("limits.max_sessions")
        );
    }

    #[test]
    fn nothing_for_comments_or_broken_documents() {
        assert_eq!(key_at("# only a comment\n", 3), None);
        assert_eq!(key_at("a = [", 2), None);
    }
}
