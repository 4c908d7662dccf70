"""scripts/bootstrap installs only when the files that decide an install changed (a stamp
per level), and the main job's level installs no torch. Run against a stand-in
interpreter that records what it is asked to do: nothing is installed."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    for name in ("pyproject.toml", "setup.py"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "_native", tmp_path / "_native")
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "bootstrap", tmp_path / "scripts" / "bootstrap")
    fake = tmp_path / ".venv" / "bin" / "python"
    fake.parent.mkdir(parents=True)
    fake.write_text(
        '#!/usr/bin/env bash\necho "$*" >>"$BOOTSTRAP_LOG"\n'
        'if [ "$1" = -c ]; then echo "3.11.0 (stand-in)"; fi\n'
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return tmp_path


def run(checkout: Path, *args: str) -> list[str]:
    log = checkout / "log"
    log.write_text("")
    env = {**os.environ, "BOOTSTRAP_LOG": str(log)}
    env.pop("SEMCACHE_FORCE_INSTALL", None)
    subprocess.run(
        ["bash", str(checkout / "scripts" / "bootstrap"), *args],
        check=True,
        env=env,
        capture_output=True,
    )
    return [line for line in log.read_text().splitlines() if line.startswith("-m pip")]


def test_main_level_installs_the_onnx_extra_and_no_torch(checkout: Path) -> None:
    calls = run(checkout)
    assert any("-e .[onnx]" in c for c in calls), calls
    assert not any("torch" in c for c in calls), calls


def test_a_second_run_installs_nothing(checkout: Path) -> None:
    assert run(checkout, "--all")
    assert run(checkout, "--all") == []
    assert run(checkout) == []  # the main level was stamped on the way


def test_a_changed_dependency_file_reinstalls(checkout: Path) -> None:
    run(checkout, "--all")
    with (checkout / "pyproject.toml").open("a") as f:
        f.write("\n# changed\n")
    calls = run(checkout, "--all")
    assert any("torch==2.13.0" in c for c in calls), calls
    assert any("-e .[onnx]" in c for c in calls), calls


def test_all_level_installs_the_test_dependencies(checkout: Path) -> None:
    calls = run(checkout, "--all")
    assert any("-e .[dev,all]" in c for c in calls), calls
    # torch pinned and before the extras that would otherwise pull a CUDA build.
    torch = next(i for i, c in enumerate(calls) if "torch==2.13.0" in c)
    extras = next(i for i, c in enumerate(calls) if "-e .[dev,all]" in c)
    assert torch < extras


def test_unknown_argument_is_refused(checkout: Path) -> None:
    with pytest.raises(subprocess.CalledProcessError) as info:
        run(checkout, "--everything")
    assert info.value.returncode == 2
