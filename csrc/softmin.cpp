// Lazy (O(n + m) memory) squared-Euclidean soft-min and its backward, streamed over tiles of y.
//
//   out_i = -eps log sum_j exp((h_j - |x_i - y_j|^2) / eps)
//
// Design
// - y and h are copied once per call into a padded structure-of-arrays (d coordinate rows + h row, padded
//   with y = 0, h = -inf to a multiple of the SIMD width), so the inner loop over j is a plain vector loop.
// - Rows i (flattened over the batch) are split into contiguous ranges, one per std::thread; the GIL is
//   released. Each thread walks tiles of TJ columns (kept in L1) and, inside a tile, blocks of R rows that
//   share the loads of y.
// - Forward: online (streaming) log-sum-exp with one running shift M_i per row (flash-attention style),
//   in base 2: t = (h_j - C_ij) * (log2(e)/eps) - M_i, computed with one fma from a = h_j - C_ij. When a
//   vector has a lane with t > 0 (rare: about log(m) times per row on unordered data, at worst every vector
//   on adversarially sorted data, which stays correct) the row's shift is raised and its partial sums
//   rescaled. The 2^t are summed in the input precision inside a tile (at most TJ/W terms per lane) and
//   the tile sums are added in float64. out_i = -(M_i + log2 S_i) / (log2(e)/eps), dividing by the same
//   rounded scale that multiplied the arguments, so the shift maps back exactly.
// - |x_i - y_j|^2 is computed directly (sum of squared differences), not by the norm expansion
//   |x|^2 + |y|^2 - 2 x.y: no cancellation for near points, which are the ones that dominate the sum when
//   eps is small. Specialised at compile time for d = 1..8 (R rows per block), a runtime-d path otherwise.
// - 2^x (written for this file): AVX-512: r = x - floor(x) in [0, 1) with vreduce, a near-minimax
//   polynomial for 2^r (Chebyshev interpolation on [0, 1], coefficients computed with mpmath: degree 6 in
//   float32 -> 8e-8 relative before rounding, <= 1.3 ulp in a numpy emulation; degree 11 in float64 -> 4e-18), and
//   vscalef for the 2^floor(x) factor (exact, underflows gracefully to 0). AVX2: floor, subtract, the same
//   polynomial, 2^k through the exponent field with clamping and an explicit zero below 2^-126. The lower
//   clamp maps -inf (zero weight) and NaN (-inf - (-inf)) to exactly 0, so -inf in h never gives NaN.
// - Backward: p_ij = 2^((h_j - C_ij) * s + out_i * s), s = log2(e)/eps, recomputed from out. Row sums
//   (sum_j p_ij y_j) are kept in registers over a tile then added in float64; the column sums
//   (sum_i u_i p_ij and sum_i u_i p_ij x_i) are accumulated per thread in a tile-sized buffer of the input
//   precision (R rows at a time, so the buffer is read and written once per R rows), flushed every
//   FLUSH_ROWS rows into per-thread float64 arrays of size m (d + 1), and finally reduced across threads
//   under a mutex into float64 per-batch totals (O(threads * m * d) extra memory).
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/tuple.h>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace nb = nanobind;

namespace monge_softmin {

#if defined(__GNUC__)
#define SM_INLINE inline __attribute__((always_inline))
#define SM_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define SM_INLINE_LAMBDA __attribute__((always_inline))
#else
#define SM_INLINE_LAMBDA
#define SM_INLINE inline
#define SM_UNLIKELY(x) (x)
#endif

// ---------------------------------------------------------------------------------------------------
// Minimal SIMD layer: one vector type per precision, chosen at compile time.
// ---------------------------------------------------------------------------------------------------

// Near-minimax coefficients of 2^r on [0, 1] (Chebyshev interpolation at degree + 1 nodes, computed with
// mpmath for this file): degree 6 -> 8e-8 relative (<= 1.3 ulp after float32 rounding), degree 11 -> 4e-18.
constexpr float EF[7] = {1.0f,          0.6931469440460205f,    0.24023045599460602f,   0.055480629205703735f,
                         0.009684186428785324f, 0.0012391331838443875f, 0.00021865784947294742f};
constexpr double ED[12] = {0.999999999999999995775,   0.693147180559946525947,   0.240226506959042777296,
                           0.0555041086659011981023,  0.00961812909724502960154, 0.00133335587349195153558,
                           0.000154035092837036905646, 0.0000152532311413642625377, 0.00000132076974920903306713,
                           1.02581888541841741071e-7, 6.53860855349925472676e-9,  6.30147811743377885964e-10};
constexpr double LOG2E = 1.44269504088896340736;

#if defined(__AVX512F__)
#define SM_ISA "avx512"
struct VF {
  __m512 v;
};
struct VD {
  __m512d v;
};
constexpr int WF = 16, WD = 8;
SM_INLINE VF set1(float a) { return {_mm512_set1_ps(a)}; }
SM_INLINE VD set1(double a) { return {_mm512_set1_pd(a)}; }
SM_INLINE VF load(const float *p) { return {_mm512_loadu_ps(p)}; }
SM_INLINE VD load(const double *p) { return {_mm512_loadu_pd(p)}; }
SM_INLINE void store(float *p, VF a) { _mm512_storeu_ps(p, a.v); }
SM_INLINE void store(double *p, VD a) { _mm512_storeu_pd(p, a.v); }
SM_INLINE VF add(VF a, VF b) { return {_mm512_add_ps(a.v, b.v)}; }
SM_INLINE VD add(VD a, VD b) { return {_mm512_add_pd(a.v, b.v)}; }
SM_INLINE VF sub(VF a, VF b) { return {_mm512_sub_ps(a.v, b.v)}; }
SM_INLINE VD sub(VD a, VD b) { return {_mm512_sub_pd(a.v, b.v)}; }
SM_INLINE VF mul(VF a, VF b) { return {_mm512_mul_ps(a.v, b.v)}; }
SM_INLINE VD mul(VD a, VD b) { return {_mm512_mul_pd(a.v, b.v)}; }
SM_INLINE VF fmadd(VF a, VF b, VF c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
SM_INLINE VD fmadd(VD a, VD b, VD c) { return {_mm512_fmadd_pd(a.v, b.v, c.v)}; }
SM_INLINE VF fnmadd(VF a, VF b, VF c) { return {_mm512_fnmadd_ps(a.v, b.v, c.v)}; }
SM_INLINE VD fnmadd(VD a, VD b, VD c) { return {_mm512_fnmadd_pd(a.v, b.v, c.v)}; }
// max(a, lo): returns lo where a is NaN (second operand rule).
SM_INLINE VF maxv(VF a, VF b) { return {_mm512_max_ps(a.v, b.v)}; }
SM_INLINE VD maxv(VD a, VD b) { return {_mm512_max_pd(a.v, b.v)}; }
SM_INLINE VF minv(VF a, VF b) { return {_mm512_min_ps(a.v, b.v)}; }
SM_INLINE VD minv(VD a, VD b) { return {_mm512_min_pd(a.v, b.v)}; }
SM_INLINE bool any_pos(VF a) { return _mm512_cmp_ps_mask(a.v, _mm512_setzero_ps(), _CMP_GT_OQ) != 0; }
SM_INLINE bool any_pos(VD a) { return _mm512_cmp_pd_mask(a.v, _mm512_setzero_pd(), _CMP_GT_OQ) != 0; }
SM_INLINE double reduce_add(VF a) {
  __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(a.v));
  __m512d hi = _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a.v), 1)));
  return _mm512_reduce_add_pd(_mm512_add_pd(lo, hi));
}
SM_INLINE double reduce_add(VD a) { return _mm512_reduce_add_pd(a.v); }
SM_INLINE float reduce_max(VF a) { return _mm512_reduce_max_ps(a.v); }
SM_INLINE double reduce_max(VD a) { return _mm512_reduce_max_pd(a.v); }
// 2^x: r = x - floor(x) in [0, 1) in one instruction (vreduce), polynomial, then p * 2^floor(x) (vscalef,
// which also handles underflow to 0). The clamp maps -inf and NaN to 2^-160 -> 0.
SM_INLINE VF vexp2(VF x) {
  x = maxv(x, set1(-160.0f));
  const __m512 r = _mm512_reduce_ps(x.v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  __m512 p = _mm512_fmadd_ps(_mm512_set1_ps(EF[6]), r, _mm512_set1_ps(EF[5]));
  for (int q = 4; q >= 0; --q) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(EF[q]));
  return {_mm512_scalef_ps(p, x.v)};
}
SM_INLINE VD vexp2(VD x) {
  x = maxv(x, set1(-1100.0));
  const __m512d r = _mm512_reduce_pd(x.v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  __m512d p = _mm512_fmadd_pd(_mm512_set1_pd(ED[11]), r, _mm512_set1_pd(ED[10]));
  for (int q = 9; q >= 0; --q) p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(ED[q]));
  return {_mm512_scalef_pd(p, x.v)};
}
#elif defined(__AVX2__) && defined(__FMA__)
#define SM_ISA "avx2"
struct VF {
  __m256 v;
};
struct VD {
  __m256d v;
};
constexpr int WF = 8, WD = 4;
SM_INLINE VF set1(float a) { return {_mm256_set1_ps(a)}; }
SM_INLINE VD set1(double a) { return {_mm256_set1_pd(a)}; }
SM_INLINE VF load(const float *p) { return {_mm256_loadu_ps(p)}; }
SM_INLINE VD load(const double *p) { return {_mm256_loadu_pd(p)}; }
SM_INLINE void store(float *p, VF a) { _mm256_storeu_ps(p, a.v); }
SM_INLINE void store(double *p, VD a) { _mm256_storeu_pd(p, a.v); }
SM_INLINE VF add(VF a, VF b) { return {_mm256_add_ps(a.v, b.v)}; }
SM_INLINE VD add(VD a, VD b) { return {_mm256_add_pd(a.v, b.v)}; }
SM_INLINE VF sub(VF a, VF b) { return {_mm256_sub_ps(a.v, b.v)}; }
SM_INLINE VD sub(VD a, VD b) { return {_mm256_sub_pd(a.v, b.v)}; }
SM_INLINE VF mul(VF a, VF b) { return {_mm256_mul_ps(a.v, b.v)}; }
SM_INLINE VD mul(VD a, VD b) { return {_mm256_mul_pd(a.v, b.v)}; }
SM_INLINE VF fmadd(VF a, VF b, VF c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
SM_INLINE VD fmadd(VD a, VD b, VD c) { return {_mm256_fmadd_pd(a.v, b.v, c.v)}; }
SM_INLINE VF fnmadd(VF a, VF b, VF c) { return {_mm256_fnmadd_ps(a.v, b.v, c.v)}; }
SM_INLINE VD fnmadd(VD a, VD b, VD c) { return {_mm256_fnmadd_pd(a.v, b.v, c.v)}; }
SM_INLINE VF maxv(VF a, VF b) { return {_mm256_max_ps(a.v, b.v)}; }
SM_INLINE VD maxv(VD a, VD b) { return {_mm256_max_pd(a.v, b.v)}; }
SM_INLINE VF minv(VF a, VF b) { return {_mm256_min_ps(a.v, b.v)}; }
SM_INLINE VD minv(VD a, VD b) { return {_mm256_min_pd(a.v, b.v)}; }
SM_INLINE bool any_pos(VF a) {
  return _mm256_movemask_ps(_mm256_cmp_ps(a.v, _mm256_setzero_ps(), _CMP_GT_OQ)) != 0;
}
SM_INLINE bool any_pos(VD a) {
  return _mm256_movemask_pd(_mm256_cmp_pd(a.v, _mm256_setzero_pd(), _CMP_GT_OQ)) != 0;
}
SM_INLINE double reduce_add(VD a) {
  __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a.v), _mm256_extractf128_pd(a.v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}
SM_INLINE double reduce_add(VF a) {
  VD lo{_mm256_cvtps_pd(_mm256_castps256_ps128(a.v))}, hi{_mm256_cvtps_pd(_mm256_extractf128_ps(a.v, 1))};
  return reduce_add(add(lo, hi));
}
SM_INLINE float reduce_max(VF a) {
  alignas(32) float t[8];
  _mm256_store_ps(t, a.v);
  float r = t[0];
  for (int q = 1; q < 8; ++q) r = std::max(r, t[q]);
  return r;
}
SM_INLINE double reduce_max(VD a) {
  alignas(32) double t[4];
  _mm256_store_pd(t, a.v);
  return std::max(std::max(t[0], t[1]), std::max(t[2], t[3]));
}
// 2^x: k = floor(x), r = x - k in [0, 1), polynomial, 2^k through the exponent field. Clamped so that 2^k
// stays normal; below the clamp (and for NaN) the result is set to 0.
SM_INLINE VF vexp2(VF x) {
  const __m256 zero_out = _mm256_cmp_ps(x.v, _mm256_set1_ps(-126.0f), _CMP_NGE_UQ);
  x = minv(maxv(x, set1(-126.0f)), set1(127.0f));
  const __m256 k = _mm256_round_ps(x.v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  const __m256 r = _mm256_sub_ps(x.v, k);
  __m256 p = _mm256_fmadd_ps(_mm256_set1_ps(EF[6]), r, _mm256_set1_ps(EF[5]));
  for (int q = 4; q >= 0; --q) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(EF[q]));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
  return {_mm256_andnot_ps(zero_out, _mm256_mul_ps(p, _mm256_castsi256_ps(e)))};
}
SM_INLINE VD vexp2(VD x) {
  const __m256d zero_out = _mm256_cmp_pd(x.v, _mm256_set1_pd(-1022.0), _CMP_NGE_UQ);
  x = minv(maxv(x, set1(-1022.0)), set1(1023.0));
  const __m256d k = _mm256_round_pd(x.v, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
  const __m256d r = _mm256_sub_pd(x.v, k);
  __m256d p = _mm256_fmadd_pd(_mm256_set1_pd(ED[11]), r, _mm256_set1_pd(ED[10]));
  for (int q = 9; q >= 0; --q) p = _mm256_fmadd_pd(p, r, _mm256_set1_pd(ED[q]));
  const __m256i ki = _mm256_cvtepi32_epi64(_mm256_cvtpd_epi32(k));
  const __m256i e = _mm256_slli_epi64(_mm256_add_epi64(ki, _mm256_set1_epi64x(1023)), 52);
  return {_mm256_andnot_pd(zero_out, _mm256_mul_pd(p, _mm256_castsi256_pd(e)))};
}
#else
#define SM_ISA "scalar"
struct VF {
  float v;
};
struct VD {
  double v;
};
constexpr int WF = 1, WD = 1;
SM_INLINE VF set1(float a) { return {a}; }
SM_INLINE VD set1(double a) { return {a}; }
SM_INLINE VF load(const float *p) { return {*p}; }
SM_INLINE VD load(const double *p) { return {*p}; }
SM_INLINE void store(float *p, VF a) { *p = a.v; }
SM_INLINE void store(double *p, VD a) { *p = a.v; }
SM_INLINE VF add(VF a, VF b) { return {a.v + b.v}; }
SM_INLINE VD add(VD a, VD b) { return {a.v + b.v}; }
SM_INLINE VF sub(VF a, VF b) { return {a.v - b.v}; }
SM_INLINE VD sub(VD a, VD b) { return {a.v - b.v}; }
SM_INLINE VF mul(VF a, VF b) { return {a.v * b.v}; }
SM_INLINE VD mul(VD a, VD b) { return {a.v * b.v}; }
SM_INLINE VF fmadd(VF a, VF b, VF c) { return {std::fma(a.v, b.v, c.v)}; }
SM_INLINE VD fmadd(VD a, VD b, VD c) { return {std::fma(a.v, b.v, c.v)}; }
SM_INLINE VF fnmadd(VF a, VF b, VF c) { return {std::fma(-a.v, b.v, c.v)}; }
SM_INLINE VD fnmadd(VD a, VD b, VD c) { return {std::fma(-a.v, b.v, c.v)}; }
SM_INLINE VF maxv(VF a, VF b) { return {a.v > b.v ? a.v : b.v}; }  // NaN -> b
SM_INLINE VD maxv(VD a, VD b) { return {a.v > b.v ? a.v : b.v}; }
SM_INLINE bool any_pos(VF a) { return a.v > 0.0f; }
SM_INLINE bool any_pos(VD a) { return a.v > 0.0; }
SM_INLINE double reduce_add(VF a) { return a.v; }
SM_INLINE double reduce_add(VD a) { return a.v; }
SM_INLINE float reduce_max(VF a) { return a.v; }
SM_INLINE double reduce_max(VD a) { return a.v; }
SM_INLINE VF vexp2(VF x) { return {x.v > -160.0f ? std::exp2(x.v) : 0.0f}; }  // NaN, -inf -> 0
SM_INLINE VD vexp2(VD x) { return {x.v > -1100.0 ? std::exp2(x.v) : 0.0}; }
#endif

// Forward shift headroom (base-2 units): a raised shift is set HEAD above the largest argument seen, so
// that slowly increasing arguments (points sorted along an axis) do not trigger a rescale at every vector.
// It costs precision in t = a * s - M (rounded relative to |t| ~ HEAD for the dominant terms).
#ifndef SM_HEAD_F
#define SM_HEAD_F 8.0f
#endif
#ifndef SM_HEAD_D
#define SM_HEAD_D 64.0
#endif
template <class T>
struct Simd;
template <>
struct Simd<float> {
  using V = VF;
  static constexpr int W = WF;
  static constexpr int TJ = 1024;  // columns per tile (y tile + column accumulators stay in L1/L2)
  static constexpr float HEAD = SM_HEAD_F;
};
template <>
struct Simd<double> {
  using V = VD;
  static constexpr int W = WD;
  static constexpr int TJ = 512;
  static constexpr double HEAD = SM_HEAD_D;
};

constexpr int FLUSH_ROWS = 256;  // backward: rows between flushes of the column accumulators to float64

// Padded structure-of-arrays copy of y and h for one batch: rows 0..d-1 are coordinates, row d is h.
// Returns whether y or h holds a NaN (the kernels would otherwise treat NaN like a zero weight).
template <class T>
bool pack_y(const T *y, const T *h, int64_t m, int d, int64_t mp, T *dst) {
  bool nan = false;
  for (int k = 0; k < d; ++k) {
    T *row = dst + k * mp;
    for (int64_t j = 0; j < m; ++j) {
      row[j] = y[j * d + k];
      nan |= std::isnan(row[j]);
    }
    for (int64_t j = m; j < mp; ++j) row[j] = T(0);
  }
  T *hr = dst + static_cast<int64_t>(d) * mp;
  std::memcpy(hr, h, sizeof(T) * m);
  for (int64_t j = 0; j < m; ++j) nan |= std::isnan(hr[j]);
  for (int64_t j = m; j < mp; ++j) hr[j] = -std::numeric_limits<T>::infinity();
  return nan;
}

template <class T>
bool row_has_nan(const T *xi, int d) {
  bool nan = false;
  for (int k = 0; k < d; ++k) nan |= std::isnan(xi[k]);
  return nan;
}

// ---------------------------------------------------------------------------------------------------
// Forward: rows [i0, i1) of one batch.
// ---------------------------------------------------------------------------------------------------
template <class T, int D, int R>
void forward_rows(const T *x, const T *ys, int d, int64_t mp, T eps, int64_t i0, int64_t i1, T *out) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  constexpr int KD = D > 0 ? D : 1;
  const int dd = D > 0 ? D : d;
  // Work in base 2: t = (h_j - C_ij) * log2(e) / eps, summed as 2^t.
  const T inv_eps = static_cast<T>(LOG2E / static_cast<double>(eps));
  const V vinv = set1(inv_eps);
  const int64_t nr = i1 - i0;
  std::vector<T> Mrow(nr, -std::numeric_limits<T>::infinity());
  std::vector<double> Srow(nr, 0.0);
  const T *hrow = ys + static_cast<int64_t>(dd) * mp;

  for (int64_t j0 = 0; j0 < mp; j0 += S::TJ) {
    const int64_t j1 = std::min<int64_t>(mp, j0 + S::TJ);
    for (int64_t ib = 0; ib < nr; ib += R) {
      const T *xr[R];
      V xb[R][KD];
      T M[R];
      double Sd[R];
      V negM[R], acc[R];
      for (int r = 0; r < R; ++r) {
        const int64_t ii = std::min<int64_t>(ib + r, nr - 1);
        xr[r] = x + (i0 + ii) * dd;
        if constexpr (D > 0)
          for (int k = 0; k < D; ++k) xb[r][k] = set1(xr[r][k]);
        M[r] = Mrow[ii];
        Sd[r] = Srow[ii];
        negM[r] = set1(-M[r]);
        acc[r] = set1(T(0));
      }
      for (int64_t j = j0; j < j1; j += W) {
        const V hv = load(hrow + j);
        V a[R];
        for (int r = 0; r < R; ++r) a[r] = hv;
        if constexpr (D > 0) {
          for (int k = 0; k < D; ++k) {
            const V yk = load(ys + k * mp + j);
            for (int r = 0; r < R; ++r) {
              const V df = sub(xb[r][k], yk);
              a[r] = fnmadd(df, df, a[r]);
            }
          }
        } else {
          for (int k = 0; k < dd; ++k) {
            const V yk = load(ys + k * mp + j);
            for (int r = 0; r < R; ++r) {
              const V df = sub(set1(xr[r][k]), yk);
              a[r] = fnmadd(df, df, a[r]);
            }
          }
        }
        V t[R];
        bool any = false;
        for (int r = 0; r < R; ++r) {
          t[r] = fmadd(a[r], vinv, negM[r]);
          any |= any_pos(t[r]);
        }
        if (SM_UNLIKELY(any)) {
          for (int r = 0; r < R; ++r) {
            if (!any_pos(t[r])) continue;
            const T newM = std::max(M[r], reduce_max(mul(a[r], vinv)) + S::HEAD);
            const T scale = std::exp2(M[r] - newM);  // M = -inf -> 0 (nothing accumulated yet)
            acc[r] = mul(acc[r], set1(scale));
            Sd[r] *= static_cast<double>(scale);
            M[r] = newM;
            negM[r] = set1(-newM);
            t[r] = fmadd(a[r], vinv, negM[r]);
          }
        }
        for (int r = 0; r < R; ++r) acc[r] = add(acc[r], vexp2(t[r]));
      }
      for (int r = 0; r < R && ib + r < nr; ++r) {
        Mrow[ib + r] = M[r];
        Srow[ib + r] = Sd[r] + reduce_add(acc[r]);
      }
    }
  }
  // The arguments were scaled by inv_eps = log2(e)/eps as rounded to T: divide by that same value so that
  // the shift M_i, which carries the magnitude, maps back exactly to max_j (h_j - C_ij).
  const double scale_back = 1.0 / static_cast<double>(inv_eps);
  for (int64_t ii = 0; ii < nr; ++ii) {
    // S = 0 only when every weight is zero (M = -inf): the result is +inf.
    const double lse = static_cast<double>(Mrow[ii]) + std::log2(Srow[ii]);
    out[i0 + ii] = row_has_nan(x + (i0 + ii) * dd, dd) ? std::numeric_limits<T>::quiet_NaN()
                                                        : static_cast<T>(-scale_back * lse);
  }
}

// ---------------------------------------------------------------------------------------------------
// Backward: rows [i0, i1) of one batch. gx rows written directly; column sums added to colacc (float64,
// layout (d + 1) x mp: rows 0..d-1 = sum_i u_i p_ij x_ik, row d = sum_i u_i p_ij).
// ---------------------------------------------------------------------------------------------------
template <class T, int D, int R>
void backward_rows(const T *x, const T *ys, int d, int64_t mp, const T *out, const T *u, T eps, int64_t i0,
                   int64_t i1, T *gx, double *colacc) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  constexpr int KD = D > 0 ? D : 1;
  const int dd = D > 0 ? D : d;
  const T inv_eps = static_cast<T>(LOG2E / static_cast<double>(eps));  // base 2, as in the forward
  const V vinv = set1(inv_eps);
  const int64_t nr = i1 - i0;
  std::vector<double> racc(static_cast<size_t>(nr) * dd, 0.0);  // sum_j p_ij y_j
  std::vector<T> tile(static_cast<size_t>(S::TJ) * (dd + 1));   // column accumulators of a tile
  std::vector<V> rsum_dyn(D > 0 ? 0 : static_cast<size_t>(R) * dd);
  const T *hrow = ys + static_cast<int64_t>(dd) * mp;
  constexpr T NEG_INF = -std::numeric_limits<T>::infinity();

  for (int64_t j0 = 0; j0 < mp; j0 += S::TJ) {
    const int64_t j1 = std::min<int64_t>(mp, j0 + S::TJ);
    const int64_t tw = j1 - j0;
    std::fill(tile.begin(), tile.end(), T(0));
    int64_t rows_since_flush = 0;
    auto flush = [&]() {
      for (int k = 0; k <= dd; ++k) {
        double *dst = colacc + k * mp + j0;
        T *src = tile.data() + k * S::TJ;
        for (int64_t q = 0; q < tw; ++q) dst[q] += static_cast<double>(src[q]);
      }
      std::fill(tile.begin(), tile.end(), T(0));
      rows_since_flush = 0;
    };
    for (int64_t ib = 0; ib < nr; ib += R) {
      const T *xr[R];
      V xb[R][KD], xw[R][KD];
      V ob[R], ub[R];
      V rs[R][KD];
      for (int r = 0; r < R; ++r) {
        const bool valid = ib + r < nr;
        const int64_t ii = std::min<int64_t>(ib + r, nr - 1);
        xr[r] = x + (i0 + ii) * dd;
        const T oi = out[i0 + ii], ui = valid ? u[i0 + ii] : T(0);
        // Rows with zero weight everywhere (out = +inf) or padding rows contribute nothing.
        const bool live = valid && std::isfinite(oi) && ui != T(0);
        ob[r] = set1(live ? static_cast<T>(static_cast<double>(oi) * static_cast<double>(inv_eps)) : NEG_INF);
        ub[r] = set1(live ? ui : T(0));
        if constexpr (D > 0)
          for (int k = 0; k < D; ++k) {
            xb[r][k] = set1(xr[r][k]);
            xw[r][k] = set1(live ? ui * xr[r][k] : T(0));
            rs[r][k] = set1(T(0));
          }
        else
          for (int k = 0; k < dd; ++k) rsum_dyn[r * dd + k] = set1(T(0));
      }
      for (int64_t j = j0; j < j1; j += W) {
        const V hv = load(hrow + j);
        V a[R];
        for (int r = 0; r < R; ++r) a[r] = hv;
        if constexpr (D > 0) {
          V yk[D];
          for (int k = 0; k < D; ++k) {
            yk[k] = load(ys + k * mp + j);
            for (int r = 0; r < R; ++r) {
              const V df = sub(xb[r][k], yk[k]);
              a[r] = fnmadd(df, df, a[r]);
            }
          }
          T *tp = tile.data() + (j - j0);
          V col = load(tp + D * S::TJ);
          V lin[D];
          for (int k = 0; k < D; ++k) lin[k] = load(tp + k * S::TJ);
          for (int r = 0; r < R; ++r) {
            const V p = vexp2(fmadd(a[r], vinv, ob[r]));
            for (int k = 0; k < D; ++k) rs[r][k] = fmadd(p, yk[k], rs[r][k]);
            col = fmadd(ub[r], p, col);
            for (int k = 0; k < D; ++k) lin[k] = fmadd(xw[r][k], p, lin[k]);
          }
          store(tp + D * S::TJ, col);
          for (int k = 0; k < D; ++k) store(tp + k * S::TJ, lin[k]);
        } else {
          for (int k = 0; k < dd; ++k) {
            const V yk = load(ys + k * mp + j);
            for (int r = 0; r < R; ++r) {
              const V df = sub(set1(xr[r][k]), yk);
              a[r] = fnmadd(df, df, a[r]);
            }
          }
          T *tp = tile.data() + (j - j0);
          for (int r = 0; r < R; ++r) {
            const V p = vexp2(fmadd(a[r], vinv, ob[r]));
            const V up = mul(ub[r], p);
            store(tp + dd * S::TJ, add(load(tp + dd * S::TJ), up));
            for (int k = 0; k < dd; ++k) {
              const V yk = load(ys + k * mp + j);
              rsum_dyn[r * dd + k] = fmadd(p, yk, rsum_dyn[r * dd + k]);
              store(tp + k * S::TJ, fmadd(up, set1(xr[r][k]), load(tp + k * S::TJ)));
            }
          }
        }
      }
      for (int r = 0; r < R && ib + r < nr; ++r)
        for (int k = 0; k < dd; ++k) {
          if constexpr (D > 0)
            racc[(ib + r) * dd + k] += reduce_add(rs[r][k]);
          else
            racc[(ib + r) * dd + k] += reduce_add(rsum_dyn[r * dd + k]);
        }
      rows_since_flush += R;
      if (rows_since_flush >= FLUSH_ROWS) flush();
    }
    flush();
  }
  for (int64_t ii = 0; ii < nr; ++ii) {
    const int64_t i = i0 + ii;
    const T oi = out[i], ui = u[i];
    const bool live = std::isfinite(oi) && ui != T(0);
    for (int k = 0; k < dd; ++k) {
      const double xi = static_cast<double>(x[i * dd + k]);
      const double s = live ? racc[ii * dd + k] : std::isnan(oi) ? std::nan("") : 0.0;
      gx[i * dd + k] = static_cast<T>(2.0 * static_cast<double>(ui) * (xi - s));
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Dispatch on d and threading.
// ---------------------------------------------------------------------------------------------------
#ifndef SM_R_FWD
#define SM_R_FWD 4
#endif
#ifndef SM_R_BWD
#define SM_R_BWD 4
#endif
constexpr int R_FWD = SM_R_FWD;
constexpr int R_BWD = SM_R_BWD;

template <class T>
using FwdFn = void (*)(const T *, const T *, int, int64_t, T, int64_t, int64_t, T *);
template <class T>
using BwdFn = void (*)(const T *, const T *, int, int64_t, const T *, const T *, T, int64_t, int64_t, T *,
                       double *);

template <class T>
FwdFn<T> pick_forward(int d) {
  switch (d) {
    case 1: return &forward_rows<T, 1, R_FWD>;
    case 2: return &forward_rows<T, 2, R_FWD>;
    case 3: return &forward_rows<T, 3, R_FWD>;
    case 4: return &forward_rows<T, 4, R_FWD>;
    case 5: return &forward_rows<T, 5, 2>;
    case 6: return &forward_rows<T, 6, 2>;
    case 7: return &forward_rows<T, 7, 2>;
    case 8: return &forward_rows<T, 8, 2>;
    default: return &forward_rows<T, 0, 2>;
  }
}
template <class T>
BwdFn<T> pick_backward(int d) {
  switch (d) {
    case 1: return &backward_rows<T, 1, R_BWD>;
    case 2: return &backward_rows<T, 2, R_BWD>;
    case 3: return &backward_rows<T, 3, R_BWD>;
    case 4: return &backward_rows<T, 4, 2>;
    case 5: return &backward_rows<T, 5, 2>;
    case 6: return &backward_rows<T, 6, 2>;
    case 7: return &backward_rows<T, 7, 2>;
    case 8: return &backward_rows<T, 8, 2>;
    default: return &backward_rows<T, 0, 1>;
  }
}

int resolve_threads(int n_threads, int64_t rows, int64_t work) {
  int nt = n_threads > 0 ? n_threads : static_cast<int>(std::thread::hardware_concurrency());
  nt = std::max(1, nt);
  // Not worth a thread below ~2^16 pairs each.
  const int64_t by_work = std::max<int64_t>(1, work >> 16);
  nt = static_cast<int>(std::min<int64_t>({static_cast<int64_t>(nt), rows, by_work}));
  return std::max(1, nt);
}

// Calls body(t, b, i0, i1) for the rows of thread t, split contiguously over the flattened (B * n) rows.
template <class F>
void parallel_rows(int nt, int64_t B, int64_t n, F &&body) {
  const int64_t total = B * n;
  auto run = [&](int t) {
    const int64_t r0 = total * t / nt, r1 = total * (t + 1) / nt;
    for (int64_t r = r0; r < r1;) {
      const int64_t b = r / n, i0 = r % n, i1 = std::min<int64_t>(n, i0 + (r1 - r));
      body(t, b, i0, i1);
      r += i1 - i0;
    }
  };
  if (nt == 1) {
    run(0);
    return;
  }
  std::vector<std::thread> pool;
  pool.reserve(nt - 1);
  for (int t = 1; t < nt; ++t) pool.emplace_back(run, t);
  run(0);
  for (auto &th : pool) th.join();
}

template <class T>
using In3 = nb::ndarray<const T, nb::ndim<3>, nb::c_contig, nb::device::cpu>;
template <class T>
using In2 = nb::ndarray<const T, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
template <class T, size_t N>
using Out = nb::ndarray<nb::numpy, T, nb::ndim<N>>;

template <class T, size_t N>
Out<T, N> owned(std::unique_ptr<T[]> data, std::initializer_list<size_t> shape) {
  T *ptr = data.release();
  nb::capsule owner(ptr, [](void *p) noexcept { delete[] static_cast<T *>(p); });
  return Out<T, N>(ptr, shape, owner);
}

template <class T>
void check_shapes(const In3<T> &x, const In3<T> &y, const In2<T> &h, double eps, const char *name) {
  if (y.shape(0) != x.shape(0) || h.shape(0) != x.shape(0))
    throw nb::value_error((std::string(name) + ": x, y, h must share the batch size B").c_str());
  if (y.shape(2) != x.shape(2))
    throw nb::value_error((std::string(name) + ": x and y must have the same dimension d").c_str());
  if (h.shape(1) != y.shape(1)) throw nb::value_error((std::string(name) + ": h must be (B, m)").c_str());
  if (x.shape(2) < 1) throw nb::value_error((std::string(name) + ": d must be >= 1").c_str());
  if (!(eps > 0.0) || !std::isfinite(eps))
    throw nb::value_error((std::string(name) + ": eps must be positive and finite").c_str());
}

template <class T>
int64_t padded(int64_t m) {
  constexpr int W = Simd<T>::W;
  return std::max<int64_t>(W, (m + W - 1) / W * W);
}

template <class T>
Out<T, 2> softmin_binding(In3<T> x, In3<T> y, In2<T> h, double eps, int n_threads) {
  check_shapes<T>(x, y, h, eps, "softmin_sqeuclid");
  const int64_t B = x.shape(0), n = x.shape(1), m = y.shape(1);
  const int d = static_cast<int>(x.shape(2));
  const int64_t mp = padded<T>(m);
  auto out = std::make_unique<T[]>(std::max<int64_t>(1, B * n));
  {
    nb::gil_scoped_release release;
    if (B * n > 0) {
      std::vector<T> ys(static_cast<size_t>(B) * (d + 1) * mp);
      std::vector<char> nan_batch(B);
      for (int64_t b = 0; b < B; ++b)
        nan_batch[b] = pack_y(y.data() + b * m * d, h.data() + b * m, m, d, mp, ys.data() + b * (d + 1) * mp);
      const int nt = resolve_threads(n_threads, B * n, B * n * mp * d);
      FwdFn<T> fn = pick_forward<T>(d);
      const T *xd = x.data();
      T *od = out.get();
      parallel_rows(nt, B, n, [&](int, int64_t b, int64_t i0, int64_t i1) {
        fn(xd + b * n * d, ys.data() + b * (d + 1) * mp, d, mp, static_cast<T>(eps), i0, i1, od + b * n);
      });
      for (int64_t b = 0; b < B; ++b)
        if (nan_batch[b]) std::fill(od + b * n, od + (b + 1) * n, std::numeric_limits<T>::quiet_NaN());
    }
  }
  return owned<T, 2>(std::move(out), {static_cast<size_t>(B), static_cast<size_t>(n)});
}

template <class T>
std::tuple<Out<T, 3>, Out<T, 3>, Out<T, 2>> softmin_backward_binding(In3<T> x, In3<T> y, In2<T> h, In2<T> out,
                                                                      In2<T> u, double eps, int n_threads) {
  check_shapes<T>(x, y, h, eps, "softmin_sqeuclid_backward");
  const int64_t B = x.shape(0), n = x.shape(1), m = y.shape(1);
  const int d = static_cast<int>(x.shape(2));
  if (out.shape(0) != static_cast<size_t>(B) || out.shape(1) != static_cast<size_t>(n) ||
      u.shape(0) != static_cast<size_t>(B) || u.shape(1) != static_cast<size_t>(n))
    throw nb::value_error("softmin_sqeuclid_backward: out and u must be (B, n)");
  const int64_t mp = padded<T>(m);
  auto gx = std::make_unique<T[]>(std::max<int64_t>(1, B * n * d));
  auto gy = std::make_unique<T[]>(std::max<int64_t>(1, B * m * d));
  auto gh = std::make_unique<T[]>(std::max<int64_t>(1, B * m));
  {
    nb::gil_scoped_release release;
    std::vector<double> total(static_cast<size_t>(B) * (d + 1) * mp, 0.0);
    std::vector<char> nan_batch(B, 0);
    if (B * n > 0 && m > 0) {
      std::vector<T> ys(static_cast<size_t>(B) * (d + 1) * mp);
      for (int64_t b = 0; b < B; ++b) {
        nan_batch[b] = pack_y(y.data() + b * m * d, h.data() + b * m, m, d, mp, ys.data() + b * (d + 1) * mp);
        for (int64_t i = 0; i < n; ++i)  // a NaN result with a nonzero cotangent poisons the column sums
          nan_batch[b] |= std::isnan(out.data()[b * n + i]) && u.data()[b * n + i] != T(0);
      }
      const int nt = resolve_threads(n_threads, B * n, B * n * mp * d);
      BwdFn<T> fn = pick_backward<T>(d);
      std::vector<std::vector<double>> partial(nt);
      std::mutex mu;
      const T *xd = x.data(), *od = out.data(), *ud = u.data();
      T *gxd = gx.get();
      parallel_rows(nt, B, n, [&](int t, int64_t b, int64_t i0, int64_t i1) {
        auto &acc = partial[t];
        acc.assign(static_cast<size_t>(d + 1) * mp, 0.0);
        fn(xd + b * n * d, ys.data() + b * (d + 1) * mp, d, mp, od + b * n, ud + b * n, static_cast<T>(eps),
           i0, i1, gxd + b * n * d, acc.data());
        std::lock_guard<std::mutex> lock(mu);
        double *dst = total.data() + b * (d + 1) * mp;
        for (size_t q = 0; q < acc.size(); ++q) dst[q] += acc[q];
      });
    } else if (B * n > 0) {  // m == 0: every out is +inf, the gradient of x is 2 u x
      for (int64_t q = 0; q < B * n; ++q)
        for (int k = 0; k < d; ++k)
          gx[q * d + k] = static_cast<T>(2.0 * double(u.data()[q]) * double(x.data()[q * d + k]));
    }
    for (int64_t b = 0; b < B; ++b) {
      const double *lin = total.data() + b * (d + 1) * mp, *col = lin + static_cast<int64_t>(d) * mp;
      const T *yb = y.data() + b * m * d;
      if (nan_batch[b]) {
        std::fill(gh.get() + b * m, gh.get() + (b + 1) * m, std::numeric_limits<T>::quiet_NaN());
        std::fill(gy.get() + b * m * d, gy.get() + (b + 1) * m * d, std::numeric_limits<T>::quiet_NaN());
        continue;
      }
      for (int64_t j = 0; j < m; ++j) {
        gh[b * m + j] = static_cast<T>(-col[j]);
        for (int k = 0; k < d; ++k)
          gy[(b * m + j) * d + k] =
              static_cast<T>(2.0 * (col[j] * static_cast<double>(yb[j * d + k]) - lin[k * mp + j]));
      }
    }
  }
  return {owned<T, 3>(std::move(gx), {size_t(B), size_t(n), size_t(d)}),
          owned<T, 3>(std::move(gy), {size_t(B), size_t(m), size_t(d)}),
          owned<T, 2>(std::move(gh), {size_t(B), size_t(m)})};
}


// ---------------------------------------------------------------------------------------------------
// Dense soft-min against a materialised cost C (B, n, m), same base-2 online log-sum-exp and vexp2.
//   dim = 1: out_i = -eps log sum_j exp((h_j - C_ij) / eps): each row is one contiguous online LSE.
//   dim = 0: out_j = -eps log sum_i exp((h_i - C_ij) / eps): rows streamed one by one, per-column running
//            shift and sums (vectorised across j); per-thread partials merged (LSE merge) in float64.
// Partial sums are accumulated in T over at most TJ / W terms per lane (dim = 1) or FLUSH_ROWS rows
// (dim = 0) and then added in float64. A NaN term (e.g. -inf - (-inf)) counts as zero weight.
// ---------------------------------------------------------------------------------------------------
template <class T>
void dense_rows(const T *C, const T *hp, int64_t m, T inv, int64_t i0, int64_t i1, T *out) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  constexpr T INF = std::numeric_limits<T>::infinity();
  const int64_t mf = m / W * W;
  const V vinv = set1(inv), vninf = set1(-INF);
  const double scale_back = 1.0 / static_cast<double>(inv);
  T tail[W];
  for (int64_t i = i0; i < i1; ++i) {
    const T *row = C + i * m;
    T M = -INF;
    double Sd = 0.0;
    V negM = set1(INF), acc = set1(T(0));
    auto step = [&](V a) SM_INLINE_LAMBDA {
      V t = fmadd(a, vinv, negM);
      if (SM_UNLIKELY(any_pos(t))) {
        const T newM = std::max(M, reduce_max(maxv(mul(a, vinv), vninf)) + S::HEAD);
        const T sc = std::exp2(M - newM);  // M = -inf -> 0 (nothing accumulated yet)
        acc = mul(acc, set1(sc));
        Sd *= static_cast<double>(sc);
        M = newM;
        negM = set1(-newM);
        t = fmadd(a, vinv, negM);
      }
      acc = add(acc, vexp2(t));
    };
    for (int64_t j0 = 0; j0 < mf; j0 += S::TJ) {
      const int64_t j1 = std::min<int64_t>(mf, j0 + S::TJ);
      for (int64_t j = j0; j < j1; j += W) step(sub(load(hp + j), load(row + j)));
      Sd += reduce_add(acc);
      acc = set1(T(0));
    }
    if (mf < m) {
      for (int q = 0; q < W; ++q) tail[q] = mf + q < m ? row[mf + q] : T(0);  // hp is -inf there
      step(sub(load(hp + mf), load(tail)));
      Sd += reduce_add(acc);
    }
    // Sd = 0 only when every weight is zero (M = -inf): the result is +inf.
    out[i] = static_cast<T>(-scale_back * (static_cast<double>(M) + std::log2(Sd)));
  }
}

// Rows [i0, i1) of one batch for dim = 0. NM (-shift), acc: T arrays of size mp (NM = +inf, acc = 0 on
// entry); Sv: float64 sums of size mp (0 on entry). On return Sv holds sum_i 2^(t_ij + M_j) / 2^M_j... i.e.
// the column sums relative to the shifts M_j = -NM_j.
template <class T>
void dense_cols(const T *C, const T *h, int64_t m, int64_t mp, T inv, int64_t i0, int64_t i1, T *NM, T *acc,
                double *Sv) {
  using S = Simd<T>;
  using V = typename S::V;
  constexpr int W = S::W;
  constexpr T INF = std::numeric_limits<T>::infinity();
  const int64_t mf = m / W * W;
  const V vinv = set1(inv), zero = set1(T(0)), head = set1(S::HEAD);
  std::vector<T> tail(static_cast<size_t>(mp - mf) + W, INF);
  T sc_l[W];
  int rows = 0;
  auto flush = [&]() {
    for (int64_t j = 0; j < mp; ++j) {
      Sv[j] += static_cast<double>(acc[j]);
      acc[j] = T(0);
    }
    rows = 0;
  };
  for (int64_t i = i0; i < i1; ++i) {
    const T hi = h[i];
    if (hi == -INF) continue;  // zero weight for the whole row
    const V hv = set1(hi);
    const T *row = C + i * m;
    if (mf < m) std::copy(row + mf, row + m, tail.begin());
    for (int64_t j = 0; j < mp; j += W) {
      const V a = sub(hv, load(j < mf ? row + j : tail.data() + (j - mf)));
      V nm = load(NM + j);
      V t = fmadd(a, vinv, nm);
      V ac = load(acc + j);
      if (SM_UNLIKELY(any_pos(t))) {
        const V Mo = sub(zero, nm);
        const V Mn = maxv(add(mul(a, vinv), head), Mo);  // NaN candidates keep the old shift
        const V sc = vexp2(sub(Mo, Mn));                 // -inf - -inf = NaN -> 0: nothing accumulated there
        ac = mul(ac, sc);
        store(sc_l, sc);
        for (int q = 0; q < W; ++q) Sv[j + q] *= static_cast<double>(sc_l[q]);
        nm = sub(zero, Mn);
        store(NM + j, nm);
        t = fmadd(a, vinv, nm);
      }
      store(acc + j, add(ac, vexp2(t)));
    }
    if (++rows >= FLUSH_ROWS) flush();
  }
  flush();
}

template <class T>
Out<T, 2> softmin_dense_binding(In3<T> C, In2<T> h, double eps, int dim, int n_threads) {
  if (dim != 0 && dim != 1) throw nb::value_error("softmin_dense: dim must be 0 or 1");
  if (!(eps > 0.0) || !std::isfinite(eps)) throw nb::value_error("softmin_dense: eps must be positive and finite");
  const int64_t B = C.shape(0), n = C.shape(1), m = C.shape(2);
  const int64_t hl = dim == 1 ? m : n, nout = dim == 1 ? n : m;
  if (static_cast<int64_t>(h.shape(0)) != B || static_cast<int64_t>(h.shape(1)) != hl)
    throw nb::value_error(dim == 1 ? "softmin_dense: h must be (B, m) for dim=1" : "softmin_dense: h must be (B, n) for dim=0");
  auto out = std::make_unique<T[]>(std::max<int64_t>(1, B * nout));
  {
    nb::gil_scoped_release release;
    const T inv = static_cast<T>(LOG2E / eps);
    int nt = n_threads > 0 ? n_threads : static_cast<int>(std::thread::hardware_concurrency());
    if (B * n * m < (int64_t(1) << 21)) nt = 1;  // thread start-up (~250 us) dominates below ~2M entries
    nt = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(std::max(nt, 1), B * n)));
    const int64_t mp = padded<T>(m);
    T *od = out.get();
    const T *Cd = C.data(), *hd = h.data();
    if (dim == 1) {
      if (B * n > 0) {
        std::vector<T> hp(static_cast<size_t>(B) * mp, -std::numeric_limits<T>::infinity());
        for (int64_t b = 0; b < B; ++b) std::copy(hd + b * m, hd + (b + 1) * m, hp.data() + b * mp);
        parallel_rows(nt, B, n, [&](int, int64_t b, int64_t i0, int64_t i1) {
          dense_rows<T>(Cd + b * n * m, hp.data() + b * mp, m, inv, i0, i1, od + b * n);
        });
      }
    } else if (B * m > 0) {
      std::vector<double> GM(static_cast<size_t>(B) * m, -std::numeric_limits<double>::infinity());
      std::vector<double> GS(static_cast<size_t>(B) * m, 0.0);
      std::mutex mu;
      if (n > 0)
        parallel_rows(nt, B, n, [&](int, int64_t b, int64_t i0, int64_t i1) {
          std::vector<T> NM(mp, std::numeric_limits<T>::infinity()), acc(mp, T(0));
          std::vector<double> Sv(mp, 0.0);
          dense_cols<T>(Cd + b * n * m, hd + b * n, m, mp, inv, i0, i1, NM.data(), acc.data(), Sv.data());
          std::lock_guard<std::mutex> lock(mu);
          double *gm = GM.data() + b * m, *gs = GS.data() + b * m;
          for (int64_t j = 0; j < m; ++j) {
            if (!(Sv[j] > 0.0)) continue;
            const double Mt = -static_cast<double>(NM[j]);
            if (!(gs[j] > 0.0)) {
              gm[j] = Mt;
              gs[j] = Sv[j];
            } else {
              const double nm = std::max(gm[j], Mt);
              gs[j] = gs[j] * std::exp2(gm[j] - nm) + Sv[j] * std::exp2(Mt - nm);
              gm[j] = nm;
            }
          }
        });
      const double scale_back = 1.0 / static_cast<double>(inv);
      for (int64_t q = 0; q < B * m; ++q)
        od[q] = GS[q] > 0.0 ? static_cast<T>(-scale_back * (GM[q] + std::log2(GS[q])))
                            : std::numeric_limits<T>::infinity();
    }
  }
  return owned<T, 2>(std::move(out), {static_cast<size_t>(B), static_cast<size_t>(nout)});
}

}  // namespace monge_softmin

void register_softmin(nb::module_ &m) {
  using namespace monge_softmin;
  static const char *fwd_doc =
      "softmin_sqeuclid(x, y, h, eps, n_threads=0) -> out\n\n"
      "out[b, i] = -eps * log sum_j exp((h[b, j] - |x[b, i] - y[b, j]|^2) / eps), streamed over tiles of y\n"
      "(online log-sum-exp, O(n + m) memory). x: (B, n, d), y: (B, m, d), h: (B, m); all float32 or all\n"
      "float64, C-contiguous, CPU (no implicit conversion or copy). h may hold -inf (zero weight); a row\n"
      "whose weights are all zero gives +inf; a NaN in x (its row) or in y, h (its batch) gives NaN.\n"
      "Returns a new (B, n) numpy array of the input dtype. float32 sums are accumulated per tile in\n"
      "float32 and across tiles in float64. n_threads <= 0: all hardware threads. Releases the GIL.\n"
      "SIMD: " SM_ISA ".";
  static const char *bwd_doc =
      "softmin_sqeuclid_backward(x, y, h, out, u, eps, n_threads=0) -> (gx, gy, gh)\n\n"
      "Vector-Jacobian product of softmin_sqeuclid for the cotangent u (B, n), recomputing the weights\n"
      "p_ij = exp((h_j - |x_i - y_j|^2 + out_i) / eps) from out (the forward result):\n"
      "gx_i = 2 (u_i x_i - sum_j u_i p_ij y_j), gh_j = -sum_i u_i p_ij,\n"
      "gy_j = 2 (c_j y_j - sum_i u_i p_ij x_i) with c_j = sum_i u_i p_ij. Column sums are reduced in float64.\n"
      "Rows with out = +inf (no weight) or u = 0 contribute nothing. Not differentiable itself.\n"
      "Same dtype/layout rules as softmin_sqeuclid; returns numpy arrays. Releases the GIL.";
  m.def("softmin_sqeuclid", &softmin_binding<float>, nb::arg("x").noconvert(), nb::arg("y").noconvert(),
        nb::arg("h").noconvert(), nb::arg("eps"), nb::arg("n_threads") = 0, fwd_doc);
  m.def("softmin_sqeuclid", &softmin_binding<double>, nb::arg("x").noconvert(), nb::arg("y").noconvert(),
        nb::arg("h").noconvert(), nb::arg("eps"), nb::arg("n_threads") = 0);
  m.def("softmin_sqeuclid_backward", &softmin_backward_binding<float>, nb::arg("x").noconvert(),
        nb::arg("y").noconvert(), nb::arg("h").noconvert(), nb::arg("out").noconvert(),
        nb::arg("u").noconvert(), nb::arg("eps"), nb::arg("n_threads") = 0, bwd_doc);
  m.def("softmin_sqeuclid_backward", &softmin_backward_binding<double>, nb::arg("x").noconvert(),
        nb::arg("y").noconvert(), nb::arg("h").noconvert(), nb::arg("out").noconvert(),
        nb::arg("u").noconvert(), nb::arg("eps"), nb::arg("n_threads") = 0);

  static const char *dense_doc =
      "softmin_dense(C, h, eps, dim, n_threads=0) -> out\n\n"
      "Dense soft-min against a materialised cost C (B, n, m), one streaming pass over C:\n"
      "dim=1: out[b, i] = -eps log sum_j exp((h[b, j] - C[b, i, j]) / eps), h: (B, m), out: (B, n);\n"
      "dim=0: out[b, j] = -eps log sum_i exp((h[b, i] - C[b, i, j]) / eps), h: (B, n), out: (B, m).\n"
      "C, h: same dtype (float32/float64), C-contiguous, CPU (no conversion). h may hold -inf (zero weight);\n"
      "an all-zero-weight reduction gives +inf; NaN terms count as zero weight. Forward only. Threads only\n"
      "when B*n*m >= 2^21 (n_threads <= 0: all hardware threads). Releases the GIL. SIMD: " SM_ISA ".";
  m.def("softmin_dense", &softmin_dense_binding<float>, nb::arg("C").noconvert(), nb::arg("h").noconvert(),
        nb::arg("eps"), nb::arg("dim"), nb::arg("n_threads") = 0, dense_doc);
  m.def("softmin_dense", &softmin_dense_binding<double>, nb::arg("C").noconvert(), nb::arg("h").noconvert(),
        nb::arg("eps"), nb::arg("dim"), nb::arg("n_threads") = 0);
}
