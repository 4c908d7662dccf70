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
 * - The int8 shadow scan (sc_topk_i8) ranks rows by an *upper bound* on their float32
 *   score computed from int8 codes; see the int8 section below for the exact float
 *   operations (the NumPy twin repeats them bit for bit).
 */
#ifndef SEMCACHE_KERNEL_IMPL_H
#define SEMCACHE_KERNEL_IMPL_H

#include <math.h>
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

/* SC_OPAQUE(v): an empty asm the value must pass through, so that the compiler cannot
 * fuse a multiply with a later add (fp-contract): the int8 bound's float operations
 * must round exactly as written, as in the NumPy twin. */
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#define SC_OPAQUE(v) __asm__("" : "+x"(v))
#elif (defined(__GNUC__) || defined(__clang__)) && defined(__aarch64__)
#define SC_OPAQUE(v) __asm__("" : "+w"(v))
#elif defined(__GNUC__) || defined(__clang__)
#define SC_OPAQUE(v) __asm__("" : "+m"(v))
#else
#define SC_OPAQUE(v) ((void)0)
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

static void sc_dots_f32_portable_idx(const float *rows, const int64_t *idx, int64_t nrows,
                                     int64_t d, const float *q, float *out) {
    for (int64_t r = 0; r < nrows; r++) sc_dots_f32_portable(rows + idx[r] * d, 1, d, q, out + r);
}

static void sc_dots_f16_portable_idx(const uint16_t *rows, const int64_t *idx, int64_t nrows,
                                     int64_t d, const float *q, float *out) {
    for (int64_t r = 0; r < nrows; r++) sc_dots_f16_portable(rows + idx[r] * d, 1, d, q, out + r);
}

static void sc_dots_i8_portable(const int8_t *rows, int64_t nrows, int64_t d, const int8_t *qc,
                                const uint8_t *qm, int32_t *out) {
    (void)qm;
    for (int64_t r = 0; r < nrows; r++) {
        const int8_t *a = rows + r * d;
        int32_t s = 0;
        for (int64_t j = 0; j < d; j++) s += (int32_t)a[j] * qc[j];
        out[r] = s;
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
/* The four-row loop, over contiguous rows (IDX NULL: row r at rows + r d, with a
 * software prefetch every PF_EVERY columns) or over rows picked by index (row r at
 * rows + IDX[r] d, no prefetch: rescoring candidates without a gather). Both use the
 * same accumulators in the same order, so a row scores alike either way. Inlined into
 * each entry point with IDX and PF_EVERY constant, so each compiles to its own loop. */
#define SC_DEFINE_AVX2_DOTS4(NAME, T, LOAD, TAIL)                                           \
    SC_AVX2 static inline __attribute__((always_inline)) void NAME(                         \
        const T *rows, const int64_t *idx, int64_t nrows, int64_t d, const float *q,        \
        float *out, int64_t pf_every) {                                                     \
        int64_t r = 0;                                                                      \
        for (; r + 4 <= nrows; r += 4) {                                                    \
            const T *a0, *a1, *a2, *a3;                                                     \
            if (idx) {                                                                      \
                a0 = rows + idx[r] * d, a1 = rows + idx[r + 1] * d;                         \
                a2 = rows + idx[r + 2] * d, a3 = rows + idx[r + 3] * d;                     \
            } else {                                                                        \
                a0 = rows + r * d, a1 = a0 + d, a2 = a1 + d, a3 = a2 + d;                   \
            }                                                                               \
            __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();                      \
            __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();                      \
            __m256 t0 = _mm256_setzero_ps(), t1 = _mm256_setzero_ps();                      \
            __m256 t2 = _mm256_setzero_ps(), t3 = _mm256_setzero_ps();                      \
            int64_t j = 0;                                                                  \
            for (; j + 16 <= d; j += 16) {                                                  \
                __m256 qa = _mm256_loadu_ps(q + j), qb = _mm256_loadu_ps(q + j + 8);        \
                if (!idx && pf_every && r + SC_PF_ROWS < nrows && (j & (pf_every - 1)) == 0) { \
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
        /* the last rows, one at a time in the same order as above: a row scores alike  \
         * whatever its place in a group of four */                                         \
        for (; r < nrows; r++) {                                                            \
            const T *a0 = rows + (idx ? idx[r] : r) * d;                                    \
            __m256 s0 = _mm256_setzero_ps(), t0 = _mm256_setzero_ps();                      \
            int64_t j = 0;                                                                  \
            for (; j + 16 <= d; j += 16) {                                                  \
                s0 = _mm256_fmadd_ps(LOAD(a0 + j), _mm256_loadu_ps(q + j), s0);             \
                t0 = _mm256_fmadd_ps(LOAD(a0 + j + 8), _mm256_loadu_ps(q + j + 8), t0);     \
            }                                                                               \
            for (; j + 8 <= d; j += 8) s0 = _mm256_fmadd_ps(LOAD(a0 + j), _mm256_loadu_ps(q + j), s0); \
            float f0 = sc_hsum256(_mm256_add_ps(s0, t0));                                   \
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
    SC_AVX2 static inline __attribute__((always_inline)) void NAME(                         \
        const T *rows, const int64_t *idx, int64_t nrows, int64_t d, const float *q,        \
        float *out) {                                                                       \
        const char *end = (const char *)(rows + nrows * d); /* contiguous rows only */      \
        for (int64_t r = 0; r < nrows; r++) {                                               \
            const T *a = rows + (idx ? idx[r] : r) * d;                                     \
            __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();                      \
            __m256 s2 = _mm256_setzero_ps(), s3 = _mm256_setzero_ps();                      \
            int64_t j = 0;                                                                  \
            for (; j + 32 <= d; j += 32) {                                                  \
                const char *pf = (const char *)(a + j) + SC_PF_BYTES;                       \
                if (!idx && pf < end) _mm_prefetch(pf, SC_PF_HINT);                         \
                if (!idx && sizeof(T) == 4 && pf + 64 < end) _mm_prefetch(pf + 64, SC_PF_HINT); \
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
SC_DEFINE_AVX2_DOTS4(sc_dots4_f32, float, SC_LOAD_F32, SC_TAIL_F32)
SC_DEFINE_AVX2_DOTS4(sc_dots4_f16, uint16_t, SC_LOAD_F16, SC_TAIL_F16)
SC_AVX2 static void sc_dots_f32_avx2(const float *rows, int64_t nrows, int64_t d,
                                     const float *q, float *out) {
    sc_dots4_f32(rows, NULL, nrows, d, q, out, 16);
}
SC_AVX2 static void sc_dots_f16_avx2(const uint16_t *rows, int64_t nrows, int64_t d,
                                     const float *q, float *out) {
    sc_dots4_f16(rows, NULL, nrows, d, q, out, 32);
}
SC_AVX2 static void sc_dots_f32_avx2_idx(const float *rows, const int64_t *idx, int64_t nrows,
                                         int64_t d, const float *q, float *out) {
    sc_dots4_f32(rows, idx, nrows, d, q, out, 0);
}
SC_AVX2 static void sc_dots_f16_avx2_idx(const uint16_t *rows, const int64_t *idx,
                                         int64_t nrows, int64_t d, const float *q, float *out) {
    sc_dots4_f16(rows, idx, nrows, d, q, out, 0);
}
SC_DEFINE_AVX2_DOTS1(sc_dots1_f32, float, SC_LOAD_F32, SC_TAIL_F32)
SC_DEFINE_AVX2_DOTS1(sc_dots1_f16, uint16_t, SC_LOAD_F16, SC_TAIL_F16)
SC_AVX2 static void sc_dots_f32_avx2_stream(const float *rows, int64_t nrows, int64_t d,
                                            const float *q, float *out) {
    sc_dots1_f32(rows, NULL, nrows, d, q, out);
}
SC_AVX2 static void sc_dots_f16_avx2_stream(const uint16_t *rows, int64_t nrows, int64_t d,
                                            const float *q, float *out) {
    sc_dots1_f16(rows, NULL, nrows, d, q, out);
}
/* Rescoring rows picked by index in the streaming loop's order: what a float32 scan of a
 * matrix of sc_stream_min_bytes or more computes for them, bit for bit. */
SC_AVX2 static void sc_dots_f32_avx2_stream_idx(const float *rows, const int64_t *idx,
                                                int64_t nrows, int64_t d, const float *q,
                                                float *out) {
    sc_dots1_f32(rows, idx, nrows, d, q, out);
}


/* int8 rows against int8 query codes, int32 sums. The sign trick: sign_epi8 moves the
 * query's signs onto the row codes, maddubs multiplies them by |query| (unsigned) and
 * adds pairs (|products| <= 127 * 127, pairs <= 32258: no int16 saturation), madd with
 * ones widens to int32. Four rows share each query load. Exact integer arithmetic: the
 * result does not depend on the order. */
SC_AVX2 static void sc_dots_i8_avx2(const int8_t *rows, int64_t nrows, int64_t d,
                                    const int8_t *qc, const uint8_t *qm, int32_t *out) {
    const __m256i ones = _mm256_set1_epi16(1);
    const int64_t d32 = d & ~(int64_t)31;
    int64_t r = 0;
    for (; r + 4 <= nrows; r += 4) {
        const int8_t *a0 = rows + r * d, *a1 = a0 + d, *a2 = a1 + d, *a3 = a2 + d;
        __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
        __m256i s2 = _mm256_setzero_si256(), s3 = _mm256_setzero_si256();
        for (int64_t j = 0; j < d32; j += 32) {
            const __m256i qs = _mm256_loadu_si256((const __m256i *)(qc + j));
            const __m256i qa = _mm256_loadu_si256((const __m256i *)(qm + j));
            if (r + SC_PF_ROWS < nrows && (j & 63) == 0) {
                _mm_prefetch((const char *)(a0 + j + SC_PF_ROWS * d), SC_PF_HINT);
                _mm_prefetch((const char *)(a1 + j + SC_PF_ROWS * d), SC_PF_HINT);
                _mm_prefetch((const char *)(a2 + j + SC_PF_ROWS * d), SC_PF_HINT);
                _mm_prefetch((const char *)(a3 + j + SC_PF_ROWS * d), SC_PF_HINT);
            }
            __m256i p0 = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(a0 + j)), qs);
            __m256i p1 = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(a1 + j)), qs);
            __m256i p2 = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(a2 + j)), qs);
            __m256i p3 = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(a3 + j)), qs);
            s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_maddubs_epi16(qa, p0), ones));
            s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(_mm256_maddubs_epi16(qa, p1), ones));
            s2 = _mm256_add_epi32(s2, _mm256_madd_epi16(_mm256_maddubs_epi16(qa, p2), ones));
            s3 = _mm256_add_epi32(s3, _mm256_madd_epi16(_mm256_maddubs_epi16(qa, p3), ones));
        }
        /* [s0 s1 s2 s3] lane sums in one vector */
        __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(s0, s1), _mm256_hadd_epi32(s2, s3));
        __m128i sum = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
        int32_t f[4];
        _mm_storeu_si128((__m128i *)f, sum);
        for (int64_t j = d32; j < d; j++) {
            f[0] += (int32_t)a0[j] * qc[j];
            f[1] += (int32_t)a1[j] * qc[j];
            f[2] += (int32_t)a2[j] * qc[j];
            f[3] += (int32_t)a3[j] * qc[j];
        }
        memcpy(out + r, f, sizeof f);
    }
    for (; r < nrows; r++) {
        const int8_t *a0 = rows + r * d;
        __m256i s0 = _mm256_setzero_si256();
        for (int64_t j = 0; j < d32; j += 32) {
            const __m256i qs = _mm256_loadu_si256((const __m256i *)(qc + j));
            const __m256i qa = _mm256_loadu_si256((const __m256i *)(qm + j));
            __m256i p0 = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(a0 + j)), qs);
            s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(_mm256_maddubs_epi16(qa, p0), ones));
        }
        __m128i v = _mm_add_epi32(_mm256_castsi256_si128(s0), _mm256_extracti128_si256(s0, 1));
        v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0x4e));
        v = _mm_add_epi32(v, _mm_shuffle_epi32(v, 0xb1));
        int32_t f0 = _mm_cvtsi128_si32(v);
        for (int64_t j = d32; j < d; j++) f0 += (int32_t)a0[j] * qc[j];
        out[r] = f0;
    }
}

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
typedef void (*sc_dots_i8_fn)(const int8_t *rows, int64_t nrows, int64_t d, const int8_t *qc,
                              const uint8_t *qm, int32_t *out);
typedef void (*sc_bounds_fn)(const int32_t *dots, int64_t nb, const float *scale,
                             const float *wnorm, const float *resid, const float *c, float *up,
                             float *low, float thr, uint64_t *bits);

/* What an int8 scan needs besides the codes (see the int8 section). */
typedef struct {
    const float *scale, *wnorm, *resid; /* per row: delta_r, |x^_r| (up), |x_r - x^_r| (up) */
    const int8_t *qc;                   /* query codes */
    const uint8_t *qm;                  /* |query codes| */
    float c[4];                         /* delta_q, s_q, n_q, tau */
    sc_dots_i8_fn dots;
    sc_bounds_fn bounds;
} sc_i8;

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
    const sc_i8 *i8; /* non-NULL: mat holds int8 codes, scores are upper bounds (nq = 1) */
    /* int8 candidate mode (collect != 0): the heap keeps the k best lower bounds, and
     * rows whose upper bound reaches the k-th of them so far are collected here */
    int collect;
    float *cand_s;
    int64_t *cand_r;
    int64_t cand_len, cand_cap;
    int oom;
} sc_job;

/* Append a candidate, growing the buffer (first pruning it by the current floor). */
static inline void sc_cand_add(sc_job *job, float ub, int64_t row, float floor) {
    if (job->cand_len == job->cand_cap) {
        int64_t m = 0;
        for (int64_t i = 0; i < job->cand_len; i++) {
            if (job->cand_s[i] >= floor) {
                job->cand_s[m] = job->cand_s[i];
                job->cand_r[m++] = job->cand_r[i];
            }
        }
        job->cand_len = m;
        if (m * 2 > job->cand_cap) {
            int64_t cap = job->cand_cap * 2;
            float *ns = (float *)realloc(job->cand_s, sizeof(float) * (size_t)cap);
            if (ns) job->cand_s = ns;
            int64_t *nr = ns ? (int64_t *)realloc(job->cand_r, sizeof(int64_t) * (size_t)cap) : NULL;
            if (nr) job->cand_r = nr;
            if (!ns || !nr) {
                job->oom = 1;
                return;
            }
            job->cand_cap = cap;
        }
    }
    job->cand_s[job->cand_len] = ub;
    job->cand_r[job->cand_len++] = row;
}

/* An int8 scan worker. Heap mode: the k best upper bounds. Candidate mode: the heap
 * keeps the k best lower bounds, whose least (the floor) is at most the k-th float32
 * score; a row whose upper bound is below the floor cannot enter the top k, every
 * other row is collected. */
static inline int sc_ctz64(uint64_t m) {
#if defined(__GNUC__) || defined(__clang__)
    return __builtin_ctzll(m);
#else
    int n = 0;
    while (!(m & 1)) {
        m >>= 1;
        n++;
    }
    return n;
#endif
}

static void sc_run_job_i8(sc_job *job) {
    float up[SC_BLOCK], low[SC_BLOCK];
    int32_t dots[SC_BLOCK];
    uint64_t bits[SC_BLOCK / 64];
    const sc_i8 *c = job->i8;
    const int64_t d = job->d;
    const uint8_t *live = job->live;
    sc_heap h = {job->heap_s, job->heap_r, job->k, 0};
    /* the heap's least key once full: a row whose key is below it stays out, and (in
     * candidate mode) so does a row whose upper bound is below it */
    float root = -INFINITY;
    for (int64_t b = job->lo; b < job->hi && !job->oom; b += SC_BLOCK) {
        int64_t nb = job->hi - b < SC_BLOCK ? job->hi - b : SC_BLOCK;
        c->dots((const int8_t *)job->mat + b * d, nb, d, c->qc, c->qm, dots);
        /* bits: up >= root at the block's start (root only rises: a superset) */
        c->bounds(dots, nb, c->scale + b, c->wnorm + b, c->resid + b, c->c, up, low, root, bits);
        for (int64_t w = 0; w < (nb + 63) / 64; w++) {
            for (uint64_t m = bits[w]; m; m &= m - 1) {
                const int64_t i = w * 64 + sc_ctz64(m);
                if (live && !live[b + i]) continue;
                const float key = job->collect ? low[i] : up[i];
                if (key >= root) {
                    sc_heap_push(&h, key, b + i);
                    if (h.len == h.cap) root = h.s[0];
                }
                if (job->collect && up[i] >= root) sc_cand_add(job, up[i], b + i, root);
            }
        }
    }
    job->heap_len[0] = h.len;
}

static void sc_run_job(sc_job *job) {
    float scores[SC_BLOCK];
    const int64_t d = job->d;
    const int64_t rowbytes = d * (job->is_f16 ? 2 : 4);
    if (job->i8) {
        sc_run_job_i8(job);
        return;
    }
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

static void *sc_thread_main(void *arg) {
    sc_run_job((sc_job *)arg);
    return NULL;
}

/* Run fn on each of the nt jobs laid out `size` bytes apart: the first here, the others
 * on threads of their own (here too, when a thread cannot start). */
static void sc_parallel(void *jobs, size_t size, int64_t nt, void *(*fn)(void *)) {
    char *base = (char *)jobs;
#if SC_HAVE_PTHREAD
    pthread_t tids[SC_MAX_THREADS];
    int started[SC_MAX_THREADS];
    for (int64_t t = 1; t < nt; t++)
        started[t] = pthread_create(&tids[t], NULL, fn, base + t * size) == 0;
    fn(base);
    for (int64_t t = 1; t < nt; t++) {
        if (started[t])
            pthread_join(tids[t], NULL);
        else
            fn(base + t * size);
    }
#else
    for (int64_t t = 0; t < nt; t++) fn(base + t * size);
#endif
}

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

/* Threads for a scan of `bytes` bytes: one per sc_parallel_min_bytes, capped. */
static int64_t sc_threads_for(int64_t bytes) {
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
    return nt;
}

/* Run jobs[0] here and the others on threads of their own. */
static void sc_run_jobs(sc_job *jobs, int64_t nt) {
    sc_parallel(jobs, sizeof(sc_job), nt, sc_thread_main);
}

/* Run `proto` over rows [0, n) split across threads, merge the heaps, write the sorted
 * hits. k <= n. Returns the hits per query, or -1 when memory runs out. */
static int64_t sc_topk_run(const sc_job *proto, int64_t n, int64_t bytes, int64_t *out_rows,
                           float *out_scores) {
    const int64_t nq = proto->nq, k = proto->k;
    int64_t nt = sc_threads_for(bytes);
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
    /* split on SC_BLOCK boundaries so every worker scans whole blocks */
    int64_t blocks = (n + SC_BLOCK - 1) / SC_BLOCK;
    for (int64_t t = 0; t < nt; t++) {
        sc_job *j = &jobs[t];
        *j = *proto;
        j->lo = (blocks * t / nt) * SC_BLOCK;
        j->hi = (blocks * (t + 1) / nt) * SC_BLOCK;
        if (j->hi > n) j->hi = n;
        j->heap_s = hs + t * nq * k;
        j->heap_r = hr + t * nq * k;
        j->heap_len = hl + t * nq;
    }
    sc_run_jobs(jobs, nt);
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
    sc_job proto;
    memset(&proto, 0, sizeof proto);
    proto.mat = (const uint8_t *)mat;
    proto.is_f16 = is_f16;
    proto.d = d;
    proto.live = live;
    proto.queries = queries;
    proto.nq = nq;
    proto.k = k;
    /* a batch re-reads each block from L2 once per query: the cache-resident loops fit */
    proto.dots = sc_pick_dots(is_f16, nq > 1 ? 0 : bytes);
    return sc_topk_run(&proto, n, bytes, out_rows, out_scores);
}

/*
 * Top-k among the rows idx[0..m) of a float32/float16 matrix (distinct, in range: the
 * caller checks), on the calling thread, ties to the lower row: rescoring candidates
 * in place of a gather and a scan.
 */
static int64_t sc_topk_rows(const void *mat, int is_f16, int64_t d, const int64_t *idx,
                            int64_t m, const float *q, int64_t k, int64_t *out_rows,
                            float *out_scores) {
    float scores[SC_BLOCK];
    if (m <= 0 || k <= 0) return 0;
    if (k > m) k = m;
    sc_heap h = {out_scores, out_rows, k, 0};
    for (int64_t b = 0; b < m; b += SC_BLOCK) {
        int64_t nb = m - b < SC_BLOCK ? m - b : SC_BLOCK;
#if SC_X86
        if (sc_use_avx2()) {
            if (is_f16)
                sc_dots_f16_avx2_idx((const uint16_t *)mat, idx + b, nb, d, q, scores);
            else
                sc_dots_f32_avx2_idx((const float *)mat, idx + b, nb, d, q, scores);
        } else
#endif
        if (is_f16)
            sc_dots_f16_portable_idx((const uint16_t *)mat, idx + b, nb, d, q, scores);
        else
            sc_dots_f32_portable_idx((const float *)mat, idx + b, nb, d, q, scores);
        for (int64_t i = 0; i < nb; i++) sc_heap_push(&h, scores[i], idx[b + i]);
    }
    sc_sort_hits(h.s, h.r, h.len);
    return h.len;
}

/* ------------------------------------------------------------------------ int8 shadow
 * Row r holds codes c_r (int8, |c| <= 127) and a scale delta_r (float32) with
 * x^_r = delta_r c_r, plus w_r >= |x^_r| and rho_r >= |x_r - x^_r| (float32, rounded
 * up; computed by the NumPy code in _kernel_py.quantize_rows). A query q is quantized
 * here the same way (sc_i8_query, repeated operation for operation by
 * _kernel_py.quantize_query), giving codes e, delta_q and float32 constants
 * s_q >= |q - q^| (+ slack), n_q >= |q| (+ slack), tau. The scan's score for row r is
 *
 *     ub_r = fl(fl(delta_r * fl(fl((float)D_r) * delta_q)) +
 *               fl(fl(fl(w_r * s_q) + fl(rho_r * n_q)) + tau))
 *
 * with D_r = sum_i c_ri e_i in int32 (exact) and every operation a float32 operation
 * rounded to nearest, no fused multiply-add: an upper bound on the float32 score of
 * row r whatever order a float32 kernel sums it in, and lb_r (the same with the error
 * term subtracted) a lower bound (the argument is in semcache/_index/_flat.py). */
#define SC_I8_MAX_D 65536                    /* |D_r| <= 16129 d < 2^31 */
#define SC_I8_MAX_ABS 1099511627776.0        /* 2^40: bounds stay far below FLT_MAX */
#define SC_I8_TAU 7.888609052210118e-31f     /* 2^-100: covers underflow */

/* Both bounds of nb <= SC_BLOCK rows, and bits[i / 64] bit i % 64 set where up[i] >= thr
 * (NaN-free inputs): the rows a scan has to look at. */
static void sc_i8_bounds_portable(const int32_t *dots, int64_t nb, const float *scale,
                                  const float *wnorm, const float *resid, const float *c,
                                  float *up, float *low, float thr, uint64_t *bits) {
    const float dq = c[0], sq = c[1], qn = c[2], tau = c[3];
    for (int64_t w = 0; w < (nb + 63) / 64; w++) bits[w] = 0;
    for (int64_t i = 0; i < nb; i++) {
        float t = (float)dots[i] * dq;
        SC_OPAQUE(t);
        float a = scale[i] * t;
        SC_OPAQUE(a);
        float b = wnorm[i] * sq;
        SC_OPAQUE(b);
        float e = resid[i] * qn;
        SC_OPAQUE(e);
        float err = (b + e) + tau;
        up[i] = a + err;
        low[i] = a - err;
        bits[i >> 6] |= (uint64_t)(up[i] >= thr) << (i & 63);
    }
}

#if SC_X86
SC_AVX2 static void sc_i8_bounds_avx2(const int32_t *dots, int64_t nb, const float *scale,
                                      const float *wnorm, const float *resid, const float *c,
                                      float *up, float *low, float thr, uint64_t *bits) {
    const __m256 dq = _mm256_set1_ps(c[0]), sq = _mm256_set1_ps(c[1]);
    const __m256 qn = _mm256_set1_ps(c[2]), tau = _mm256_set1_ps(c[3]);
    const __m256 th = _mm256_set1_ps(thr);
    int64_t i = 0;
    for (int64_t w = 0; w < (nb + 63) / 64; w++) bits[w] = 0;
    for (; i + 8 <= nb; i += 8) {
        __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_loadu_si256((const __m256i *)(dots + i))), dq);
        SC_OPAQUE(t);
        __m256 a = _mm256_mul_ps(_mm256_loadu_ps(scale + i), t);
        SC_OPAQUE(a);
        __m256 b = _mm256_mul_ps(_mm256_loadu_ps(wnorm + i), sq);
        SC_OPAQUE(b);
        __m256 e = _mm256_mul_ps(_mm256_loadu_ps(resid + i), qn);
        SC_OPAQUE(e);
        __m256 err = _mm256_add_ps(_mm256_add_ps(b, e), tau);
        __m256 u = _mm256_add_ps(a, err);
        _mm256_storeu_ps(up + i, u);
        _mm256_storeu_ps(low + i, _mm256_sub_ps(a, err));
        uint64_t m = (uint64_t)_mm256_movemask_ps(_mm256_cmp_ps(u, th, _CMP_GE_OQ));
        bits[i >> 6] |= m << (i & 63);
    }
    if (i < nb) {
        uint64_t rest[SC_BLOCK / 64];
        sc_i8_bounds_portable(dots + i, nb - i, scale + i, wnorm + i, resid + i, c, up + i,
                              low + i, thr, rest);
        bits[i >> 6] |= rest[0] << (i & 63); /* i is a multiple of 8, nb - i < 8 */
    }
}
#endif

/* Round half to even, |v| < 2^51 (the default rounding mode). */
static double sc_rint(double v) {
    const double magic = 6755399441055744.0; /* 1.5 * 2^52 */
    double t = v + magic;
    SC_OPAQUE(t);
    return t - magic;
}

/* The least float32 >= x (1 + 2^-30), x >= 0: room for float64 rounding. */
static float sc_up_f32(double x) {
    x = x * (1.0 + 9.313225746154785e-10);
    float f = (float)x;
    if ((double)f < x) {
        uint32_t bits;
        memcpy(&bits, &f, sizeof bits);
        bits++;
        memcpy(&f, &bits, sizeof f);
    }
    return f;
}

/* Quantize m rows of x (m x d float32) into codes (m x d) and aux (scale, wnorm, resid:
 * 3 x stride floats), exactly as _kernel_py.quantize_rows does. Returns 0, or -2 when
 * an element is beyond 2^40 (or not finite) or d is too large (outputs undefined). */
static int sc_i8_quantize_rows(const float *x, int64_t m, int64_t d, int8_t *codes, float *aux,
                               int64_t stride) {
    if (d > SC_I8_MAX_D) return -2;
    for (int64_t r = 0; r < m; r++) {
        const float *xr = x + r * d;
        int8_t *cr = codes + r * d;
        float peak = 0.f;
        for (int64_t j = 0; j < d; j++) {
            float a = fabsf(xr[j]);
            if (!(a <= peak)) peak = a; /* NaN sticks */
        }
        if (!((double)peak <= SC_I8_MAX_ABS)) return -2;
        const float dl = (float)((double)peak / 127.0);
        const double inv = dl > 0.f ? 1.0 / (double)dl : 0.0;
        double c2 = 0.0, r2 = 0.0;
        for (int64_t j = 0; j < d; j++) {
            double xj = (double)xr[j];
            double v = xj * inv;
            SC_OPAQUE(v);
            double e = sc_rint(v);
            if (e > 127.0) e = 127.0;
            if (e < -127.0) e = -127.0;
            cr[j] = (int8_t)e;
            c2 += e * e; /* integers: exact */
            double p = (double)dl * e; /* exact */
            SC_OPAQUE(p);
            double t = xj - p;
            double tt = t * t;
            SC_OPAQUE(tt);
            r2 = r2 + tt;
        }
        aux[r] = dl;
        aux[stride + r] = sc_up_f32((double)dl * sqrt(c2));
        aux[2 * stride + r] = sc_up_f32(sqrt(r2));
    }
    return 0;
}

/* Quantize a query: codes e (and |e|), c = {delta_q, s_q, n_q, tau}. Returns 0, or 1
 * when the query is out of the int8 path's range (an element beyond 2^40, not finite,
 * or d too large): the caller scans float32 instead. */
static int sc_i8_query(const float *q, int64_t d, int8_t *qc, uint8_t *qm, float *c) {
    float m = 0.f;
    for (int64_t j = 0; j < d; j++) {
        float a = fabsf(q[j]);
        if (!(a <= m)) m = a; /* NaN sticks */
    }
    if (!((double)m <= SC_I8_MAX_ABS) || d > SC_I8_MAX_D) return 1;
    const float dq = (float)((double)m / 127.0);
    const double inv = dq > 0.f ? 1.0 / (double)dq : 0.0;
    double s2 = 0.0, n2 = 0.0;
    for (int64_t j = 0; j < d; j++) {
        double qj = (double)q[j], e = 0.0;
        if (dq > 0.f) {
            double v = qj * inv;
            SC_OPAQUE(v);
            e = sc_rint(v);
            if (e > 127.0) e = 127.0;
            if (e < -127.0) e = -127.0;
        }
        qc[j] = (int8_t)e;
        qm[j] = (uint8_t)(e < 0 ? -e : e);
        double p = (double)dq * e; /* exact */
        SC_OPAQUE(p);
        double t = qj - p;
        double tt = t * t;
        SC_OPAQUE(tt);
        s2 = s2 + tt;
        double qq = qj * qj; /* exact */
        SC_OPAQUE(qq);
        n2 = n2 + qq;
    }
    const double sig = sqrt(s2), nq = sqrt(n2);
    const double eps = (double)(d + 64) * 2.384185791015625e-07; /* (d + 64) 2^-22 */
    double a = eps * (nq + sig);
    SC_OPAQUE(a);
    c[0] = dq;
    c[1] = sc_up_f32(sig + a);
    c[2] = sc_up_f32(nq * (1.0 + eps));
    c[3] = SC_I8_TAU;
    return 0;
}

/* Quantize the query and fill an int8 context; returns 0, -1 (memory) or -2 (range).
 * On 0 the context owns the query buffer (sc_i8_done frees it); otherwise nothing is
 * left to free. */
static int sc_i8_setup(sc_i8 *ctx, const float *aux, int64_t stride, int64_t d,
                       const float *q) {
    int8_t *qc = (int8_t *)malloc((size_t)(2 * d + 64));
    if (!qc) return -1;
    uint8_t *qm = (uint8_t *)(qc + d + 32);
    if (sc_i8_query(q, d, qc, qm, ctx->c)) {
        free(qc);
        return -2;
    }
    ctx->scale = aux;
    ctx->wnorm = aux + stride;
    ctx->resid = aux + 2 * stride;
    ctx->qc = qc;
    ctx->qm = qm;
    ctx->dots = sc_dots_i8_portable;
    ctx->bounds = sc_i8_bounds_portable;
#if SC_X86
    if (sc_use_avx2()) {
        ctx->dots = sc_dots_i8_avx2;
        ctx->bounds = sc_i8_bounds_avx2;
    }
#endif
    return 0;
}

static void sc_i8_done(sc_i8 *ctx) { free((void *)ctx->qc); }

/*
 * Top-k rows of an int8 shadow by upper bound (see above), one query. codes: n x d,
 * aux: 3 x stride floats (scale, wnorm, resid). Returns the hits, -1 when memory runs
 * out, -2 when the query is out of range (nothing written).
 */
static int64_t sc_topk_i8(const int8_t *codes, const float *aux, int64_t stride, int64_t n,
                          int64_t d, const uint8_t *live, const float *q, int64_t k,
                          int64_t *out_rows, float *out_scores) {
    if (n <= 0 || k <= 0) return 0;
    if (k > n) k = n;
    sc_i8 ctx;
    int rc = sc_i8_setup(&ctx, aux, stride, d, q);
    if (rc) return rc;
    sc_job proto;
    memset(&proto, 0, sizeof proto);
    proto.mat = (const uint8_t *)codes;
    proto.d = d;
    proto.live = live;
    proto.queries = q;
    proto.nq = 1;
    proto.k = k;
    proto.i8 = &ctx;
    int64_t found = sc_topk_run(&proto, n, n * d, out_rows, out_scores);
    sc_i8_done(&ctx);
    return found;
}

/* Both bounds of every row of codes[:n] (single thread): 0, -1 or -2 as above. */
static int sc_bounds_i8(const int8_t *codes, const float *aux, int64_t stride, int64_t n,
                        int64_t d, const float *q, float *up, float *low) {
    sc_i8 ctx;
    int rc = sc_i8_setup(&ctx, aux, stride, d, q);
    if (rc == 0) {
        int32_t dots[SC_BLOCK];
        for (int64_t b = 0; b < n; b += SC_BLOCK) {
            int64_t nb = n - b < SC_BLOCK ? n - b : SC_BLOCK;
            ctx.dots(codes + b * d, nb, d, ctx.qc, ctx.qm, dots);
            uint64_t bits[SC_BLOCK / 64];
            ctx.bounds(dots, nb, ctx.scale + b, ctx.wnorm + b, ctx.resid + b, ctx.c, up + b,
                       low + b, INFINITY, bits);
        }
        sc_i8_done(&ctx);
    }
    return rc;
}

/* Ask for rows idx[0..m) of a float32 matrix ahead of their use. */
static inline void sc_prefetch_rows(const float *mat, const int64_t *idx, int64_t m, int64_t d) {
#if defined(__GNUC__) || defined(__clang__)
    for (int64_t i = 0; i < m; i++) {
        const char *p = (const char *)(mat + idx[i] * d);
        for (int64_t o = 0; o < d * 4; o += 64) __builtin_prefetch(p + o);
    }
#else
    (void)mat, (void)idx, (void)m, (void)d;
#endif
}

/*
 * The float32 top-k of mat[:n] through its int8 shadow, in one pass. Each worker keeps
 * the k best lower bounds and collects the rows whose upper bound reaches the least of
 * them (the floor: at least k rows score at least the floor in float32, so the k-th
 * float32 score is no lower, and a row whose upper bound is below it can neither beat
 * nor tie the k-th). The candidates of all workers are cut by the global floor, sorted
 * by upper bound and rescored from the float32 matrix four at a time, stopping once
 * the next upper bound is below the k-th score so far.
 *
 * Returns the hits (min(k, live rows)), -1 when memory runs out, -2 when the query is
 * out of range, -3 when more than max_cand rows are candidates (scan float32 instead);
 * *ncand receives the number of candidates and *nrescored the rows rescored.
 */
static int64_t sc_search_i8(const int8_t *codes, const float *aux, int64_t stride, int64_t n,
                            int64_t d, const uint8_t *live, const float *mat, const float *q,
                            int64_t k, int64_t max_cand, int64_t *out_rows, float *out_scores,
                            int64_t *ncand, int64_t *nrescored) {
    *ncand = *nrescored = 0;
    if (n <= 0 || k <= 0) return 0;
    if (k > n) k = n;
    sc_i8 ctx;
    int rc = sc_i8_setup(&ctx, aux, stride, d, q);
    if (rc) return rc;
    const int64_t nt = sc_threads_for(n * d);
    const int64_t cap0 = 2 * k + 2 * SC_BLOCK;
    float *hs = (float *)malloc(sizeof(float) * (size_t)(nt * k));
    int64_t *hr = (int64_t *)malloc(sizeof(int64_t) * (size_t)(nt * k));
    int64_t hl[SC_MAX_THREADS];
    sc_job jobs[SC_MAX_THREADS];
    int64_t found = -1, blocks = (n + SC_BLOCK - 1) / SC_BLOCK, m = 0;
    float *cs = NULL;
    int64_t *cr = NULL;
    int oom = !hs || !hr;
    for (int64_t t = 0; t < nt; t++) {
        sc_job *j = &jobs[t];
        memset(j, 0, sizeof *j);
        j->mat = (const uint8_t *)codes;
        j->d = d;
        j->live = live;
        j->queries = q;
        j->nq = 1;
        j->k = k;
        j->i8 = &ctx;
        j->collect = 1;
        j->lo = (blocks * t / nt) * SC_BLOCK;
        j->hi = (blocks * (t + 1) / nt) * SC_BLOCK;
        if (j->hi > n) j->hi = n;
        j->heap_s = hs ? hs + t * k : NULL;
        j->heap_r = hr ? hr + t * k : NULL;
        j->heap_len = hl + t;
        j->cand_cap = cap0;
        j->cand_s = (float *)malloc(sizeof(float) * (size_t)cap0);
        j->cand_r = (int64_t *)malloc(sizeof(int64_t) * (size_t)cap0);
        if (!j->cand_s || !j->cand_r) oom = 1;
    }
    if (oom) goto done;
    sc_run_jobs(jobs, nt);
    for (int64_t t = 0; t < nt; t++) oom |= jobs[t].oom;
    if (oom) goto done;
    {
        /* the global floor: the k-th best lower bound of all workers */
        sc_heap h = {hs, hr, k, hl[0]};
        for (int64_t t = 1; t < nt; t++)
            for (int64_t i = 0; i < hl[t]; i++) sc_heap_push(&h, hs[t * k + i], hr[t * k + i]);
        const float floor = h.len == k ? h.s[0] : -INFINITY;
        int64_t total = 0;
        for (int64_t t = 0; t < nt; t++) total += jobs[t].cand_len;
        cs = (float *)malloc(sizeof(float) * (size_t)(total + 1));
        cr = (int64_t *)malloc(sizeof(int64_t) * (size_t)(total + 1));
        if (!cs || !cr) goto done;
        for (int64_t t = 0; t < nt; t++) {
            for (int64_t i = 0; i < jobs[t].cand_len; i++) {
                if (jobs[t].cand_s[i] >= floor) {
                    cs[m] = jobs[t].cand_s[i];
                    cr[m++] = jobs[t].cand_r[i];
                }
            }
        }
    }
    *ncand = m;
    if (m > max_cand) {
        found = -3;
        goto done;
    }
    sc_sort_hits(cs, cr, m); /* largest upper bound first */
    {
        const int64_t kk = k < m ? k : m;
        const int stream = n * d * (int64_t)sizeof(float) >= sc_stream_min_bytes;
        sc_heap h = {out_scores, out_rows, kk, 0};
        float scores[4];
        int64_t j = 0;
        sc_prefetch_rows(mat, cr, m < 8 ? m : 8, d); /* rows are scattered: fetch ahead */
        while (j < m) {
            if (h.len == kk && cs[j] < h.s[0]) break; /* the rest cannot beat or tie */
            int64_t g = m - j < 4 ? m - j : 4;
            if (j + 8 < m) sc_prefetch_rows(mat, cr + j + 8, m - j - 8 < 4 ? m - j - 8 : 4, d);
#if SC_X86
            if (sc_use_avx2()) {
                if (stream) /* a plain scan of this matrix would sum in this order */
                    sc_dots_f32_avx2_stream_idx(mat, cr + j, g, d, q, scores);
                else
                    sc_dots_f32_avx2_idx(mat, cr + j, g, d, q, scores);
            } else
#endif
                sc_dots_f32_portable_idx(mat, cr + j, g, d, q, scores);
            for (int64_t i = 0; i < g; i++) sc_heap_push(&h, scores[i], cr[j + i]);
            j += g;
        }
        *nrescored = j;
        sc_sort_hits(h.s, h.r, h.len);
        found = h.len;
    }
done:
    for (int64_t t = 0; t < nt; t++) {
        free(jobs[t].cand_s);
        free(jobs[t].cand_r);
    }
    free(hs);
    free(hr);
    free(cs);
    free(cr);
    sc_i8_done(&ctx);
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

static void *sc_stream_main(void *arg) {
    sc_stream_run((sc_stream_job *)arg);
    return NULL;
}

/* Read nbytes once with the same threading rule as sc_topk: the bandwidth floor. */
static uint64_t sc_stream(const void *p, int64_t nbytes) {
    int64_t nt = sc_threads_for(nbytes);
    sc_stream_job jobs[SC_MAX_THREADS];
    int64_t chunk = (nbytes / nt) & ~(int64_t)127;
    for (int64_t t = 0; t < nt; t++) {
        jobs[t].p = (const uint8_t *)p + t * chunk;
        jobs[t].nbytes = t == nt - 1 ? nbytes - t * chunk : chunk;
        jobs[t].acc = 0;
    }
    sc_parallel(jobs, sizeof(sc_stream_job), nt, sc_stream_main);
    uint64_t acc = 0;
    for (int64_t t = 0; t < nt; t++) acc ^= jobs[t].acc;
    return acc;
}

#endif /* SEMCACHE_KERNEL_IMPL_H */
