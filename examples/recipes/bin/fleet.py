#!/usr/bin/env python3
"""Release activation, router weights and health waits for the deployment recipes.

The parts of a deployment that depend on how *your* service is installed live here, so
the workflows only orchestrate; replace these commands with your own (a package
manager, ``systemctl reload``, an API call to your load balancer) and keep the
workflows. Standard library only.

An instance directory is laid out like Capistrano's::

    releases/<version>/    one directory per release (copied from builds/<version>/)
    current -> releases/<version>
    .previous              the version ``current`` pointed at before the last activation
    .activated-by          the run id of that activation (so a rollback undoes only its own)

Commands (each prints ``key=value`` lines, ready for ``>> "$PLAIT_OUTPUT"``):

    fleet.py activate DIR VERSION --builds builds [--run RUN_ID]
    fleet.py rollback DIR [--run RUN_ID]
    fleet.py weights ROUTER_CONFIG NAME=WEIGHT...
    fleet.py wait-healthy URL [--version V] [--timeout 30]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def current_version(instance: Path) -> str:
    link = instance / "current"
    return os.readlink(link).rsplit("/", 1)[-1] if link.is_symlink() else ""


def switch(instance: Path, version: str) -> None:
    """Point ``current`` at ``releases/<version>`` atomically (rename over the link)."""
    tmp = instance / f".current.{os.getpid()}"
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(f"releases/{version}")
    os.replace(tmp, instance / "current")


def activate(instance: Path, version: str, builds: Path, run: str) -> None:
    build = builds / version
    if not (build / "app.json").is_file():
        sys.exit(f"no build of {version} in {builds} (expected {build}/app.json)")
    previous = current_version(instance)
    releases = instance / "releases"
    releases.mkdir(parents=True, exist_ok=True)
    if not (releases / version).exists():
        staging = releases / f".{version}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(build, staging)
        os.replace(staging, releases / version)
    (instance / ".previous").write_text(previous + "\n")
    (instance / ".activated-by").write_text(run + "\n")
    switch(instance, version)
    print(f"activated {version} in {instance} (was {previous or 'nothing'})", file=sys.stderr)
    print(f"previous={previous}")
    print(f"version={version}")


def rollback(instance: Path, run: str) -> None:
    marker = instance / ".activated-by"
    if run and (not marker.exists() or marker.read_text().strip() != run):
        print(f"{instance}: not changed by run {run}; nothing to roll back", file=sys.stderr)
        print("rolled_back=false")
        return
    previous = (instance / ".previous").read_text().strip() if marker.exists() else ""
    if not previous:
        print(f"{instance}: no previous release to go back to", file=sys.stderr)
        print("rolled_back=false")
        return
    switch(instance, previous)
    marker.unlink()
    print(f"{instance}: rolled back to {previous}", file=sys.stderr)
    print("rolled_back=true")
    print(f"version={previous}")


def weights(config: Path, pairs: list[str]) -> None:
    """Set backend weights in the router's JSON config, written atomically."""
    data = json.loads(config.read_text())
    by_name = {b["name"]: b for b in data["backends"]}
    for pair in pairs:
        name, _, weight = pair.partition("=")
        if name not in by_name or not weight.isdigit():
            sys.exit(f"{pair!r}: expected NAME=WEIGHT with NAME one of {', '.join(by_name)}")
        by_name[name]["weight"] = int(weight)
    tmp = config.with_name(f".{config.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, config)
    shown = ", ".join(f"{b['name']}={b['weight']}" for b in data["backends"])
    print(f"router weights: {shown}", file=sys.stderr)


def wait_healthy(url: str, version: str | None, timeout: float) -> None:
    """Poll ``url`` until it answers 200 (with ``version`` in its JSON, when given)."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                body = json.loads(resp.read() or b"{}")
                if version is None or body.get("version") == version:
                    print(f"{url}: {resp.status}, version {body.get('version')}", file=sys.stderr)
                    print(f"version={body.get('version')}")
                    return
                last = f"version {body.get('version')}, expected {version}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            sys.exit(f"{url} is not healthy after {timeout:g}s: {last}")
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("activate", help="copy a build into releases/ and switch current to it")
    p.add_argument("instance", type=Path)
    p.add_argument("version")
    p.add_argument("--builds", type=Path, default=Path("builds"))
    p.add_argument("--run", default="")
    p = sub.add_parser("rollback", help="switch current back to the previous release")
    p.add_argument("instance", type=Path)
    p.add_argument("--run", default="", help="only if this run activated the release")
    p = sub.add_parser("weights", help="set router weights: NAME=WEIGHT...")
    p.add_argument("config", type=Path)
    p.add_argument("pairs", nargs="+")
    p = sub.add_parser("wait-healthy", help="wait until URL answers 200")
    p.add_argument("url")
    p.add_argument("--version", default=None)
    p.add_argument("--timeout", type=float, default=30)
    args = parser.parse_args()
    if args.command == "activate":
        activate(args.instance, args.version, args.builds, args.run)
    elif args.command == "rollback":
        rollback(args.instance, args.run)
    elif args.command == "weights":
        weights(args.config, args.pairs)
    else:
        wait_healthy(args.url, args.version, args.timeout)


if __name__ == "__main__":
    main()
