//! Model-written Python checked in the [`Sandbox`]: the code in an answer, the examples a text
//! shows, and the two-process program that runs one against the other. Shared by the HumanEval
//! scorer (its hidden tests, and its docstring examples for `tandem router evaluate`) and by the
//! live `shown_examples` cascade signal ([`RequestExamples`]), which checks any request's answer
//! against the examples the request itself shows.
//!
//! **The answer cannot forge a result.** The runner (`humaneval_runner.py`) holds the task's own
//! code and the tests; every function the tests call is a stub that calls the candidate process
//! (`humaneval_candidate.py`) through a pipe, which alone runs the answer's code. Arguments and
//! results cross as Python literals, so the candidate returns data, never code or objects with a
//! rigged `__eq__`; the runner prints a fresh random marker (read from a file it deletes before
//! the candidate starts) only after the tests returned, and only output followed by the marker
//! counts. The HumanEval module's docs tell the rest.

use crate::dataset::ShownExamples;
use crate::error::EvalError;
use crate::sandbox::{Execution, Sandbox};

/// Runs the task's code and tests, calling the candidate in another process (module docs).
const RUNNER: &str = include_str!("dataset/humaneval_runner.py");
/// Runs the sanitised answer and serves the runner's calls to the functions it defines.
const CANDIDATE: &str = include_str!("dataset/humaneval_candidate.py");
/// The line the examples' tests print before the runner's marker.
const EXAMPLES_LINE: &str = "tandem-shown-examples ";

/// The code in a model's answer: the first fenced block that defines one of `names`, else the
/// first fenced Python (or unlabelled) block, else the whole answer. A block left open by a
/// truncated answer runs to the end.
pub fn extract_code(answer: &str, names: &[&str]) -> String {
    let blocks = fenced_blocks(answer);
    blocks
        .iter()
        .find(|(_, code)| defines_any(code, names))
        .or_else(|| blocks.iter().find(|(lang, _)| is_python(lang)))
        .map(|(_, code)| code.clone())
        .unwrap_or_else(|| answer.to_string())
}

fn is_python(lang: &str) -> bool {
    matches!(lang, "" | "python" | "py" | "python3")
}

fn defines_any(code: &str, names: &[&str]) -> bool {
    names
        .iter()
        .any(|name| code.contains(&format!("def {name}(")))
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

/// How the program was assembled from the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assembly {
    /// The answer defines a function the tests call: the task's code, then the answer's.
    FullFunction,
    /// The answer is the body: the task's code immediately followed by it (the official
    /// HumanEval harness's way).
    Body,
}

/// The parts of the programs that test `code`. The candidate process runs `head` and then the
/// definitions of `answer`; the runner runs the task's own `prompt` and then `tests`.
#[derive(Debug)]
pub(crate) struct Program {
    pub prompt: String,
    pub head: String,
    pub answer: String,
    pub tests: String,
    pub assembly: Assembly,
}

/// The program that runs `tests` against `code`, given the task's own code `prompt` and the
/// functions the tests call, `names`. An answer that defines none of them is a body to append to
/// the prompt; with no prompt to append it to, it is taken whole (and fails if it defines none).
pub(crate) fn assemble(prompt: &str, names: &[&str], code: &str, tests: String) -> Program {
    if defines_any(code, names) || prompt.trim().is_empty() {
        Program {
            prompt: prompt.to_string(),
            head: format!("{prompt}\n"),
            answer: code.to_string(),
            tests,
            assembly: Assembly::FullFunction,
        }
    } else {
        Program {
            prompt: prompt.to_string(),
            head: format!("{prompt}{code}"),
            answer: String::new(),
            tests,
            assembly: Assembly::Body,
        }
    }
}

/// One sandboxed run of a program and whether its tests ran to the end.
pub(crate) struct Run {
    pub execution: Execution,
    pub tests_completed: bool,
}

/// Runs `program` in the sandbox: the runner and the candidate in two processes, the functions
/// `names` called across, the pass marker printed only after the tests returned (module docs).
pub(crate) async fn run(
    sandbox: &Sandbox,
    names: &[&str],
    program: &Program,
) -> Result<Run, EvalError> {
    let marker = format!("tandem-tests-completed-{:032x}", rand::random::<u128>());
    let names = names.join("\n");
    let files = [
        ("main.py", RUNNER),
        ("candidate.py", CANDIDATE),
        ("prompt.py", program.prompt.as_str()),
        ("head.py", program.head.as_str()),
        ("answer.py", program.answer.as_str()),
        ("tests.py", program.tests.as_str()),
        ("entry_point", names.as_str()),
        ("secret", marker.as_str()),
    ];
    let execution = sandbox.run_python(&files, "main.py").await?;
    let tests_completed = execution.stdout.lines().last() == Some(marker.as_str());
    Ok(Run {
        execution,
        tests_completed,
    })
}

/// Where an example came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// `>>> call` followed by the expected value on the next line.
    Doctest,
    /// One line `name(args) ➞ value` (or `=>`, `==>`, `->`, `==`, `=`, `should return`).
    Inline,
}

/// One example a text shows, as Python source text; whether it is valid Python is decided when
/// it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    pub call: String,
    pub expected: String,
    pub form: Form,
}

impl Example {
    /// The function the call starts with: `f` of `f(2)`, none for `x.f(2)` or `[f(2)]`.
    pub fn callee(&self) -> Option<&str> {
        let (name, _) = self.call.split_once('(')?;
        is_identifier(name).then_some(name)
    }
}

fn is_identifier(word: &str) -> bool {
    let mut chars = word.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The examples `text` shows, in order: doctest lines (`>>> call`, then the expected value on the
/// next line, when that line is neither a prompt nor the docstring's end) and one-line examples
/// that start with a call (`name(args) ➞ value`, also `==>`, `=>`, `->`, `==`, `should return`,
/// `=`; a trailing `.` or `,` is dropped). Any text: a docstring, a question, a system message.
pub fn examples_in(text: &str) -> Vec<Example> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut examples = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        if let Some(call) = line.strip_prefix(">>>") {
            let expected = lines.get(i + 1).copied().unwrap_or("");
            if !expected.is_empty()
                && !expected.starts_with(">>>")
                && !expected.starts_with("\"\"\"")
            {
                examples.push(Example {
                    call: call.trim().to_string(),
                    expected: expected.to_string(),
                    form: Form::Doctest,
                });
                i += 1;
            }
        } else if line
            .split_once('(')
            .is_some_and(|(name, _)| is_identifier(name))
        {
            let separators = ["➞", "==>", "=>", "->", "==", "should return", "="];
            if let Some((call, expected)) = separators.iter().find_map(|sep| line.split_once(sep)) {
                let expected = expected.trim().trim_end_matches(['.', ',']);
                if !expected.is_empty() {
                    examples.push(Example {
                        call: call.trim().to_string(),
                        expected: expected.to_string(),
                        form: Form::Inline,
                    });
                }
            }
        }
        i += 1;
    }
    examples
}

/// The tests that evaluate each `(call, expected)` pair in the runner's namespace (where the
/// called functions call into the candidate process) and print one JSON line of results: `true`
/// or `false` per example, `null` for an example that is not a Python expression on both sides
/// (a statement, prose), which no answer can pass.
fn examples_tests(examples: &[(String, String)]) -> String {
    // A JSON array of strings is also a Python literal.
    let literal = serde_json::to_string(examples).expect("strings serialise");
    format!(
        "import json as _json\n\n\
         def _shown_examples():\n    \
             results = []\n    \
             for call, expected in {literal}:\n        \
                 try:\n            \
                     call = compile(call, '<example>', 'eval')\n            \
                     expected = compile(expected, '<expected>', 'eval')\n        \
                 except (SyntaxError, ValueError):\n            \
                     results.append(None)\n            \
                     continue\n        \
                 try:\n            \
                     results.append(bool(eval(call) == eval(expected)))\n        \
                 except Exception:\n            \
                     results.append(False)\n    \
             return results\n\n\
         print({EXAMPLES_LINE:?} + _json.dumps(_shown_examples()), flush=True)\n"
    )
}

/// Whether `code` passes each of `examples`, in order, after the task's own code `prompt`, with
/// `names` the functions the examples call: `Some(false)` for a failed example, `None` for one
/// that is not an expression; `None` for the whole run when it did not finish (the answer hung,
/// or killed its runner). The runner evaluates the examples, calling the candidate process like
/// the real tests, so the answer's code can neither see nor forge the results.
pub(crate) async fn example_results(
    sandbox: &Sandbox,
    prompt: &str,
    names: &[&str],
    code: &str,
    examples: &[(String, String)],
) -> Result<Option<Vec<Option<bool>>>, EvalError> {
    let program = assemble(prompt, names, code, examples_tests(examples));
    let run = run(sandbox, names, &program).await?;
    Ok(run
        .execution
        .stdout
        .lines()
        .rev()
        .nth(1)
        .and_then(|line| line.strip_prefix(EXAMPLES_LINE))
        .filter(|_| run.tests_completed)
        .and_then(|json| serde_json::from_str::<Vec<Option<bool>>>(json).ok())
        .filter(|results| results.len() == examples.len()))
}

/// Python's built-in functions, and the keywords that can precede a parenthesis: a call to one is
/// never a function the answer is asked for.
const NOT_UNDER_TEST: &[&str] = &[
    "and",
    "assert",
    "await",
    "else",
    "if",
    "in",
    "is",
    "lambda",
    "not",
    "or",
    "return",
    "yield",
    "abs",
    "all",
    "any",
    "ascii",
    "bin",
    "bool",
    "bytearray",
    "bytes",
    "callable",
    "chr",
    "complex",
    "dict",
    "dir",
    "divmod",
    "enumerate",
    "eval",
    "exec",
    "filter",
    "float",
    "format",
    "frozenset",
    "getattr",
    "hasattr",
    "hash",
    "hex",
    "id",
    "input",
    "int",
    "isinstance",
    "issubclass",
    "iter",
    "len",
    "list",
    "map",
    "max",
    "min",
    "next",
    "object",
    "oct",
    "open",
    "ord",
    "pow",
    "print",
    "range",
    "repr",
    "reversed",
    "round",
    "set",
    "slice",
    "sorted",
    "str",
    "sum",
    "tuple",
    "type",
    "vars",
    "zip",
];

/// The names of the top-level functions `code` defines (`def name(` at the start of a line).
fn defined_functions(code: &str) -> Vec<&str> {
    code.lines()
        .filter_map(|line| {
            let rest = line
                .strip_prefix("def ")
                .or_else(|| line.strip_prefix("async def "))?;
            let (name, _) = rest.split_once('(')?;
            let name = name.trim();
            is_identifier(name).then_some(name)
        })
        .collect()
}

/// The functions `call` calls by plain name (`f` and `g` of `sorted(f(g(1)))`; not `x.f(1)`),
/// built-ins and keywords left out.
fn called_functions(call: &str) -> Vec<&str> {
    let mut names = Vec::new();
    let bytes = call.as_bytes();
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    for (open, _) in call.match_indices('(') {
        let start = (0..open)
            .rev()
            .take_while(|&i| is_word(bytes[i]))
            .last()
            .unwrap_or(open);
        let name = &call[start..open];
        let after_dot = start > 0 && bytes[start - 1] == b'.';
        if is_identifier(name) && !after_dot && !NOT_UNDER_TEST.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// The examples a request shows, ready to check answers against: the live `shown_examples`
/// signal of a cascade.
///
/// Found in any text (a system message, a user's question), not only HumanEval's prompts:
/// [`examples_in`] reads them, the code the texts hold in fenced Python blocks is the task's own
/// code (the imports and helpers an answer may rely on; it runs before the answer, as a HumanEval
/// prompt does), and the functions under test are those the examples call by name. A function the
/// task's code defines is taken whatever its case; one it does not define must not look like a
/// class (a capitalised name), since its result must cross between the processes as a literal.
/// An example that calls none of them is not about the answer's code and is left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestExamples {
    code: String,
    names: Vec<String>,
    examples: Vec<(String, String)>,
}

impl RequestExamples {
    /// The examples `texts` show; `None` when they show none an answer could be run on.
    pub fn find(texts: &[&str]) -> Option<RequestExamples> {
        let mut code = String::new();
        for text in texts {
            for (lang, block) in fenced_blocks(text) {
                if is_python(&lang) {
                    code.push_str(&block);
                    code.push('\n');
                }
            }
        }
        let defined = defined_functions(&code);
        let under_test = |name: &str| {
            defined.contains(&name) || !name.starts_with(|c: char| c.is_ascii_uppercase())
        };
        let mut names: Vec<String> = Vec::new();
        let mut examples = Vec::new();
        for example in texts.iter().flat_map(|text| examples_in(text)) {
            let called: Vec<&str> = called_functions(&example.call)
                .into_iter()
                .filter(|name| under_test(name))
                .collect();
            if called.is_empty() {
                continue;
            }
            for name in called {
                if !names.iter().any(|n| n == name) {
                    names.push(name.to_string());
                }
            }
            let pair = (example.call, example.expected);
            if !examples.contains(&pair) {
                examples.push(pair);
            }
        }
        (!examples.is_empty()).then_some(RequestExamples {
            code,
            names,
            examples,
        })
    }

    /// The functions under test.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The `(call, expected)` pairs, as source text.
    pub fn examples(&self) -> &[(String, String)] {
        &self.examples
    }

    /// How `answer`'s code fares on the examples, run in `sandbox`: examples that are not Python
    /// expressions do not count, and `None` means none was left. An answer whose run did not
    /// finish passed none of them.
    pub async fn check(
        &self,
        sandbox: &Sandbox,
        answer: &str,
    ) -> Result<Option<ShownExamples>, EvalError> {
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        let code = extract_code(answer, &names);
        let results = example_results(sandbox, &self.code, &names, &code, &self.examples).await?;
        Ok(match results {
            Some(results) => {
                let total = results.iter().flatten().count();
                let passed = results.iter().filter(|r| **r == Some(true)).count();
                (total > 0).then_some(ShownExamples { passed, total })
            }
            None => Some(ShownExamples {
                passed: 0,
                total: self.examples.len(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::Limits;

    fn pairs(examples: &[(&str, &str)]) -> Vec<(String, String)> {
        examples
            .iter()
            .map(|(c, e)| (c.to_string(), e.to_string()))
            .collect()
    }

    #[test]
    fn finds_a_doctest_in_a_plain_question() {
        let question = "Write a Python function is_prime(n) that tells whether n is prime.\n\
                        For example:\n>>> is_prime(7)\nTrue\n>>> is_prime(8)\nFalse\n\
                        Keep it short.";
        let found = RequestExamples::find(&[question]).unwrap();
        assert_eq!(found.names(), ["is_prime"]);
        assert_eq!(
            found.examples(),
            pairs(&[("is_prime(7)", "True"), ("is_prime(8)", "False")])
        );
        assert_eq!(found.code, "");
    }

    #[test]
    fn finds_arrow_forms_and_the_functions_inside_builtins() {
        let system = "You write Python. Answer with code only.";
        let question = "Implement `count_vowels(s)` and `shout(s)`.\n\
                        count_vowels(\"banana\") => 3\n\
                        shout('hi') ==> 'HI'.\n\
                        sorted(count_vowels(w) for w in ['a', 'bb']) -> [0, 1]\n\
                        print(x) is not an example, and neither is Point(1, 2) = p\n\
                        len('abc') == 3\n>>> not(len('ab'))\nFalse";
        let found = RequestExamples::find(&[system, question]).unwrap();
        assert_eq!(found.names(), ["count_vowels", "shout"]);
        assert_eq!(
            found.examples(),
            pairs(&[
                ("count_vowels(\"banana\")", "3"),
                ("shout('hi')", "'HI'"),
                ("sorted(count_vowels(w) for w in ['a', 'bb'])", "[0, 1]"),
            ])
        );
    }

    #[test]
    fn takes_the_code_and_its_definitions_from_fenced_blocks() {
        let question = "Finish this:\n```python\nimport math\n\nclass Box:\n    pass\n\n\
                        def Area(r):\n    \"\"\"Circle area, rounded.\n    >>> Area(1)\n    3\n    \"\"\"\n```\n\
                        Box(2) -> a box";
        let found = RequestExamples::find(&["", question]).unwrap();
        assert_eq!(found.names(), ["Area"]);
        assert_eq!(found.examples(), pairs(&[("Area(1)", "3")]));
        assert!(found.code.starts_with("import math\n"), "{}", found.code);
    }

    #[test]
    fn a_request_without_examples_has_none() {
        for text in [
            "What is the capital of France?",
            "Write a function that reverses a string.",
            "```python\ndef f(x):\n    return x\n```\nWhy is this slow?",
            "Compute 3 + 4 = ?",
            ">>> import os\n>>> x = 1\n",
            "",
        ] {
            assert_eq!(RequestExamples::find(&[text]), None, "{text:?}");
        }
    }

    #[test]
    fn reads_doctest_and_inline_forms_with_any_function() {
        let text = "def f(x, y=1):\n    \"\"\"Doubles.\n    >>> f(2)\n    4\n    g(5) ➞ 10\n    \
                    h_2([1]) == [1, 1].\n    f is pure.\n    >>> f(9)\n    \"\"\"\n";
        let found: Vec<_> = examples_in(text)
            .into_iter()
            .map(|e| (e.call, e.expected, e.form))
            .collect();
        assert_eq!(
            found,
            [
                ("f(2)", "4", Form::Doctest),
                ("g(5)", "10", Form::Inline),
                ("h_2([1])", "[1, 1]", Form::Inline),
            ]
            .map(|(c, e, f)| (c.to_string(), e.to_string(), f))
        );
    }

    async fn sandbox() -> Sandbox {
        Sandbox::detect(Limits::default(), None, false)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn scores_answers_to_a_plain_question_in_the_sandbox() {
        let sandbox = sandbox().await;
        let question =
            "Write `is_even(n)` in Python.\n>>> is_even(4)\nTrue\n>>> is_even(7)\nFalse\n\
                        is_even(0) => True\n>>> is_even(\nnot python\n";
        let found = RequestExamples::find(&[question]).unwrap();
        assert_eq!(found.examples().len(), 4);
        let check = |answer: &'static str| {
            let (found, sandbox) = (&found, &sandbox);
            async move { found.check(sandbox, answer).await.unwrap() }
        };
        let shown = |passed| Some(ShownExamples { passed, total: 3 });
        assert_eq!(
            check("Here:\n```python\ndef is_even(n):\n    return n % 2 == 0\n```").await,
            shown(3)
        );
        assert_eq!(
            check("```python\ndef is_even(n):\n    return n % 2 == 1\n```").await,
            shown(0)
        );
        assert_eq!(
            check("```python\ndef is_even(n):\n    return n > 2\n```").await,
            shown(1)
        );
        // Printing the results line the runner would print, then leaving before the examples
        // run, proves nothing.
        let forged = "```python\nimport os, sys\n\
                      def is_even(n):\n    return None\n\n\
                      print('tandem-shown-examples [true, true, true, null]', flush=True)\n\
                      os.write(1, b'tandem-shown-examples [true, true, true, null]\\n')\n\
                      X = sys.stdout.write('tandem-shown-examples [true, true, true, null]\\n')\n\
                      Y = os._exit(0)\n```";
        assert_eq!(check(forged).await, shown(0));
        // An answer that hangs passed none.
        let hangs = "```python\ndef is_even(n):\n    while True:\n        pass\n```";
        let limits = Limits {
            wall: std::time::Duration::from_secs(2),
            ..Limits::default()
        };
        let quick = Sandbox::detect(limits, None, false).await.unwrap();
        assert_eq!(
            found.check(&quick, hangs).await.unwrap(),
            Some(ShownExamples {
                passed: 0,
                total: 4
            })
        );
    }

    #[tokio::test]
    async fn the_task_code_runs_before_the_answer_and_a_body_completes_it() {
        let sandbox = sandbox().await;
        let question = "Complete the function.\n```python\nimport math\n\n\
                        def double(x):\n    return 2 * x\n\n\
                        def area(r):\n    \"\"\"Rounded area.\n    >>> area(1)\n    3\n    \
                        >>> area(2)\n    13\n    >>> double(area(1))\n    6\n    \"\"\"\n```";
        let found = RequestExamples::find(&[question]).unwrap();
        assert_eq!(found.names(), ["area", "double"]);
        let full = ShownExamples {
            passed: 3,
            total: 3,
        };
        // The answer uses the prompt's import without repeating it.
        let whole = "```python\ndef area(r):\n    return round(math.pi * r * r)\n```";
        assert_eq!(found.check(&sandbox, whole).await.unwrap(), Some(full));
        let body = "    return round(math.pi * r * r)\n";
        assert_eq!(found.check(&sandbox, body).await.unwrap(), Some(full));
        // Every example that does not parse: nothing to say.
        let prose = RequestExamples::find(&[">>> f(1) +\nnothing\nf(2) => a b c\n"]).unwrap();
        assert_eq!(
            prose
                .check(&sandbox, "```python\ndef f(x):\n    return x\n```")
                .await
                .unwrap(),
            None
        );
    }
}
