"""The README tells the truth: its Python example runs as written on the zero-setup defaults."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import needs_local_model, process_env

README = Path(__file__).resolve().parent.parent / "README.md"


@needs_local_model
def test_python_api_example_runs(home: Path) -> None:
    section = README.read_text().split("## Python API", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None
    env = process_env()
    env["MEMAGENT_HOME"] = str(home)
    result = subprocess.run(
        [sys.executable, "-c", match.group(1)], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "Rust compiler" in lines[0]
    assert lines[-1] == "memories stored: 1"


def test_every_command_in_the_table_exists() -> None:
    from typer.testing import CliRunner

    from memagent.cli.app import app

    commands = set(re.findall(r"^\| `memagent (\w+)", README.read_text(), re.M))
    assert {"remember", "recall", "inspect", "purge", "chat", "config", "migrate"} <= commands
    for command in commands:
        result = CliRunner().invoke(app, [command, "--help"])
        assert result.exit_code == 0, command


def test_the_layout_names_every_module() -> None:
    """The README's layout table names each of memagent's modules in its folder's row (the design notes: keep
    it true when a file splits)."""
    readme = README.read_text()
    layout = readme[readme.index("\nLayout:\n") : readme.index("## Looking inside")]
    rows = [line.split("|")[1:3] for line in layout.splitlines() if line.startswith("| `")]
    package = README.parent / "memagent"
    modules = [p for p in package.rglob("*.py") if p.name not in ("__init__.py", "__main__.py")]
    unnamed = []
    for module in modules:
        folder = module.parent.relative_to(package)
        if folder == Path("."):  # a top-level module in a row of top-level modules
            named = any(f"`{module.name}`" in first + what for first, what in rows if "/`" not in first)
        else:  # a package's modules in the second cell of the package's row
            named = any(f"`{folder}/`" in first and f"`{module.name}`" in what for first, what in rows)
        if not named:
            unnamed.append(str(module.relative_to(package)))
    assert len(modules) > 100 and unnamed == []


def test_the_troubleshooting_table_names_the_schema_head() -> None:
    """The message quoted for a database not migrated names the revision this memagent needs."""
    from alembic.script import ScriptDirectory

    from memagent.store import schema

    (head,) = ScriptDirectory.from_config(schema.alembic_config()).get_heads()
    assert f"(empty; memagent needs {head})" in README.read_text()
