"""The error budget in the cache: ``SemanticCache(..., error_budget=0.01)``.

The policy (serve, verify or miss; what is learnt from an LLM call) is
:class:`semcache._budget_policy.ErrorBudget`, with the evidence of
:mod:`semcache._agreement`. This module is the engine's side of it:

- :class:`Budgets`, one per cache: one ``ErrorBudget`` per namespace, created on first
  use and seeded from the store's counters; the entries' records read from and written
  to the store; the count changes buffered and added to the store's counters (never
  overwritten, so that no process loses another's) every :data:`SYNC_OBSERVATIONS`
  observations or :data:`SYNC_SECONDS` of the cache's clock, and at close and
  checkpoint; each such sync reads the counters back, so a process learns from the
  others' observations within about a second.
- :class:`Judgement`: what one get's candidates said, carried from the get to the LLM
  call that ``get_or_put`` makes on a verification or a miss.

What stays in one process: the window of recent gets' risks that sets the serving
level (it refills after a reopen: the first ``refresh`` gets serve nothing), the
verification draws, and this process's counters in ``stats()``. A store without the
``QualityState`` capability (a third-party store) keeps nothing: the budget is then
in this process's memory only.

With ``answer_similarity`` the answers are compared by their embeddings: each entry's
record carries the embedding of its answer (made at put, :func:`encode_answer`, and
stored with the entry in the put's own write), the
candidates' are decoded once per get (:meth:`Budgets.answers_of`) and two answers are
the same when their cosine is at least ``answer_similarity``; an entry without one (put
before the option was on) is embedded when first compared and its record written back
(:mod:`semcache._answer_steps`).

"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, cast

import numpy as np
import numpy.typing as npt

from ._agreement import Agreement, Candidate, agreement, answer_digest, same_answer, voted
from ._budget_policy import ENTRY_PRIORS, Decision, EntryRecord, ErrorBudget, RiskTable
from ._errors import StoreError
from ._model_bands import ModelBands
from ._risk_model import ROWS, RiskModel, features, words
from ._store import (
    OutcomeLog,
    QualityState,
    Store,
    StoredEntry,
    outcome_log,
    quality_state,
    record_update,
)
from ._types import Hit

if TYPE_CHECKING:
    from ._answer_model import AnswerModels, Fitted

__all__ = [
    "BUDGET_FLOOR",
    "BUDGET_K",
    "SYNC_OBSERVATIONS",
    "SYNC_SECONDS",
    "Budgets",
    "Judgement",
    "SameAnswer",
    "Vector",
    "cell",
    "decode_answer",
    "encode_answer",
    "weight_counter",
]

logger = logging.getLogger("semcache")

SameAnswer = Callable[[str, str], bool]
#: A unit vector (float32): an answer's embedding.
Vector = npt.NDArray[np.float32]
#: Candidates a get reads with a budget (the vote and the agreement are over them).
BUDGET_K: Final = 8
#: Observations after which a namespace's counts are synced with the store.
SYNC_OBSERVATIONS: Final = 32
#: Seconds (of the cache's clock) after which they are synced anyway.
SYNC_SECONDS: Final = 1.0
#: The lowest similarity a candidate is read at (the policy's floor).
BUDGET_FLOOR: Final = 0.5
#: The agreement's time limit here: none in effect. Its cost is bounded by k (the vote
#: before it compares the same k candidates, with no time limit); a limit in time would
#: make the evidence, and so the decision, depend on the machine's load (a read cut
#: short can look unanimous where the next candidate disagrees).
_NO_TIME_LIMIT_US: Final = 1e9
#: Records kept in memory for a store without the capability.
_LOCAL_RECORDS: Final = 65536
#: Stored prompts' words kept for the risk model's features (by prompt text; reading
#: them costs about 2.5 us a prompt, 20 of a get's 40 us).
_PROMPT_WORDS: Final = 4096
#: Decoded answer vectors kept (by entry id, with the record text they came from), so
#: that a candidate read again costs no JSON or base64 decoding (6 MB at dimension 384).
_DECODED_ANSWERS: Final = 4096


def cell(kind: str, table: RiskTable, evidence: int, bin_: int) -> str:
    """The store counter of one risk-table cell: ``n`` (observations) or ``w`` (wrong
    ones), named with the table's layout (its floor and bin width) so that counts
    learnt under another layout are never read as this one's bins."""
    return f"{kind}/{table.floor:g},{table.width:g}/{evidence}/{bin_}"


def weight_counter(weight: float) -> str:
    """The store counter of the log-loss the record's weight ``weight`` gave the LLM
    calls' outcomes (:attr:`~semcache._budget_policy.ErrorBudget.weight_loss`)."""
    return f"weight/{weight:g}"


def encode_answer(vector: Vector) -> str:
    """An answer's unit embedding as record text: float16, little-endian, base64
    (1,024 characters at dimension 384)."""
    return base64.b64encode(np.asarray(vector, dtype="<f2").tobytes()).decode("ascii")


def decode_answer(text: str, dim: int | None) -> Vector | None:
    """The unit vector :func:`encode_answer` wrote (float32); None when ``text`` is not
    one of dimension ``dim`` (None: any), or not finite and non-zero."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if not raw or len(raw) % 2 or (dim is not None and len(raw) != 2 * dim):
        return None
    vector = np.frombuffer(raw, dtype="<f2").astype(np.float32)
    norm = float(np.sqrt(np.dot(vector, vector)))
    if not 0.0 < norm < np.inf:
        return None
    out: Vector = vector / np.float32(norm)
    return out


@dataclass(slots=True)
class Judgement:
    """What a get's candidates said under the budget.

    Attributes:
        namespace: where the get looked.
        decision: the policy's ``Decision`` (``action``: serve, verify or miss).
        evidence: the ``Agreement`` of the candidate to serve (None: no candidate).
        candidates: ``(entry, similarity)`` read, in the agreement's order (the one to
            serve first).
        records: ``EntryRecord`` by entry id (the served candidate's; learn() adds
            the others'; with answer vectors, also those read to decode them).
        hit: the hit to serve (the first candidate's), if one may be served.
        answers: with ``answer_similarity``, the candidates' answer vectors by entry
            id (a candidate whose answer could not be embedded has none).
        query: the get's query (what the risk model's features read).
        features: the served candidate's features, where the model decided the get
            (else made by ``learn`` if it learns from an LLM call).
        model: the namespace's answer model at the get (None: none), and
        vector: the get's unit query vector, for its reading among the features.
    """

    namespace: str
    decision: Decision
    evidence: Agreement | None = None
    candidates: list[tuple[StoredEntry, float]] = field(default_factory=list)
    records: dict[int, EntryRecord] = field(default_factory=dict)
    hit: Hit | None = None
    answers: dict[int, Vector] | None = None
    query: str | None = None
    features: list[float] | None = None
    model: Fitted | None = None
    vector: Vector | None = None


def _adding(similarity: float, correct: bool) -> Callable[[EntryRecord], None]:
    """A change of a record (:meth:`Budgets.update`): one observation added."""
    return lambda record: record.add(similarity, correct)


class Budgets:
    """The error budget of one cache (see the module docstring).

    Args:
        budget: wrong answers per get allowed (checked by ``Options``); None: no
            policy, only the records ``feedback`` writes.
        same: ``same(stored, fresh) -> bool`` (None: normalized equality).
        store: the cache's store.
        clock: the cache's clock (seconds).
        similar: ``answer_similarity``: compare answers by the cosine of their
            embeddings, the same at or above it (None: by ``same``).
    """

    def __init__(
        self,
        budget: float | None,
        same: SameAnswer | None,
        store: object,
        clock: Callable[[], float],
        similar: float | None = None,
    ) -> None:
        self.budget = budget
        self.similar = similar
        self.same: SameAnswer = same if same is not None else same_answer
        self.state: QualityState | None = quality_state(store)
        self.log: OutcomeLog | None = outcome_log(store)
        self._store = cast(Store, store)
        self.clock = clock
        self.floor = BUDGET_FLOOR
        self._policies: dict[str, ErrorBudget] = {}
        self._pending: dict[str, dict[str, float]] = {}
        self._unsynced: dict[str, int] = {}
        self._synced_at: dict[str, float] = {}
        self._local: OrderedDict[int, str] = OrderedDict()
        self._decoded: dict[int, tuple[str, Vector]] = {}
        self._prompt_words: dict[str, frozenset[str]] = {}
        #: The cache's answer models (``semcache._answer_model``; the engine sets them,
        #: None: none): their reading of a get's query is two of the risk model's
        #: features.
        self.models: AnswerModels | None = None
        #: What of a stored text is the answer, by namespace prefix: the integrations'
        #: doors store whole completions (ids, timestamps, usage) and register how to
        #: read the answer from one (:meth:`same_in`).
        self.views: dict[str, Callable[[str], str]] = {}
        #: This process's counters (``stats()["budget"]``).
        self.counters = {
            "verifications": 0,
            "observations": 0,
            "feedback": 0,
            "feedback_stale": 0,
            "learn_errors": 0,
        }

    # -- the policy per namespace --------------------------------------------------------
    def policy(self, ns: str) -> ErrorBudget:
        """The namespace's ``ErrorBudget`` (created and seeded from the store on first use)."""
        pol = self._policies.get(ns)
        if pol is None:
            assert self.budget is not None
            pol = self._policies[ns] = ErrorBudget(self.budget, floor=self.floor, model=RiskModel())
            self._synced_at[ns] = self.clock()
            self._unsynced[ns] = 0
            if self.state is not None:
                try:
                    self._load(ns, pol, self.state.read_counts(ns))
                except StoreError:
                    logger.warning("semcache: could not read the error budget's counts")
            if self.log is not None:
                self._refit(ns, pol)  # (the outcomes every process logged so far)
        return pol

    def _refit(self, ns: str, pol: ErrorBudget) -> None:
        """Refit the namespace's model on the store's outcome log, this process's new
        rows added to it first (on this process's rows alone where the store has no
        log or fails: logged, the rows kept for the next try)."""
        model = pol.model
        assert model is not None
        if self.log is not None:
            try:
                self._add_outcomes(ns, model)
                model.replace(self.log.read_outcomes(ns))
            except StoreError:
                logger.warning("semcache: could not read the error budget's outcome log")
        else:
            model.pending.clear()
        model.refit()

    def _add_outcomes(self, ns: str, model: RiskModel) -> None:
        """Add the model's pending rows to the store's outcome log (kept on failure).

        Raises:
            StoreError: the write failed (the rows are kept for the next).
        """
        if self.log is not None and model.pending:
            self.log.add_outcomes(ns, list(model.pending), ROWS)
            model.pending.clear()

    def _load(self, ns: str, pol: ErrorBudget, counts: Mapping[str, float]) -> None:
        """Set ``pol``'s learnt counts to the store's ``counts`` plus this process's
        changes not yet added to them."""
        pending = self._pending.get(ns, {})

        def total(name: str) -> float:
            return float(counts.get(name, 0.0)) + pending.get(name, 0.0)

        old = pol.table
        rows = range(len(old.n))
        cols = range(len(old.n[0]))
        pol.table = RiskTable.from_json(
            {
                "floor": old.floor,
                "width": old.width,
                "n": [[total(cell("n", old, e, b)) for b in cols] for e in rows],
                "wrong": [[total(cell("w", old, e, b)) for b in cols] for e in rows],
            }
        )
        pol.predicted = total("predicted")
        pol.measured = total("measured")
        pol.gets = round(total("gets"))
        pol.spent = total("spent")
        pol.spent_gets = round(total("spent_gets"))
        pol.weight_loss = [total(weight_counter(k)) for k in ENTRY_PRIORS]
        pol.bands = ModelBands.from_counts(total)
        if pol.model is not None:
            pol.model.outcomes = round(total("outcomes"))

    def _add(self, ns: str, name: str, delta: float) -> None:
        if delta:
            pending = self._pending.setdefault(ns, {})
            pending[name] = pending.get(name, 0.0) + delta

    def _tick(self, ns: str, observations: int) -> None:
        unsynced = self._unsynced[ns] = self._unsynced.get(ns, 0) + observations
        if (
            unsynced >= SYNC_OBSERVATIONS
            or self.clock() - self._synced_at.get(ns, 0.0) >= SYNC_SECONDS
        ):
            self.sync(ns)

    def sync(self, ns: str) -> None:
        """Add this process's count changes to the store's counters and read them back
        (the other processes' observations). A store error keeps the changes for the
        next sync (logged)."""
        self._synced_at[ns] = self.clock()
        self._unsynced[ns] = 0
        state = self.state
        if state is None:
            self._pending.pop(ns, None)
            return
        pending = self._pending.pop(ns, None)
        pol = self._policies.get(ns)
        try:
            if pending:
                state.add_counts(ns, pending)
                pending = None
            if pol is not None and pol.model is not None:
                self._add_outcomes(ns, pol.model)
            counts = state.read_counts(ns)
        except StoreError:
            if pending:
                for name, delta in pending.items():
                    self._add(ns, name, delta)
            logger.warning("semcache: could not sync the error budget's counts; kept")
            return
        if pol is not None:
            self._load(ns, pol, counts)

    def flush(self) -> None:
        """Add every namespace's pending changes to the store (close, checkpoint)."""
        state = self.state
        for ns in list(self._pending):
            pending = self._pending.pop(ns)
            if state is not None and pending:
                try:
                    state.add_counts(ns, pending)
                except StoreError:
                    self._pending[ns] = pending
                    raise
        for ns, pol in self._policies.items():
            if pol.model is not None:
                self._add_outcomes(ns, pol.model)

    def forget(self, ns: str | None) -> None:
        """A namespace (None: every one) was cleared: its counters are gone from the
        store, so its policy starts again."""
        for name in [ns] if ns is not None else list(self._policies):
            self._policies.pop(name, None)
            self._pending.pop(name, None)
        if ns is None:
            self._pending.clear()
            self._local.clear()

    def forked(self) -> None:
        """In a forked child: the count changes not yet added are the parent's to add
        (the child would add them twice); the child starts again from the store's."""
        self._pending.clear()
        self._policies.clear()

    def same_in(self, ns: str) -> SameAnswer:
        """``same_answer`` for the stored texts of namespace ``ns``: on the answers
        read from them where a view is registered for its prefix (:attr:`views`)."""
        view, same = _view(self.views, ns), self.same
        return same if view is None else lambda a, b: same(view(a), view(b))

    def answer_text(self, ns: str, text: str) -> str:
        """The answer in a stored (or fresh) text of namespace ``ns``: the registered
        view's (:attr:`views`), else the text: what ``answer_similarity`` embeds."""
        view = _view(self.views, ns)
        return text if view is None else view(text)

    def answers_of(
        self, entries: Sequence[StoredEntry], dim: int | None
    ) -> tuple[dict[int, EntryRecord], dict[int, Vector], list[StoredEntry]]:
        """The candidates' answer vectors (decoded here, or the copy decoded from the
        same record text before), the records read to decode them, and the entries
        whose record has no vector (or an unreadable one) to embed."""
        records: dict[int, EntryRecord] = {}
        answers: dict[int, Vector] = {}
        missing: list[StoredEntry] = []
        decoded = self._decoded
        local = self.state is None
        for entry in entries:
            text = self._local.get(entry.id) if local else entry.record
            kept = decoded.get(entry.id)
            if kept is not None and text is not None and kept[0] == text:
                answers[entry.id] = kept[1]
                continue
            record = records[entry.id] = self.record(entry)
            vector = None if record.answer is None else decode_answer(record.answer, dim)
            if vector is None or text is None:
                missing.append(entry)
                continue
            answers[entry.id] = vector
            if len(decoded) >= _DECODED_ANSWERS:
                del decoded[next(iter(decoded))]
            decoded[entry.id] = (text, vector)
        return records, answers, missing

    def _same_by_vectors(
        self, ns: str, entries: Sequence[StoredEntry], answers: Mapping[int, Vector]
    ) -> Callable[[int, int], bool]:
        """``same(id_a, id_b)`` over the candidates ``entries`` by entry id: cosine of
        the answer vectors >= ``similar`` (one Gram matrix for all pairs); a pair
        without both vectors by ``same_answer`` on the texts."""
        assert self.similar is not None
        similar = self.similar
        by_id = {e.id: e for e in entries}
        ids = [e.id for e in entries if e.id in answers]
        row = {i: r for r, i in enumerate(ids)}
        agree: list[list[bool]] = []
        if ids:
            matrix = np.array([answers[i] for i in ids])  # (np.stack: 8 us more)
            agree = (matrix @ matrix.T >= similar).tolist()
        text_same = self.same_in(ns)

        def same(a: int, b: int) -> bool:
            ra, rb = row.get(a), row.get(b)
            if ra is not None and rb is not None:
                return agree[ra][rb]
            return bool(text_same(by_id[a].response, by_id[b].response))

        return same

    # -- a get ------------------------------------------------------------------------------
    def exact(self, ns: str) -> None:
        """An exact hit: a get the budget counts, that cannot be wrong by its count."""
        pol = self.policy(ns)
        pol.decide(None)
        self._add(ns, "gets", 1.0)
        self._add(ns, "spent_gets", 1.0)
        self._tick(ns, 0)

    def empty(self, ns: str) -> None:
        """A get with nothing to search (an empty namespace): counted as a get of risk
        0, as one whose candidates are all below the floor is (:meth:`judge`)."""
        self.exact(ns)

    def judge(
        self,
        ns: str,
        found: Sequence[tuple[StoredEntry, float]],
        serve: Callable[[StoredEntry, float], Hit | None],
        records: dict[int, EntryRecord] | None = None,
        answers: dict[int, Vector] | None = None,
        query: str | None = None,
        keys: Sequence[bytes] | None = None,
        vector: Vector | None = None,
    ) -> Judgement:
        """Decide a get from its candidates ``found`` (nearest first, at or above the
        floor): the vote picks the answer, ``serve(entry, similarity)`` (the guards,
        ``confidence_fn``, validator) the candidate to serve, the agreement of the
        others and the candidate's record the risk (the risk model's, from the
        candidates' features and ``query``, once it decides). ``records`` and
        ``answers``: the candidates' (:meth:`answers_of`), with ``answer_similarity``;
        ``keys``: their answers' keys (:func:`~semcache._agreement.answer_digest`), in
        ``found``'s order, where the get read them (else made when needed);
        ``vector``: the get's unit query vector, for the answer model's reading (where
        there is a model: :attr:`models`; its fit starts here when due, at each get with a
        candidate to serve)."""
        pol = self.policy(ns)
        order = list(found)
        same: Callable[[Any, Any], bool]
        if answers is not None:  # the candidates' answers are their entry ids
            same = self._same_by_vectors(ns, [e for e, _ in order], answers)
            candidates = [Candidate(s, e.id) for e, s in order]
        else:
            same = self.same_in(ns)
            candidates = [Candidate(s, e.response) for e, s in order]
        if len(order) > 1:
            top = voted(candidates, k=BUDGET_K, same=same)
            order = [order[top], *order[:top], *order[top + 1 :]]
        hit = None
        for j, (entry, sim) in enumerate(order):
            hit = serve(entry, sim)
            if hit is not None:
                order = [order[j], *order[:j], *order[j + 1 :]]
                break
        predicted, spent = pol.predicted, pol.spent
        if hit is None:
            decision = pol.decide(None)
            judged = Judgement(ns, decision, None, order, records or {}, answers=answers)
        else:
            ev = agreement(
                [Candidate(s, e.id if answers is not None else e.response) for e, s in order],
                k=BUDGET_K,
                same=same,
                budget_us=_NO_TIME_LIMIT_US,
            )
            # only the served candidate's record is read now (12 us a record); the
            # others' are read by learn(), after an LLM call (with answer vectors,
            # those read to decode a vector are passed in)
            served = order[0][0]
            if records is None or served.id not in records:
                records = {**(records or {}), served.id: self.record(served)}
            fitted = None
            if self.models is not None and vector is not None and pol.model is not None:
                fitted = self.models.model(ns)
            x = None
            if query is not None and pol.modelled:
                ids = [e.id for e, _ in found]
                known = None if keys is None else dict(zip(ids, keys, strict=True))
                x = self._features(pol, query, order, ev, records[served.id], known, fitted, vector)
            decision = pol.decide(ev, records[served.id], x)
            judged = Judgement(
                ns, decision, ev, order, records, hit, answers, query, x, fitted, vector
            )
        self._add(ns, "gets", 1.0)
        self._add(ns, "spent_gets", 1.0)
        self._add(ns, "predicted", pol.predicted - predicted)
        self._add(ns, "spent", pol.spent - spent)
        self._tick(ns, 0)
        return judged

    def _features(
        self,
        pol: ErrorBudget,
        query: str,
        order: Sequence[tuple[StoredEntry, float]],
        ev: Agreement,
        record: EntryRecord | None,
        keys: Mapping[int, bytes] | None = None,
        model: Fitted | None = None,
        vector: Vector | None = None,
    ) -> list[float]:
        """The risk model's features of the candidate ``order[0]`` (the one judged, the
        others after it as read): :func:`~semcache._risk_model.features`; ``keys``:
        the answers' keys by entry id, where known; ``model``: the answer model whose
        reading of the unit query ``vector`` gives the candidate's answer's
        probability (None: none, the features' 0)."""
        entries = [e for e, _ in order]
        known = keys or {}
        answer_keys = [known.get(e.id) or answer_digest(e.response) for e in entries]
        p = None
        if model is not None and vector is not None:
            p = model.probability(vector, answer_keys[0])
        table, moved = pol.table_risks(ev, record)
        memo = self._prompt_words
        texts = []
        for e in entries:
            found = memo.get(e.query)
            if found is None:
                found = memo[e.query] = frozenset(words(e.query))
                if len(memo) > _PROMPT_WORDS:
                    del memo[next(iter(memo))]
            texts.append(found)
        return features(
            query,
            [e.query for e in entries],
            answer_keys,
            [s for _, s in order],
            0,
            ev,
            record,
            table,
            moved,
            floor=pol.floor,
            prompt_words=texts,
            answer_p=p,
        )

    # -- records ---------------------------------------------------------------------------
    def record(self, entry: StoredEntry) -> EntryRecord:
        """The entry's ``EntryRecord`` (empty when it has none or it is unreadable)."""
        return self._parsed(entry.record if self.state is not None else self._local.get(entry.id))

    @staticmethod
    def _parsed(text: str | None) -> EntryRecord:
        if text:
            try:
                return EntryRecord.from_json(json.loads(text))
            except (ValueError, TypeError):
                logger.warning("semcache: an entry's budget record is malformed; ignored")
        return EntryRecord()

    @staticmethod
    def text(record: EntryRecord) -> str:
        """A record as the text a store keeps (compact JSON)."""
        return json.dumps(record.to_json(), separators=(",", ":"))

    def write(self, records: Mapping[int, EntryRecord], entries: Sequence[StoredEntry]) -> None:
        """Store the records (by entry id) with their entries."""
        texts = {i: self.text(r) for i, r in records.items()}
        if self.state is None:
            self.keep_local(texts)
            return
        self.state.write_records(texts)
        for entry in entries:  # the copies this process keeps (the hot map's)
            if entry.id in texts:
                entry.record = texts[entry.id]

    def update(
        self,
        changes: Mapping[int, Callable[[EntryRecord], object]],
        entries: Sequence[StoredEntry],
        records: dict[int, EntryRecord] | None = None,
    ) -> None:
        """Apply ``changes`` (by entry id: a function that changes a record in place) to
        the records of ``entries`` as they are stored now, and write them.

        Another process or thread may have written one since the get read it, often
        during the LLM call that taught this one, and a record written from the get's
        copy would drop what it added. So the changes apply to the records as stored:
        in the store's own atomic step where it has one (``update_records``, the
        :class:`~semcache._store.RecordUpdate` capability: SQLite, PostgreSQL, Redis,
        memory), else read again (one ``get_by_ids``; without the ``QualityState``
        capability, this process's copies) and then written, where a write that falls
        between the two can still be lost. An entry gone or replaced since the get read
        it (another answer at its id, or another put's) is left alone: what was
        observed was about the answer the get read. ``records`` (by id) is given what
        was written.

        Raises:
            StoreError: the read or the write failed (nothing is written).
        """
        read = {e.id: e for e in entries if e.id in changes}
        written: dict[int, EntryRecord] = {}
        made: dict[int, str] = {}

        def change(i: int, response: str, created_at: float, text: str | None) -> str | None:
            e = read.get(i)
            if e is None or (response, created_at) != (e.response, e.created_at):
                return None  # (gone or replaced since the get read it)
            record = written[i] = self._parsed(text)
            changes[i](record)
            new = made[i] = self.text(record)
            return new

        state = self.state
        updater = None if state is None else record_update(self._store)
        if updater is not None:
            updater.update_records(list(read), change)
        elif state is not None:  # read again, then written
            for i, e in self._store.get_by_ids(list(read)).items():
                change(i, e.response, e.created_at, e.record)
            state.write_records(made)
        else:  # this process's copies
            for i, e in read.items():
                change(i, e.response, e.created_at, self._local.get(i))
            self.keep_local(made)
        if state is not None:
            for entry in entries:  # the copies this process keeps (the hot map's)
                if entry.id in made:
                    entry.record = made[entry.id]
        if records is not None:
            records.update(written)

    def keep_local(self, texts: Mapping[int, str]) -> None:
        """Keep record texts (by entry id) in this process: what a store without the
        ``QualityState`` capability has instead (a put's records, :meth:`write`'s)."""
        local = self._local
        for i, text in texts.items():
            local[i] = text
            local.move_to_end(i)
        while len(local) > _LOCAL_RECORDS:
            local.popitem(last=False)

    # -- after an LLM call -------------------------------------------------------------------
    def learn(self, judged: Judgement, fresh: str | None, vector: Vector | None = None) -> None:
        """Observe what the LLM's ``fresh`` answer says of the candidates ``judged``
        read: the one it would have served teaches the policy (a verification also
        measures the budget's own accuracy), every one teaches its record; the
        changed records are written. A ``same_answer`` or store that fails leaves what
        is stored as it was (logged). ``fresh`` None: the call brought back nothing to
        compare (an integration's upstream error or cut answer): a verification is
        counted, nothing is learnt. ``vector``: with ``answer_similarity``, the fresh
        answer's embedding, compared with each candidate's answer vector (a candidate
        without one, or no ``vector``: compared by ``same_answer``)."""
        if judged.decision.action == "verify":
            self.counters["verifications"] += 1
        if fresh is None or not judged.candidates or judged.evidence is None:
            return
        ns = judged.namespace
        pol = self.policy(ns)
        try:
            same = self.same_in(ns)
            answers = judged.answers or {}
            similar = self.similar
            verdicts = []
            for cand, _ in judged.candidates:
                theirs = answers.get(cand.id)
                if theirs is None or vector is None or similar is None:
                    verdicts.append(bool(same(cand.response, fresh)))
                else:
                    verdicts.append(float(np.dot(theirs, vector)) >= similar)
        except Exception:
            self.counters["learn_errors"] += 1
            logger.exception("semcache: same_answer raised; nothing learnt from this call")
            return
        first, _ = judged.candidates[0]
        records = judged.records
        ev = judged.evidence
        table = pol.table
        e, b = ev.evidence, table.bin(ev.similarity)
        n0, w0, m0 = table.n[e][b], table.wrong[e][b], pol.measured
        # the record's weight is scored on the record as the get read it, before
        # the table learns this outcome (what observe() does with a record)
        x = judged.features
        if (
            x is None
            and pol.model is not None
            and judged.query is not None
            and ev.similarity >= pol.floor
        ):
            x = self._features(
                pol,
                judged.query,
                judged.candidates,
                ev,
                records.get(first.id),
                None,
                judged.model,
                judged.vector,
            )
        losses = pol.weight_losses(ev, records.get(first.id), verdicts[0])
        pol.observe(ev, None, verdicts[0], judged.decision, x)  # (its record: below)
        pol.learn_weight(losses)
        if x is not None and pol.model is not None:
            if self.log is None:
                pol.model.pending.clear()  # (nowhere to write them)
            self._add(ns, "outcomes", 1.0)
            if pol.model.due():
                self._refit(ns, pol)
        table = pol.table
        self._add(ns, cell("n", table, e, b), table.n[e][b] - n0)
        self._add(ns, cell("w", table, e, b), table.wrong[e][b] - w0)
        self._add(ns, "measured", pol.measured - m0)
        for name, delta in pol.bands.drain().items():
            self._add(ns, name, delta)
        if losses is not None:
            for k, loss in zip(ENTRY_PRIORS, losses, strict=True):
                self._add(ns, weight_counter(k), loss)
        observed = 1 if ev.similarity >= pol.floor else 0
        self.counters["observations"] += observed
        seen = [(entry, sim) for entry, sim in judged.candidates]
        seen[0] = (first, ev.similarity)
        changes = {
            entry.id: _adding(sim, correct)
            for j, ((entry, sim), correct) in enumerate(zip(seen, verdicts, strict=True))
            if j or observed
        }
        try:
            self.update(changes, [e for e, _ in judged.candidates], records)
        except StoreError:
            self.counters["learn_errors"] += 1
            logger.exception("semcache: could not write the budget's records")
        self._tick(ns, observed)

    def feedback(self, entry: StoredEntry, similarity: float, correct: bool) -> None:
        """An application's report on a hit of ``entry`` served at ``similarity``."""
        record = self.record(entry)
        if self.budget is None:  # no policy: what ErrorBudget.feedback does
            record.add(similarity, correct)
        else:
            self.policy(entry.namespace).feedback(record, similarity, correct)
        self.counters["feedback"] += 1
        self.write({entry.id: record}, [entry])


def _view(views: Mapping[str, Callable[[str], str]], ns: str) -> Callable[[str], str] | None:
    """The view registered for the prefix of namespace ``ns`` (None: none)."""
    return next((view for prefix, view in views.items() if ns.startswith(prefix)), None)


def summary(budgets: Budgets) -> dict[str, Any]:
    """``stats()["budget"]``: this process's counters, and ``modelled``: the namespaces
    it has read whose risk model decides now (sorted)."""
    modelled = sorted(ns for ns, pol in budgets._policies.items() if pol.modelled)
    return {**budgets.counters, "modelled": modelled}
