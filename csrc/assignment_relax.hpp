// The hot loop of the dense assignment solver (assignment.cpp): the relaxation of one scanned row against all columns.
//
// Hot loop: the relaxation of one scanned row against all columns (`relax_row`). It walks the row of
// C, v, the distance labels and a one-byte column status contiguously, and fuses into the same pass
// the minima Dijkstra needs next (min label over assigned unscanned columns, with its column, and
// over free columns). With AVX-512 it is explicitly vectorised (masked compares/moves, two
// accumulator sets), likewise with AVX2, and software-prefetches the row of C, which streams from
// DRAM for large n and is then the bottleneck; otherwise a scalar loop is used. The arithmetic goes through
// the shared vector layer of simd.hpp (VD: load, subtract, min, horizontal min); only the masked compares and
// blends on the column status, which that layer does not model, are written as intrinsics here.
//
// A private header of assignment.cpp (its only includer): its helpers live in the solver's unnamed namespace, so
// that the compiler inlines them into the shortest-path loop exactly as when they were written in that file.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>

#include "simd.hpp"

namespace monge {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Column status in the shortest-path phase.
enum : uint8_t { kAssigned = 0, kFree = 1, kScanned = 2 };

// A minimum label and the first column attaining it (col == -1: not known yet).
struct Best {
  double key = kInf;
  int col = -1;
  void offer(double k, int c) {
    if (k < key || (k == key && c < col)) key = k, col = c;
  }
};

// The hot loop of the solver. For every column k in [begin, end) not yet scanned:
//   label = C_ik - v_k - h;  if label < d[k]: d[k] = label, pred[k] = i.
// Returns in `assigned` the minimum label over assigned unscanned columns with its first column, and
// in `free` the minimum label over free columns (its column is left to the caller to find: it is
// needed once per augmentation only).
inline void relax_row_scalar(const double *ci, const double *v, double h, int i,
                             const uint8_t *status, double *d, int *pred, int begin, int end,
                             Best &assigned, Best &free) {
  for (int k = begin; k < end; ++k) {
    const double nd = ci[k] - v[k] - h;
    if (status[k] != kScanned && nd < d[k]) {
      d[k] = nd;
      pred[k] = i;
    }
    if (status[k] == kAssigned) assigned.offer(d[k], k);
    if (status[k] == kFree) free.key = std::min(free.key, d[k]);
  }
}

#if defined(MONGE_SIMD_AVX512) && defined(__AVX512BW__) && defined(__AVX512VL__)
// AVX-512: 8 columns per vector, two independent accumulator sets to hide the latency of the
// running minima.
constexpr int kPrefetchAhead = 1024;  // columns (8 KiB) of software prefetch on the row of C

using simd::VD;
static_assert(simd::WD == 8, "the AVX-512 relaxation works on 8 columns per vector");

struct LaneMin {
  __m512d key = _mm512_set1_pd(kInf), col = _mm512_set1_pd(-1.0);
  VD free = simd::set1(kInf);
};

inline void relax8(const double *ci, const double *v, VD vh, __m256i vi, const uint8_t *status,
                   double *d, int *pred, int k, __m512d cols, LaneMin &acc) {
  const __m128i st = _mm_loadl_epi64(reinterpret_cast<const __m128i *>(status + k));
  const __mmask8 unscanned = static_cast<__mmask8>(_mm_cmpneq_epi8_mask(st, _mm_set1_epi8(kScanned)));
  const __mmask8 is_assigned = static_cast<__mmask8>(_mm_cmpeq_epi8_mask(st, _mm_set1_epi8(kAssigned)));
  const __mmask8 is_free = static_cast<__mmask8>(_mm_cmpeq_epi8_mask(st, _mm_set1_epi8(kFree)));
  const VD nd = simd::sub(simd::sub(simd::load(ci + k), simd::load(v + k)), vh);
  VD dk = simd::load(d + k);
  const __mmask8 better = _mm512_mask_cmp_pd_mask(unscanned, nd.v, dk.v, _CMP_LT_OQ);
  if (better) {
    dk.v = _mm512_mask_mov_pd(dk.v, better, nd.v);
    simd::store(d + k, dk);
    _mm256_mask_storeu_epi32(pred + k, better, vi);
  }
  const __mmask8 lt = _mm512_mask_cmp_pd_mask(is_assigned, dk.v, acc.key, _CMP_LT_OQ);
  acc.key = _mm512_mask_mov_pd(acc.key, lt, dk.v);
  acc.col = _mm512_mask_mov_pd(acc.col, lt, cols);
  acc.free.v = _mm512_mask_min_pd(acc.free.v, is_free, acc.free.v, dk.v);
}

inline void relax_row(const double *ci, const double *v, double h, int i, const uint8_t *status,
                      double *d, int *pred, int m, Best &assigned, Best &free) {
  const VD vh = simd::set1(h);
  const __m512d sixteen = _mm512_set1_pd(16.0);
  const __m256i vi = _mm256_set1_epi32(i);
  __m512d cols0 = _mm512_setr_pd(0, 1, 2, 3, 4, 5, 6, 7);
  __m512d cols1 = _mm512_add_pd(cols0, _mm512_set1_pd(8.0));
  LaneMin acc[2];
  int k = 0;
  for (; k + 16 <= m; k += 16) {
    if (k + kPrefetchAhead < m) {  // the row of C streams from DRAM: run well ahead of it
      _mm_prefetch(reinterpret_cast<const char *>(ci + k + kPrefetchAhead), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char *>(ci + k + kPrefetchAhead + 8), _MM_HINT_T0);
    }
    relax8(ci, v, vh, vi, status, d, pred, k, cols0, acc[0]);
    relax8(ci, v, vh, vi, status, d, pred, k + 8, cols1, acc[1]);
    cols0 = _mm512_add_pd(cols0, sixteen);
    cols1 = _mm512_add_pd(cols1, sixteen);
  }
  assigned = Best();
  free = Best();
  for (const LaneMin &a : acc) {
    alignas(64) double keys[8], idx[8];
    _mm512_store_pd(keys, a.key);
    _mm512_store_pd(idx, a.col);
    for (int l = 0; l < 8; ++l) {
      if (idx[l] >= 0) assigned.offer(keys[l], static_cast<int>(idx[l]));
    }
    free.key = std::min(free.key, simd::reduce_min(a.free));
  }
  relax_row_scalar(ci, v, h, i, status, d, pred, k, m, assigned, free);
}
#elif defined(MONGE_SIMD_AVX2)
// AVX2: 4 columns per vector, two independent accumulator sets.
constexpr int kPrefetchAhead = 1024;  // columns (8 KiB) of software prefetch on the row of C

using simd::VD;
static_assert(simd::WD == 4, "the AVX2 relaxation works on 4 columns per vector");

struct LaneMin {
  __m256d key = _mm256_set1_pd(kInf), col = _mm256_set1_pd(-1.0);
  VD free = simd::set1(kInf);
};

inline void relax4(const double *ci, const double *v, VD vh, __m128i vi, const uint8_t *status,
                   double *d, int *pred, int k, __m256d cols, LaneMin &acc) {
  int32_t st4;
  std::memcpy(&st4, status + k, sizeof st4);
  const __m256i st = _mm256_cvtepu8_epi64(_mm_cvtsi32_si128(st4));
  const __m256d is_scanned = _mm256_castsi256_pd(_mm256_cmpeq_epi64(st, _mm256_set1_epi64x(kScanned)));
  const __m256d is_assigned = _mm256_castsi256_pd(_mm256_cmpeq_epi64(st, _mm256_set1_epi64x(kAssigned)));
  const __m256d is_free = _mm256_castsi256_pd(_mm256_cmpeq_epi64(st, _mm256_set1_epi64x(kFree)));
  const VD nd = simd::sub(simd::sub(simd::load(ci + k), simd::load(v + k)), vh);
  VD dk = simd::load(d + k);
  const __m256d better = _mm256_andnot_pd(is_scanned, _mm256_cmp_pd(nd.v, dk.v, _CMP_LT_OQ));
  if (_mm256_movemask_pd(better)) {
    dk.v = _mm256_blendv_pd(dk.v, nd.v, better);
    simd::store(d + k, dk);
    const __m256i pack = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);  // low halves of the 64-bit masks
    const __m128i mask = _mm256_castsi256_si128(
        _mm256_permutevar8x32_epi32(_mm256_castpd_si256(better), pack));
    _mm_maskstore_epi32(pred + k, mask, vi);
  }
  const __m256d lt = _mm256_and_pd(is_assigned, _mm256_cmp_pd(dk.v, acc.key, _CMP_LT_OQ));
  acc.key = _mm256_blendv_pd(acc.key, dk.v, lt);
  acc.col = _mm256_blendv_pd(acc.col, cols, lt);
  acc.free = simd::minv(acc.free, VD{_mm256_blendv_pd(_mm256_set1_pd(kInf), dk.v, is_free)});
}

inline void relax_row(const double *ci, const double *v, double h, int i, const uint8_t *status,
                      double *d, int *pred, int m, Best &assigned, Best &free) {
  const VD vh = simd::set1(h);
  const __m256d eight = _mm256_set1_pd(8.0);
  const __m128i vi = _mm_set1_epi32(i);
  __m256d cols0 = _mm256_setr_pd(0, 1, 2, 3);
  __m256d cols1 = _mm256_add_pd(cols0, _mm256_set1_pd(4.0));
  LaneMin acc[2];
  int k = 0;
  for (; k + 8 <= m; k += 8) {
    if (k + kPrefetchAhead < m) {
      _mm_prefetch(reinterpret_cast<const char *>(ci + k + kPrefetchAhead), _MM_HINT_T0);
    }
    relax4(ci, v, vh, vi, status, d, pred, k, cols0, acc[0]);
    relax4(ci, v, vh, vi, status, d, pred, k + 4, cols1, acc[1]);
    cols0 = _mm256_add_pd(cols0, eight);
    cols1 = _mm256_add_pd(cols1, eight);
  }
  assigned = Best();
  free = Best();
  for (const LaneMin &a : acc) {
    alignas(32) double keys[4], idx[4];
    _mm256_store_pd(keys, a.key);
    _mm256_store_pd(idx, a.col);
    for (int l = 0; l < 4; ++l) {
      if (idx[l] >= 0) assigned.offer(keys[l], static_cast<int>(idx[l]));
    }
    free.key = std::min(free.key, simd::reduce_min(a.free));
  }
  relax_row_scalar(ci, v, h, i, status, d, pred, k, m, assigned, free);
}
#else
inline void relax_row(const double *ci, const double *v, double h, int i, const uint8_t *status,
                      double *d, int *pred, int m, Best &assigned, Best &free) {
  assigned = Best();
  free = Best();
  relax_row_scalar(ci, v, h, i, status, d, pred, 0, m, assigned, free);
}
#endif

}  // namespace
}  // namespace monge
