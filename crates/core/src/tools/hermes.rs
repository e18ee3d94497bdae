//! Hermes-style calls (Qwen2.5, Hermes 2/3 and many fine-tunes): each call is a JSON object
//! between `<tool_call>` and `</tool_call>`, one per line.

use super::{call_from_json, ParsedCall, ToolCallFormat};

pub struct Hermes;

impl ToolCallFormat for Hermes {
    fn name(&self) -> &'static str {
        "hermes"
    }

    fn start(&self) -> &'static str {
        "<tool_call>"
    }

    fn end(&self) -> Option<&'static str> {
        Some("</tool_call>")
    }

    fn parse(&self, body: &str) -> Option<Vec<ParsedCall>> {
        let value = serde_json::from_str(body.trim()).ok()?;
        Some(vec![call_from_json(&value)?])
    }

    fn output(&self, calls: &str, parallel: bool) -> String {
        let one = format!(r#""<tool_call>\n" {calls} "\n</tool_call>""#);
        if parallel {
            format!(r#"{one} ("\n" {one})*"#)
        } else {
            one
        }
    }
}
