"""The docs: a README a newcomer reads in minutes, and a MkDocs site whose reference parts
are generated from the code — every command, option and setting in it, every name it
mentions real, every example suite valid. The site is built once, as CI builds it."""

from __future__ import annotations

import ast
import dataclasses
import html
import importlib
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from click.testing import CliRunner

from rhesis_pipeline.cli import monitor
from rhesis_pipeline.settings import Settings
from rhesis_pipeline.suites.load import parse_text, validate_suite

REPO = Path(__file__).resolve().parent.parent
DOC_FILES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
README_COMMANDS = ("pip install -e '.[dev]' && rhesis-pipeline demo", "python -m pytest")


def load_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hook", REPO / "docs/hooks/reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses looks its module up there
    spec.loader.exec_module(module)
    return module


hook = load_hook()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built with --strict into a temporary directory (a warning fails it)."""
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=REPO,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    return out


def page_text(site: Path, page: str) -> str:
    """The text of a built page: tags removed, entities decoded."""
    raw = (site / page / "index.html").read_text()
    return html.unescape(re.sub(r"<[^>]+>", "", raw))


def test_every_command_and_option_of_both_clis_is_in_the_generated_reference(site):
    for prog, group in hook.cli_groups().items():
        text = page_text(site, f"reference/{prog}")
        commands = list(hook.walk_commands(prog, group))
        assert len(commands) > 5, commands
        for path, command in commands:
            assert f"{path} [OPTIONS]" in text, f"{path} is missing from reference/{prog}"
            for param in command.params:
                for opt in getattr(param, "opts", []):
                    if opt.startswith("--"):
                        assert opt in text, f"{path} {opt} is missing from reference/{prog}"


def settings_variables_read() -> set[str]:
    """Every variable name written as a string in settings.py: what from_env reads."""
    tree = ast.parse((REPO / "rhesis_pipeline" / "settings.py").read_text())
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and re.fullmatch(r"RHESIS_[A-Z0-9_]+|DATABASE_URL", node.value)
    }


def test_every_setting_is_documented_on_its_field_and_in_the_generated_reference(site):
    docs = hook.setting_docs()
    assert [d.field for d in docs] == [f.name for f in dataclasses.fields(Settings)]
    documented = {d.variable for d in docs}
    assert documented == settings_variables_read()
    text = " ".join(page_text(site, "reference/settings").split())
    for doc in docs:
        opening = " ".join(re.sub(r"[`*]", "", doc.text).split()[1:6])
        assert doc.variable in text and opening in text, doc


@dataclasses.dataclass
class Undocumented:
    documented: int = 1
    """RHESIS_DOCUMENTED, tests: has its docstring."""
    bare: int = 2


@dataclasses.dataclass
class MachineDefault:
    cpus: int = dataclasses.field(default_factory=lambda: 4)
    """RHESIS_CPUS, processes: no sentence says what the default is."""


def test_a_setting_without_its_docstring_or_its_default_is_refused_by_name():
    with pytest.raises(ValueError, match=r"Undocumented\.bare needs a docstring"):
        hook.setting_docs(Undocumented)
    with pytest.raises(ValueError, match=r"MachineDefault\.cpus's default depends on the machine"):
        hook.setting_docs(MachineDefault)


def test_the_defaults_the_reference_shows_are_those_from_env_applies():
    applied = Settings.from_env({})
    for field in dataclasses.fields(Settings):
        if field.default is not dataclasses.MISSING:
            assert getattr(applied, field.name) == field.default, field.name


def test_option_variables_are_the_names_click_reads():
    rows = hook.option_variables()
    assert ("rhesis-monitor check", "--max-hours", "RHESIS_CHECK_MAX_HOURS") in rows
    assert ("rhesis-pipeline show", "--org", "RHESIS_SHOW_ORGANIZATION_ID") in rows
    # The variable really sets the option: click reports it as the option's bad value.
    result = CliRunner().invoke(monitor.main, ["check"], env={"RHESIS_CHECK_MAX_HOURS": "nan"})
    assert result.exit_code == 2
    assert "Invalid value for '--max-hours': 'nan' is not a finite number" in result.output


def test_the_architecture_page_has_every_module_and_the_layers_of_pyproject(site):
    text = page_text(site, "architecture")
    for package, _summary, modules in hook.module_map():
        assert package in text
        for name, _what, _lines in modules:
            assert f"{name}" in text, f"{package}.{name}"
    layers = hook.tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in layers["contracts"] if c["type"] == "layers"]
    for layer in contract["layers"]:
        for name in layer.split("|"):
            assert name.strip() in text


def test_the_benchmark_figures_are_shown_in_the_site(site):
    text = page_text(site, "benchmarks")
    assert "fanin.py" in text and "Server settings of the published figures" in text


# -- the README ---------------------------------------------------------------------------


def readme() -> str:
    return (REPO / "README.md").read_text()


def test_the_readme_is_short():
    assert len(readme().splitlines()) <= 250


def test_the_readme_gives_the_two_setup_commands_right_after_its_first_paragraph():
    blocks = re.split(r"\n\n+", readme().split("\n## ", 1)[0])
    assert blocks[0].startswith("# rhesis-pipeline")
    assert not blocks[1].startswith("```")  # the first paragraph: what it is and why
    commands = [b.split("\n")[1] for b in blocks if b.startswith("```sh\n")]
    assert blocks[2] == f"```sh\n{README_COMMANDS[0]}\n```"
    assert tuple(commands[:2]) == README_COMMANDS


def test_ci_installs_what_the_readmes_first_command_installs_and_ends_with_its_second():
    lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    steps = [line for line in lines if line and not line.startswith("#")]
    assert "python -m pip install --quiet -e '.[dev]'" in steps
    assert steps[-1] == README_COMMANDS[1]


def test_every_relative_link_of_the_readme_exists():
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme())
    assert links
    for link in links:
        assert (REPO / link).exists(), link


# -- what the pages say -------------------------------------------------------------------


def code_blocks(language: str) -> list[tuple[Path, str]]:
    return [
        (path, block)
        for path in DOC_FILES
        for block in re.findall(rf"```{language}\n(.*?)```", path.read_text(), flags=re.S)
    ]


def test_every_example_suite_validates():
    suites = [(p, b) for p, b in code_blocks("yaml") if "\ntests:" in b]
    assert len(suites) >= 2
    for path, block in suites:
        validate_suite(parse_text(block, str(path)), str(path))


def test_every_python_example_compiles():
    blocks = code_blocks("python")
    assert len(blocks) >= 4
    for path, block in blocks:
        compile(block, str(path), "exec")


def resolves(dotted: str) -> bool:
    """Whether ``a.b.c`` (or ``a.b:c``) names a module or an attribute of one. A module is
    found without importing it (``rhesis_pipeline.actors`` would install a broker)."""
    if ":" not in dotted:
        try:
            if importlib.util.find_spec(dotted) is not None:
                return True
        except ImportError:  # a parent is not a package: an attribute, looked up below
            pass
    parts = dotted.replace(":", ".").split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attribute in parts[cut:]:
            if not hasattr(obj, attribute):
                return False
            obj = getattr(obj, attribute)
        return True
    return False


def test_every_rhesis_pipeline_name_the_docs_mention_exists():
    names = set()
    for path in DOC_FILES:
        text = path.read_text()
        for dotted in re.findall(r"\brhesis_pipeline(?:[.:][A-Za-z_]\w*)+", text):
            names.add((path.name, dotted))
        for module, imported in re.findall(
            r"^from (rhesis_pipeline[\w.]*) import ([\w, ]+)$", text, flags=re.M
        ):
            names |= {(path.name, f"{module}.{n.strip()}") for n in imported.split(",")}
    assert len(names) > 20
    missing = sorted(f"{page}: {dotted}" for page, dotted in names if not resolves(dotted))
    assert not missing, missing
