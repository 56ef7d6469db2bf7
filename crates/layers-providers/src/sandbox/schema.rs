//! A JSON value valid against a JSON schema, made deterministically from cues in the prompt: the
//! sandbox's tool-call arguments and structured output. Invariant: the same schema and prompt
//! always give the same value, and the value validates against the schema for the keywords
//! tool and output schemas use (`type`, `properties`, `required`, `items`, `enum`, `const`,
//! `anyOf`/`oneOf`/`allOf`, `$ref` into `$defs`/`definitions`, numeric and length bounds).

use serde_json::{json, Map, Value};

/// How deep the generator follows nested schemas (recursive `$ref`s end in the smallest value).
const MAX_DEPTH: u32 = 12;

/// The most values one instance is made of: a wide recursive schema ends in smallest values
/// instead of growing exponentially.
const MAX_VALUES: u32 = 2_000;

/// The longest string the generator writes (`minLength` included).
const MAX_STRING: usize = 1_000;

/// The most characters of the prompt the cues are read from.
const MAX_CUE_CHARS: usize = 20_000;

/// The longest quotation looked for.
const MAX_QUOTE: usize = 400;

/// What the prompt offers to fill a schema with: its numbers and its quoted strings, taken in
/// order, so `add(3, 5)` becomes `{"a": 3, "b": 5}`.
pub struct Cues {
    text: String,
    numbers: Vec<f64>,
    quoted: Vec<String>,
    next_number: usize,
    next_quoted: usize,
    /// Values the instance may still have.
    budget: u32,
}

impl Cues {
    pub fn new(text: &str) -> Cues {
        let text: String = text.chars().take(MAX_CUE_CHARS).collect();
        Cues {
            text: text.split_whitespace().collect::<Vec<_>>().join(" "),
            numbers: numbers_in(&text),
            quoted: quoted_in(&text),
            next_number: 0,
            next_quoted: 0,
            budget: MAX_VALUES,
        }
    }

    /// The quoted words of the prompt that look like field names (`'setup'`, `"punchline"`).
    pub fn quoted_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for q in &self.quoted {
            let is_name = !q.is_empty()
                && q.len() <= 64
                && q.chars().all(|c| c.is_alphanumeric() || c == '_')
                && !q.starts_with(|c: char| c.is_ascii_digit());
            if is_name && !names.contains(q) {
                names.push(q.clone());
            }
        }
        names
    }

    fn number(&mut self) -> Option<f64> {
        let n = self.numbers.get(self.next_number).copied();
        self.next_number += 1;
        n
    }

    /// The next quoted string of the prompt, else the prompt's text itself (shortened).
    pub fn string(&mut self) -> String {
        if let Some(q) = self.quoted.get(self.next_quoted) {
            self.next_quoted += 1;
            return q.clone();
        }
        self.text.chars().take(80).collect()
    }
}

/// Decimal numbers standing on their own in `text` (not inside a word such as `gpt4`).
fn numbers_in(text: &str) -> Vec<f64> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let starts =
            chars[i].is_ascii_digit() || (chars[i] == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit));
        let after_word = i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_');
        if !starts || after_word {
            // A version or a name (`v1.2`, `gpt4`) is skipped whole.
            i += 1;
            while starts && i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            continue;
        }
        let start = i;
        i += 1;
        while i < chars.len()
            && (chars[i].is_ascii_digit() || (chars[i] == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)))
        {
            i += 1;
        }
        if i < chars.len() && (chars[i].is_alphabetic() || chars[i] == '_') {
            continue;
        }
        if let Ok(n) = chars[start..i].iter().collect::<String>().parse::<f64>() {
            out.push(n);
        }
    }
    out
}

/// Strings between matching quotes (`"…"`, `'…'`, `` `…` ``, `“…”`) in `text`; an apostrophe
/// inside a word (`don't`) opens nothing.
fn quoted_in(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let close = match chars[i] {
            '"' => '"',
            '`' => '`',
            '“' => '”',
            '\'' if i == 0 || !chars[i - 1].is_alphanumeric() => '\'',
            _ => {
                i += 1;
                continue;
            }
        };
        let window = &chars[i + 1..chars.len().min(i + 1 + MAX_QUOTE)];
        let end = window.iter().position(|&c| c == close).map(|p| i + 1 + p);
        match end {
            Some(end) if end > i + 1 => {
                out.push(chars[i + 1..end].iter().collect());
                i = end + 1;
            }
            _ => i += 1,
        }
    }
    out
}

/// A value valid against `schema` (whose `$ref`s resolve in `root`).
pub fn instance(schema: &Value, root: &Value, cues: &mut Cues) -> Value {
    generate(schema, root, cues, 0, None)
}

fn generate(schema: &Value, root: &Value, cues: &mut Cues, depth: u32, name: Option<&str>) -> Value {
    let Value::Object(s) = schema else { return Value::String(cues.string()) };
    if depth > MAX_DEPTH || cues.budget == 0 {
        return smallest(s);
    }
    cues.budget -= 1;
    if let Some(target) = s.get("$ref").and_then(Value::as_str).and_then(|r| resolve(root, r)) {
        return generate(target, root, cues, depth + 1, name);
    }
    if let Some(c) = s.get("const") {
        return c.clone();
    }
    if let Some(Value::Array(options)) = s.get("enum") {
        // The option the prompt names, else the first.
        let text = cues.text.to_lowercase();
        let named =
            options.iter().find(|o| o.as_str().is_some_and(|o| !o.is_empty() && text.contains(&o.to_lowercase())));
        if let Some(o) = named.or(options.first()) {
            return o.clone();
        }
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(Value::Array(options)) = s.get(key) {
            let not_null = options.iter().find(|o| o.get("type").and_then(Value::as_str) != Some("null"));
            if let Some(o) = not_null.or(options.first()) {
                return generate(o, root, cues, depth + 1, name);
            }
        }
    }
    if let Some(Value::Array(all)) = s.get("allOf") {
        let mut merged = Map::new();
        for part in all {
            let part = match part.get("$ref").and_then(Value::as_str).and_then(|r| resolve(root, r)) {
                Some(target) => target,
                None => part,
            };
            if let Value::Object(p) = part {
                for (k, v) in p {
                    merged.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
        for (k, v) in s.iter().filter(|(k, _)| *k != "allOf") {
            merged.insert(k.clone(), v.clone());
        }
        return generate(&Value::Object(merged), root, cues, depth + 1, name);
    }
    match type_of(s) {
        "object" => object(s, root, cues, depth),
        "array" => {
            let min = s.get("minItems").and_then(Value::as_u64).unwrap_or(1);
            let max = s.get("maxItems").and_then(Value::as_u64).unwrap_or(u64::MAX);
            let count = min.max(1).min(max).min(8);
            let items = s.get("items").cloned().unwrap_or(json!({}));
            Value::Array((0..count).map(|_| generate(&items, root, cues, depth + 1, name)).collect())
        }
        "integer" => {
            let n = cues.number().map_or(0, |n| n.round() as i64);
            Value::from(clamp_integer(n, s))
        }
        "number" => {
            let n = cues.number().unwrap_or(0.0);
            json!(clamp_number(n, s))
        }
        "boolean" => Value::Bool(true),
        "null" => Value::Null,
        _ => Value::String(string(s, cues, name)),
    }
}

/// The schema's type: its `type` (the first that is not `null`), else what its keywords imply.
fn type_of(s: &Map<String, Value>) -> &str {
    match s.get("type") {
        Some(Value::String(t)) => t,
        Some(Value::Array(types)) => types.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("null"),
        _ if s.contains_key("properties") => "object",
        _ if s.contains_key("items") => "array",
        _ => "string",
    }
}

fn object(s: &Map<String, Value>, root: &Value, cues: &mut Cues, depth: u32) -> Value {
    let mut out = Map::new();
    if let Some(Value::Object(props)) = s.get("properties") {
        // Every property, required or not: optional ones are valid too, and a model that
        // fills them is what clients test against.
        for (key, prop) in props {
            out.insert(key.clone(), generate(prop, root, cues, depth + 1, Some(key)));
        }
    }
    if let Some(Value::Array(required)) = s.get("required") {
        for key in required.iter().filter_map(Value::as_str) {
            if !out.contains_key(key) {
                out.insert(key.to_owned(), Value::String(cues.string()));
            }
        }
    }
    Value::Object(out)
}

fn string(s: &Map<String, Value>, cues: &mut Cues, name: Option<&str>) -> String {
    let text = match s.get("format").and_then(Value::as_str) {
        Some("date-time") => "2026-01-01T00:00:00Z".to_owned(),
        Some("date") => "2026-01-01".to_owned(),
        Some("time") => "00:00:00Z".to_owned(),
        Some("email") => "user@example.com".to_owned(),
        Some("uri" | "url") => "https://example.com/".to_owned(),
        Some("uuid") => "00000000-0000-4000-8000-000000000000".to_owned(),
        _ => {
            let said = cues.string();
            if said.is_empty() {
                name.unwrap_or("value").to_owned()
            } else {
                said
            }
        }
    };
    let max = s.get("maxLength").and_then(Value::as_u64).map_or(MAX_STRING, |m| (m as usize).min(MAX_STRING));
    let min = s.get("minLength").and_then(Value::as_u64).map_or(0, |m| (m as usize).min(max));
    let mut text: String = text.chars().take(max).collect();
    let short = min.saturating_sub(text.chars().count());
    text.extend(std::iter::repeat_n('x', short));
    text
}

fn clamp_integer(n: i64, s: &Map<String, Value>) -> i64 {
    let mut n = n;
    if let Some(min) = s.get("minimum").and_then(Value::as_i64) {
        n = n.max(min);
    }
    if let Some(min) = s.get("exclusiveMinimum").and_then(Value::as_i64) {
        n = n.max(min.saturating_add(1));
    }
    if let Some(max) = s.get("maximum").and_then(Value::as_i64) {
        n = n.min(max);
    }
    if let Some(max) = s.get("exclusiveMaximum").and_then(Value::as_i64) {
        n = n.min(max.saturating_sub(1));
    }
    n
}

fn clamp_number(n: f64, s: &Map<String, Value>) -> f64 {
    let mut n = n;
    if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
        n = n.max(min);
    }
    if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
        n = n.min(max);
    }
    n
}

/// The smallest value of a schema's type, where the generator stops following it.
fn smallest(s: &Map<String, Value>) -> Value {
    match type_of(s) {
        "object" => json!({}),
        "array" => json!([]),
        "integer" | "number" => json!(0),
        "boolean" => json!(false),
        "null" => Value::Null,
        _ => json!(""),
    }
}

/// The schema a local `$ref` (`#/$defs/Name`) points to.
fn resolve<'a>(root: &'a Value, reference: &str) -> Option<&'a Value> {
    root.pointer(reference.strip_prefix('#')?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make(schema: Value, prompt: &str) -> Value {
        instance(&schema, &schema, &mut Cues::new(prompt))
    }

    #[test]
    fn numbers_and_quotes_fill_fields_in_order() {
        let add = json!({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
                         "required": ["a", "b"]});
        assert_eq!(make(add, "What is 3 + 5? (not gpt4)"), json!({"a": 3, "b": 5}));
        let weather = json!({"type": "object", "properties": {"location": {"type": "string"}}});
        assert_eq!(make(weather, "Weather in 'San Francisco, CA'?"), json!({"location": "San Francisco, CA"}));
        assert_eq!(numbers_in("x2 -4 2.5 v1.2 10%"), vec![-4.0, 2.5, 10.0]);
        assert_eq!(quoted_in("don't say \"hi\" or 'setup' and `punchline`"), vec!["hi", "setup", "punchline"]);
    }

    #[test]
    fn follows_refs_unions_enums_and_bounds() {
        let schema = json!({
            "type": "object",
            "properties": {
                "person": {"$ref": "#/$defs/Person"},
                "maybe": {"anyOf": [{"type": "null"}, {"type": "integer", "minimum": 10}]},
                "mood": {"type": "string", "enum": ["happy", "sad"]},
                "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}, "minItems": 2},
                "score": {"type": ["number", "null"], "maximum": 1.0},
                "when": {"type": "string", "format": "date-time"},
                "flag": {"type": "boolean"},
            },
            "$defs": {"Person": {"type": "object", "properties": {"name": {"type": "string", "minLength": 2}},
                                 "required": ["name"]}},
        });
        let v = make(schema, "I feel sad, 7 and 3");
        assert_eq!(v["maybe"], 10, "the minimum raises 7");
        assert_eq!(v["mood"], "sad", "the enum value the prompt names");
        assert_eq!(v["tags"].as_array().unwrap().len(), 2);
        assert!(v["tags"][0].as_str().unwrap().chars().count() <= 3);
        assert_eq!(v["score"], 1.0, "3 clamped to the maximum");
        assert_eq!(v["when"], "2026-01-01T00:00:00Z");
        assert_eq!(v["flag"], true);
        assert!(v["person"]["name"].as_str().unwrap().len() >= 2);
    }

    #[test]
    fn hostile_schemas_and_prompts_stay_small_and_quick() {
        let huge = json!({"type": "string", "minLength": 10_000_000_000u64});
        assert!(make(huge, "x").as_str().unwrap().len() <= MAX_STRING);
        // Fifty properties that each hold the whole schema again: bounded, not 50^12 values.
        let props: Map<String, Value> = (0..50).map(|i| (format!("p{i}"), json!({"$ref": "#"}))).collect();
        let wide = json!({"type": "object", "properties": props});
        assert!(make(wide, "x").to_string().len() < 1_000_000);
        // Unclosed quotes: each is looked for within a bounded window (and the cues read a
        // bounded prefix), so this is linear work.
        let quotes = "“".repeat(300_000);
        assert!(Cues::new(&quotes).quoted_names().is_empty());
    }

    #[test]
    fn a_recursive_schema_ends() {
        let schema = json!({"$ref": "#/$defs/Node", "$defs": {"Node": {"type": "object",
            "properties": {"child": {"$ref": "#/$defs/Node"}}}}});
        let v = make(schema, "x");
        assert!(v.is_object());
    }
}
