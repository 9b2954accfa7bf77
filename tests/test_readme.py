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
    """The README's layout table names each of memagent's modules (DESIGN.md: keep it true on a split)."""
    readme = README.read_text()
    layout = readme[readme.index("\nLayout:\n") : readme.index("## Looking inside")]
    package = README.parent / "memagent"
    modules = [p for p in package.rglob("*.py") if "_alembic" not in p.parts]
    unnamed = [
        str(p.relative_to(package))
        for p in modules
        if p.name not in ("__init__.py", "__main__.py") and f"`{p.name}`" not in layout
    ]
    assert len(modules) > 100 and unnamed == []


def test_the_troubleshooting_table_names_the_schema_head() -> None:
    """The message quoted for a database not migrated names the revision this memagent needs."""
    from alembic.script import ScriptDirectory

    from memagent.store import schema

    (head,) = ScriptDirectory.from_config(schema.alembic_config()).get_heads()
    assert f"(empty; memagent needs {head})" in README.read_text()
