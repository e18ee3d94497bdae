//! Mistral-style calls (Mistral 7B v0.3, Nemo, Small): `[TOOL_CALLS]` and then one JSON list of
//! every call, to the end of the output.

use serde_json::Value;

use super::{call_from_json, ParsedCall, ToolCallFormat};

pub struct Mistral;

impl ToolCallFormat for Mistral {
    fn name(&self) -> &'static str {
        "mistral"
    }

    fn start(&self) -> &'static str {
        "[TOOL_CALLS]"
    }

    fn end(&self) -> Option<&'static str> {
        None
    }

    fn parse(&self, body: &str) -> Option<Vec<ParsedCall>> {
        match serde_json::from_str(body.trim()).ok()? {
            Value::Array(calls) => calls.iter().map(call_from_json).collect(),
            call => Some(vec![call_from_json(&call)?]),
        }
    }

    fn output(&self, calls: &str, parallel: bool) -> String {
        let many = if parallel {
            format!(r#"("," space {calls})*"#)
        } else {
            String::new()
        };
        format!(r#""[TOOL_CALLS]" space "[" space {calls} {many} "]" space"#)
    }
}
