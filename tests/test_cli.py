"""The CLI itself: fast to start, clear on mistakes."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

HEAVY = ("torch", "transformers", "chromadb", "gradio", "sentence_transformers", "llama_cpp", "peft")


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys; sys.argv = ['kit', '--help']\n"
        "from kit.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    assert "validate" in out and "new" in out
    assert out.strip().splitlines()[-1] == "[]"


def test_verb_help_has_examples(run_kit) -> None:
    result = run_kit("validate", "--help")
    assert result.code == 0
    assert "kit validate domains/clinic" in result.out


def test_unknown_verb_is_one_clear_line(run_kit) -> None:
    result = run_kit("frobnicate")
    assert result.code == 2
    assert "No such command 'frobnicate'" in result.err
    assert "Traceback" not in result.err


def test_new_refuses_a_bad_name_and_an_unknown_template(run_kit, tmp_path) -> None:
    bad = run_kit("new", "retail", str(tmp_path / "x"), "--name", "Bad Name!")
    assert bad.code == 1 and bad.err.startswith("error: 'Bad Name!' is not a valid domain name — ")
    unknown = run_kit("new", "bakery", str(tmp_path / "y"))
    assert unknown.code == 1 and "no template or domain folder called 'bakery'" in unknown.err
    assert "retail, clinic, travel" in unknown.err
