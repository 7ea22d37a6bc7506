#!/usr/bin/env python3
"""Offline checks for the security-scan recipe (standard library only).

- ``deps REQUIREMENTS --advisories FILE`` — the pinned requirements (``name==X.Y.Z``)
  that an advisory lists as vulnerable. The advisories file is JSON, a list of
  ``{"id", "package", "vulnerable": "<5.4" or ">=2.0,<2.0.7", "fixed", "summary"}``; keep
  it current from your advisory source (an export of OSV or the PyPA advisory database)
  or replace this step with ``pip-audit`` where the network is allowed.
- ``secrets DIR`` — committed credentials: private key blocks, AWS access key ids,
  GitHub and Slack tokens, and ``password = "…"`` assignments with a literal value.
- ``bandit REPORT`` — counts of a bandit JSON report by severity.

Each prints ``key=value`` counts for ``$PLAIT_OUTPUT`` and the findings on stderr,
and writes them as JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([0-9][0-9.]*)\s*(?:[;#].*)?$")
SECRET_PATTERNS = {
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |OPENSSH |DSA )?PRIVATE KEY-----"),
    "AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}\b"),
    "password literal": re.compile(
        r"""(?i)\b(?:password|passwd|secret|api_key)\s*[:=]\s*["'][^"'\s]{6,}["']"""
    ),
}
SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", "reports", "dist", "build"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:4])


def _matches(version: str, spec: str) -> bool:
    """Whether ``version`` satisfies every clause of ``spec`` (``<5.4``, ``>=2.0,<2.0.7``)."""
    for clause in filter(None, (c.strip() for c in spec.split(","))):
        op, bound = re.match(r"(<=|>=|==|!=|<|>)\s*(.+)", clause).groups()  # type: ignore[union-attr]
        a, b = _version(version), _version(bound)
        ok = {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b, "!=": a != b}
        if not ok[op]:
            return False
    return True


def deps(requirements: Path, advisories: Path) -> list[dict[str, Any]]:
    known = json.loads(advisories.read_text())
    findings = []
    for number, line in enumerate(requirements.read_text().splitlines(), 1):
        pin = PIN.match(line)
        if not pin:
            if line.strip() and not line.lstrip().startswith(("#", "-")):
                print(f"{requirements}:{number}: not pinned, not audited: {line.strip()}",
                      file=sys.stderr)  # fmt: skip
            continue
        name, version = _norm(pin[1]), pin[2]
        for adv in known:
            if _norm(adv["package"]) == name and _matches(version, adv["vulnerable"]):
                findings.append({"package": pin[1], "version": version, **adv})
                print(f"{pin[1]}=={version}: {adv['id']} — {adv['summary']} "
                      f"(fixed in {adv.get('fixed', '?')})", file=sys.stderr)  # fmt: skip
    return findings


def secrets(root: Path) -> list[dict[str, Any]]:
    findings = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or SKIP_DIRS.intersection(path.relative_to(root).parts):
            continue
        try:
            text = path.read_text()
        except (UnicodeDecodeError, OSError):
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for kind, pattern in SECRET_PATTERNS.items():
                if pattern.search(line):
                    where = f"{path.relative_to(root)}:{number}"
                    findings.append({"file": where, "kind": kind})
                    print(f"{where}: {kind}", file=sys.stderr)
    return findings


def bandit(report: Path) -> dict[str, int]:
    results = json.loads(report.read_text()).get("results", [])
    counts = {"high": 0, "medium": 0, "low": 0}
    for issue in results:
        counts[str(issue.get("issue_severity", "low")).lower()] += 1
        print(f"{issue['filename']}:{issue['line_number']}: {issue['test_id']} "
              f"{issue['issue_severity']}: {issue['issue_text']}", file=sys.stderr)  # fmt: skip
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("deps", help="pinned requirements with a known advisory")
    p.add_argument("requirements", type=Path)
    p.add_argument("--advisories", type=Path, required=True)
    p.add_argument("--out", type=Path)
    p = sub.add_parser("secrets", help="credentials committed to the tree")
    p.add_argument("root", type=Path)
    p.add_argument("--out", type=Path)
    p = sub.add_parser("bandit", help="count a bandit JSON report by severity")
    p.add_argument("report", type=Path)
    args = parser.parse_args()
    if args.command == "bandit":
        for severity, n in bandit(args.report).items():
            print(f"{severity}={n}")
        return
    found = (
        deps(args.requirements, args.advisories) if args.command == "deps" else secrets(args.root)
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(found, indent=2) + "\n")
    print(f"findings={len(found)}")


if __name__ == "__main__":
    main()
