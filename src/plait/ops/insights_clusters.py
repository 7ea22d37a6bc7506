"""Failure clustering: failed step attempts grouped by the similarity of their text.

Pure code over rows (:class:`~plait.ops.insights.FailedAttempt`); the store reads them
and :mod:`plait.ops.insights` puts the parts together. Deterministic — the same rows
give the same clusters, with the same ids — and bounded:

1. **Text.** Each attempt's error and the tail of its log, normalised
   (:func:`~plait.ops.insights_text.normalise`); identical texts are one item with a
   weight (how many attempts), so the work grows with the number of distinct causes,
   not of failures.
2. **Tokens.** Items are grouped by leader clustering over TF-IDF vectors of their
   words and word pairs: in order of weight (then text), each item joins the group
   whose centroid it is most similar to, if that similarity is at least
   :data:`TOKEN_THRESHOLD`, else starts a group; then groups whose centroids are that
   similar are merged, most similar pair first. This alone is the ``tokens`` method,
   which needs nothing beyond Python.
3. **Embeddings** (with the offline model): the representative texts of the largest
   :data:`MAX_EMBEDDED` groups are embedded (sentence embeddings, cached by the text's
   hash) and groups whose meaning is close (cosine ≥ :data:`EMBEDDING_THRESHOLD`) are
   merged the same way — so ``connection refused`` from psql and from curl end up
   together though they share few words. Embedding only representatives keeps the
   model's cost (about 10–20 ms of CPU per text here) to a few hundred texts a call.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from plait.ops.insights_text import Vector, cosine, features, normalise, token_vectors

#: cosine of TF-IDF vectors at or above which two texts share a cause
TOKEN_THRESHOLD = 0.5
#: cosine of sentence embeddings at or above which two groups share a cause
EMBEDDING_THRESHOLD = 0.7
#: groups whose representatives are embedded (the largest); the rest stay as grouped
MAX_EMBEDDED = 300
#: the heaviest groups the merge pass compares pairwise (the rest stay as the leader
#: pass left them)
MAX_MERGED = 200

#: texts in, one L2-normalised vector per text out (a numpy array, shape (n, d))
Embedder = Callable[[Sequence[str]], Any]


@dataclass(frozen=True, slots=True)
class Item:
    """A distinct normalised text and the attempts (by index) that have it."""

    text: str
    error: str
    members: tuple[int, ...]

    @property
    def weight(self) -> int:
        return len(self.members)


@dataclass(slots=True)
class Group:
    """Items (indexes into the heaviest-first item list) found to share a cause;
    ``centroid`` is the weighted sum of their token vectors."""

    items: list[int]
    weight: int
    centroid: dict[str, float] = field(default_factory=dict)
    norm: float = 0.0

    def add(self, index: int, vector: Vector, weight: int) -> None:
        self.items.append(index)
        self.weight += weight
        _add(self.centroid, vector, weight)
        self.norm = _norm(self.centroid)

    def similarity(self, vector: Vector) -> float:
        return cosine(vector, self.centroid) / (self.norm or 1.0)


def items_of(errors: Sequence[str], tails: Sequence[Sequence[str]]) -> list[Item]:
    """The distinct texts of attempts (``errors[i]`` with log tail ``tails[i]``), each
    with the attempts that have it, heaviest first (then by text)."""
    found: dict[tuple[str, str], list[int]] = {}
    for i, (error, tail) in enumerate(zip(errors, tails, strict=True)):
        key = (normalise(error), normalise("\n".join(tail)))
        found.setdefault(key, []).append(i)
    items = [
        Item(f"{err} | {tail}" if tail else err, err, tuple(members))
        for (err, tail), members in found.items()
    ]
    return sorted(items, key=lambda it: (-it.weight, it.text))


def token_groups(items: Sequence[Item], threshold: float = TOKEN_THRESHOLD) -> list[Group]:
    """Leader clustering of ``items`` (in their order) over TF-IDF vectors, then merged
    (see the module docstring).

    An item is compared only with the groups that share one of its distinctive terms
    (found in at most half the items: ``<num>`` or ``error`` alone make no cause), so
    the work grows with the causes a text could belong to, not with all groups."""
    counted = [features(it.text) for it in items]
    vectors = token_vectors([it.text for it in items], counted)
    frequency: Counter[str] = Counter()
    for found in counted:
        frequency.update(found.keys())
    common = max(2, len(items) // 2)
    groups: list[Group] = []
    by_term: dict[str, set[int]] = {}
    for index, (item, vector) in enumerate(zip(items, vectors, strict=True)):
        terms = [t for t in vector if frequency[t] <= common] or list(vector)
        candidates = sorted({g for t in terms for g in by_term.get(t, ())})
        best, best_sim = None, threshold
        for g in candidates:
            sim = groups[g].similarity(vector)
            if sim >= best_sim and (best is None or sim > best_sim):
                best, best_sim = g, sim
        if best is None:
            best = len(groups)
            groups.append(Group([], 0))
        groups[best].add(index, vector, item.weight)
        for term in terms:
            by_term.setdefault(term, set()).add(best)
    return _merge_sparse(groups, threshold)


def embedding_groups(
    items: Sequence[Item],
    groups: Sequence[Group],
    embed: Embedder,
    cache: dict[str, Any],
    threshold: float = EMBEDDING_THRESHOLD,
) -> list[Group]:
    """``groups`` with those whose representatives mean the same merged, most similar
    pair first (see the module docstring); ``cache`` keeps embeddings by text hash
    between calls."""
    import numpy as np

    ordered = sorted(groups, key=lambda g: (-g.weight, representative(g)))
    head, rest = list(ordered[:MAX_EMBEDDED]), list(ordered[MAX_EMBEDDED:])
    texts = [items[representative(g)].text for g in head]
    keys = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
    missing = [i for i, k in enumerate(keys) if k not in cache]
    if missing:
        made = np.asarray(embed([texts[i] for i in missing]), dtype=np.float64)
        for row, i in enumerate(missing):
            cache[keys[i]] = made[row]
    if len(head) < 2:
        return head + rest
    weights = np.asarray([g.weight for g in head], dtype=np.float64)
    sums = np.stack([cache[k] for k in keys]) * weights[:, None]
    unit = sums / np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
    sims = unit @ unit.T
    np.fill_diagonal(sims, -np.inf)
    members: dict[int, list[int]] = {i: [i] for i in range(len(head))}
    while True:
        a, b = (int(x) for x in np.unravel_index(int(np.argmax(sims)), sims.shape))
        if sims[a, b] < threshold:
            break
        keep, drop = min(a, b), max(a, b)
        sums[keep] += sums[drop]
        members[keep].extend(members.pop(drop))
        unit[keep] = sums[keep] / max(float(np.linalg.norm(sums[keep])), 1e-12)
        sims[keep, :] = unit @ unit[keep]
        sims[:, keep] = sims[keep, :]
        gone = [i for i in range(len(head)) if i not in members]
        sims[gone, :] = -np.inf
        sims[:, gone] = -np.inf
        sims[keep, keep] = -np.inf
    merged = [_union([head[i] for i in members[k]]) for k in sorted(members)]
    return merged + rest


def representative(group: Group) -> int:
    """The index of a group's representative item: its heaviest (items come heaviest
    first)."""
    return min(group.items)


def _union(groups: Sequence[Group]) -> Group:
    items = sorted(i for g in groups for i in g.items)
    return Group(items, sum(g.weight for g in groups))


def _merge_sparse(groups: list[Group], threshold: float) -> list[Group]:
    """Merge the most similar pair of the :data:`MAX_MERGED` heaviest groups while it is
    at least ``threshold`` similar (the leader pass can split a cause when its first
    texts were far apart and later ones bridge them)."""
    ordered = sorted(groups, key=lambda g: -g.weight)
    head, rest = ordered[:MAX_MERGED], ordered[MAX_MERGED:]
    units = [_unit(g.centroid) for g in head]
    sims: dict[tuple[int, int], float] = {}
    for i in range(len(head)):
        for j in range(i + 1, len(head)):
            sim = cosine(units[i], units[j])
            if sim >= threshold:
                sims[(i, j)] = sim
    alive = set(range(len(head)))
    while sims:
        (i, j), _ = max(sims.items(), key=lambda kv: (kv[1], -kv[0][0], -kv[0][1]))
        keep, drop = head[i], head[j]
        keep.items.extend(drop.items)
        keep.weight += drop.weight
        _add(keep.centroid, drop.centroid, 1)
        keep.norm = _norm(keep.centroid)
        alive.discard(j)
        sims = {pair: s for pair, s in sims.items() if i not in pair and j not in pair}
        units[i] = _unit(keep.centroid)
        for other in alive - {i}:
            sim = cosine(units[i], units[other])
            if sim >= threshold:
                sims[(min(i, other), max(i, other))] = sim
    return [head[i] for i in sorted(alive)] + rest


def _add(into: dict[str, float], vector: Mapping[str, float], by: float) -> None:
    for term, w in vector.items():
        into[term] = into.get(term, 0.0) + w * by


def _norm(vector: Mapping[str, float]) -> float:
    return math.sqrt(sum(w * w for w in vector.values()))


def _unit(vector: Mapping[str, float]) -> Vector:
    norm = _norm(vector) or 1.0
    return {t: w / norm for t, w in vector.items()}


def cluster_id(text: str) -> str:
    """A cluster's id: stable while its representative text stays the same."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def attempts_by_group(items: Sequence[Item], groups: Iterable[Group]) -> list[list[int]]:
    """For each group, the indexes of its attempts (in the order of its items)."""
    return [[m for i in g.items for m in items[i].members] for g in groups]


__all__ = [
    "EMBEDDING_THRESHOLD",
    "MAX_EMBEDDED",
    "TOKEN_THRESHOLD",
    "Embedder",
    "Group",
    "Item",
    "attempts_by_group",
    "cluster_id",
    "embedding_groups",
    "items_of",
    "token_groups",
]
