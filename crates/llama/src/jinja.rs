//! Chat templates in the model file's own Jinja, rendered with minijinja the way Hugging Face's
//! `apply_chat_template` renders them (and llama-server with `--jinja`): `trim_blocks` and
//! `lstrip_blocks`, Python's string methods, a `tojson` that writes what Python's `json.dumps`
//! writes, and `raise_exception`. Unlike llama.cpp's built-in template matcher, this renders
//! tools, tool calls and tool results the way the model was trained to read them.
//!
//! Rendering knows nothing about tokens: [`crate::chat::Shield`] keeps client text away from
//! special tokens around it.

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Kwargs, Serde, Value};
use minijinja::{Environment, Error, ErrorKind};
use serde_json::Value as Json;

pub(crate) struct JinjaTemplate {
    env: Environment<'static>,
    source: String,
}

const NAME: &str = "chat_template";

impl JinjaTemplate {
    /// Compiles `source`; an error names what minijinja could not read.
    pub(crate) fn new(source: &str) -> Result<Self, String> {
        let mut env = Environment::new();
        env.set_syntax(
            SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .map_err(|e| e.to_string())?,
        );
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_template_owned(NAME, source.to_string())
            .map_err(|e| e.to_string())?;
        Ok(JinjaTemplate {
            env,
            source: source.to_string(),
        })
    }

    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    /// Renders a chat. `messages` and `tools` are in the shape chat templates expect (Hugging
    /// Face's: tool-call arguments as objects); the assistant's turn is opened at the end.
    pub(crate) fn render(
        &self,
        messages: &Json,
        tools: Option<&Json>,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<String, String> {
        let mut context = serde_json::json!({
            "messages": messages,
            "add_generation_prompt": true,
            "bos_token": bos_token,
            "eos_token": eos_token,
        });
        if let Some(tools) = tools {
            context["tools"] = tools.clone();
        }
        self.env
            .get_template(NAME)
            .and_then(|t| t.render(Value::from(Serde(&context))))
            .map_err(|e| {
                let mut message = e.to_string();
                let mut source = std::error::Error::source(&e);
                while let Some(inner) = source {
                    message.push_str(&format!(": {inner}"));
                    source = inner.source();
                }
                message
            })
    }
}

fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// Python's `json.dumps(value, ensure_ascii=False, indent=indent)`, as Hugging Face's templates
/// get it: `", "` and `": "` between items without an indent, one item a line with one.
fn tojson(value: &Value, kwargs: Kwargs) -> Result<String, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;
    let json = serde_json::to_value(value)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, e.to_string()))?;
    let mut out = String::new();
    write_python_json(&json, indent, 0, &mut out);
    Ok(out)
}

fn write_python_json(value: &Json, indent: Option<usize>, depth: usize, out: &mut String) {
    let newline = |out: &mut String, depth: usize| {
        if let Some(width) = indent {
            out.push('\n');
            out.push_str(&" ".repeat(width * depth));
        }
    };
    let separator = if indent.is_some() { "," } else { ", " };
    match value {
        Json::Array(items) if !items.is_empty() => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(separator);
                }
                newline(out, depth + 1);
                write_python_json(item, indent, depth + 1, out);
            }
            newline(out, depth);
            out.push(']');
        }
        Json::Object(entries) if !entries.is_empty() => {
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(separator);
                }
                newline(out, depth + 1);
                out.push_str(&Json::String(key.clone()).to_string());
                out.push_str(": ");
                write_python_json(item, indent, depth + 1, out);
            }
            newline(out, depth);
            out.push('}');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tojson_writes_what_python_writes() {
        let template = JinjaTemplate::new(
            "{{ messages[0] | tojson }}|{{ messages[0] | tojson(indent=2) }}|{{ messages[1] | tojson }}",
        )
        .unwrap();
        let messages = serde_json::json!([{"b": [1, 2.5, "é\"<>"], "a": {}}, []]);
        let rendered = template.render(&messages, None, "", "").unwrap();
        // Keys in the order given, not sorted; non-ASCII and <> unescaped, as json.dumps does.
        assert_eq!(
            rendered,
            "{\"b\": [1, 2.5, \"é\\\"<>\"], \"a\": {}}|{\n  \"b\": [\n    1,\n    2.5,\n    \"é\\\"<>\"\n  ],\n  \"a\": {}\n}|[]"
        );
    }

    #[test]
    fn python_methods_and_raise_exception_work() {
        let template = JinjaTemplate::new(
            "{% if messages[0].content.startswith('x') %}{{ messages[0].content.strip() }}{% else %}{{ raise_exception('no x') }}{% endif %}",
        )
        .unwrap();
        let ok = serde_json::json!([{"content": "x y  "}]);
        assert_eq!(template.render(&ok, None, "", "").unwrap(), "x y");
        let bad = serde_json::json!([{"content": "y"}]);
        assert!(template
            .render(&bad, None, "", "")
            .unwrap_err()
            .contains("no x"));
    }
}
