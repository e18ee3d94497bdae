//! Every text field of a request that is sent, so detection misses none.
//!
//! The request is walked as JSON: every string value is content (message text and text parts,
//! names, stop sequences, the `user` id, the arguments of earlier tool calls, tool definitions and
//! any field a caller passes through), except the few keys in [`PROTOCOL_KEYS`] that only carry
//! protocol. A field added to the request type later is therefore covered without a change here.

use serde_json::Value;
use tandem_core::openai::ChatCompletionRequest;
use tandem_core::ModelError;

/// Keys whose string values are protocol, not content: the model's name, roles, part and call
/// types, and ids that the upstream matches calls with.
pub const PROTOCOL_KEYS: &[&str] = &["model", "role", "type", "id", "tool_call_id", "object"];

/// The deepest nesting of a request accepted: deeper JSON is an attack or a mistake.
pub const MAX_DEPTH: usize = 64;

/// A text field: its JSON path (`messages[2].content[0].text`) and its text.
#[derive(Debug, Clone, PartialEq)]
pub struct TextField {
    pub path: String,
    pub text: String,
}

/// Every text field of `request`, in order.
pub fn texts(request: &ChatCompletionRequest) -> Result<Vec<TextField>, ModelError> {
    let mut fields = Vec::new();
    map_texts(request, |path, text| {
        fields.push(TextField {
            path: path.to_string(),
            text: text.to_string(),
        });
        None
    })?;
    Ok(fields)
}

/// A copy of `request` in which every text field for which `f(path, text)` returns a replacement
/// holds that replacement.
pub fn map_texts(
    request: &ChatCompletionRequest,
    mut f: impl FnMut(&str, &str) -> Option<String>,
) -> Result<ChatCompletionRequest, ModelError> {
    for (i, message) in request.messages.iter().enumerate() {
        if let tandem_core::openai::Content::Parts(parts) = &message.content {
            if let Some(part) = parts.iter().find(|p| p.kind != "text") {
                return Err(ModelError::invalid(
                    &format!("messages[{i}].content"),
                    format!(
                        "a content part of type `{}` cannot be checked for private data; only text parts pass a privacy stage",
                        part.kind
                    ),
                ));
            }
        }
    }
    let mut value = serde_json::to_value(request)
        .map_err(|e| ModelError::Internal(format!("cannot serialise a request: {e}")))?;
    walk(&mut value, &mut String::new(), 0, &mut f)?;
    serde_json::from_value(value)
        .map_err(|e| ModelError::Internal(format!("a rewritten request no longer parses: {e}")))
}

fn walk(
    value: &mut Value,
    path: &mut String,
    depth: usize,
    f: &mut impl FnMut(&str, &str) -> Option<String>,
) -> Result<(), ModelError> {
    if depth > MAX_DEPTH {
        return Err(ModelError::invalid(
            path.split(['.', '[']).next().unwrap_or_default(),
            format!("the request nests deeper than {MAX_DEPTH} levels at `{path}`"),
        ));
    }
    let len = path.len();
    match value {
        Value::String(text) => {
            if let Some(replacement) = f(path, text) {
                *text = replacement;
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                path.push_str(&format!("[{i}]"));
                walk(item, path, depth + 1, f)?;
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                if PROTOCOL_KEYS.contains(&key.as_str()) && item.is_string() {
                    continue;
                }
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                walk(item, path, depth + 1, f)?;
                path.truncate(len);
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: &str) -> ChatCompletionRequest {
        serde_json::from_str(body).unwrap()
    }

    #[test]
    fn every_sent_text_is_visited_and_protocol_is_not() {
        let req = request(
            r#"{"model":"m","user":"u-7","stop":["S1"],"messages":[
                {"role":"system","content":"sys","name":"ops"},
                {"role":"user","content":[{"type":"text","text":"p1"},{"type":"text","text":"p2"}]},
                {"role":"assistant","content":"","tool_calls":[{"id":"call_1","type":"function",
                  "function":{"name":"lookup","arguments":"{\"email\":\"a@b.c\"}"}}]},
                {"role":"tool","tool_call_id":"call_1","content":"result"}]}"#,
        );
        let paths: Vec<(String, String)> = texts(&req)
            .unwrap()
            .into_iter()
            .filter(|f| !f.text.is_empty())
            .map(|f| (f.path, f.text))
            .collect();
        let expected = [
            ("messages[0].content", "sys"),
            ("messages[0].name", "ops"),
            ("messages[1].content[0].text", "p1"),
            ("messages[1].content[1].text", "p2"),
            (
                "messages[2].tool_calls[0].function.arguments",
                "{\"email\":\"a@b.c\"}",
            ),
            ("messages[2].tool_calls[0].function.name", "lookup"),
            ("messages[3].content", "result"),
            ("stop[0]", "S1"),
            ("user", "u-7"),
        ];
        for (path, text) in expected {
            assert!(
                paths.contains(&(path.to_string(), text.to_string())),
                "{path} missing from {paths:?}"
            );
        }
        assert_eq!(paths.len(), expected.len(), "{paths:?}");
    }

    #[test]
    fn replacements_land_in_their_fields() {
        let req = request(r#"{"model":"m","messages":[{"role":"user","content":"secret"}]}"#);
        let out = map_texts(&req, |_, t| Some(t.to_uppercase())).unwrap();
        assert_eq!(out.messages[0].content.text().unwrap(), "SECRET");
        assert_eq!(out.model, "m");
    }

    #[test]
    fn deep_nesting_and_non_text_parts_are_refused() {
        let mut nested = serde_json::json!("x");
        for _ in 0..100 {
            nested = serde_json::json!([nested]);
        }
        let mut req = request(r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#);
        req.extra.insert("metadata".into(), nested);
        let error = texts(&req).unwrap_err();
        assert!(error.to_string().contains("deeper than 64"), "{error}");
        let req = request(
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#,
        );
        let error = texts(&req).unwrap_err();
        assert!(error.to_string().contains("image_url"), "{error}");
    }
}
