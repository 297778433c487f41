"""Every file path, test name and command cited in the docs and in code comments exists.

Read: README.md, docs/*.md and services/*/README.md (CHANGELOG.md and changes/ are history), and
the comments and docstrings of the code under ops/, services/*/src, tests/, benchmarks/,
scripts/ and infra/, plus tasks.py and noxfile.py (generated code excluded).

What counts as a reference, by rule (few false positives, no hand list of exceptions):

- a **path**: a token that starts with a top-level directory of the repository (``ops/``,
  ``docs/``, ``infra/``...) and ends in a file extension or a ``/``, or is a top-level file
  (``tasks.py``). Not a path: anything under ``~``, ``/`` (``/etc``, ``/opt``), inside a URL, or
  with a placeholder or glob character (``< > { } * ? $``) or an all-capitals segment (``NAME``).
  It exists relative to the repository root or, for a file's own relative citations (a chart's
  templates), to a directory that contains the citing file. A pytest node id (``path::name``)
  and ``path:name`` also need the name defined in that file.
- a **markdown file name** alone (a bare ``.md`` name): some file of that name is in the
  repository, unless the code writes it (the name is a string literal of the code: an output).
- a **test name** (``test_`` and a name, backticked or not): a test function, class or module,
  or a name defined somewhere in the code (a setting, a fixture).
- an **invoke command** (``invoke TASK --option``, in backticks, a code block or after
  ``uv run``): the task is in the collection of tasks.py and each ``--option`` is one of its flags.
- a **nox session** (after ``nox -s`` or ``nox --session``, or the nox `lint` session in prose):
  the noxfile defines it.
"""

from __future__ import annotations

import ast
import io
import re
import subprocess
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from ops.core import project
from tests._support.entrypoints import arguments, invoke_tasks, nox_sessions

ROOT = project.ROOT

# Stale references in files another change owns; each entry is (citing file, reference) and
# says what the fix is. The test fails when an entry here is no longer stale, so the list only
# shrinks.
KNOWN_STALE: dict[tuple[str, str], str] = {}

CODE_DIRS = ("ops", "services", "tests", "benchmarks", "scripts", "infra")
CODE_TOP_FILES = ("tasks.py", "noxfile.py")
# Comment syntax of the non-Python files read: `#` to the end of the line.
HASH_COMMENT_SUFFIXES = {
    ".sh",
    ".bash",
    ".yaml",
    ".yml",
    ".toml",
    ".cfg",
    ".ini",
    ".conf",
    ".service",
    ".timer",
    ".env",
    "",
}
HASH_COMMENT_NAMES = {"Dockerfile", "cron"}
PLACEHOLDER = re.compile(r"[<>{}*?$\[\]|]")
EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,10}$")
LINE_SUFFIX = re.compile(r":\d+(?:-\d+)?$")


@dataclass(frozen=True)
class Problem:
    source: str  # the citing file, relative to the root
    reference: str
    why: str

    def __str__(self) -> str:
        return f"{self.source}: `{self.reference}` {self.why}"


# --- the repository ------------------------------------------------------------------------


@cache
def tracked_files() -> tuple[str, ...]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return tuple(sorted(name for name in out.splitlines() if (ROOT / name).exists()))


@cache
def top_level() -> tuple[set[str], set[str]]:
    """The repository's top-level directories and files (tracked or not ignored)."""
    dirs = {name.split("/", 1)[0] for name in tracked_files() if "/" in name}
    files = {name for name in tracked_files() if "/" not in name}
    return dirs, files


@cache
def file_names() -> set[str]:
    return {Path(name).name for name in tracked_files()}


def python_files() -> list[str]:
    return [name for name in tracked_files() if name.endswith(".py")]


@cache
def defined_names(relative: str) -> set[str]:
    """Every name a Python file defines: functions, classes (with their members), assignments."""
    try:
        tree = ast.parse((ROOT / relative).read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError):
        return set()
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
    return names


@cache
def all_defined_names() -> set[str]:
    return set().union(*(defined_names(name) for name in python_files()))


@cache
def defined_tests() -> set[str]:
    """Test functions, classes and modules of the suite (tests/ and services/*/tests)."""
    tests = [
        name
        for name in python_files()
        if name.startswith("tests/") or re.match(r"services/[^/]+/tests/", name)
    ]
    defined = {n for name in tests for n in defined_names(name) if n.startswith(("test_", "Test"))}
    return defined | {Path(name).stem for name in tests}


@cache
def task_flags() -> dict[str, set[str]]:
    """Every task name (dotted, with aliases and collection defaults) and its flags."""
    flags: dict[str, set[str]] = {}
    for name, task in invoke_tasks().items():
        names = {"--help", "-h"}
        for argument in arguments(task):
            for flag in argument.names:
                dashed = flag.replace("_", "-")
                names.add(f"--{dashed}" if len(dashed) > 1 else f"-{dashed}")
                if argument.kind is bool:
                    names.add(f"--no-{dashed}")
        flags[name] = names
    return flags


@cache
def collections() -> set[str]:
    return {name.rsplit(".", 1)[0] for name in invoke_tasks() if "." in name}


# --- the texts ----------------------------------------------------------------------------


def doc_files() -> list[str]:
    return [
        name
        for name in tracked_files()
        if name == "README.md"
        or re.fullmatch(r"docs/[^/]+\.md", name)
        or re.fullmatch(r"services/[^/]+/README\.md", name)
    ]


def code_files() -> list[str]:
    out = []
    for name in tracked_files():
        path = Path(name)
        if "_generated" in path.parts or "__pycache__" in path.parts:
            continue
        if not (path.parts[0] in CODE_DIRS or name in CODE_TOP_FILES):
            continue
        # Of a service, its code: not its own docs, proto or packaging.
        if path.parts[0] == "services" and path.parts[2:3] not in (("src",), ("tests",)):
            continue
        if path.suffix in {".py", *HASH_COMMENT_SUFFIXES} or path.name in HASH_COMMENT_NAMES:
            out.append(name)
    return out


def python_commentary(text: str) -> str:
    """The comments and docstrings of a Python file, one per line."""
    parts: list[str] = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type == tokenize.COMMENT:
                parts.append(token.string.lstrip("#"))
        tree = ast.parse(text)
    except (SyntaxError, tokenize.TokenError):
        return ""
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            docstring = ast.get_docstring(node, clean=False)
            if docstring:
                parts.append(docstring)
    return "\n".join(parts)


def hash_commentary(text: str) -> str:
    comments = []
    for line in text.splitlines():
        match = re.search(r"(?:^|\s)#+(?!!)(.*)$", line)
        if match:
            comments.append(match.group(1))
    return "\n".join(comments)


def commentary(name: str) -> str:
    text = (ROOT / name).read_text(encoding="utf-8", errors="replace")
    if name.endswith(".md"):
        return text
    return python_commentary(text) if name.endswith(".py") else hash_commentary(text)


def code_spans(text: str, *, markdown: bool) -> list[str]:
    """Backticked spans (` ``x`` ` or `` `x` ``) and, in markdown, fenced code blocks' lines."""
    spans = [m.group(2) for m in re.finditer(r"(`+)([^`\n]+?)\1", text)]
    if markdown:
        for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M):
            spans.extend(block.splitlines())
    return spans


# --- the references -----------------------------------------------------------------------


def path_candidates(text: str) -> Iterator[str]:
    dirs, files = top_level()
    prefixes = "|".join(re.escape(d) for d in sorted(dirs, key=len, reverse=True))
    rooted = rf"(?:{prefixes})/[^\s`'\"(),;]*"
    top_files = rf"(?:{'|'.join(map(re.escape, files))})(?![\w/-])"
    # Not after a word, a dot, `/` or `~` (a path elsewhere: `/opt/x/ops/...`, a URL, `~/...`).
    pattern = re.compile(rf"(?<![\w/.~$@:-])(?:{rooted}|{top_files})")
    for match in pattern.finditer(text):
        yield match.group(0).rstrip(".:")


def check_path(source: str, token: str) -> Problem | None:
    reference = token
    token = LINE_SUFFIX.sub("", token)
    member = None
    if "::" in token:
        token, member = token.split("::", 1)
    elif match := re.fullmatch(r"(.+\.py):([A-Za-z_]\w*).*", token):
        token, member = match.group(1), match.group(2)
    if PLACEHOLDER.search(token) or any(
        re.fullmatch(r"[A-Z][A-Z_]{2,}", part) and not EXTENSION.search(part)
        for part in token.split("/")
    ):
        return None
    if not (token.endswith("/") or EXTENSION.search(token.rsplit("/", 1)[-1])):
        return None
    bases = [ROOT, *[ROOT / p for p in reversed(Path(source).parents[:-1])]]
    found = next((base / token for base in bases if (base / token).exists()), None)
    if found is None:
        return Problem(source, reference, "does not exist")
    if token.endswith("/") and not found.is_dir():
        return Problem(source, reference, "is not a directory")
    if member:
        relative = found.relative_to(ROOT).as_posix()
        missing = [part for part in member.split("::") if part not in defined_names(relative)]
        if missing:
            return Problem(source, reference, f"names {missing[0]!r}, not defined in {relative}")
    return None


@cache
def written_names() -> set[str]:
    """The string literals of the code that are bare markdown names: files the code writes."""
    names: set[str] = set()
    for name in python_files():
        try:
            tree = ast.parse((ROOT / name).read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError):
            continue
        names |= {
            node.value
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and re.fullmatch(r"[\w-]+\.md", node.value)
        }
    return names


def check_markdown_names(source: str, text: str) -> Iterator[Problem]:
    for match in re.finditer(r"(?<![\w/.-])([A-Za-z0-9][\w-]*\.md)\b", text):
        if match.group(1) not in file_names() | written_names():
            yield Problem(source, match.group(1), "is no file of the repository")


def check_test_names(source: str, text: str) -> Iterator[Problem]:
    for match in re.finditer(r"(?<![\w.:/-])(test_\w*[a-z0-9])\b(?![.(/-])", text):
        name = match.group(1)
        if name not in defined_tests() and name not in all_defined_names():
            yield Problem(source, name, "is no test (nor any name) defined in the code")


def check_invoke(source: str, spans: list[str], text: str) -> Iterator[Problem]:
    commands = [m.group(1) for span in spans for m in re.finditer(r"\binvoke\s+(.*)", span)]
    commands += [m.group(1) for m in re.finditer(r"\buv run invoke\s+([^\n`]*)", text)]
    for command in commands:
        command = command.split(" #", 1)[0]  # a shell comment after the command
        words = re.split(r"\s+(?:&&|\|\||;|\|)\s+", command)[0].split()
        while words and words[0].startswith("-"):  # core options: --list, --help [TASK], -l
            words.pop(0)
        if not words or PLACEHOLDER.search(words[0]) or not re.fullmatch(r"[a-z][\w.-]*", words[0]):
            continue
        task = words[0].rstrip(".,:")
        if task.endswith(".*"):
            task = task[:-2]
        if re.fullmatch(r"[A-Z_]+", task):
            continue
        tasks = task_flags()
        if task not in tasks:
            if task.rstrip(".") not in collections():
                yield Problem(source, f"invoke {task}", "is no task of the collection (tasks.py)")
            continue
        for word in words[1:]:
            flag = word.split("=", 1)[0].rstrip(".,:)")
            if flag.startswith("--") and not PLACEHOLDER.search(flag) and flag not in tasks[task]:
                yield Problem(source, f"invoke {task} {flag}", f"is no option of `invoke {task}`")


def check_nox(source: str, spans: list[str], text: str) -> Iterator[Problem]:
    sessions = nox_sessions()
    names: list[str] = []
    del spans  # the text holds every span
    for span in [text]:
        for match in re.finditer(r"\bnox\s+(?:-s|--session|--sessions)\s+([^\n`]*)", span):
            for word in match.group(1).split():
                if word.startswith("-") or not re.fullmatch(r"[\w\"'()=.-]+", word):
                    break
                names.append(word.strip("\"'").split("(", 1)[0].rstrip("."))
    names += re.findall(r"\bnox `(\w+)`", text)
    for name in names:
        if name and not re.fullmatch(r"[A-Z_]+", name) and name not in sessions:
            yield Problem(source, f"nox -s {name}", "is no session of noxfile.py")


def problems_in(source: str, text: str) -> Iterator[Problem]:
    markdown = source.endswith(".md")
    spans = code_spans(text, markdown=markdown)
    for token in set(path_candidates(text)):
        problem = check_path(source, token)
        if problem:
            yield problem
    yield from check_markdown_names(source, text)
    yield from check_test_names(source, text)
    yield from check_invoke(source, spans, text)
    yield from check_nox(source, spans, text)


@cache
def all_problems() -> tuple[Problem, ...]:
    found = {
        p for name in [*doc_files(), *code_files()] for p in problems_in(name, commentary(name))
    }
    return tuple(sorted(found, key=lambda p: (p.source, p.reference)))


# --- the tests ----------------------------------------------------------------------------


def test_the_texts_are_found() -> None:
    docs, code = doc_files(), code_files()
    assert "README.md" in docs
    assert "docs/tasks.md" in docs
    assert {"ops/core/tools.py", "tasks.py", "noxfile.py"} <= set(code)
    assert not [name for name in code if "/_generated/" in name]


def test_every_cited_path_test_and_command_exists() -> None:
    stale = [p for p in all_problems() if (p.source, p.reference) not in KNOWN_STALE]
    assert not stale, "stale references:\n" + "\n".join(map(str, stale))


def test_the_known_stale_references_are_still_stale() -> None:
    current = {(p.source, p.reference) for p in all_problems()}
    fixed = [key for key in KNOWN_STALE if key not in current]
    assert not fixed, f"fixed: remove from KNOWN_STALE: {fixed}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("see `ops/core/nothing.py`", ["`ops/core/nothing.py` does not exist"]),
        ("see ops/core/tools.py and docs/tasks.md", []),
        ("`tests/ops/test_runner.py::test_nope`", ["names 'test_nope'"]),
        ("`tests/_support/tools.py:require_tool(name)`", []),
        ("`~/.cache/x.py`, `/etc/ops/x.conf`, https://x.org/ops/a.py", []),
        ("`services/<name>/x.py`, `infra/*/x.yaml`, `services/NAME/`", []),
        ("(see TOOLCHAIN.md)", ["`TOOLCHAIN.md` is no file"]),
        ("run `uv run invoke deploy --target local`", []),
        ("run `invoke deploy --nope`", ["is no option"]),
        ("`invoke no-such-task`", ["is no task"]),
        ("we invoke the runner", []),
        ("`nox -s lint typecheck -- x`, the nox `tests` session", []),
        ("`nox -s nope`", ["is no session"]),
        ("the test `test_no_such_test_anywhere` shows", ["is no test"]),
    ],
)
def test_the_rules(text: str, expected: list[str]) -> None:
    found = sorted(problems_in("docs/example.md", text), key=str)
    assert len(found) == len(expected), found
    for problem, fragment in zip(found, expected, strict=True):
        assert fragment in str(problem)
