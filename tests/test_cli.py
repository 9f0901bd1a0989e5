"""``python -m det_nb``: its help, and the commands it hands to other modules."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest
from conftest import run_python

from det_nb.__main__ import main


def test_help_lists_every_command_in_plain_text() -> None:
    result = subprocess.run([sys.executable, "-m", "det_nb", "--help"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "``" not in result.stdout  # docstring markup is not for a terminal
    for command in ("kernel", "verify", "trials"):
        assert f"    {command}  " in result.stdout


@pytest.mark.parametrize("command", ["verify", "trials"])
def test_delegated_commands_get_every_argument_and_give_the_exit_status(
    command: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    received: list[list[str]] = []

    def fake_main(argv: list[str]) -> int:
        received.append(argv)
        return 3

    module = types.ModuleType(f"det_nb.{command}")
    module.main = fake_main
    monkeypatch.setitem(sys.modules, f"det_nb.{command}", module)
    arguments = ["my notebook.ipynb", "--runs", "3", "-h", "--", "--seed"]
    assert main([command, *arguments]) == 3
    assert received == [arguments]


def test_the_kernel_command_imports_no_delegated_module(tmp_path) -> None:
    loaded = run_python("""
        import json, sys
        from det_nb.__main__ import main
        main(["kernel", "list"])
        print(json.dumps(sorted(name for name in sys.modules
                                if name in ("det_nb.verify", "det_nb.trials", "nbclient",
                                            "distributed"))))
    """, env={"JUPYTER_DATA_DIR": str(tmp_path), "JUPYTER_PATH": str(tmp_path)})
    assert loaded == []
