"""The exceptions semcache raises.

Every exception semcache raises on purpose derives from :class:`SemanticCacheError`, so
``except SemanticCacheError`` catches them all. A bad argument always gets one of the
:class:`InvalidInputError` family, whose message names the argument (no bare
``TypeError`` or ``OverflowError`` from deep inside). Errors about bad input also derive from
the matching builtin (``ValueError`` or ``TypeError``) so that code written against the
builtins keeps working. Errors from foreign libraries (apsw, faiss, redis, psycopg) are
translated at the boundary with ``raise ... from exc``.

Hierarchy::

    SemanticCacheError
    ├── CacheClosedError                 a call on a closed cache, store or index
    ├── CheckpointError                  a checkpoint cannot be written or restored
    │   ├── CheckpointFormatError          not a semcache checkpoint, or a malformed manifest
    │   │   └── CheckpointVersionError       written by a newer semcache (format version)
    │   ├── CheckpointChecksumError        a member's size or checksum differs from the manifest
    │   ├── CheckpointMismatchError        another embedder fingerprint, dim or dtype
    │   │                                  (also an EmbedderMismatchError)
    │   └── UnsafeArchiveError             an absolute, '..', link, device, duplicate or
    │       │                              unexpected archive member
    │       └── ArchiveMemberTooLargeError   a member over the size cap
    ├── InvalidInputError (ValueError)   bad arguments, raised before anything is written
    │   ├── InvalidTextError               query/response not a str, or not encodable as UTF-8
    │   ├── InputTooLargeError             a byte cap was exceeded
    │   │   ├── QueryTooLargeError
    │   │   ├── ResponseTooLargeError
    │   │   └── MetadataTooLargeError
    │   ├── InvalidMetadataError           metadata that is not a JSON object
    │   ├── InvalidNamespaceError          empty, oversized or control characters
    │   ├── InvalidTTLError                negative, NaN, infinite or non-numeric TTL
    │   ├── InvalidThresholdError          a threshold that is not a number in [-1, 1]
    │   ├── InvalidEmbeddingError          NaN/inf, zero vector, wrong shape or dtype
    │   │   └── DimensionMismatchError       wrong dimension for this cache
    │   └── ConfigurationError             a bad constructor argument (type, range, unknown
    │                                      index option), or ones that cannot work together
    ├── MissingDependencyError (ImportError)  an optional extra is not installed
    ├── EmbedderError                    the embedder raised or returned garbage
    ├── EmbedderMismatchError            the cache was built with another embedder
    └── StoreError                       the store failed (I/O, corruption, lock)
        ├── StoreCorruptError              the database file is not a semcache store
        ├── StoreLockedError               another process holds the file in a conflicting mode
        ├── SchemaVersionError             the file was written by a newer semcache
        └── StoreUnavailableError          the store's server is unreachable (timeout, lost link)
"""

from __future__ import annotations

__all__ = [
    "ArchiveMemberTooLargeError",
    "CacheClosedError",
    "CheckpointChecksumError",
    "CheckpointError",
    "CheckpointFormatError",
    "CheckpointMismatchError",
    "CheckpointVersionError",
    "ConfigurationError",
    "DimensionMismatchError",
    "EmbedderError",
    "EmbedderMismatchError",
    "InputTooLargeError",
    "InvalidEmbeddingError",
    "InvalidInputError",
    "InvalidMetadataError",
    "InvalidNamespaceError",
    "InvalidTTLError",
    "InvalidTextError",
    "InvalidThresholdError",
    "MetadataTooLargeError",
    "MissingDependencyError",
    "QueryTooLargeError",
    "ResponseTooLargeError",
    "SchemaVersionError",
    "SemanticCacheError",
    "StoreCorruptError",
    "StoreError",
    "StoreLockedError",
    "StoreUnavailableError",
    "UnsafeArchiveError",
]


class SemanticCacheError(Exception):
    """Root of every exception semcache raises on purpose."""


class CacheClosedError(SemanticCacheError):
    """The cache (or its store or index) was closed; open a new one."""


class InvalidInputError(SemanticCacheError, ValueError):
    """An argument was rejected before anything was read or written."""


class InvalidTextError(InvalidInputError):
    """A query or response is not a ``str`` or cannot be encoded as UTF-8.

    Lone surrogates (``"\\ud800"``) are the usual cause: they are not valid Unicode
    text and no store can keep them.
    """


class InputTooLargeError(InvalidInputError):
    """An input is larger than its byte cap (UTF-8 bytes)."""

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(f"{what} is {size} bytes (UTF-8); the limit is {limit} bytes")
        self.what = what
        self.size = size
        self.limit = limit


class QueryTooLargeError(InputTooLargeError):
    """The query exceeds ``max_query_bytes``."""


class ResponseTooLargeError(InputTooLargeError):
    """The response exceeds ``max_response_bytes``."""


class MetadataTooLargeError(InputTooLargeError):
    """The metadata, serialized as JSON, exceeds ``max_metadata_bytes``."""


class InvalidMetadataError(InvalidInputError, TypeError):
    """Metadata must be a JSON-serializable mapping with string keys (or None)."""


class InvalidNamespaceError(InvalidInputError):
    """A namespace must be a non-empty str of at most 255 UTF-8 bytes without control
    characters."""


class InvalidTTLError(InvalidInputError):
    """A TTL must be None or a finite number of seconds >= 0 (an int or a float, not a
    bool)."""


class InvalidThresholdError(InvalidInputError):
    """A similarity threshold must be a finite number in [-1, 1]."""


class InvalidEmbeddingError(InvalidInputError):
    """An embedding is not a finite, non-zero, one-dimensional real vector."""


class DimensionMismatchError(InvalidEmbeddingError):
    """An embedding's dimension differs from the cache's."""

    def __init__(self, got: int, expected: int) -> None:
        super().__init__(f"embedding has dimension {got}; this cache stores dimension {expected}")
        self.got = got
        self.expected = expected


class ConfigurationError(InvalidInputError):
    """Constructor arguments that are invalid (a wrong type, out of range, an unknown or
    bad ``index_options`` key) or cannot work together; the message names the argument."""


class MissingDependencyError(SemanticCacheError, ImportError):
    """An optional extra is not installed; the message names the command that installs
    it (for example ``pip install 'semcache-engine[faiss]'``)."""


class EmbedderError(SemanticCacheError):
    """The embedder raised, timed out, or returned something that is not an embedding."""


class EmbedderMismatchError(SemanticCacheError):
    """The cache was written with another embedder (fingerprint or dimension differ).

    Mixing vectors of two models silently serves wrong answers; open the cache with the
    embedder it was built with, or start a new cache file.
    """


class StoreError(SemanticCacheError):
    """The store failed: I/O error, lock timeout, or a broken database."""


class StoreCorruptError(StoreError):
    """The store's file is corrupt or is not a semcache store."""


class SchemaVersionError(StoreError):
    """The store was written by a newer version of semcache than this one."""


class StoreLockedError(StoreError):
    """Another process holds the cache file in a conflicting mode.

    A ``multi_process_mode="single"`` cache owns its SQLite file alone; a second process
    opening it (in either mode), or a single-mode opener while shared-mode processes have
    it open, gets this error. So does a forked child using a single-mode cache its parent
    opened. Use ``multi_process_mode="shared"`` in every process that needs the file at
    the same time.
    """


class CheckpointError(SemanticCacheError):
    """A checkpoint cannot be written (``dumps``) or restored (``loads``); nothing was
    written outside the destination."""


class CheckpointFormatError(CheckpointError):
    """The archive is not a semcache checkpoint, or its manifest is malformed."""


class CheckpointVersionError(CheckpointFormatError):
    """The checkpoint was written in a newer format than this semcache reads."""


class CheckpointChecksumError(CheckpointError):
    """An archive member's size or SHA-256 differs from the manifest's (a damaged or
    tampered checkpoint)."""


class CheckpointMismatchError(CheckpointError, EmbedderMismatchError):
    """The checkpoint was made with another embedder (fingerprint or dimension) or
    vector dtype than the one it is being restored with."""


class UnsafeArchiveError(CheckpointError):
    """An archive member that is not a plain file with a plain relative name the
    checkpoint format expects: an absolute name, a ``..`` component, a link, a device,
    FIFO or directory, a duplicate, or a name the manifest does not list."""

    def __init__(self, member: str, reason: str) -> None:
        super().__init__(f"unsafe checkpoint member {member!r}: {reason}")
        self.member = member
        self.reason = reason


class ArchiveMemberTooLargeError(UnsafeArchiveError):
    """An archive member is larger than the size cap ``loads`` was given."""


class StoreUnavailableError(StoreError):
    """The store's server (Redis, PostgreSQL) cannot be reached: connection refused or
    lost, or a timeout. A get answers a miss (reason ``"store_unavailable"``); a put
    raises. The store reconnects by itself on a later call."""
