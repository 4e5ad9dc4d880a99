"""Dependency audit: pip-audit, then an honest count of what it could and could not check.

    .venv/bin/python scripts/audit.py            # what `make test-reliability` runs

pip-audit says "No known vulnerabilities found" also when it audited nothing (a registry mirror that
does not serve PyPI's per-version JSON makes it skip every package). This prints how many installed
distributions were audited. For those pip-audit skipped, it asks PyPI's project JSON, whose
`vulnerabilities` list is for the project's latest release: a distribution installed at that release is
audited from it; an older one is listed as not audited. Findings triaged in scripts/audit-triage.yaml
(why each does not reach kit, or what to do) print with their verdict; exit 1 when one is not triaged.
"""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib.metadata import distributions
from pathlib import Path

import httpx
import yaml
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

PYPI = "https://pypi.org/pypi/{name}/json"
TRIAGE = Path(__file__).with_name("audit-triage.yaml")


@dataclass
class Finding:
    """One advisory against an installed version: its identifiers (id and aliases) and fixed versions."""

    ids: list[str]
    fixed: list[str]

    def __str__(self) -> str:
        fixed = f"fixed in {', '.join(self.fixed)}" if self.fixed else "no fixed version yet"
        return f"{' / '.join(self.ids)} ({fixed})"


@dataclass
class Result:
    """One installed distribution: audited or not, and what was found."""

    name: str
    version: str
    audited_by: str = ""
    findings: list[Finding] = field(default_factory=list)
    note: str = ""


def installed() -> dict[str, str]:
    """Canonical name -> version of every distribution in this environment but editable ones (kit itself)."""
    return {
        canonicalize_name(d.metadata["Name"]): d.version
        for d in distributions()
        if d.metadata["Name"] and '"editable": true' not in (d.read_text("direct_url.json") or "")
    }


def pip_audit() -> list[dict[str, object]]:
    """pip-audit's JSON `dependencies` for the local environment (editable installs skipped)."""
    exe = Path(sys.executable).with_name("pip-audit")
    cmd = [str(exe), "-l", "--skip-editable", "--progress-spinner", "off", "-f", "json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800, check=False)
    if not done.stdout.strip():
        raise SystemExit(f"error: pip-audit printed nothing (exit {done.returncode}) — {done.stderr.strip()[-300:]}")
    return list(json.loads(done.stdout)["dependencies"])


def from_pip_audit(dep: dict[str, object], versions: dict[str, str]) -> Result:
    name = canonicalize_name(str(dep["name"]))
    result = Result(name, str(dep.get("version") or versions.get(name, "?")))
    if "skip_reason" not in dep:
        result.audited_by = "pip-audit"
        result.findings = unique([describe(v) for v in dep.get("vulns", [])])  # type: ignore[union-attr]
    return result


def describe(vuln: object) -> Finding:
    """A pip-audit or PyPI vulnerability record as a Finding."""
    record = vuln if isinstance(vuln, dict) else {}
    ids = [str(record.get("id", "?")), *map(str, record.get("aliases") or [])]
    return Finding(ids, [str(v) for v in record.get("fix_versions") or record.get("fixed_in") or []])


def triage() -> dict[str, str]:
    """Advisory id -> "verdict: reason", from scripts/audit-triage.yaml."""
    entries = yaml.safe_load(TRIAGE.read_text(encoding="utf-8")) if TRIAGE.is_file() else []
    return {i: f"{e['verdict']}: {' '.join(e['reason'].split())}" for e in entries or [] for i in e["ids"]}


def from_project_json(result: Result, client: httpx.Client) -> Result:
    """Audit a distribution pip-audit skipped, when it is installed at its project's latest release."""
    try:
        resp = client.get(PYPI.format(name=result.name))
    except httpx.HTTPError as exc:
        result.note = f"PyPI unreachable ({type(exc).__name__})"
        return result
    if resp.status_code != 200:
        result.note = f"not on PyPI ({resp.status_code})"
        return result
    body = resp.json()
    latest = str(body["info"]["version"])
    if not same_version(result.version, latest):
        result.note = f"latest is {latest}: this version's advisories cannot be looked up here"
        return result
    result.audited_by = "PyPI project JSON (latest release)"
    result.findings = unique([describe(v) for v in body.get("vulnerabilities") or []])
    return result


def same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def report(results: list[Result], verdicts: dict[str, str]) -> int:
    audited = [r for r in results if r.audited_by]
    found = [r for r in audited if r.findings]
    by_pip = sum(1 for r in audited if r.audited_by == "pip-audit")
    print(f"audited {len(audited)} of {len(results)} installed distributions: {by_pip} by pip-audit,")
    print(f"  {len(audited) - by_pip} from PyPI's project JSON (installed at their latest release)")
    for r in sorted(results, key=lambda r: r.name):
        if not r.audited_by:
            print(f"  not audited: {r.name} {r.version} — {r.note or 'skipped by pip-audit'}")
    untriaged = 0
    for r in found:
        for finding in r.findings:
            verdict = next((verdicts[i] for i in finding.ids if i in verdicts), None)
            untriaged += verdict is None
            print(f"{'triaged' if verdict else 'VULNERABLE, not triaged'}: {r.name} {r.version}: {finding}")
            if verdict:
                print(f"  {verdict}")
    total = sum(len(r.findings) for r in found)
    print(f"{total} known vulnerabilities in {len(found)} distributions, {untriaged} not triaged")
    return 1 if untriaged else 0


def unique(findings: list[Finding]) -> list[Finding]:
    """One Finding per advisory: PyPI lists an advisory under each of its ids (GHSA and PYSEC)."""
    seen: set[str] = set()
    kept = []
    for finding in findings:
        if not seen & set(finding.ids):
            kept.append(finding)
        seen |= set(finding.ids)
    return kept


def main() -> int:
    versions = installed()
    results = [from_pip_audit(dep, versions) for dep in pip_audit() if canonicalize_name(str(dep["name"])) in versions]
    skipped = [r for r in results if not r.audited_by]
    with httpx.Client(timeout=30) as client, ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda r: from_project_json(r, client), skipped))
    return report(results, triage())


if __name__ == "__main__":
    sys.exit(main())
