"""The examples in docs/*.md and README.md cannot drift from the code (issue 14 item 9).

What is checked here, for every fenced block of every page (nothing here runs them):

- a ``python`` block compiles;
- a ``json`` block parses (an elided fragment is completed first: ``, …`` dropped, a block of
  ``"key": value`` lines read one member at a time);
- every ``modelyard …`` command line in any other block (``bash``, ``sh``, unlabelled) names
  real commands and options: it is parsed by the real CLI with ``--help`` appended, which
  resolves the command path and rejects unknown options before printing the help;
- every URL to a local server (``http://127.0.0.1:N``, and ``localhost:N`` in a block) uses
  modelyard's port, 8765, unless the same block starts that server itself with
  ``--port N`` (the bare model server's examples do).

What runs: the pages' own blocks are executed by tests/algorithms/test_algorithm_docs.py,
tests/flavors/test_flavor_docs.py, tests/transform/test_transform_docs.py,
tests/e2e/test_sagemaker_model_to_endpoint.py (docs/serving.md) and tests/jobs/test_kinds.py
(docs/architecture.md, "How to add a job kind"), tests/core/test_architecture_docs.py (its
controller and event examples), listed in RUN_ELSEWHERE and checked to
exist.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelyard.cli.main import app

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted([*ROOT.glob("docs/*.md"), ROOT / "README.md"])
SERVER_PORT = "8765"
RUN_ELSEWHERE = [
    "tests/algorithms/test_algorithm_docs.py",
    "tests/flavors/test_flavor_docs.py",
    "tests/transform/test_transform_docs.py",
    "tests/e2e/test_sagemaker_model_to_endpoint.py",
    "tests/jobs/test_kinds.py",
    "tests/core/test_architecture_docs.py",
]
_FENCE = re.compile(r"^(\s*)```(\S*)\s*$")
# A local address; not one inside another scheme's URL (postgresql://user@localhost:5432).
_LOCAL_URL = re.compile(r"(?<![@\w/.])(?:https?://)?(?:127\.0\.0\.1|localhost):(\d+)")
_SHELL_END = {"|", "||", "&&", ";", "&", ">", ">>", "2>", "2>&1", "<"}


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # of the opening fence, 1-based
    lang: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line} ({self.lang or 'unlabelled'})"


def blocks(page: Path) -> list[Block]:
    found: list[Block] = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        opened = _FENCE.match(lines[i])
        if not opened:
            i += 1
            continue
        indent, lang = opened.groups()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            body.append(lines[j][len(indent) :] if lines[j].startswith(indent) else lines[j])
            j += 1
        assert j < len(lines), f"{page.name}:{i + 1}: fence never closed"
        found.append(Block(page.relative_to(ROOT).as_posix(), i + 1, lang, "\n".join(body)))
        i = j + 1
    return found


ALL = [b for page in PAGES for b in blocks(page)]


def _ids(items: list[Block]) -> list[str]:
    return [b.where for b in items]


def test_the_pages_have_blocks_to_check() -> None:
    langs = {b.lang for b in ALL}
    assert {"python", "bash", "sh"} <= langs and len(ALL) > 50
    for path in RUN_ELSEWHERE:
        assert (ROOT / path).is_file(), path


PYTHON = [b for b in ALL if b.lang == "python"]


@pytest.mark.parametrize("block", PYTHON, ids=_ids(PYTHON))
def test_python_blocks_compile(block: Block) -> None:
    compile(block.text, block.where, "exec")


JSON = [b for b in ALL if b.lang == "json"]


@pytest.mark.parametrize("block", JSON, ids=_ids(JSON))
def test_json_blocks_parse(block: Block) -> None:
    text = re.sub(r",\s*…", "", block.text)
    try:
        json.loads(text)
    except ValueError:
        for line in text.splitlines():  # members shown one per line
            json.loads("{" + line + "}")


def command_lines(text: str) -> list[list[str]]:
    """The ``modelyard`` invocations in shell text: each one's arguments, up to the end of
    its command (a pipe, ``&&``, a redirection, a comment or the end of the line)."""
    joined = re.sub(r"\\\n\s*", " ", text)
    lines = [raw.strip() for raw in joined.splitlines()]
    if any(line.startswith("$ ") for line in lines):  # a console session: only its commands
        lines = [line[2:] for line in lines if line.startswith("$ ")]
    found = []
    for line in lines:
        if "modelyard" not in line or line.startswith("#"):
            continue
        # $(modelyard …) inside another command: take what is inside, up to a pipe.
        for inner in re.findall(r"\$\((modelyard [^)|]*)", line):
            found.append(_args(inner))
        line = _without_substitutions(line)
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            words = line.split()
        for k, word in enumerate(words):
            if Path(word).name == "modelyard" and (
                k == 0 or "=" in words[k - 1] or words[k - 1] in _SHELL_END | {"exec"}
            ):
                found.append(_args(" ".join(shlex.quote(w) for w in words[k:])))
    return found


def _without_substitutions(line: str) -> str:
    """``line`` with each ``$(…)`` (parentheses balanced) replaced by ``VALUE``."""
    out, i = [], 0
    while (start := line.find("$(", i)) >= 0:
        depth, j = 0, start + 1
        while j < len(line):
            depth += {"(": 1, ")": -1}.get(line[j], 0)
            if depth == 0:
                break
            j += 1
        out.append(line[i:start] + "VALUE")
        i = j + 1
    return "".join(out) + line[i:]


def _args(command: str) -> list[str]:
    words = shlex.split(command, comments=True)[1:]
    end = next((k for k, w in enumerate(words) if w in _SHELL_END), len(words))
    return words[:end]


SHELL = [
    b
    for b in ALL
    if b.lang in ("bash", "sh", "shell", "console")
    or (not b.lang and re.search(r"^(\$ )?modelyard ", b.text, re.MULTILINE))
]
runner = CliRunner()


@pytest.mark.parametrize("block", SHELL, ids=_ids(SHELL))
def test_modelyard_command_lines_parse_against_the_cli(block: Block) -> None:
    for args in command_lines(block.text):
        result = runner.invoke(app, [*args, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, (
            f"{block.where}: `modelyard {shlex.join(args)}` does not parse: {result.output}"
        )
        # --help prints the help of the command the arguments resolved to.
        path = [a for a in args if not a.startswith("-")][:1]
        assert not path or path[0] in result.output or "Usage: modelyard" in result.output


def test_the_command_line_check_can_fail() -> None:
    assert command_lines("modelyard runs describe run-1 | jq .") == [["runs", "describe", "run-1"]]
    assert command_lines("X=$(modelyard --json jobs list)") == [["--json", "jobs", "list"]]
    nested = "P=$(modelyard --json endpoints describe e | python -c 'print(json.load(x)[\"p\"])')"
    assert command_lines(nested) == [["--json", "endpoints", "describe", "e"]]
    assert command_lines("$ modelyard up --host 0.0.0.0\nrefusing to listen") == [
        ["up", "--host", "0.0.0.0"]
    ]
    bad = runner.invoke(app, ["runs", "show-me", "--help"])
    assert bad.exit_code != 0
    bad = runner.invoke(app, ["datasets", "register", "--no-such-flag", "--help"])
    assert bad.exit_code != 0


def local_ports(text: str, *, urls_only: bool = False) -> list[str]:
    """Ports of local addresses; with ``urls_only`` only ``http(s)://`` ones (prose names
    other servers' host:port, such as PostgreSQL's 127.0.0.1:5432)."""
    return [m.group(1) for m in _LOCAL_URL.finditer(text) if not urls_only or "//" in m.group(0)]


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_local_urls_use_the_server_port(page: Path) -> None:
    rel = page.relative_to(ROOT).as_posix()
    wrong = []
    in_blocks = blocks(page)
    for block in in_blocks:
        started = set(re.findall(r"--port[ =](\d+)", block.text))
        wrong += [
            f"{block.where}: :{p}"
            for p in local_ports(block.text)
            if p != SERVER_PORT and p not in started
        ]
    prose = page.read_text()
    for block in in_blocks:
        prose = prose.replace(block.text, "")
    wrong += [
        f"{rel} (prose): :{p}" for p in local_ports(prose, urls_only=True) if p != SERVER_PORT
    ]
    assert wrong == [], f"`modelyard up` listens on {SERVER_PORT}: {wrong}"
