// The shared SIMD layer of the compiled core: one vector type per precision (VF: float, VD: double),
// chosen at compile time (AVX-512, AVX2 + FMA, or scalar), with the handful of operations the kernels need
// (load/store, arithmetic, fused multiply-add, max/min, horizontal reductions) and a vectorised 2^x.
//
// - 2^x (written for monge): AVX-512: r = x - floor(x) in [0, 1) with vreduce, a near-minimax polynomial for
//   2^r (Chebyshev interpolation on [0, 1], coefficients computed with mpmath: degree 6 in float32 -> 8e-8
//   relative before rounding, <= 1.3 ulp in a numpy emulation; degree 11 in float64 -> 4e-18), and vscalef
//   for the 2^floor(x) factor (exact, underflows gracefully to 0). AVX2: floor, subtract, the same polynomial,
//   2^k through the exponent field with clamping and an explicit zero below 2^-126. The lower clamp maps -inf
//   (zero weight) and NaN (-inf - (-inf)) to exactly 0, so -inf in h never gives NaN.
// - MONGE_SIMD_AVX512 / MONGE_SIMD_AVX2 / MONGE_SIMD_SCALAR name the layer that was chosen, for code that mixes
//   these helpers with ISA-specific intrinsics (masks, byte compares) of its own (assignment.cpp).
// - Vec<T>: the vector type and width for a precision, for templated kernels.
#pragma once

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace monge {
namespace simd {

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
#define MONGE_SIMD_AVX512 1
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
SM_INLINE double reduce_min(VD a) { return _mm512_reduce_min_pd(a.v); }
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
#define MONGE_SIMD_AVX2 1
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
SM_INLINE double reduce_min(VD a) {
  alignas(32) double t[4];
  _mm256_store_pd(t, a.v);
  return std::min(std::min(t[0], t[1]), std::min(t[2], t[3]));
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
#define MONGE_SIMD_SCALAR 1
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
SM_INLINE VF minv(VF a, VF b) { return {a.v < b.v ? a.v : b.v}; }  // NaN -> b
SM_INLINE VD minv(VD a, VD b) { return {a.v < b.v ? a.v : b.v}; }
SM_INLINE bool any_pos(VF a) { return a.v > 0.0f; }
SM_INLINE bool any_pos(VD a) { return a.v > 0.0; }
SM_INLINE double reduce_add(VF a) { return a.v; }
SM_INLINE double reduce_add(VD a) { return a.v; }
SM_INLINE float reduce_max(VF a) { return a.v; }
SM_INLINE double reduce_max(VD a) { return a.v; }
SM_INLINE double reduce_min(VD a) { return a.v; }
SM_INLINE VF vexp2(VF x) { return {x.v > -160.0f ? std::exp2(x.v) : 0.0f}; }  // NaN, -inf -> 0
SM_INLINE VD vexp2(VD x) { return {x.v > -1100.0 ? std::exp2(x.v) : 0.0}; }
#endif

// ---------------------------------------------------------------------------------------------------
// e^x and log x in float64 (issue 14: the per-iteration vectors of the compiled Sinkhorn loops).
// vexp: 2^(x log2 e) with the rounding of the product x log2 e carried to first order (its low part lo,
//   e^x = 2^t (1 + lo ln 2)): a few ulp where the scalar exp is <= 1 ulp; -inf and NaN -> 0 as vexp2.
// vlog (AVX-512): x = m 2^e with m in [0.75, 1.5) (getexp of 4x/3, scalef), log m = 2 atanh(s),
//   s = (m - 1)/(m + 1) in [-1/7, 1/5], the atanh series to s^23 (truncation < 2e-17 relative), e ln 2 in two
//   parts (the high part has trailing zeros: e ln2_hi is exact). Positive normal x only (the callers check the
//   sums before and discard them otherwise). Elsewhere: the scalar std::log per lane.
// ---------------------------------------------------------------------------------------------------
constexpr double LOG2E_LO = 2.0355273740931033e-17;  // log2(e) - LOG2E
constexpr double LN2 = 0.6931471805599453;
SM_INLINE VD vexp(VD x) {
  x = minv(maxv(x, set1(-800.0)), set1(800.0));  // -inf, NaN -> 0, +inf -> inf (no inf - inf in the low part)
  const VD t = mul(x, set1(LOG2E));
  const VD lo = fmadd(x, set1(LOG2E_LO), fmadd(x, set1(LOG2E), sub(set1(0.0), t)));
  const VD r = vexp2(t);
  VD out = mul(r, fmadd(lo, set1(LN2), set1(1.0)));  // (r (1 + lo ln 2): inf stays inf)
#if defined(MONGE_SIMD_AVX2)  // (its vexp2 clamps 2^k to the normal range: overflow is inf here too)
  out.v = _mm256_blendv_pd(out.v, _mm256_set1_pd(HUGE_VAL), _mm256_cmp_pd(x.v, _mm256_set1_pd(709.8), _CMP_GT_OQ));
#endif
  return out;
}
#if defined(MONGE_SIMD_AVX512)
SM_INLINE VD vlog(VD x) {
  const __m512d e = _mm512_getexp_pd(_mm512_mul_pd(x.v, _mm512_set1_pd(4.0 / 3.0)));
  const __m512d m = _mm512_scalef_pd(x.v, _mm512_sub_pd(_mm512_setzero_pd(), e));
  const __m512d one = _mm512_set1_pd(1.0);
  const __m512d s = _mm512_div_pd(_mm512_sub_pd(m, one), _mm512_add_pd(m, one));
  const __m512d z = _mm512_mul_pd(s, s);
  __m512d p = _mm512_set1_pd(1.0 / 23.0);
  for (int q = 21; q >= 3; q -= 2) p = _mm512_fmadd_pd(p, z, _mm512_set1_pd(1.0 / q));
  // log m = 2 s + 2 s z p; log x = e ln2_hi + (2 s + (2 s z p + e ln2_lo))
  const __m512d s2 = _mm512_add_pd(s, s);
  const __m512d elo = _mm512_mul_pd(e, _mm512_set1_pd(1.90821492927058770002e-10));
  const __m512d tail = _mm512_fmadd_pd(_mm512_mul_pd(s2, z), p, elo);
  return {_mm512_fmadd_pd(e, _mm512_set1_pd(6.93147180369123816490e-01), _mm512_add_pd(s2, tail))};
}
#else
SM_INLINE VD vlog(VD x) {
  alignas(64) double t[WD];
  store(t, x);
  for (int q = 0; q < WD; ++q) t[q] = std::log(t[q]);
  return load(t);
}
#endif

template <class T>
struct Vec;
template <>
struct Vec<float> {
  using V = VF;
  static constexpr int W = WF;
};
template <>
struct Vec<double> {
  using V = VD;
  static constexpr int W = WD;
};

}  // namespace simd
}  // namespace monge
