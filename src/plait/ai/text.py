"""Offline language work on sentence embeddings: zero-shot classification and
extractive summaries.

**Classification.** A text is compared with each label by the cosine similarity of
their embeddings. A label is embedded as a sentence, ``"This text is about billing:
invoices, charges and refunds"`` when it has a description, ``"This text is about
billing."`` when it has none — descriptions make a large difference (on the 30 support
tickets of ``tests/ai/data``: 97 % right with them, 73 % with bare label names). Raw
cosines of this model are small and close together (0.1–0.5), so for one label out of
many they go through a softmax at :data:`TEMPERATURE` 0.05: a lead of 0.05 in similarity
makes a label e (2.7) times as likely, and the scores sum to 1. With ``multi_label``
every label is scored on its own by a logistic curve centred on a similarity of
:data:`MULTI_CENTRE`, and every label at or above the threshold is chosen.

**Summaries.** The text is cut into sentences, each is embedded, and the sentences
closest to the centroid of the whole document (what it is mostly about) are picked by
maximal marginal relevance — each pick trades centrality against similarity to the
sentences already picked (:data:`MMR_LAMBDA`), so the summary does not say the same
thing twice — then given back in their original order.

The pure parts (:func:`zero_shot`, :func:`softmax`, :func:`split_sentences`,
:func:`mmr`) take numbers and strings and are tested without the model; numpy is
imported inside the functions that need it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

#: softmax temperature over cosine similarities (single-label scores)
TEMPERATURE = 0.05
#: the best score a single-label result needs to be ``confident`` (by default)
THRESHOLD = 0.6
#: multi-label: the similarity that scores 0.5, and the logistic curve's width
MULTI_CENTRE = 0.2
MULTI_WIDTH = 0.05
#: multi-label: the score a label needs to be chosen (by default)
MULTI_THRESHOLD = 0.5
#: relevance against novelty in the summary's maximal marginal relevance
MMR_LAMBDA = 0.7
#: sentences considered for a summary; a longer text is summarised from its first ones
MAX_SENTENCES = 2000
#: sentences shorter than this (headings, "Thanks,") are not picked when others exist
MIN_SUMMARY_WORDS = 4


# -- classification -------------------------------------------------------------------------
@dataclass(frozen=True)
class Classification:
    """The result for one text: ``label`` (the best), ``scores`` by label (they sum to 1
    unless multi-label), ``confident``, the chosen ``labels`` (multi-label: every label
    at or above the threshold; else the best alone) and the raw cosine ``similarities``."""

    label: str | None
    scores: dict[str, float]
    confident: bool
    labels: list[str]
    similarities: dict[str, float] = field(default_factory=dict)


def label_sentence(label: str, description: str | None) -> str:
    """How a label is put into words before it is embedded."""
    if description:
        return f"This text is about {label}: {description}"
    return f"This text is about {label}."


def softmax(values: Sequence[float], temperature: float = TEMPERATURE) -> list[float]:
    """Probabilities from ``values`` (numerically stable)."""
    if not values:
        return []
    top = max(values)
    weights = [math.exp((v - top) / temperature) for v in values]
    total = sum(weights)
    return [w / total for w in weights]


def logistic(value: float, centre: float = MULTI_CENTRE, width: float = MULTI_WIDTH) -> float:
    return 1.0 / (1.0 + math.exp(-(value - centre) / width))


def zero_shot(
    similarities: Sequence[float],
    labels: Sequence[str],
    *,
    multi_label: bool = False,
    threshold: float | None = None,
) -> Classification:
    """The classification implied by one text's cosine similarity to each label."""
    if len(similarities) != len(labels) or not labels:
        raise ValueError("one similarity per label, and at least one label")
    sims = [float(s) for s in similarities]
    if multi_label:
        limit = MULTI_THRESHOLD if threshold is None else threshold
        scores = [logistic(s) for s in sims]
    else:
        limit = THRESHOLD if threshold is None else threshold
        scores = softmax(sims)
    best = max(range(len(labels)), key=lambda i: scores[i])
    chosen = [labels[i] for i in range(len(labels)) if scores[i] >= limit]
    if multi_label:
        chosen.sort(key=lambda name: -scores[labels.index(name)])
    else:
        chosen = [labels[best]]
    return Classification(
        label=labels[best],
        scores={label: round(score, 4) for label, score in zip(labels, scores, strict=True)},
        confident=scores[best] >= limit,
        labels=chosen,
        similarities={label: round(s, 4) for label, s in zip(labels, sims, strict=True)},
    )


def classify(
    texts: Sequence[str],
    labels: Mapping[str, str | None],
    *,
    multi_label: bool = False,
    threshold: float | None = None,
) -> list[Classification]:
    """Zero-shot classification of each of ``texts`` (embedded in one batch; long texts
    in chunks) among ``labels`` (label -> description or None). Loads the model."""
    from plait.ai.embeddings import embed_cached, embed_documents

    names = list(labels)
    vectors = embed_documents(texts)
    label_vectors = embed_cached([label_sentence(n, labels[n]) for n in names])
    similarity = vectors @ label_vectors.T
    return [
        zero_shot(row.tolist(), names, multi_label=multi_label, threshold=threshold)
        for row in similarity
    ]


def nearest(text: str, options: Sequence[str]) -> tuple[str, float]:
    """The option whose meaning is closest to ``text``, and the cosine similarity."""
    from plait.ai.embeddings import embed_cached, embed_documents

    similarity = (embed_documents([text]) @ embed_cached(list(options)).T)[0]
    best = int(similarity.argmax())
    return options[best], float(similarity[best])


# -- sentences --------------------------------------------------------------------------------
_ABBREVIATIONS = frozenset(
    {
        "e.g",
        "i.e",
        "mr",
        "mrs",
        "ms",
        "dr",
        "prof",
        "sr",
        "jr",
        "st",
        "vs",
        "etc",
        "inc",
        "ltd",
        "co",
        "corp",
        "no",
        "nr",
        "approx",
        "dept",
        "fig",
        "jan",
        "feb",
        "mar",
        "apr",
        "jun",
        "jul",
        "aug",
        "sep",
        "sept",
        "oct",
        "nov",
        "dec",
        "mon",
        "tue",
        "wed",
        "thu",
        "fri",
        "sat",
        "sun",
        "ca",
        "cf",
        "al",
        "resp",
        "z.b",
        "u.a",
        "bzw",
    }
)
_BULLET = re.compile(r"^\s*(?:[-*•▪‣◦]|\d{1,3}[.)]|[a-z][.)])\s+")
#: a line shorter than this is no hard-wrapped prose (mail wraps at 72)
_SHORT_LINE = 40
_BOUNDARY = re.compile(r"(?<=[.!?…])(?P<close>[\"'”’)\]]*)\s+(?=[\"'“‘(\[]?[A-Z0-9À-ÖØ-Þ])")


def split_sentences(text: str) -> list[str]:
    """``text`` cut into sentences: at ., ! and ? followed by a capital or a digit (not
    after common abbreviations or initials), at blank lines, and before list bullets.
    A single line break inside a paragraph (hard-wrapped mail) joins the lines."""
    sentences: list[str] = []
    for block in _blocks(text):
        sentences.extend(_split_block(block))
    return sentences


def _blocks(text: str) -> list[str]:
    """Paragraphs and list items, each on one line. A short line without final
    punctuation followed by a capitalised one ends its block too ("Thanks," / "Anna")."""
    blocks: list[str] = []
    current: list[str] = []
    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.strip()
        if current and line and _ends_short_line(current[-1], line):
            blocks.append(" ".join(current))
            current = []
        if not line or _BULLET.match(raw):
            if current:
                blocks.append(" ".join(current))
            current = []
            if line:
                current = [_BULLET.sub("", raw).strip()]
            continue
        current.append(line)
    if current:
        blocks.append(" ".join(current))
    return [b for b in blocks if b]


def _ends_short_line(previous: str, line: str) -> bool:
    return len(previous) < _SHORT_LINE and previous[-1] not in ".!?:;" and line[0].isupper()


def _split_block(block: str) -> list[str]:
    pieces: list[str] = []
    start = 0
    for match in _BOUNDARY.finditer(block):
        before = block[start : match.start()].rstrip("\"'”’)] ")
        last = before.rsplit(None, 1)[-1] if before.split() else ""
        word = last.rstrip(".").lower()
        if last.endswith(".") and (word in _ABBREVIATIONS or re.fullmatch(r"[a-z]", word)):
            continue
        pieces.append(block[start : match.end("close")].strip())
        start = match.end()
    pieces.append(block[start:].strip())
    return [p for p in pieces if p]


# -- summaries -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Summary:
    sentences: list[str]
    #: positions of the chosen sentences among all sentences of the text
    indexes: list[int]
    #: how many sentences the text had (and how many were considered)
    total: int
    considered: int

    @property
    def text(self) -> str:
        return " ".join(self.sentences)


def mmr(
    vectors: NDArray[np.float32],
    k: int,
    *,
    lambda_: float = MMR_LAMBDA,
    candidates: Sequence[int] | None = None,
) -> list[int]:
    """Indexes of ``k`` rows picked by maximal marginal relevance, in the order picked.

    Relevance is a row's cosine similarity to the centroid of all rows (rows are
    L2-normalised); each next pick maximises ``lambda * relevance - (1 - lambda) *
    (its highest similarity to a row already picked)``. ``candidates`` limits which rows
    may be picked (all rows still shape the centroid).
    """
    import numpy as np

    n = len(vectors)
    pool = list(range(n)) if candidates is None else list(candidates)
    if n == 0 or k <= 0 or not pool:
        return []
    centroid = vectors.mean(axis=0)
    norm = float(np.linalg.norm(centroid))
    relevance = vectors @ (centroid / norm) if norm else np.zeros(n, dtype=np.float32)
    similarity = vectors @ vectors.T
    picked: list[int] = []
    redundancy = np.full(n, -np.inf)
    while pool and len(picked) < k:
        novelty = np.where(np.isfinite(redundancy[pool]), redundancy[pool], 0.0)
        gains = lambda_ * relevance[pool] - (1 - lambda_) * novelty
        best = pool[int(np.argmax(gains))]
        picked.append(best)
        pool.remove(best)
        redundancy = np.maximum(redundancy, similarity[best])
    return picked


def choose_within(
    order: Sequence[int], sentences: Sequence[str], count: int, max_words: int | None
) -> list[int]:
    """The first ``count`` of ``order`` that fit in ``max_words`` together (a sentence
    that does not fit is skipped for a shorter one; the first always stays)."""
    chosen: list[int] = []
    words = 0
    for index in order:
        size = len(sentences[index].split())
        if max_words is not None and chosen and words + size > max_words:
            continue
        chosen.append(index)
        words += size
        if len(chosen) >= count:
            break
    return sorted(chosen)


def summarize(text: str, sentences: int = 3, max_words: int | None = None) -> Summary:
    """An extractive summary: up to ``sentences`` sentences of ``text`` (and at most
    ``max_words`` words, though never less than one sentence), in their original order.
    Loads the model."""
    from plait.ai.embeddings import embed

    found = split_sentences(text)
    considered = found[:MAX_SENTENCES]
    if len(considered) <= sentences and max_words is None:
        return Summary(considered, list(range(len(considered))), len(found), len(considered))
    long_enough = [i for i, s in enumerate(considered) if len(s.split()) >= MIN_SUMMARY_WORDS]
    pool = long_enough if len(long_enough) >= min(sentences, len(considered)) else None
    vectors = embed(considered)
    # enough picks in order for max_words to skip the long ones, without ranking all
    order = mmr(vectors, max(4 * sentences, 20), candidates=pool)
    chosen = choose_within(order, considered, sentences, max_words)
    return Summary([considered[i] for i in chosen], chosen, len(found), len(considered))
