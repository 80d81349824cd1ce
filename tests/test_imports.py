"""Import hygiene, checked in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys


def python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_engine_never_imports_textual():
    out = python(
        "import sys, engine, engine.run, engine.inference, engine.cli.main, engine.cli.report, engine.cli.show\n"
        "from engine import RunConfig, start\n"
        "RunConfig.for_task('iris')\n"
        "print('textual' in sys.modules)"
    )
    assert out.strip() == "False"


def test_help_does_not_import_torch():
    out = python(
        "import sys\n"
        "sys.argv = ['torchdeck', '--help']\n"
        "from engine.cli.main import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "print('TORCH', 'torch' in sys.modules)"
    )
    assert "Usage: torchdeck" in out
    assert out.strip().endswith("TORCH False")


def test_train_help_does_not_import_torch():
    out = python(
        "import sys\n"
        "sys.argv = ['torchdeck', 'train', '--help']\n"
        "from engine.cli.main import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('TORCH', 'torch' in sys.modules)"
    )
    assert "--resume" in out and out.strip().endswith("TORCH False")
