/*
 * semcache fused top-k kernel: inner product of one or more float32 queries against a
 * row-major float16 or float32 matrix, skipping tombstoned rows, keeping the k best.
 *
 * - Scores accumulate in float32.
 * - Ties are broken by the lower row index, so results are deterministic and equal to
 *   those of the NumPy twin (semcache/_index/_kernel_py.py).
 * - The SIMD inner loops (AVX2 + FMA + F16C) are compiled with per-function target
 *   attributes and chosen at run time with __builtin_cpu_supports, so the shipped build
 *   needs no -march flag; every other CPU (and every other compiler) gets the portable
 *   loops.
 * - Large scans are split across threads with plain pthreads created per call (no
 *   OpenMP runtime to ship, nothing to break after fork()); small scans run on the
 *   calling thread. Nothing here touches Python objects: callers release the GIL.
 */
#ifndef SEMCACHE_KERNEL_IMPL_H
#define SEMCACHE_KERNEL_IMPL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if !defined(_WIN32)
#include <pthread.h>
#define SC_HAVE_PTHREAD 1
#else
#define SC_HAVE_PTHREAD 0
#endif

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(SC_FORCE_PORTABLE)
#include <immintrin.h>
#define SC_X86 1
#else
#define SC_X86 0
#endif

/* Rows scored per block before their scores enter the heaps. */
#define SC_BLOCK 256
#define SC_MAX_THREADS 64

/* ---------------------------------------------------------------- run-time settings */
static int sc_simd_enabled = 1;          /* 0 forces the portable loops */
static int sc_max_threads = 1;           /* set from Python at import */
static int64_t sc_parallel_min_bytes = 2 << 20; /* scan size per extra thread */
static int64_t sc_stream_min_bytes = 16 << 20;  /* larger scans use the streaming loops */

/* ------------------------------------------------------------------ float16 helpers */
static inline float sc_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t expo = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t bits;
    if (expo == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                e++;
                mant <<= 1;
            } while ((mant & 0x400u) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
        }
    } else if (expo == 0x1f) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((expo + 112u) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* ------------------------------------------------------------ portable dot products */
static void sc_dots_f32_portable(const float *rows, int64_t nrows, int64_t d, const float *q,
                                 float *out) {
    for (int64_t r = 0; r < nrows; r++) {
        const float *a = rows + r * d;
        float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
        int64_t j = 0;
        for (; j + 4 <= d; j += 4) {
            s0 += a[j] * q[j];
            s1 += a[j + 1] * q[j + 1];
            s2 += a[j + 2] * q[j + 2];
            s3 += a[j + 3] * q[j + 3];
        }
        for (; j < d; j++) s0 += a[j] * q[j];
        out[r] = (s0 + s1) + (s2 + s3);
    }
}

static void sc_dots_f16_portable(const uint16_t *rows, int64_t nrows, int64_t d, const float *q,
                                 float *out) {
    for (int64_t r = 0; r < nrows; r++) {
        const uint16_t *a = rows + r * d;
        float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
        int64_t j = 0;
        for (; j + 4 <= d; j += 4) {
            s0 += sc_half_to_float(a[j]) * q[j];
            s1 += sc_half_to_float(a[j + 1]) * q[j + 1];
            s2 += sc_half_to_float(a[j + 2]) * q[j + 2];
            s3 += sc_half_to_float(a[j + 3]) * q[j + 3];
        }
        for (; j < d; j++) s0 += sc_half_to_float(a[j]) * q[j];
        out[r] = (s0 + s1) + (s2 + s3);
    }
}

/* ------------------------------------------------------------------ AVX2 dot products */
#if SC_X86
#define SC_AVX2 __attribute__((target("avx2,fma,f16c")))

SC_AVX2 static inline float sc_hsum256(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v);
    __m128 hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    __m128 sh = _mm_movehdup_ps(lo);
    __m128 s = _mm_add_ps(lo, sh);
    sh = _mm_movehl_ps(sh, s);
    s = _mm_add_ss(s, sh);
    return _mm_cvtss_f32(s);
}

/* The loads differ between the two element types; everything else is shared. */
#ifndef SC_PF_HINT
#define SC_PF_HINT _MM_HINT_T0
#endif
#ifndef SC_PF_ROWS
#define SC_PF_ROWS 4
#endif
#define SC_LOAD_F32(p) _mm256_loadu_ps(p)
#define SC_LOAD_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define SC_TAIL_F32(x) (x)
#define SC_TAIL_F16(x) _cvtsh_ss(x)

/* Four rows at a time share each query load; two accumulators per row hide FMA latency. */
#define SC_DEFINE_AVX2_DOTS(NAME, T, LOAD, TAIL, PF_EVERY)                                  \
    SC_AVX2 static void NAME(const T *rows, int64_t nrows, int64_t d, const float *q,       \
                             float *out) {                                                  \
        int64_t r = 0;                                                                      \
        for (; r + 4 <= nrows; r += 4) {                                                    \
            const T *a0 = rows + r * d, *a1 = a0 + d, *a2 = a1 + d, *a3 = a2 + d;           \
            __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();                      \
            __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();                      \
            __m256 t0 = _mm256_setzero_ps(), t1 = _mm256_setzero_ps();                      \
            __m256 t2 = _mm256_setzero_ps(), t3 = _mm256_setzero_ps();                      \
            int64_t j = 0;                                                                  \
            for (; j + 16 <= d; j += 16) {                                                  \
                __m256 qa = _mm256_loadu_ps(q + j), qb = _mm256_loadu_ps(q + j + 8);        \
                if (r + SC_PF_ROWS < nrows && (j & (PF_EVERY - 1)) == 0) {                  \
                    _mm_prefetch((const char *)(a0 + j + SC_PF_ROWS * d), SC_PF_HINT);     \
                    _mm_prefetch((const char *)(a1 + j + SC_PF_ROWS * d), SC_PF_HINT);     \
                    _mm_prefetch((const char *)(a2 + j + SC_PF_ROWS * d), SC_PF_HINT);     \
                    _mm_prefetch((const char *)(a3 + j + SC_PF_ROWS * d), SC_PF_HINT);     \
                }                                                                           \
                s0 = _mm256_fmadd_ps(LOAD(a0 + j), qa, s0);                                 \
                s1 = _mm256_fmadd_ps(LOAD(a1 + j), qa, s1);                                 \
                s2 = _mm256_fmadd_ps(LOAD(a2 + j), qa, s2);                                 \
                s3 = _mm256_fmadd_ps(LOAD(a3 + j), qa, s3);                                 \
                t0 = _mm256_fmadd_ps(LOAD(a0 + j + 8), qb, t0);                             \
                t1 = _mm256_fmadd_ps(LOAD(a1 + j + 8), qb, t1);                             \
                t2 = _mm256_fmadd_ps(LOAD(a2 + j + 8), qb, t2);                             \
                t3 = _mm256_fmadd_ps(LOAD(a3 + j + 8), qb, t3);                             \
            }                                                                               \
            for (; j + 8 <= d; j += 8) {                                                    \
                __m256 qa = _mm256_loadu_ps(q + j);                                         \
                s0 = _mm256_fmadd_ps(LOAD(a0 + j), qa, s0);                                 \
                s1 = _mm256_fmadd_ps(LOAD(a1 + j), qa, s1);                                 \
                s2 = _mm256_fmadd_ps(LOAD(a2 + j), qa, s2);                                 \
                s3 = _mm256_fmadd_ps(LOAD(a3 + j), qa, s3);                                 \
            }                                                                               \
            float f0 = sc_hsum256(_mm256_add_ps(s0, t0));                                   \
            float f1 = sc_hsum256(_mm256_add_ps(s1, t1));                                   \
            float f2 = sc_hsum256(_mm256_add_ps(s2, t2));                                   \
            float f3 = sc_hsum256(_mm256_add_ps(s3, t3));                                   \
            for (; j < d; j++) {                                                            \
                f0 += TAIL(a0[j]) * q[j];                                                   \
                f1 += TAIL(a1[j]) * q[j];                                                   \
                f2 += TAIL(a2[j]) * q[j];                                                   \
                f3 += TAIL(a3[j]) * q[j];                                                   \
            }                                                                               \
            out[r] = f0;                                                                    \
            out[r + 1] = f1;                                                                \
            out[r + 2] = f2;                                                                \
            out[r + 3] = f3;                                                                \
        }                                                                                   \
        for (; r < nrows; r++) {                                                            \
            const T *a0 = rows + r * d;                                                     \
            __m256 s0 = _mm256_setzero_ps();                                                \
            int64_t j = 0;                                                                  \
            for (; j + 8 <= d; j += 8) s0 = _mm256_fmadd_ps(LOAD(a0 + j), _mm256_loadu_ps(q + j), s0); \
            float f0 = sc_hsum256(s0);                                                      \
            for (; j < d; j++) f0 += TAIL(a0[j]) * q[j];                                    \
            out[r] = f0;                                                                    \
        }                                                                                   \
    }

/* One row at a time: a single sequential stream for the hardware prefetcher, four
 * accumulators over the row, and a software prefetch SC_PF_BYTES ahead. */
#ifndef SC_PF_BYTES
#define SC_PF_BYTES 1024
#endif
#define SC_DEFINE_AVX2_DOTS1(NAME, T, LOAD, TAIL)                                           \
    SC_AVX2 static void NAME(const T *rows, int64_t nrows, int64_t d, const float *q,       \
                             float *out) {                                                  \
        const char *end = (const char *)(rows + nrows * d);                                 \
        for (int64_t r = 0; r < nrows; r++) {                                               \
            const T *a = rows + r * d;                                                      \
            __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();                      \
            __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();                      \
            int64_t j = 0;                                                                  \
            for (; j + 32 <= d; j += 32) {                                                  \
                const char *pf = (const char *)(a + j) + SC_PF_BYTES;                       \
                if (pf < end) _mm_prefetch(pf, SC_PF_HINT);                                 \
                if (sizeof(T) == 4 && pf + 64 < end) _mm_prefetch(pf + 64, SC_PF_HINT);     \
                s0 = _mm256_fmadd_ps(LOAD(a + j), _mm256_loadu_ps(q + j), s0);              \
                s1 = _mm256_fmadd_ps(LOAD(a + j + 8), _mm256_loadu_ps(q + j + 8), s1);      \
                s2 = _mm256_fmadd_ps(LOAD(a + j + 16), _mm256_loadu_ps(q + j + 16), s2);    \
                s3 = _mm256_fmadd_ps(LOAD(a + j + 24), _mm256_loadu_ps(q + j + 24), s3);    \
            }                                                                               \
            for (; j + 8 <= d; j += 8)                                                      \
                s0 = _mm256_fmadd_ps(LOAD(a + j), _mm256_loadu_ps(q + j), s0);              \
            float f = sc_hsum256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3))); \
            for (; j < d; j++) f += TAIL(a[j]) * q[j];                                      \
            out[r] = f;                                                                     \
        }                                                                                   \
    }

/* Cache-resident scans are compute-bound: the four-row loops win. Scans streamed from
 * DRAM are latency-bound: the one-row loops (a single sequential stream) win. */
SC_DEFINE_AVX2_DOTS(sc_dots_f32_avx2, float, SC_LOAD_F32, SC_TAIL_F32, 16)
SC_DEFINE_AVX2_DOTS(sc_dots_f16_avx2, uint16_t, SC_LOAD_F16, SC_TAIL_F16, 32)
SC_DEFINE_AVX2_DOTS1(sc_dots_f32_avx2_stream, float, SC_LOAD_F32, SC_TAIL_F32)
SC_DEFINE_AVX2_DOTS1(sc_dots_f16_avx2_stream, uint16_t, SC_LOAD_F16, SC_TAIL_F16)

/* Reads every byte once (bandwidth reference for the benchmarks). */
SC_AVX2 static uint64_t sc_stream_avx2(const uint8_t *p, int64_t nbytes) {
    __m256i a0 = _mm256_setzero_si256(), a1 = _mm256_setzero_si256();
    __m256i a2 = _mm256_setzero_si256(), a3 = _mm256_setzero_si256();
    int64_t i = 0;
    for (; i + 128 <= nbytes; i += 128) {
        a0 = _mm256_xor_si256(a0, _mm256_loadu_si256((const __m256i *)(p + i)));
        a1 = _mm256_xor_si256(a1, _mm256_loadu_si256((const __m256i *)(p + i + 32)));
        a2 = _mm256_xor_si256(a2, _mm256_loadu_si256((const __m256i *)(p + i + 64)));
        a3 = _mm256_xor_si256(a3, _mm256_loadu_si256((const __m256i *)(p + i + 96)));
    }
    a0 = _mm256_xor_si256(_mm256_xor_si256(a0, a1), _mm256_xor_si256(a2, a3));
    uint64_t lanes[4];
    _mm256_storeu_si256((__m256i *)lanes, a0);
    uint64_t acc = lanes[0] ^ lanes[1] ^ lanes[2] ^ lanes[3];
    for (; i < nbytes; i++) acc ^= p[i];
    return acc;
}

static int sc_cpu_has_avx2(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                 __builtin_cpu_supports("f16c");
    }
    return cached;
}
#else
static int sc_cpu_has_avx2(void) { return 0; }
#endif

static uint64_t sc_stream_portable(const uint8_t *p, int64_t nbytes) {
    uint64_t acc = 0, w;
    int64_t i = 0;
    for (; i + 8 <= nbytes; i += 8) {
        memcpy(&w, p + i, 8);
        acc ^= w;
    }
    for (; i < nbytes; i++) acc ^= p[i];
    return acc;
}

static int sc_use_avx2(void) { return sc_simd_enabled && sc_cpu_has_avx2(); }

static const char *sc_simd_name(void) { return sc_use_avx2() ? "avx2+fma+f16c" : "portable"; }

typedef void (*sc_dots_fn)(const void *rows, int64_t nrows, int64_t d, const float *q,
                           float *out);

static sc_dots_fn sc_pick_dots(int is_f16, int64_t bytes) {
#if SC_X86
    if (sc_use_avx2()) {
        if (bytes >= sc_stream_min_bytes)
            return is_f16 ? (sc_dots_fn)sc_dots_f16_avx2_stream : (sc_dots_fn)sc_dots_f32_avx2_stream;
        return is_f16 ? (sc_dots_fn)sc_dots_f16_avx2 : (sc_dots_fn)sc_dots_f32_avx2;
    }
#else
    (void)bytes;
#endif
    return is_f16 ? (sc_dots_fn)sc_dots_f16_portable : (sc_dots_fn)sc_dots_f32_portable;
}

/* ------------------------------------------------------------------------- top-k heap */
/* A bounded min-heap whose root is the worst kept hit: lower score, then higher row. */
typedef struct {
    float *s;
    int64_t *r;
    int64_t cap;
    int64_t len;
} sc_heap;

static inline int sc_worse(float sa, int64_t ra, float sb, int64_t rb) {
    return sa < sb || (sa == sb && ra > rb);
}

static inline void sc_heap_sift_down(sc_heap *h, int64_t i) {
    int64_t n = h->len;
    float s = h->s[i];
    int64_t r = h->r[i];
    for (;;) {
        int64_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && sc_worse(h->s[c + 1], h->r[c + 1], h->s[c], h->r[c])) c++;
        if (!sc_worse(h->s[c], h->r[c], s, r)) break;
        h->s[i] = h->s[c];
        h->r[i] = h->r[c];
        i = c;
    }
    h->s[i] = s;
    h->r[i] = r;
}

static inline void sc_heap_push(sc_heap *h, float s, int64_t r) {
    if (h->len < h->cap) {
        int64_t i = h->len++;
        while (i > 0) {
            int64_t p = (i - 1) / 2;
            if (!sc_worse(s, r, h->s[p], h->r[p])) break;
            h->s[i] = h->s[p];
            h->r[i] = h->r[p];
            i = p;
        }
        h->s[i] = s;
        h->r[i] = r;
    } else if (sc_worse(h->s[0], h->r[0], s, r)) {
        h->s[0] = s;
        h->r[0] = r;
        sc_heap_sift_down(h, 0);
    }
}

/* ----------------------------------------------------------------------- scan workers */
typedef struct {
    const uint8_t *mat; /* row-major, itemsize bytes per element */
    int is_f16;
    int64_t d;
    const uint8_t *live; /* NULL: every row is live */
    const float *queries;
    int64_t nq;
    int64_t k;
    int64_t lo, hi; /* row range of this worker */
    float *heap_s;  /* nq * k */
    int64_t *heap_r;
    int64_t *heap_len; /* nq */
    sc_dots_fn dots;
} sc_job;

static void sc_run_job(sc_job *job) {
    float scores[SC_BLOCK];
    const int64_t d = job->d;
    const int64_t rowbytes = d * (job->is_f16 ? 2 : 4);
    for (int64_t qi = 0; qi < job->nq; qi++) job->heap_len[qi] = 0;
    for (int64_t b = job->lo; b < job->hi; b += SC_BLOCK) {
        int64_t nb = job->hi - b < SC_BLOCK ? job->hi - b : SC_BLOCK;
        const uint8_t *rows = job->mat + b * rowbytes;
        for (int64_t qi = 0; qi < job->nq; qi++) {
            sc_heap h = {job->heap_s + qi * job->k, job->heap_r + qi * job->k, job->k,
                         job->heap_len[qi]};
            job->dots(rows, nb, d, job->queries + qi * d, scores);
            if (job->live) {
                for (int64_t i = 0; i < nb; i++)
                    if (job->live[b + i]) sc_heap_push(&h, scores[i], b + i);
            } else {
                for (int64_t i = 0; i < nb; i++) sc_heap_push(&h, scores[i], b + i);
            }
            job->heap_len[qi] = h.len;
        }
    }
}

#if SC_HAVE_PTHREAD
static void *sc_thread_main(void *arg) {
    sc_run_job((sc_job *)arg);
    return NULL;
}
#endif

/* Sort hits best first: higher score, then lower row. */
static void sc_sort_hits(float *s, int64_t *r, int64_t n) {
    /* insertion sort for short lists, heap-based otherwise */
    if (n <= 32) {
        for (int64_t i = 1; i < n; i++) {
            float ks = s[i];
            int64_t kr = r[i];
            int64_t j = i - 1;
            while (j >= 0 && sc_worse(s[j], r[j], ks, kr)) {
                s[j + 1] = s[j];
                r[j + 1] = r[j];
                j--;
            }
            s[j + 1] = ks;
            r[j + 1] = kr;
        }
        return;
    }
    /* heap sort with the "worse" min-heap: pop worst to the end repeatedly */
    sc_heap h = {s, r, n, 0};
    for (int64_t i = 0; i < n; i++) {
        h.len = i + 1;
        /* sift up element i */
        int64_t c = i;
        float cs = s[c];
        int64_t cr = r[c];
        while (c > 0) {
            int64_t p = (c - 1) / 2;
            if (!sc_worse(cs, cr, s[p], r[p])) break;
            s[c] = s[p];
            r[c] = r[p];
            c = p;
        }
        s[c] = cs;
        r[c] = cr;
    }
    for (int64_t end = n - 1; end > 0; end--) {
        float ts = s[0];
        int64_t tr = r[0];
        s[0] = s[end];
        r[0] = r[end];
        s[end] = ts;
        r[end] = tr;
        h.len = end;
        sc_heap_sift_down(&h, 0);
    }
    /* now ascending by "worse" order from the end: index 0 holds the best */
}

/*
 * Top-k for nq queries. out_rows/out_scores: nq * k, best first; returns the number of
 * hits per query (min(k, live rows)), or -1 when memory runs out.
 */
static int64_t sc_topk(const void *mat, int is_f16, int64_t n, int64_t d, const uint8_t *live,
                       const float *queries, int64_t nq, int64_t k, int64_t *out_rows,
                       float *out_scores) {
    if (n <= 0 || k <= 0 || nq <= 0) return 0;
    if (k > n) k = n;
    int64_t bytes = n * d * (is_f16 ? 2 : 4);
    int64_t nt = 1;
    if (sc_max_threads > 1 && sc_parallel_min_bytes > 0) {
        nt = bytes / sc_parallel_min_bytes;
        if (nt > sc_max_threads) nt = sc_max_threads;
        if (nt > SC_MAX_THREADS) nt = SC_MAX_THREADS;
        if (nt < 1) nt = 1;
    }
#if !SC_HAVE_PTHREAD
    nt = 1;
#endif
    float *hs = (float *)malloc(sizeof(float) * (size_t)(nt * nq * k));
    int64_t *hr = (int64_t *)malloc(sizeof(int64_t) * (size_t)(nt * nq * k));
    int64_t *hl = (int64_t *)malloc(sizeof(int64_t) * (size_t)(nt * nq));
    sc_job jobs[SC_MAX_THREADS];
    if (!hs || !hr || !hl) {
        free(hs);
        free(hr);
        free(hl);
        return -1;
    }
    /* a batch re-reads each block from L2 once per query: the cache-resident loops fit */
    sc_dots_fn dots = sc_pick_dots(is_f16, nq > 1 ? 0 : bytes);
    /* split on SC_BLOCK boundaries so every worker scans whole blocks */
    int64_t blocks = (n + SC_BLOCK - 1) / SC_BLOCK;
    for (int64_t t = 0; t < nt; t++) {
        sc_job *j = &jobs[t];
        j->mat = (const uint8_t *)mat;
        j->is_f16 = is_f16;
        j->d = d;
        j->live = live;
        j->queries = queries;
        j->nq = nq;
        j->k = k;
        j->lo = (blocks * t / nt) * SC_BLOCK;
        j->hi = (blocks * (t + 1) / nt) * SC_BLOCK;
        if (j->hi > n) j->hi = n;
        j->heap_s = hs + t * nq * k;
        j->heap_r = hr + t * nq * k;
        j->heap_len = hl + t * nq;
        j->dots = dots;
    }
#if SC_HAVE_PTHREAD
    pthread_t tids[SC_MAX_THREADS];
    int started[SC_MAX_THREADS];
    for (int64_t t = 1; t < nt; t++)
        started[t] = pthread_create(&tids[t], NULL, sc_thread_main, &jobs[t]) == 0;
    sc_run_job(&jobs[0]);
    for (int64_t t = 1; t < nt; t++) {
        if (started[t])
            pthread_join(tids[t], NULL);
        else
            sc_run_job(&jobs[t]); /* could not start a thread: do its share here */
    }
#else
    sc_run_job(&jobs[0]);
#endif
    int64_t found = 0;
    for (int64_t qi = 0; qi < nq; qi++) {
        /* merge the per-thread heaps into the first one */
        sc_heap h = {hs + qi * k, hr + qi * k, k, hl[qi]};
        for (int64_t t = 1; t < nt; t++) {
            const float *ts = hs + (t * nq + qi) * k;
            const int64_t *tr = hr + (t * nq + qi) * k;
            int64_t tl = hl[t * nq + qi];
            for (int64_t i = 0; i < tl; i++) sc_heap_push(&h, ts[i], tr[i]);
        }
        sc_sort_hits(h.s, h.r, h.len);
        memcpy(out_scores + qi * k, h.s, sizeof(float) * (size_t)h.len);
        memcpy(out_rows + qi * k, h.r, sizeof(int64_t) * (size_t)h.len);
        found = h.len; /* the same for every query: min(k, live rows) */
    }
    free(hs);
    free(hr);
    free(hl);
    return found;
}

typedef struct {
    const uint8_t *p;
    int64_t nbytes;
    uint64_t acc;
} sc_stream_job;

static void sc_stream_run(sc_stream_job *j) {
#if SC_X86
    if (sc_use_avx2()) {
        j->acc = sc_stream_avx2(j->p, j->nbytes);
        return;
    }
#endif
    j->acc = sc_stream_portable(j->p, j->nbytes);
}

#if SC_HAVE_PTHREAD
static void *sc_stream_main(void *arg) {
    sc_stream_run((sc_stream_job *)arg);
    return NULL;
}
#endif

/* Read nbytes once with the same threading rule as sc_topk: the bandwidth floor. */
static uint64_t sc_stream(const void *p, int64_t nbytes) {
    int64_t nt = 1;
    if (sc_max_threads > 1 && sc_parallel_min_bytes > 0) {
        nt = nbytes / sc_parallel_min_bytes;
        if (nt > sc_max_threads) nt = sc_max_threads;
        if (nt > SC_MAX_THREADS) nt = SC_MAX_THREADS;
        if (nt < 1) nt = 1;
    }
#if !SC_HAVE_PTHREAD
    nt = 1;
#endif
    sc_stream_job jobs[SC_MAX_THREADS];
    int64_t chunk = (nbytes / nt) & ~(int64_t)127;
    for (int64_t t = 0; t < nt; t++) {
        jobs[t].p = (const uint8_t *)p + t * chunk;
        jobs[t].nbytes = t == nt - 1 ? nbytes - t * chunk : chunk;
        jobs[t].acc = 0;
    }
#if SC_HAVE_PTHREAD
    pthread_t tids[SC_MAX_THREADS];
    int started[SC_MAX_THREADS];
    for (int64_t t = 1; t < nt; t++)
        started[t] = pthread_create(&tids[t], NULL, sc_stream_main, &jobs[t]) == 0;
    sc_stream_run(&jobs[0]);
    for (int64_t t = 1; t < nt; t++) {
        if (started[t])
            pthread_join(tids[t], NULL);
        else
            sc_stream_run(&jobs[t]);
    }
#else
    sc_stream_run(&jobs[0]);
#endif
    uint64_t acc = 0;
    for (int64_t t = 0; t < nt; t++) acc ^= jobs[t].acc;
    return acc;
}

#endif /* SEMCACHE_KERNEL_IMPL_H */
