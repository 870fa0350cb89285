"""MkDocs hook: the reference pages' generated parts, read from the code at build time.

A page asks for one with a marker line of its own, ``<!-- generated: NAME -->``, which
:func:`on_page_markdown` replaces with the Markdown of ``GENERATORS[NAME]()``:

* ``settings``: every setting of :class:`rhesis_pipeline.settings.Settings` (variable,
  default, unit, meaning), from the fields' docstrings;
* ``option-variables``: the environment variable of every option of both CLIs (click's
  ``auto_envvar_prefix``);
* ``layers``: the import-linter layers contract of pyproject.toml;
* ``module-map``: every package and module of ``rhesis_pipeline`` with the first line of
  its docstring;
* ``public-api``: ``rhesis_pipeline.__all__`` with each name's signature and summary.

So none of these lists can drift from the code while files are split or renamed. The
command reference itself is mkdocs-click's (``::: mkdocs-click`` blocks). The functions
are plain so that ``tests/test_docs.py`` can call them.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 reads TOML with tomli (a dependency of pytest, mypy)
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "rhesis_pipeline"
MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.MULTILINE)
#: ``VARIABLE, unit: what it does`` — the form of every Settings field's docstring.
SETTING_DOC = re.compile(r"^(?P<variable>[A-Z][A-Z0-9_]*), (?P<unit>[^:]+): (?P<text>.+)$", re.S)
DEFAULT_SENTENCE = re.compile(r"\s*Default: (?P<default>.+?)\.$", re.S)
#: reST roles of the package's docstrings (``:class:`Run```) shown as plain code.
REST_ROLE = re.compile(r":[a-z]+:`~?([^`]+)`")


@dataclasses.dataclass(frozen=True)
class SettingDoc:
    """One setting as the reference shows it."""

    field: str
    variable: str
    unit: str
    default: str
    text: str


def _field_docstrings(cls: type) -> dict[str, str]:
    """The string literal under each annotated attribute of *cls* (attribute docstrings)."""
    source = inspect.getsource(cls)
    (node,) = ast.parse(source).body
    assert isinstance(node, ast.ClassDef)
    docs: dict[str, str] = {}
    body = node.body
    for statement, following in itertools.pairwise(body):
        if (
            isinstance(statement, ast.AnnAssign)
            and isinstance(statement.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[statement.target.id] = inspect.cleandoc(following.value.value)
    return docs


def _shown_default(value: Any) -> str:
    if isinstance(value, bool):
        return "`on`" if value else "`off`"
    if isinstance(value, float) and value.is_integer():
        return f"`{int(value)}`"
    if value == ():
        return "none"
    if value is None:
        return "unset"
    return f"`{value}`"


def setting_docs(settings: type | None = None) -> list[SettingDoc]:
    """Every field of *settings* (default: Settings), documented; ValueError names a field
    whose docstring is missing or not of the form ``VARIABLE, unit: text [Default: ….]``."""
    if settings is None:
        from rhesis_pipeline.settings import Settings

        settings = Settings
    docstrings = _field_docstrings(settings)
    docs = []
    for field in dataclasses.fields(settings):
        raw = " ".join(docstrings.get(field.name, "").split())
        match = SETTING_DOC.match(raw)
        if match is None:
            raise ValueError(
                f"{settings.__name__}.{field.name} needs a docstring 'VARIABLE, unit: what it does'"
            )
        text = match["text"]
        stated = DEFAULT_SENTENCE.search(text)
        if stated:
            default = stated["default"]
            text = text[: stated.start()]
        elif field.default is not dataclasses.MISSING:
            default = _shown_default(field.default)
        else:
            raise ValueError(
                f"{settings.__name__}.{field.name}'s default depends on the machine: end "
                "its docstring with 'Default: ….'"
            )
        docs.append(SettingDoc(field.name, match["variable"], match["unit"], default, text))
    return docs


def settings_markdown() -> str:
    lines = []
    for doc in setting_docs():
        text = doc.text[0].upper() + doc.text[1:]
        lines += [
            f"### `{doc.variable}`",
            "",
            f"Default: {doc.default} · unit: {doc.unit}",
            "",
            text,
            "",
        ]
    return "\n".join(lines)


def cli_groups() -> dict[str, Any]:
    """The two command groups by program name (the console scripts of pyproject.toml)."""
    from rhesis_pipeline.cli import monitor, pipeline

    return {"rhesis-pipeline": pipeline.main, "rhesis-monitor": monitor.main}


def walk_commands(prog: str, command: Any) -> Iterator[tuple[str, Any]]:
    """(``"rhesis-monitor check"``, command) for the group and every command below it."""
    import click

    yield prog, command
    if isinstance(command, click.Group):
        for name in sorted(command.commands):
            yield from walk_commands(f"{prog} {name}", command.commands[name])


def option_variables() -> list[tuple[str, str, str]]:
    """(command, option, environment variable) of every option that has one: click
    derives ``RHESIS_<COMMAND>_<PARAMETER>`` from the groups' ``auto_envvar_prefix``."""
    import click

    rows = []
    for prog, group in cli_groups().items():
        root = click.Context(group, info_name=prog, **group.context_settings)
        for path, command in walk_commands(prog, group):
            if command is group:
                continue
            context = click.Context(command, parent=root, info_name=path.split()[-1])
            for param in command.params:
                if not isinstance(param, click.Option) or param.name == "help":
                    continue
                variable = param.envvar or (
                    f"{context.auto_envvar_prefix}_{param.name.upper()}"
                    if context.auto_envvar_prefix and param.name
                    else None
                )
                if variable:
                    rows.append((path, max(param.opts, key=len), str(variable)))
    return rows


def option_variables_markdown() -> str:
    lines = ["| command | option | variable |", "|---|---|---|"]
    lines += [f"| `{c}` | `{o}` | `{v}` |" for c, o, v in option_variables()]
    return "\n".join(lines) + "\n"


def layers_markdown() -> str:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    lines = []
    for contract in contracts:
        if contract["type"] != "layers":
            continue
        lines += [f"**{contract['name']}** (top to bottom):", ""]
        for number, layer in enumerate(contract["layers"], start=1):
            names = [f"`{name.strip()}`" for name in layer.split("|")]
            lines.append(f"{number}. {' · '.join(names)}")
        lines.append("")
    return "\n".join(lines)


def _summary(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text()))
    if not doc:
        return "*(no docstring)*"
    first = doc.strip().split("\n\n")[0]
    return REST_ROLE.sub(r"`\1`", " ".join(first.split())).replace("``", "`")


def module_map() -> list[tuple[str, str, list[tuple[str, str, int]]]]:
    """(package, its docstring's summary, [(module, summary, lines)]) of every package of
    ``rhesis_pipeline``, packages in path order, modules by name."""
    packages = sorted(
        (init.parent for init in PACKAGE.rglob("__init__.py")),
        key=lambda p: p.relative_to(PACKAGE).parts,
    )
    rows = []
    for package in packages:
        modules = [
            (path.stem, _summary(path), len(path.read_text().splitlines()))
            for path in sorted(package.glob("*.py"))
            if path.name != "__init__.py"
        ]
        name = ".".join(package.relative_to(REPO).parts)
        rows.append((name, _summary(package / "__init__.py"), modules))
    return rows


def module_map_markdown() -> str:
    lines = []
    for package, summary, modules in module_map():
        lines += [f"#### `{package}`", "", summary, ""]
        if modules:
            lines += ["| module | lines | what it does |", "|---|---|---|"]
            lines += [f"| `{name}` | {count} | {what} |" for name, what, count in modules]
            lines.append("")
    return "\n".join(lines)


def public_api_markdown() -> str:
    import rhesis_pipeline

    lines = ["| name | what |", "|---|---|"]
    for name in sorted(rhesis_pipeline.__all__):
        obj = getattr(rhesis_pipeline, name)
        if not (inspect.isclass(obj) or callable(obj)):
            lines.append(f"| `{name}` (value) | `{obj!r}` |")
            continue
        doc = (inspect.getdoc(obj) or "").split("\n\n")[0]
        summary = REST_ROLE.sub(r"`\1`", " ".join(doc.split())).replace("``", "`")
        kind = "class" if inspect.isclass(obj) else "function"
        cell = summary.replace("|", "\\|")
        lines.append(f"| `{name}` ({kind}) | {cell} |")
    return "\n".join(lines) + "\n"


GENERATORS: dict[str, Callable[[], str]] = {
    "settings": settings_markdown,
    "option-variables": option_variables_markdown,
    "layers": layers_markdown,
    "module-map": module_map_markdown,
    "public-api": public_api_markdown,
}


def render(markdown: str) -> str:
    """*markdown* with every marker replaced; KeyError names an unknown marker."""
    return MARKER.sub(lambda match: GENERATORS[match[1]](), markdown)


def on_page_markdown(markdown: str, **_: Any) -> str:
    return render(markdown)
