"""README.md's code: every Python block compiles, the self-contained ones run, every name a
block takes from a thrifty module exists and takes the arguments it is given, and every
``thrifty`` command line parses.

The rule for a ```python block: it runs, in a fresh namespace and an empty directory, unless
the line before its fence is one of

* ``<!-- readme: fragment (why) -->`` -- it uses what the reader supplies (a model, a
  dataset, a coordinator host), or an import too slow for this test: it is compiled and its
  thrifty names are checked, but not run;
* ``<!-- readme: continues -->`` -- it runs after the last block before it that runs, in
  that block's namespace.

A block that imports a package this environment lacks (an optional extra) is skipped.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

from thrifty import cli

README = Path(__file__).resolve().parents[1] / "README.md"
# The keyword, then an optional reason: <!-- readme: fragment (needs your model) -->
MARKER = re.compile(r"<!--\s*readme:\s*(\w+)\b[^>]*-->")
MARKERS = ("fragment", "continues")


@dataclass
class Block:
    language: str
    line: int  # of the first line of code, 1-based
    source: str
    marker: str | None

    def compile(self) -> object:
        # Padded so that a traceback names the README's own line.
        return compile("\n" * (self.line - 1) + self.source, str(README), "exec")


def _blocks() -> list[Block]:
    blocks: list[Block] = []
    lines = README.read_text().splitlines()
    index = 0
    while index < len(lines):
        fence = re.fullmatch(r"```(\w+)\s*", lines[index])
        if fence is None:
            index += 1
            continue
        before = next((line for line in reversed(lines[:index]) if line.strip()), "")
        found = MARKER.search(before)
        end = lines.index("```", index + 1)
        source = "\n".join(lines[index + 1 : end]) + "\n"
        marker = found.group(1) if found else None
        blocks.append(Block(fence.group(1), index + 2, source, marker))
        index = end + 1
    return blocks


def _chains(blocks: list[Block]) -> list[list[Block]]:
    """The blocks that run, grouped: a block that continues joins the last chain before it."""
    chains: list[list[Block]] = []
    for block in blocks:
        if block.language != "python" or block.marker == "fragment":
            continue
        if block.marker == "continues":
            assert chains, f"README.md:{block.line} continues no block that runs"
            chains[-1].append(block)
        else:
            chains.append([block])
    return chains


BLOCKS = _blocks()
PYTHON = [b for b in BLOCKS if b.language == "python"]
CHAINS = _chains(BLOCKS)


def _imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    return [node for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))]


def test_the_readme_has_blocks_of_each_kind_and_only_known_markers() -> None:
    assert {b.marker for b in PYTHON} <= {None, *MARKERS}
    assert any(b.marker == "fragment" for b in PYTHON)
    assert len(CHAINS) >= 2


@pytest.mark.parametrize("block", PYTHON, ids=[f"line {b.line}" for b in PYTHON])
def test_python_block_compiles_and_its_thrifty_names_exist(block: Block) -> None:
    block.compile()
    # The names of thrifty modules in scope: those the block imports, and for a block that
    # continues, those of the blocks before it.
    chain = next((c for c in CHAINS if block in c), [block])
    scope: dict[str, ModuleType] = {}
    missing = []
    for earlier in chain[: chain.index(block) + 1]:
        for node in _imports(ast.parse(earlier.source)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "thrifty":
                        scope[alias.asname or alias.name] = importlib.import_module(alias.name)
                continue
            if not (node.module or "").startswith("thrifty"):
                continue
            module = importlib.import_module(node.module or "")
            for alias in node.names:
                target = getattr(module, alias.name, None)
                if target is None:
                    missing.append(f"{node.module}.{alias.name}")
                elif isinstance(target, ModuleType):
                    scope[alias.asname or alias.name] = target
    for node in ast.walk(ast.parse(block.source)):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in scope
            and not hasattr(scope[node.value.id], node.attr)
        ):
            missing.append(f"{scope[node.value.id].__name__}.{node.attr}")
    assert not missing, f"README.md:{block.line}: no such names: {missing}"
    stale = [f"README.md:{line}: {text}" for line, text in _stale_calls(block, scope)]
    assert not stale, "calls that do not fit the signature:\n" + "\n".join(stale)


def _stale_calls(block: Block, scope: dict[str, ModuleType]) -> list[tuple[int, str]]:
    """Each call ``module.name(...)`` whose arguments the signature of ``name`` refuses."""
    found = []
    for node in ast.walk(ast.parse(block.source)):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in scope
        ):
            continue
        if any(isinstance(a, ast.Starred) for a in node.args) or any(
            k.arg is None for k in node.keywords
        ):
            continue  # *args or **kwargs: the count is unknown
        target = getattr(scope[node.func.value.id], node.func.attr)
        try:
            signature = inspect.signature(target)
        except (TypeError, ValueError):
            continue  # a builtin without a signature
        try:
            signature.bind(*node.args, **{str(k.arg): k.value for k in node.keywords})
        except TypeError as error:
            found.append((block.line + node.lineno - 1, f"{ast.unparse(node)}: {error}"))
    return found


@pytest.mark.timeout(120)
@pytest.mark.parametrize("chain", CHAINS, ids=[f"line {c[0].line}" for c in CHAINS])
def test_self_contained_python_blocks_run(
    chain: list[Block], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for block in chain:
        for node in _imports(ast.parse(block.source)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                pytest.importorskip(name.split(".")[0])
    monkeypatch.chdir(tmp_path)  # what the blocks save lands here
    namespace: dict[str, object] = {"__name__": "__readme__"}
    for block in chain:
        exec(block.compile(), namespace)


def _command_lines() -> list[tuple[int, str]]:
    found = []
    for block in BLOCKS:
        if block.language != "bash":
            continue
        for offset, line in enumerate(block.source.splitlines()):
            if line.startswith("thrifty "):
                found.append((block.line + offset, line))
    return found


COMMANDS = _command_lines()


def test_the_readme_shows_a_command_of_every_group() -> None:
    groups = {shlex.split(line, comments=True)[1] for _, line in COMMANDS}
    assert groups == {"demo", "steps", "coordinator", "bench"}


@pytest.mark.parametrize(("line", "command"), COMMANDS, ids=[f"line {n}" for n, _ in COMMANDS])
def test_command_line_parses(line: int, command: str) -> None:
    argv = shlex.split(command, comments=True)[1:]
    try:
        cli.build_parser().parse_args(argv)
    except SystemExit as error:
        pytest.fail(f"README.md:{line}: `{command}` does not parse (exit {error.code})")
