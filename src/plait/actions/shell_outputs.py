"""The ``$PLAIT_OUTPUT`` file of a shell step: ``key=value`` lines and GitHub-style
multi-line values (``key<<DELIM``, the lines, ``DELIM``)."""

from __future__ import annotations

from pathlib import Path

#: GitHub limits a step's outputs file to 1 MiB too; more is almost surely a mistake
MAX_OUTPUTS_BYTES = 1024 * 1024


def parse_outputs(path: str | Path) -> dict[str, str]:
    """The outputs in a ``$PLAIT_OUTPUT`` file: ``key=value`` lines and GitHub-style
    multi-line values (``key<<DELIM``, the lines, ``DELIM``). Raises ValueError."""
    with open(path, "rb") as file:
        data = file.read(MAX_OUTPUTS_BYTES + 1)
    if len(data) > MAX_OUTPUTS_BYTES:
        raise ValueError("the outputs file is larger than 1 MiB")
    lines = data.decode("utf-8", errors="replace").splitlines()
    outputs: dict[str, str] = {}
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not line.strip():
            continue
        key, value, index = _parse_entry(line, lines, index)
        outputs[key] = value
    return outputs


def _parse_entry(line: str, lines: list[str], index: int) -> tuple[str, str, int]:
    """One output starting at ``line``; ``index`` is the next line. Returns the key, the
    value and the index after the entry."""
    eq, heredoc = line.find("="), line.find("<<")
    if heredoc > 0 and (eq < 0 or heredoc < eq):
        key, delimiter = line[:heredoc].strip(), line[heredoc + 2 :].strip()
        if not delimiter:
            raise ValueError(f"line {index}: {key}<< needs a delimiter")
        try:
            end = lines.index(delimiter, index)
        except ValueError:
            raise ValueError(f"line {index}: no closing {delimiter!r} for {key!r}") from None
        return _key(key, index), "\n".join(lines[index:end]), end + 1
    if eq <= 0:
        raise ValueError(f"line {index}: expected key=value or key<<DELIMITER, got {line[:80]!r}")
    return _key(line[:eq], index), line[eq + 1 :], index


def _key(key: str, line: int) -> str:
    key = key.strip()
    if not key or any(c.isspace() for c in key):
        raise ValueError(f"line {line}: {key!r} is not an output name")
    return key
