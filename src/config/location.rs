//! Turns byte spans in a TOML document into what an operator needs to fix it: the
//! 1-based line and the dotted key ("limits.deadline", "upstream.servers[1]") at a span.

use std::{collections::BTreeMap, ops::Range};

use toml::de::{DeTable, DeValue};

/// Every key and array element of a document with where it was written.
pub(super) struct Index {
    entries: Vec<Entry>,
}

struct Entry {
    /// Dotted key, with `[i]` for array elements.
    path: String,
    /// Span of the key itself; an element's key span is its value span.
    key: Range<usize>,
    value: Range<usize>,
}

impl Index {
    pub(super) fn new(root: &DeTable<'_>) -> Self {
        let mut entries = Vec::new();
        walk_table(root, "", &mut entries);
        Index { entries }
    }

    /// The innermost key whose key or value covers `offset`. Errors for an unknown key
    /// point at the key, errors for a bad value at the value; both name the same entry.
    pub(super) fn key_at(&self, offset: usize) -> Option<&str> {
        self.entries
            .iter()
            .flat_map(|entry| [(entry, &entry.key), (entry, &entry.value)])
            .filter(|(_, span)| span.contains(&offset))
            .min_by_key(|(_, span)| span.len())
            .map(|(entry, _)| entry.path.as_str())
    }

    /// The line each key's value starts on, for errors found after parsing.
    pub(super) fn lines(&self, text: &str) -> BTreeMap<String, usize> {
        self.entries
            .iter()
            .map(|entry| (entry.path.clone(), line_at(text, entry.value.start)))
            .collect()
    }
}

fn walk_table(table: &DeTable<'_>, prefix: &str, entries: &mut Vec<Entry>) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        entries.push(Entry {
            path: path.clone(),
            key: key.span(),
            value: value.span(),
        });
        walk_value(value.get_ref(), &path, entries);
    }
}

fn walk_value(value: &DeValue<'_>, path: &str, entries: &mut Vec<Entry>) {
    match value {
        DeValue::Table(table) => walk_table(table, path, entries),
        DeValue::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                let path = format!("{path}[{index}]");
                entries.push(Entry {
                    path: path.clone(),
                    key: item.span(),
                    value: item.span(),
                });
                walk_value(item.get_ref(), &path, entries);
            }
        }
        _ => {}
    }
}

/// The 1-based line containing byte `offset`; an offset past the end (errors at end of
/// input) counts as the last line.
pub(super) fn line_at(text: &str, offset: usize) -> usize {
    let newlines = text
        .bytes()
        .take(offset)
        .filter(|&byte| byte == b'\n')
        .count();
    newlines + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_one_based() {
        let text = "a = 1\nb = 2\n";
        assert_eq!(line_at(text, 0), 1);
        assert_eq!(line_at(text, 5), 1);
        assert_eq!(line_at(text, 6), 2);
        assert_eq!(line_at(text, 1000), 3);
    }

    #[test]
    fn keys_and_lines() -> Result<(), toml::de::Error> {
        let text = "[limits]\ndeadline = \"2s\"\n\n[upstream]\nservers = [\n  \"192.0.2.1\",\n  \"bad\",\n]\n";
        let root = DeTable::parse(text)?;
        let index = Index::new(root.get_ref());
        let lines = index.lines(text);
        assert_eq!(lines.get("limits.deadline"), Some(&2));
        assert_eq!(lines.get("upstream.servers"), Some(&5));
        assert_eq!(lines.get("upstream.servers[1]"), Some(&7));
        let at = |needle: &str| text.find(needle).and_then(|offset| index.key_at(offset));
        assert_eq!(at("deadline"), Some("limits.deadline"));
        assert_eq!(at("\"2s\""), Some("limits.deadline"));
        assert_eq!(at("\"bad\""), Some("upstream.servers[1]"));
        Ok(())
    }
}
