#!/usr/bin/env python3
"""The next version and changelog from conventional commits, for the release recipe.

``analyze`` reads the commits since the last tag ``<prefix>X.Y.Z`` of a git repository
and decides the bump, as semantic-release does:

- ``BREAKING CHANGE:`` in a body or footer, or ``!`` before the colon (``feat!:``) — major;
- ``feat:`` — minor;
- ``fix:`` or ``perf:`` — patch;
- anything else (``docs:``, ``chore:``, ``refactor:`` …) — no release on its own.

Before 1.0.0 a breaking change bumps the minor version, as Cargo and semantic-release's
pre-1.0 convention do. It prints ``key=value`` lines for ``$PLAIT_OUTPUT``: ``last_tag``,
``bump`` (``major``, ``minor``, ``patch`` or ``none``), ``version``, ``tag``, ``commits``
and the release notes as ``notes<<EOF`` … ``EOF``.

``changelog`` puts the notes at the top of ``CHANGELOG.md`` under a ``## <version>``
heading (idempotent: a version already there is not added twice).

    conventional.py analyze --repo . --prefix v
    conventional.py changelog --repo . --version 1.3.0 --notes-file notes.md
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import subprocess
import sys
from pathlib import Path

HEADER = re.compile(r"^(?P<type>[a-z]+)(?:\((?P<scope>[^)]*)\))?(?P<bang>!)?: (?P<subject>.+)$")
SECTIONS = (("breaking", "Breaking changes"), ("feat", "Features"), ("fix", "Bug fixes"),
            ("perf", "Performance"))  # fmt: skip
RANK = {"none": 0, "patch": 1, "minor": 2, "major": 3}


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def last_tag(repo: Path, prefix: str) -> str:
    tags = git(repo, "tag", "--list", f"{prefix}*", "--merged", "HEAD").split()
    versions = [t for t in tags if re.fullmatch(re.escape(prefix) + r"\d+\.\d+\.\d+", t)]
    return max(
        versions, key=lambda t: tuple(int(x) for x in t[len(prefix) :].split(".")), default=""
    )


def commits(repo: Path, since: str) -> list[tuple[str, str, str]]:
    """(short sha, subject, body) of each commit after ``since`` (all when empty)."""
    span = f"{since}..HEAD" if since else "HEAD"
    raw = git(repo, "log", "--format=%h%x1f%s%x1f%b%x1e", span)
    out = []
    for record in raw.split("\x1e"):
        if record.strip():
            sha, subject, body = ([*record.strip("\n").split("\x1f"), "", ""])[:3]
            out.append((sha, subject, body))
    return out


def classify(subject: str, body: str) -> tuple[str, str]:
    """(kind, text): kind is breaking, feat, fix, perf or other."""
    match = HEADER.match(subject)
    if not match:
        return "other", subject
    text = match["subject"] + (f" ({match['scope']})" if match["scope"] else "")
    if match["bang"] or re.search(r"^BREAKING[ -]CHANGE:", body, re.MULTILINE):
        return "breaking", text
    return (match["type"], text) if match["type"] in ("feat", "fix", "perf") else ("other", text)


def next_version(current: str, bump: str) -> str:
    major, minor, patch = (int(x) for x in current.split("."))
    if bump == "major" and major == 0:
        bump = "minor"  # 0.x: a breaking change is a minor bump
    if bump == "major":
        return f"{major + 1}.0.0"
    if bump == "minor":
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}" if bump == "patch" else current


def analyze(repo: Path, prefix: str, initial: str) -> None:
    tag = last_tag(repo, prefix)
    current = tag[len(prefix) :] if tag else ""
    found = commits(repo, tag)
    grouped: dict[str, list[str]] = {}
    bump = "none"
    for sha, subject, body in found:
        kind, text = classify(subject, body)
        grouped.setdefault(kind, []).append(f"- {text} ({sha})")
        level = {"breaking": "major", "feat": "minor", "fix": "patch", "perf": "patch"}
        bump = max(bump, level.get(kind, "none"), key=RANK.__getitem__)
    if bump == "none":
        version = current if tag else ""
    else:  # the first release (no tag yet) is the initial version itself
        version = next_version(current, bump) if tag else initial
    notes = [f"## {version} ({dt.date.today().isoformat()})"]
    for kind, title in SECTIONS:
        if grouped.get(kind):
            notes += ["", f"### {title}", "", *grouped[kind]]
    print(f"last_tag={tag}")
    print(f"bump={bump}")
    print(f"version={version}")
    print(f"tag={prefix + version if version else ''}")
    print(f"commits={len(found)}")
    print("notes<<PLAIT_NOTES_EOF")
    print("\n".join(notes))
    print("PLAIT_NOTES_EOF")
    print(
        f"{len(found)} commit(s) since {tag or 'the start'}: {bump} -> {version}", file=sys.stderr
    )


def changelog(repo: Path, version: str, notes: str) -> None:
    path = repo / "CHANGELOG.md"
    old = path.read_text() if path.exists() else "# Changelog\n"
    if re.search(rf"^## {re.escape(version)}\b", old, re.MULTILINE):
        print(f"{path} already has {version}", file=sys.stderr)
        return
    head, sep, rest = old.partition("\n## ")
    body = f"{head.rstrip()}\n\n{notes.strip()}\n" + (f"\n## {rest}" if sep else "")
    path.write_text(body)
    print(f"wrote {version} into {path}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("analyze", help="the next version from the commits since the last tag")
    p.add_argument("--repo", type=Path, default=Path("."))
    p.add_argument("--prefix", default="v")
    p.add_argument("--initial", default="0.1.0", help="the first version, when no tag exists")
    p = sub.add_parser("changelog", help="put release notes at the top of CHANGELOG.md")
    p.add_argument("--repo", type=Path, default=Path("."))
    p.add_argument("--version", required=True)
    p.add_argument("--notes-file", type=Path, required=True)
    args = parser.parse_args()
    if args.command == "analyze":
        analyze(args.repo, args.prefix, args.initial)
    else:
        changelog(args.repo, args.version, args.notes_file.read_text())


if __name__ == "__main__":
    main()
