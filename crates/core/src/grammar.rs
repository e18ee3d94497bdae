//! Grammars (llama.cpp's GBNF) that only JSON valid against a schema can follow, for structured
//! outputs and tool-call arguments.
//!
//! Every keyword of a schema either shapes the grammar or is an annotation (`title`,
//! `description`, ...); any other keyword is refused with a [`SchemaError`] that names it, since
//! a grammar that ignored it would let through JSON the schema forbids. Objects produce their
//! declared properties in the declared order (required ones always, others optionally) and no
//! others: that output validates whether or not the schema allows more.
//!
//! ```
//! use tandem_core::grammar::GrammarBuilder;
//! let schema = serde_json::json!({"type": "object", "properties": {"n": {"type": "integer"}},
//!     "required": ["n"]});
//! let mut grammar = GrammarBuilder::default();
//! let value = grammar.schema(&schema).unwrap();
//! let gbnf = grammar.finish(&value);
//! assert!(gbnf.starts_with("root ::= "));
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use serde_json::{Map, Value};

/// A schema keyword no grammar here enforces.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the JSON schema keyword `{keyword}` at `{path}` cannot be enforced{}", detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default())]
pub struct SchemaError {
    /// Where in the schema, as `properties.city.pattern` (empty at the root).
    pub path: String,
    pub keyword: String,
    pub detail: Option<String>,
}

/// Keywords that describe a schema without constraining its values.
const ANNOTATIONS: &[&str] = &[
    "title",
    "description",
    "default",
    "examples",
    "$schema",
    "$id",
    "$comment",
    "deprecated",
    "readOnly",
    "writeOnly",
    "$defs",
    "definitions",
];

/// Rules every JSON grammar may use, after llama.cpp's `json-schema-to-grammar`.
const PRIMITIVES: &[(&str, &str)] = &[
    ("space", r#"| " " | "\n" [ \t]{0,20}"#),
    ("boolean", r#"("true" | "false") space"#),
    ("null", r#""null" space"#),
    ("decimal-part", "[0-9]{1,16}"),
    ("integral-part", "[0] | [1-9] [0-9]{0,15}"),
    (
        "number",
        r#"("-"? integral-part) ("." decimal-part)? ([eE] [-+]? integral-part)? space"#,
    ),
    ("integer", r#"("-"? integral-part) space"#),
    (
        "char",
        r#"[^"\\\x7F\x00-\x1F] | [\\] (["\\bfnrt] | "u" [0-9a-fA-F]{4})"#,
    ),
    ("string", r#""\"" char* "\"" space"#),
    ("value", "object | array | string | number | boolean | null"),
    (
        "object",
        r#""{" space ( string ":" space value ("," space string ":" space value)* )? "}" space"#,
    ),
    (
        "array",
        r#""[" space ( value ("," space value)* )? "]" space"#,
    ),
    ("digit", "[0-9]"),
    ("hex", "[0-9a-fA-F]"),
    (
        "date",
        r#"[0-9]{4} "-" ( "0" [1-9] | "1" [0-2] ) "-" ( "0" [1-9] | [1-2] [0-9] | "3" [0-1] )"#,
    ),
    (
        "time",
        r#"( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] ":" [0-5] [0-9] ( "." [0-9]{3} )? ( "Z" | ( "+" | "-" ) ( [01] [0-9] | "2" [0-3] ) ":" [0-5] [0-9] )"#,
    ),
];

/// Which primitives each primitive uses, so that only what a grammar needs is written out.
fn primitive_uses(name: &str) -> &'static [&'static str] {
    match name {
        "boolean" | "null" | "integer" | "string" => match name {
            "integer" => &["integral-part", "space"],
            "string" => &["char", "space"],
            _ => &["space"],
        },
        "number" => &["integral-part", "decimal-part", "space"],
        "value" => &["object", "array", "string", "number", "boolean", "null"],
        "object" => &["string", "value", "space"],
        "array" => &["value", "space"],
        _ => &[],
    }
}

/// Builds one grammar from schemas and literal text.
#[derive(Debug, Default)]
pub struct GrammarBuilder {
    rules: BTreeMap<String, String>,
    primitives: BTreeSet<&'static str>,
    /// The root schema of the schema being converted, for `$ref`.
    root: Option<Value>,
    refs: BTreeMap<String, String>,
}

impl GrammarBuilder {
    /// A rule matching JSON valid against `schema`; returns the expression to use it by.
    pub fn schema(&mut self, schema: &Value) -> Result<String, SchemaError> {
        self.root = Some(schema.clone());
        self.refs.clear();
        self.visit(schema, "")
    }

    /// A rule matching any JSON object (`response_format: json_object`).
    pub fn any_object(&mut self) -> String {
        self.primitive("object")
    }

    /// The rule for optional whitespace between JSON tokens.
    pub fn space(&mut self) -> String {
        self.primitive("space")
    }

    /// Adds rule `name ::= body` and returns its name. `name` is made unique.
    pub fn rule(&mut self, name: &str, body: String) -> String {
        let base: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let base = base.trim_matches('-');
        let base = if base.is_empty() {
            "r".to_string()
        } else {
            base.to_string()
        };
        let mut unique = base.clone();
        let mut k = 1;
        while self.rules.contains_key(&unique) || PRIMITIVES.iter().any(|(p, _)| *p == unique) {
            k += 1;
            unique = format!("{base}-{k}");
        }
        self.rules.insert(unique.clone(), body);
        unique
    }

    /// The grammar text, with `root` as its start.
    pub fn finish(&self, root: &str) -> String {
        let mut out = format!("root ::= {root}\n");
        for (name, body) in &self.rules {
            let _ = writeln!(out, "{name} ::= {body}");
        }
        for (name, body) in PRIMITIVES {
            if self.primitives.contains(name) {
                let _ = writeln!(out, "{name} ::= {body}");
            }
        }
        out
    }

    fn primitive(&mut self, name: &'static str) -> String {
        if self.primitives.insert(name) {
            for used in primitive_uses(name) {
                self.primitive(used);
            }
        }
        name.to_string()
    }

    fn visit(&mut self, schema: &Value, path: &str) -> Result<String, SchemaError> {
        let object = match schema {
            Value::Bool(true) => return Ok(self.primitive("value")),
            Value::Object(object) => object,
            _ => {
                return Err(error(
                    path,
                    "schema",
                    "a schema must be an object or `true`",
                ))
            }
        };
        for keyword in object.keys() {
            if !ANNOTATIONS.contains(&keyword.as_str()) && !handled(keyword) {
                return Err(error(path, keyword, "not supported"));
            }
        }
        // These replace the rest of the schema here; a constraint beside them would go unenforced.
        if let Some(alone) = ["$ref", "const", "enum", "anyOf", "oneOf"]
            .into_iter()
            .find(|k| object.contains_key(*k))
        {
            if let Some(beside) = object.keys().find(|k| {
                k.as_str() != alone && k.as_str() != "type" && !ANNOTATIONS.contains(&k.as_str())
            }) {
                return Err(error(
                    path,
                    beside,
                    &format!("not supported beside `{alone}`"),
                ));
            }
        }
        if let Some(reference) = object.get("$ref") {
            return self.reference(reference, path);
        }
        if let Some(value) = object.get("const") {
            return Ok(literal_value(value, &mut |p| self.primitive(p)));
        }
        if let Some(values) = object.get("enum") {
            let values = values
                .as_array()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| error(path, "enum", "must be a non-empty array"))?;
            let alternatives: Vec<String> = values
                .iter()
                .map(|v| literal_value(v, &mut |p| self.primitive(p)))
                .collect();
            return Ok(format!("({})", alternatives.join(" | ")));
        }
        for keyword in ["anyOf", "oneOf"] {
            if let Some(options) = object.get(keyword) {
                let options = options
                    .as_array()
                    .filter(|v| !v.is_empty())
                    .ok_or_else(|| error(path, keyword, "must be a non-empty array"))?;
                let mut alternatives = Vec::with_capacity(options.len());
                for (i, option) in options.iter().enumerate() {
                    alternatives.push(self.visit(option, &join(path, &format!("{keyword}.{i}")))?);
                }
                return Ok(format!("({})", alternatives.join(" | ")));
            }
        }
        match object.get("type") {
            None => {
                if object.contains_key("properties") {
                    self.object(object, path)
                } else if object.contains_key("items") {
                    self.array(object, path)
                } else {
                    Ok(self.primitive("value"))
                }
            }
            Some(Value::String(kind)) => self.typed(kind, object, path),
            Some(Value::Array(kinds)) => {
                let mut alternatives = Vec::new();
                for kind in kinds {
                    let kind = kind
                        .as_str()
                        .ok_or_else(|| error(path, "type", "must name types"))?;
                    alternatives.push(self.typed(kind, object, path)?);
                }
                Ok(format!("({})", alternatives.join(" | ")))
            }
            Some(_) => Err(error(path, "type", "must be a string or a list")),
        }
    }

    fn typed(
        &mut self,
        kind: &str,
        object: &Map<String, Value>,
        path: &str,
    ) -> Result<String, SchemaError> {
        match kind {
            "object" => self.object(object, path),
            "array" => self.array(object, path),
            "string" => self.string(object, path),
            "integer" | "number" | "boolean" | "null" => {
                let primitive = match kind {
                    "integer" => "integer",
                    "number" => "number",
                    "boolean" => "boolean",
                    _ => "null",
                };
                Ok(self.primitive(primitive))
            }
            other => Err(error(path, "type", &format!("unknown type `{other}`"))),
        }
    }

    fn reference(&mut self, reference: &Value, path: &str) -> Result<String, SchemaError> {
        let target = reference
            .as_str()
            .ok_or_else(|| error(path, "$ref", "must be a string"))?;
        if let Some(rule) = self.refs.get(target) {
            return Ok(rule.clone());
        }
        let pointer = target.strip_prefix('#').ok_or_else(|| {
            error(
                path,
                "$ref",
                "only references inside the schema (`#/...`) are supported",
            )
        })?;
        let resolved = self
            .root
            .as_ref()
            .and_then(|root| root.pointer(pointer))
            .cloned()
            .ok_or_else(|| error(path, "$ref", &format!("`{target}` does not exist")))?;
        // Named before it is visited, so recursive schemas refer to themselves.
        let name = self.rule(target.rsplit('/').next().unwrap_or("ref"), String::new());
        self.refs.insert(target.to_string(), name.clone());
        let body = self.visit(&resolved, &join(path, "$ref"))?;
        self.rules.insert(name.clone(), body);
        Ok(name)
    }

    fn object(&mut self, object: &Map<String, Value>, path: &str) -> Result<String, SchemaError> {
        let properties = match object.get("properties") {
            None => None,
            Some(Value::Object(p)) => Some(p),
            Some(_) => return Err(error(path, "properties", "must be an object")),
        };
        let required: Vec<&str> = match object.get("required") {
            None => Vec::new(),
            Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
            Some(_) => return Err(error(path, "required", "must be a list of names")),
        };
        let properties = match properties {
            Some(p) if !p.is_empty() => p,
            _ => {
                return match object.get("additionalProperties") {
                    Some(Value::Object(values)) => {
                        let value = self.visit(
                            &Value::Object(values.clone()),
                            &join(path, "additionalProperties"),
                        )?;
                        let string = self.primitive("string");
                        let space = self.primitive("space");
                        let pair = format!(r#"{string} ":" {space} {value}"#);
                        Ok(format!(
                            r#""{{" {space} ( {pair} ("," {space} {pair})* )? "}}" {space}"#
                        ))
                    }
                    Some(Value::Bool(false)) => {
                        let space = self.primitive("space");
                        Ok(format!(r#""{{" {space} "}}" {space}"#))
                    }
                    _ => Ok(self.primitive("object")),
                };
            }
        };
        if let Some(missing) = required.iter().find(|r| !properties.contains_key(**r)) {
            return Err(error(
                path,
                "required",
                &format!("`{missing}` is required but not among the properties"),
            ));
        }
        let space = self.primitive("space");
        let mut mandatory = Vec::new();
        let mut optional = Vec::new();
        for (name, schema) in properties {
            let value = self.visit(schema, &join(path, &format!("properties.{name}")))?;
            let key = literal_string(name);
            let pair = format!(r#"{key} {space} ":" {space} {value}"#);
            if required.contains(&name.as_str()) {
                mandatory.push(pair);
            } else {
                optional.push(pair);
            }
        }
        let comma = format!(r#""," {space}"#);
        let body = if mandatory.is_empty() {
            // Any ordered subset of the optional properties: the first present one has no comma.
            let starts: Vec<String> = (0..optional.len())
                .map(|first| {
                    let mut alternative = optional[first].clone();
                    for later in &optional[first + 1..] {
                        let _ = write!(alternative, " ({comma} {later})?");
                    }
                    alternative
                })
                .collect();
            format!("({})?", starts.join(" | "))
        } else {
            let mut body = mandatory.join(&format!(" {comma} "));
            for pair in &optional {
                let _ = write!(body, " ({comma} {pair})?");
            }
            body
        };
        let name = self.rule(
            &format!("{}object", path.replace('.', "-")),
            format!(r#""{{" {space} {body} "}}" {space}"#),
        );
        Ok(name)
    }

    fn array(&mut self, object: &Map<String, Value>, path: &str) -> Result<String, SchemaError> {
        let item = match object.get("items") {
            None => self.primitive("value"),
            Some(items) => self.visit(items, &join(path, "items"))?,
        };
        let min = count(object, "minItems", path)?.unwrap_or(0);
        let max = count(object, "maxItems", path)?;
        let space = self.primitive("space");
        let rest = format!(r#""," {space} {item}"#);
        let body = match (min, max) {
            (_, Some(0)) => String::new(),
            (0, None) => format!("( {item} ( {rest} )* )?"),
            (0, Some(max)) => format!("( {item} ( {rest} ){{0,{}}} )?", max - 1),
            (min, None) => format!("{item} ( {rest} ){{{},}}", min - 1),
            (min, Some(max)) if max >= min => {
                format!("{item} ( {rest} ){{{},{}}}", min - 1, max - 1)
            }
            _ => return Err(error(path, "maxItems", "is below `minItems`")),
        };
        Ok(format!(r#""[" {space} {body} "]" {space}"#))
    }

    fn string(&mut self, object: &Map<String, Value>, path: &str) -> Result<String, SchemaError> {
        let space = self.primitive("space");
        if let Some(format) = object.get("format") {
            let inner = match format.as_str() {
                Some("date") => self.primitive("date"),
                Some("time") => self.primitive("time"),
                Some("date-time") => {
                    let date = self.primitive("date");
                    let time = self.primitive("time");
                    format!(r#"{date} "T" {time}"#)
                }
                Some("uuid") => {
                    let hex = self.primitive("hex");
                    format!(
                        r#"{hex}{{8}} "-" {hex}{{4}} "-" {hex}{{4}} "-" {hex}{{4}} "-" {hex}{{12}}"#
                    )
                }
                _ => {
                    return Err(error(
                        path,
                        "format",
                        &format!("the format {format} is not one of date, time, date-time, uuid"),
                    ))
                }
            };
            return Ok(format!(r#""\"" {inner} "\"" {space}"#));
        }
        let min = count(object, "minLength", path)?;
        let max = count(object, "maxLength", path)?;
        if min.is_none() && max.is_none() {
            return Ok(self.primitive("string"));
        }
        let char = self.primitive("char");
        let repeat = match (min.unwrap_or(0), max) {
            (min, Some(max)) if max < min => {
                return Err(error(path, "maxLength", "is below `minLength`"))
            }
            (min, Some(max)) => format!("{{{min},{max}}}"),
            (min, None) => format!("{{{min},}}"),
        };
        Ok(format!(r#""\"" {char}{repeat} "\"" {space}"#))
    }
}

/// Keywords [`GrammarBuilder`] turns into grammar.
fn handled(keyword: &str) -> bool {
    matches!(
        keyword,
        "type"
            | "properties"
            | "required"
            | "additionalProperties"
            | "items"
            | "minItems"
            | "maxItems"
            | "enum"
            | "const"
            | "anyOf"
            | "oneOf"
            | "$ref"
            | "format"
            | "minLength"
            | "maxLength"
    )
}

fn count(
    object: &Map<String, Value>,
    keyword: &str,
    path: &str,
) -> Result<Option<u64>, SchemaError> {
    match object.get(keyword) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|&n| n <= 10_000)
            .map(Some)
            .ok_or_else(|| error(path, keyword, "must be a whole number up to 10000")),
    }
}

fn error(path: &str, keyword: &str, detail: &str) -> SchemaError {
    SchemaError {
        path: join(path, keyword),
        keyword: keyword.to_string(),
        detail: Some(detail.to_string()),
    }
}

fn join(path: &str, next: &str) -> String {
    if path.is_empty() {
        next.to_string()
    } else {
        format!("{path}.{next}")
    }
}

/// A grammar literal matching exactly `text`.
pub fn literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str(r#"\""#),
            '\\' => out.push_str(r"\\"),
            '\n' => out.push_str(r"\n"),
            '\r' => out.push_str(r"\r"),
            '\t' => out.push_str(r"\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7F => {
                let _ = write!(out, r"\x{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A grammar literal matching `text` as a JSON string.
fn literal_string(text: &str) -> String {
    literal(&Value::String(text.to_string()).to_string())
}

/// A grammar expression matching exactly the JSON `value`, followed by optional space.
fn literal_value(value: &Value, primitive: &mut dyn FnMut(&'static str) -> String) -> String {
    let space = primitive("space");
    format!("{} {space}", literal(&value.to_string()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn grammar(schema: Value) -> Result<String, SchemaError> {
        let mut builder = GrammarBuilder::default();
        let root = builder.schema(&schema)?;
        Ok(builder.finish(&root))
    }

    #[test]
    fn an_object_lists_its_properties_in_order() {
        let g = grammar(json!({
            "type": "object",
            "title": "Person",
            "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
            "required": ["name", "age"],
            "additionalProperties": false
        }))
        .unwrap();
        assert!(
            g.contains(
                r#""\"name\"" space ":" space string "," space "\"age\"" space ":" space integer"#
            ),
            "{g}"
        );
        assert!(g.contains("integer ::= "));
        assert!(
            !g.contains("boolean ::= "),
            "unused primitives stay out: {g}"
        );
    }

    #[test]
    fn refuses_what_it_cannot_enforce_by_keyword_and_path() {
        let e = grammar(json!({
            "type": "object",
            "properties": {"code": {"type": "string", "pattern": "^[A-Z]+$"}}
        }))
        .unwrap_err();
        assert_eq!(e.keyword, "pattern");
        assert_eq!(e.path, "properties.code.pattern");
        let e = grammar(json!({"allOf": [{"type": "string"}]})).unwrap_err();
        assert_eq!(e.keyword, "allOf");
        let e = grammar(json!({"type": "integer", "minimum": 3})).unwrap_err();
        assert_eq!(e.keyword, "minimum");
        let e = grammar(json!({"type": "string", "format": "email"})).unwrap_err();
        assert_eq!(e.keyword, "format");
    }

    #[test]
    fn follows_references_and_recursion() {
        let g = grammar(json!({
            "$defs": {"Node": {"type": "object", "properties": {
                "value": {"type": "integer"},
                "children": {"type": "array", "items": {"$ref": "#/$defs/Node"}}
            }, "required": ["value", "children"]}},
            "$ref": "#/$defs/Node"
        }))
        .unwrap();
        assert!(g.contains("Node ::= "), "{g}");
        // A node's children are nodes.
        assert!(
            g.contains(r#""\"children\"" space ":" space "[" space ( Node"#),
            "{g}"
        );
        let e = grammar(json!({"$ref": "#/$defs/Missing"})).unwrap_err();
        assert_eq!(e.keyword, "$ref");
    }

    #[test]
    fn literals_escape_what_gbnf_would_read() {
        assert_eq!(literal("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
        assert_eq!(literal_string("x\"y"), r#""\"x\\\"y\"""#);
    }

    #[test]
    fn optional_properties_may_each_be_left_out() {
        let g = grammar(json!({
            "type": "object",
            "properties": {"a": {"type": "boolean"}, "b": {"type": "null"}}
        }))
        .unwrap();
        // Either may come first; both are optional.
        assert!(g.contains(r#"("\"a\"" space ":" space boolean ("," space "\"b\"" space ":" space null)? | "\"b\"" space ":" space null)?"#), "{g}");
    }
}
