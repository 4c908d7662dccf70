# cython: boundscheck=False, wraparound=False, cdivision=True
"""Answer support's arithmetic in C: :func:`support_scores` and :func:`favoured_scores`,
the twins of the functions of the same names in ``semcache/_agreement.py``, which
document them and call these when the extension is built.

Bit for bit the twins' results: the same double operations in the same order (sums
left to right from 0.0, as the twins write them), ``exp`` and ``sqrt`` from the C
library as Python's ``math`` takes them, and no contraction into fused multiply-adds
(the extension is compiled with ``-ffp-contract=off``). ``tests/test_support_native.py``
checks them against each other on seeded draws.

The answer model's reading (:func:`softmax`, for ``semcache._answer_model.Fitted``) is
here too: one call where NumPy makes nine, each slow inside a get whose search has
left the CPU's caches cold.
"""

from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.math cimport exp, log, sqrt

import numpy as np

NAME = "native"


cdef double *_block(Py_ssize_t n, Py_ssize_t doubles) except NULL:
    """One allocation for ``doubles`` arrays of ``n`` doubles, then two of ``n``
    Py_ssize_t (a group label and a count per candidate); freed with PyMem_Free."""
    cdef double *block = <double *>PyMem_Malloc(
        n * (doubles * sizeof(double) + 2 * sizeof(Py_ssize_t)))
    if block == NULL:
        raise MemoryError()
    return block


cdef Py_ssize_t _labels(object keys, Py_ssize_t n, Py_ssize_t *label) except -1:
    """Each key's group, numbered by first appearance; returns the number of groups."""
    cdef dict seen = {}
    cdef Py_ssize_t i, groups = 0
    cdef object key, found
    for i in range(n):
        key = keys[i]
        found = seen.get(key)
        if found is None:
            seen[key] = groups
            label[i] = groups
            groups += 1
        else:
            label[i] = <Py_ssize_t>found
    return groups


def support_scores(similarities, keys, double floor, double weight):
    """See ``semcache._agreement.support_scores``.

    Raises:
        ValueError: ``similarities`` and ``keys`` differ in length.
    """
    cdef Py_ssize_t n = len(similarities)
    if n != len(keys):
        raise ValueError("one answer key per candidate")
    if n == 0:
        return []
    cdef double *block = _block(n, 2)
    cdef double *sim = block
    cdef double *excess = block + n
    cdef Py_ssize_t *label = <Py_ssize_t *>(block + 2 * n)
    cdef Py_ssize_t *count = label + n
    cdef Py_ssize_t i, g, groups
    cdef double s, x, own, net, repeated
    cdef list out
    try:
        for i in range(n):
            sim[i] = similarities[i]
        groups = _labels(keys, n, label)
        if groups == n:  # no answer repeats: each its own similarity
            return list(similarities)
        for g in range(groups):
            excess[g] = 0.0
            count[g] = 0
        for i in range(n):
            s = sim[i]
            g = label[i]
            excess[g] = excess[g] + (s - floor if s > floor else 0.0)
            count[g] += 1
        repeated = 0.0
        for g in range(groups):
            if count[g] > 1:
                repeated = repeated + excess[g]
        out = []
        for i in range(n):
            s = sim[i]
            g = label[i]
            own = excess[g]
            x = s - floor if s > floor else 0.0
            net = (own - x) - (repeated - (own if count[g] > 1 else 0.0))
            out.append(s if net == 0.0 else 1.0 - (1.0 - s) * exp(-weight * net))
        return out
    finally:
        PyMem_Free(block)


def favoured_scores(scores, similarities, keys, gram, double floor, double weight):
    """See ``semcache._agreement.favoured_scores``.

    Raises:
        ValueError: the sequences differ in length, or an answer repeats and ``gram``
            is None.
    """
    cdef Py_ssize_t n = len(scores)
    if not (n == len(similarities) == len(keys)):
        raise ValueError("one score, similarity and answer key per candidate")
    if n == 0:
        return []
    cdef double *block = _block(n, 5)
    cdef double *sim = block
    cdef double *proto = block + n
    cdef double *nearest = block + 2 * n
    cdef double *total = block + 3 * n
    cdef double *norm2 = block + 4 * n
    cdef Py_ssize_t *label = <Py_ssize_t *>(block + 5 * n)
    cdef Py_ssize_t *count = label + n
    cdef Py_ssize_t i, j, g, groups, best
    cdef double row, rival, lead, factor, score
    cdef object gram_row
    cdef list out
    try:
        groups = _labels(keys, n, label)
        if groups == n:
            return list(scores)
        if gram is None:
            raise ValueError("an answer repeats: its prototype needs the gram")
        for i in range(n):
            sim[i] = similarities[i]
        for g in range(groups):
            count[g] = 0
            total[g] = 0.0
            norm2[g] = 0.0
        for i in range(n):
            g = label[i]
            if count[g] == 0 or sim[i] > nearest[g]:
                nearest[g] = sim[i]
            count[g] += 1
            total[g] = total[g] + sim[i]
        # |sum of a group's vectors|^2: its rows of the gram summed, row by row
        for i in range(n):
            g = label[i]
            if count[g] < 2:
                continue
            gram_row = gram[i]
            row = 0.0
            for j in range(n):
                if label[j] == g:
                    row = row + <double>gram_row[j]
            norm2[g] = norm2[g] + row
        for g in range(groups):
            if count[g] < 2:
                proto[g] = nearest[g]
            elif norm2[g] > 0:
                proto[g] = total[g] / sqrt(norm2[g])
            else:
                proto[g] = nearest[g]
        best = 0
        for g in range(1, groups):
            if proto[g] > proto[best] or (proto[g] == proto[best] and nearest[g] > nearest[best]):
                best = g
        rival = floor
        for g in range(groups):
            if g != best and proto[g] > rival:
                rival = proto[g]
        lead = proto[best] - rival if count[best] > 1 else 0.0
        factor = exp(-weight * lead) if lead > 0 else 1.0
        out = []
        for i in range(n):
            if label[i] != best:
                out.append(-1.0)
            elif factor == 1.0:
                out.append(scores[i])
            else:
                score = scores[i]
                out.append(1.0 - (1.0 - score) * factor)
        return out
    finally:
        PyMem_Free(block)


def lexical(q, texts, own, Py_ssize_t served, weights):
    """See ``semcache._risk_model.lexical`` (the risk model's lexical features).

    Raises:
        ValueError: ``texts`` and ``own`` differ in length, or ``weights`` is not one
            per word.
    """
    cdef Py_ssize_t m = len(q)
    cdef Py_ssize_t n = len(texts)
    cdef Py_ssize_t i, j, count, inside
    cdef double total, s, share, near_same, near_other, missing, served_share
    cdef bint have_same = False
    cdef list words = list(q)
    cdef list rows = list(texts)
    cdef list mine
    cdef list ws
    cdef object t, w
    if n != len(own):
        raise ValueError("one own flag per prompt")
    if weights is None:
        ws = []
        for i in range(m):
            w = words[i]
            count = 0
            for j in range(n):
                if w in rows[j]:
                    count += 1
            ws.append(log(<double>(n + 2) / <double>(count + 2)) + 1.0)
    else:
        ws = [float(x) for x in weights]
        if len(ws) != m:
            raise ValueError("one weight per word")
    total = 0.0
    for i in range(m):
        total = total + <double>ws[i]
    if total == 0.0:
        total = 1.0
    near_same = 0.0
    near_other = 0.0
    served_share = 0.0
    mine = []
    for j in range(n):
        t = rows[j]
        s = 0.0
        for i in range(m):
            if words[i] in t:
                s = s + <double>ws[i]
        share = s / total
        if j == served:
            served_share = share
        if own[j]:
            mine.append(t)
            if not have_same or share > near_same:
                near_same = share
                have_same = True
        elif share > near_other:
            near_other = share
    missing = 0.0
    for i in range(m):
        w = words[i]
        for t in mine:
            if w in t:
                break
        else:
            missing = missing + <double>ws[i]
    t = rows[served]
    inside = 0
    for i in range(m):
        if words[i] in t:
            inside += 1
    count = m + len(t) - inside
    return (
        served_share,
        near_same,
        near_other,
        missing / total,
        inside / <double>(count if count > 1 else 1),
    )


def logit(x, list mean, list scale, list w, list cov):
    """See ``semcache._risk_model.logit`` (the risk model's logit and its variance).

    Raises:
        ValueError: ``x`` of another length than ``mean``.
    """
    cdef Py_ssize_t n = len(mean)
    cdef Py_ssize_t i, j
    cdef double z, var, s
    cdef list row
    if len(x) != n:
        raise ValueError("one feature per mean")
    cdef double *a = <double *>PyMem_Malloc((n + 1) * sizeof(double))
    if a == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            a[i] = (<double>x[i] - <double>mean[i]) / <double>scale[i]
        a[n] = 1.0
        z = 0.0
        for i in range(n + 1):
            z = z + a[i] * <double>w[i]
        var = 0.0
        for i in range(n + 1):
            row = cov[i]
            s = 0.0
            for j in range(n + 1):
                s = s + <double>row[j] * a[j]
            var = var + a[i] * s
        return z, var
    finally:
        PyMem_Free(a)


cdef enum:
    _LANES = 16


def softmax(const float[:, ::1] weights, const float[::1] bias, const float[::1] query,
            Py_ssize_t limit):
    """See ``semcache._answer_model.Fitted.read`` (the answer model's probabilities).

    ``weights``: float32 ``dim x classes``; ``bias``: float32 per class; ``query``:
    float32 of ``dim``. Each class's logit is summed in float32 over the dimensions in
    order, one rounding per product and per sum (``logit += w[d] * q[d]``), then the
    bias added; the softmax is taken in double (the largest logit subtracted, ``exp``
    from the C library, the sum left to right); ``tests/test_support_native.py`` checks it
    bit for bit against that arithmetic written in Python (NumPy's own, the fallback
    where the extension is not built, sums the product in another order).

    Returns ``(p, top)``: the probabilities (a float64 array) and the class of highest
    probability among the first ``limit`` (the first on ties).

    Raises:
        ValueError: shapes that do not agree, or ``limit`` not in 1 to the classes.
    """
    cdef Py_ssize_t dim = weights.shape[0]
    cdef Py_ssize_t k = weights.shape[1]
    if query.shape[0] != dim or bias.shape[0] != k:
        raise ValueError("weights must be dim x classes, with a bias per class and a query of dim")
    if limit < 1 or limit > k:
        raise ValueError(f"limit must be in 1 to {k}, got {limit}")
    p = np.empty(k, dtype=np.float64)
    cdef double[::1] out = p
    cdef float *acc = <float *>PyMem_Malloc(k * sizeof(float))
    if acc == NULL:
        raise MemoryError()
    cdef Py_ssize_t d, c, c0 = 0, top = 0
    cdef float qd
    cdef float lane[_LANES]
    cdef const float *row
    cdef double high, total, e
    try:
        with nogil:
            # sixteen classes at a time, their sums held in registers down the
            # dimensions (each sum still in order: the blocking changes no rounding)
            while c0 + _LANES <= k:
                for c in range(_LANES):
                    lane[c] = 0.0
                for d in range(dim):
                    qd = query[d]
                    row = &weights[d, c0]
                    for c in range(_LANES):
                        lane[c] = lane[c] + row[c] * qd
                for c in range(_LANES):
                    acc[c0 + c] = lane[c]
                c0 += _LANES
            for c in range(c0, k):
                acc[c] = 0.0
            for d in range(dim):
                qd = query[d]
                row = &weights[d, 0]
                for c in range(c0, k):
                    acc[c] = acc[c] + row[c] * qd
            for c in range(k):
                acc[c] = acc[c] + bias[c]
            high = acc[0]
            for c in range(1, k):
                if acc[c] > high:
                    high = acc[c]
            total = 0.0
            for c in range(k):
                e = exp(<double>acc[c] - high)
                out[c] = e
                total = total + e
            for c in range(k):
                out[c] = out[c] / total
            for c in range(1, limit):
                if out[c] > out[top]:
                    top = c
    finally:
        PyMem_Free(acc)
    return p, top


def largest(const float[::1] values, Py_ssize_t count):
    """The ``count`` largest of ``values`` (all where fewer), highest first, as Python
    floats: what ``sorted(values.tolist(), reverse=True)[:count]`` gives, by
    ``count`` passes of selection (the rival answers' prototypes: ``count`` is 9, the
    prototypes at most 512).

    Raises:
        ValueError: ``count`` below 0.
    """
    cdef Py_ssize_t n = values.shape[0]
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    if count > n:
        count = n
    cdef unsigned char *taken = <unsigned char *>PyMem_Malloc(n if n > 0 else 1)
    if taken == NULL:
        raise MemoryError()
    cdef Py_ssize_t i, j, best
    out = []
    try:
        for i in range(n):
            taken[i] = 0
        for j in range(count):
            best = -1
            for i in range(n):
                if not taken[i] and (best < 0 or values[i] > values[best]):
                    best = i
            taken[best] = 1
            out.append(<double>values[best])
    finally:
        PyMem_Free(taken)
    return out
