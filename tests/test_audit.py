"""scripts/audit.py: what counts as audited, one line per advisory, and triaged vs untriaged findings."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def audit() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kit_audit", ROOT / "scripts" / "audit.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["kit_audit"] = module
    spec.loader.exec_module(module)
    return module


def test_an_advisory_listed_under_two_ids_is_one_finding(audit: ModuleType) -> None:
    pysec = audit.describe({"id": "PYSEC-1", "aliases": ["CVE-1", "GHSA-1"], "fixed_in": []})
    ghsa = audit.describe({"id": "GHSA-1", "aliases": ["CVE-1", "PYSEC-1"], "fix_versions": ["2.0"]})
    other = audit.describe({"id": "GHSA-2", "aliases": []})
    assert [f.ids[0] for f in audit.unique([pysec, ghsa, other])] == ["PYSEC-1", "GHSA-2"]
    assert str(ghsa) == "GHSA-1 / CVE-1 / PYSEC-1 (fixed in 2.0)"


def test_untriaged_findings_fail_and_skipped_packages_are_not_counted_as_audited(
    audit: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    found = audit.Result("pkg", "1.0", "pip-audit", [audit.describe({"id": "GHSA-9", "aliases": ["CVE-9"]})])
    clean = audit.Result("other", "2.0", "PyPI project JSON (latest release)")
    skipped = audit.Result("old", "0.1", note="latest is 0.2: this version's advisories cannot be looked up here")
    assert audit.report([found, clean, skipped], {}) == 1
    out = capsys.readouterr().out
    assert "audited 2 of 3" in out and "not audited: old 0.1" in out
    assert "VULNERABLE, not triaged: pkg 1.0: GHSA-9 / CVE-9" in out
    assert audit.report([found, clean, skipped], {"CVE-9": "not reachable: why"}) == 0
    assert "triaged: pkg 1.0" in capsys.readouterr().out


def test_the_triage_file_names_each_advisory_with_a_verdict_and_a_reason(audit: ModuleType) -> None:
    entries = yaml.safe_load(audit.TRIAGE.read_text(encoding="utf-8"))
    assert entries and all(e["ids"] and e["verdict"].strip() and len(e["reason"].split()) >= 10 for e in entries)
    verdicts = audit.triage()
    assert all(i in verdicts for e in entries for i in e["ids"])
