"""Every `garage ...` command line in README.md and docs/*.md parses against the real click
command tree: the subcommands exist, every option is known and every value click can check
is valid. Nothing runs: each command only goes through click's `make_context`.

Command lines are the lines of fenced shell blocks (bash, sh, shell; in console blocks the
lines after a `$ ` prompt) and the lines of unlabeled blocks that start with `garage` or
`$ garage`. A line is split at pipes, `&&`, `||` and `;`, a `$(...)` is checked as a command
of its own, and `VAR=value` assignments in front of `garage` are dropped. Placeholders
(`<job_id>`, `gk-u-...`, a lone `...`) stand for values, so they are not checked; an option
name is always checked.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import click
import pytest

from garage.cli import main

from ..support import ROOT

GENERATED = frozenset({"api.md", "configuration.md"})  # written by docs/generate.py
SHELL_LANGUAGES = frozenset({"bash", "sh", "shell", "console"})
FENCE = re.compile(r"^\s*(`{3,}|~{3,})\s*([^\s`]*)")
UNLABELED_COMMAND = re.compile(r"^\s*(\$\s+)?garage(\s|$)")
MENTIONS_GARAGE = re.compile(r"(?<![-.\w])garage(?![-.\w/])")
SUBSTITUTION = re.compile(r"\$\(([^()]*)\)")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
PLACEHOLDER = re.compile(r"^<[^<>]+>$|\.\.\.")
ANGLED = re.compile(r"<([A-Za-z][\w.-]*)>")  # `<job_id>`: a placeholder, not redirections
ANGLE_STAND_INS = str.maketrans("\u27e8\u27e9", "<>")
SEPARATORS = frozenset({"|", "||", "&&", ";", "&", "|&", "(", ")"})


@dataclass(frozen=True)
class ShellLine:
    number: int  # of the line it starts on
    text: str  # continuation lines joined


@dataclass(frozen=True)
class Problem:
    number: int
    command: str
    message: str

    def __str__(self) -> str:
        return f"{self.number}: {self.command}\n    {self.message}"


# --- finding command lines -------------------------------------------------------------


def closes(line: str, fence: str) -> bool:
    text = line.strip()
    return len(text) >= len(fence) and set(text) == {fence[0]}


def fenced_blocks(markdown: str) -> Iterator[tuple[str, list[tuple[int, str]]]]:
    """Each fenced block's language (lower case, "" when unlabeled) and numbered lines."""
    fence: str | None = None
    language = ""
    lines: list[tuple[int, str]] = []
    for number, line in enumerate(markdown.splitlines(), 1):
        if fence is None:
            if match := FENCE.match(line):
                fence, language, lines = match.group(1), match.group(2).lower(), []
        elif closes(line, fence):
            yield language, lines
            fence = None
        else:
            lines.append((number, line))


def joined_lines(lines: Sequence[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """Lines with their backslash continuations joined, numbered by their first line."""
    start, parts = 0, []
    for number, line in lines:
        if not parts:
            start = number
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            parts.append(stripped[:-1])
            continue
        yield start, " ".join([*parts, line])
        parts = []
    if parts:
        yield start, " ".join(parts)


def is_command_line(language: str, text: str) -> bool:
    if language == "console":
        return text.lstrip().startswith("$ ")
    if language in SHELL_LANGUAGES:
        return True
    return not language and bool(UNLABELED_COMMAND.match(text))


def shell_lines(markdown: str) -> list[ShellLine]:
    return [
        ShellLine(number, text)
        for language, lines in fenced_blocks(markdown)
        for number, text in joined_lines(lines)
        if is_command_line(language, text)
    ]


# --- from a line to `garage` argument lists --------------------------------------------


def shell_words(text: str) -> list[str]:
    """Words and operators as a POSIX shell splits them, comments dropped, except that a
    `<placeholder>` stays one word."""
    lexer = shlex.shlex(ANGLED.sub("\u27e8\\1\u27e9", text), posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    return [word.translate(ANGLE_STAND_INS) for word in lexer]


def simple_commands(words: Sequence[str]) -> Iterator[list[str]]:
    """The words of each command between operators, redirections left out."""
    current: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word in SEPARATORS:
            yield current
            current = []
        elif set(word) <= set("<>&") and set(word) & set("<>"):
            skip = True  # a redirection and its target
        else:
            current.append(word)
    yield current


def garage_arguments(words: Sequence[str]) -> list[str] | None:
    """The arguments after `garage` when these words run it (past `VAR=value`s)."""
    rest = list(words)
    while rest and ASSIGNMENT.match(rest[0]):
        rest.pop(0)
    if rest and PurePosixPath(rest[0]).name == "garage":
        return rest[1:]
    return None


def garage_commands(text: str) -> list[list[str]]:
    """The argument lists of the `garage` invocations on one shell line."""
    if not MENTIONS_GARAGE.search(text):
        return []
    text = text.strip().removeprefix("$ ")
    pieces = []
    while match := SUBSTITUTION.search(text):  # $(...) runs a command of its own
        pieces.append(match.group(1))
        text = f"{text[: match.start()]}SUBSTITUTED{text[match.end() :]}"
    found = []
    for piece in [text, *pieces]:
        for words in simple_commands(shell_words(piece)):
            arguments = garage_arguments(words)
            if arguments is not None:
                found.append(arguments)
    return found


# --- checking against the click tree ---------------------------------------------------


def value_options(command: click.Command) -> set[str]:
    """The option names of `command` that take a value."""
    return {
        name
        for param in command.params
        if isinstance(param, click.Option) and not param.is_flag and not param.count
        for name in (*param.opts, *param.secondary_opts)
    }


def without_placeholders(command: click.Command, arguments: Sequence[str]) -> list[str]:
    """The arguments less each placeholder, with the option a placeholder is the value of.

    A missing argument is then forgiven (see `parse_error`); an unknown option stays for
    click to refuse."""
    takes_value = value_options(command)
    kept: list[str] = []
    for word in arguments:
        option, _, value = word.partition("=")
        if word.startswith("--") and value and option in takes_value and PLACEHOLDER.search(value):
            continue
        if not PLACEHOLDER.search(word) or word.startswith("-"):
            kept.append(word)
        elif kept and kept[-1] in takes_value:
            kept.pop()
    return kept


def parse_error(arguments: Sequence[str]) -> str | None:
    """Why `garage <arguments>` would not parse, or None when it would."""
    command: click.Command = main
    context: click.Context | None = None
    name: str | None = "garage"
    rest = list(arguments)
    try:
        while isinstance(command, click.Group) and rest and not rest[0].startswith("-"):
            context = click.Context(command, info_name=name, parent=context)
            name, found, rest = command.resolve_command(context, rest)  # raises when none
            assert found is not None
            command = found
        if isinstance(command, click.Group) and not rest and not command.invoke_without_command:
            return f"{name!r} needs a command: one of {', '.join(sorted(command.commands))}"
        with command.make_context(name, without_placeholders(command, rest), parent=context):
            pass
    except click.MissingParameter as exc:
        if isinstance(exc.param, click.Argument):
            return None  # a doc may name a command and leave its id out
        return exc.format_message()
    except click.exceptions.Exit:
        return None  # --help or --version
    except click.UsageError as exc:  # BadParameter and NoSuchOption are UsageErrors
        return exc.format_message()
    return None


def check_markdown(markdown: str) -> list[Problem]:
    """Each `garage` command in the markdown's fenced blocks that click would refuse."""
    problems = []
    for line in shell_lines(markdown):
        try:
            commands = garage_commands(line.text)
        except ValueError as exc:  # shlex: a quote left open
            problems.append(Problem(line.number, line.text.strip(), f"cannot split: {exc}"))
            continue
        for arguments in commands:
            message = parse_error(arguments)
            if message is not None:
                problems.append(Problem(line.number, shlex.join(["garage", *arguments]), message))
    return problems


def doc_files() -> list[Path]:
    docs = sorted(p for p in (ROOT / "docs").glob("*.md") if p.name not in GENERATED)
    return [ROOT / "README.md", *docs]


# --- the tests -------------------------------------------------------------------------


@pytest.mark.parametrize("path", doc_files(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_garage_command_in_the_docs_parses(path: Path) -> None:
    name = path.relative_to(ROOT)
    problems = check_markdown(path.read_text(encoding="utf-8"))
    assert not problems, f"{name}: commands that do not parse:\n" + "\n".join(
        f"{name}:{problem}" for problem in problems
    )


def test_the_readme_commands_are_found() -> None:
    """The extractor sees the README's commands; a parser that found none would pass."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = [args for line in shell_lines(readme) for args in garage_commands(line.text)]
    assert len(commands) >= 10
    assert ["up", "--try"] in commands  # after `&&`, called as .venv/bin/garage


SAMPLE = """\
Text, then a block:

```sh
garage job submitt -m garage-demo -i prompts.json
garage chat --no-such-flag "Hello!"
garage chat -m garage-demo "Hello!"   # a good one
garage worker run --slots many
garage chat --<flag> x
garage job
```
"""


def test_the_checker_reports_each_bad_line_with_its_number() -> None:
    problems = check_markdown(SAMPLE)
    assert [problem.number for problem in problems] == [4, 5, 7, 8, 9]
    assert "No such command 'submitt'" in problems[0].message
    assert "--no-such-flag" in problems[1].message
    assert "many" in problems[2].message and "--slots" in problems[2].message
    assert "--<flag>" in problems[3].message
    assert problems[4].message.startswith("'job' needs a command: one of cancel, list")


SHELL_FORMS = """\
```bash
GARAGE_ADMIN_KEY=$(openssl rand -hex 32) garage broker run --host 0.0.0.0 --redis-url redis://...
garage worker run --token gk-w-... \\
    --backend ollama --slots 4
garage worker run ... --backend openai --slots <n>   # vLLM
git diff | garage chat -m garage-demo -s "Review this change."
python3 -m venv .venv && .venv/bin/pip install -q -e '.[broker,worker]' && .venv/bin/garage up --try
python -m pip install 'garage-ai[worker]' > /dev/null
eval "$(garage completion bash)"
garage batch status|result|cancel batch_...
```

```console
$ garage job status <job_id>
a line of output that mentions garage run
```

```
$ garage models --json
 client / CLI / garage worker run (a diagram, not a command)
```
"""


def test_each_shell_form_yields_the_garage_arguments() -> None:
    commands = [args for line in shell_lines(SHELL_FORMS) for args in garage_commands(line.text)]
    assert commands == [
        ["broker", "run", "--host", "0.0.0.0", "--redis-url", "redis://..."],
        ["worker", "run", "--token", "gk-w-...", "--backend", "ollama", "--slots", "4"],
        ["worker", "run", "...", "--backend", "openai", "--slots", "<n>"],
        ["chat", "-m", "garage-demo", "-s", "Review this change."],
        ["up", "--try"],
        ["completion", "bash"],
        ["batch", "status"],
        ["job", "status", "<job_id>"],
        ["models", "--json"],
    ]
    assert check_markdown(SHELL_FORMS) == []
