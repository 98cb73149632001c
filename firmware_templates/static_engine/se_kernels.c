/* edgemnv2 static engine kernels; every formula follows the TFLM reference kernel named beside it
 * (tensorflow/lite/kernels/internal/reference/..., common.h, gemmlowp fixedpoint.h). */
#include "se_kernels.h"

#include <limits.h>
#include <string.h>

/* gemmlowp SaturatingRoundingDoublingHighMul (int32) */
static int32_t srdhm(int32_t a, int32_t b) {
  if (a == b && a == INT32_MIN) return INT32_MAX;
  int64_t ab = (int64_t)a * (int64_t)b;
  int32_t nudge = ab >= 0 ? (1 << 30) : (1 - (1 << 30));
  return (int32_t)((ab + nudge) / (1LL << 31));
}

/* gemmlowp RoundingDivideByPOT */
static int32_t rdbpot(int32_t x, int exponent) {
  const int32_t mask = (int32_t)((1LL << exponent) - 1);
  const int32_t remainder = x & mask;
  const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* gemmlowp SaturatingRoundingMultiplyByPOT<exponent > 0> */
static int32_t sat_lshift(int32_t x, int exponent) {
  const int32_t threshold = (int32_t)((1u << (31 - exponent)) - 1);
  if (x > threshold) return INT32_MAX;
  if (x < -threshold) return INT32_MIN;
  return (int32_t)((uint32_t)x << exponent);
}

/* MultiplyByQuantizedMultiplier(int32 x, ...) without TFLITE_SINGLE_ROUNDING (common.cc) */
int32_t se_mbqm(int32_t x, int32_t multiplier, int shift) {
  const int left = shift > 0 ? shift : 0;
  const int right = shift > 0 ? 0 : -shift;
  return rdbpot(srdhm((int32_t)((uint32_t)x << left), multiplier), right);
}

static int32_t clamp(int32_t v, int32_t lo, int32_t hi) { return v < lo ? lo : v > hi ? hi : v; }

static int32_t requantize(int32_t acc, const se_conv_params *p, int oc) {
  if (p->bias) acc += p->bias[oc];
  acc = se_mbqm(acc, p->multiplier[oc], p->shift[oc]) + p->output_offset;
  return clamp(acc, p->act_min, p->act_max);
}

/* The kernel taps [*lo, *hi) whose input coordinate i0 + d * k lies in [0, n): the reference kernels skip the
 * others (padding), and a skipped tap adds nothing, so the loops visit exactly the taps that count. */
static void taps(int i0, int d, int k, int n, int *lo, int *hi) {
  int a = 0, b = k;
  while (a < b && i0 + d * a < 0) ++a;
  while (b > a && i0 + d * (b - 1) >= n) --b;
  *lo = a;
  *hi = b;
}

/* Output pixel (oy, ox)'s window: its top-left input coordinate and the taps inside the input. */
typedef struct {
  int iy0, ix0, ky0, ky1, kx0, kx1;
} se_window;

static se_window window(const se_conv_params *p, int oy, int ox) {
  se_window w;
  w.iy0 = oy * p->sh - p->pad_t;
  w.ix0 = ox * p->sw - p->pad_l;
  taps(w.iy0, p->dh, p->kh, p->in_h, &w.ky0, &w.ky1);
  taps(w.ix0, p->dw, p->kw, p->in_w, &w.kx0, &w.kx1);
  return w;
}

/* reference_integer_ops::ConvPerChannel */
void se_conv(const se_conv_params *p, se_view in, se_view out, se_region r) {
  const int8_t *src = (const int8_t *)in.data;
  int8_t *dst = (int8_t *)out.data;
  const int ic = in.c;
  for (int oy = r.y0; oy < r.y1; ++oy) {
    for (int ox = r.x0; ox < r.x1; ++ox) {
      int8_t *o = dst + ((oy - out.y0) * out.w + (ox - out.x0)) * p->out_c;
      const se_window win = window(p, oy, ox);
      for (int oc = 0; oc < p->out_c; ++oc) {
        int32_t acc = 0;
        for (int ky = win.ky0; ky < win.ky1; ++ky) {
          const int iy = win.iy0 + p->dh * ky;
          for (int kx = win.kx0; kx < win.kx1; ++kx) {
            const int ix = win.ix0 + p->dw * kx;
            const int8_t *ip = src + ((iy - in.y0) * in.w + (ix - in.x0)) * ic;
            const int8_t *wp = p->weights + ((oc * p->kh + ky) * p->kw + kx) * ic;
            for (int c = 0; c < ic; ++c) acc += wp[c] * (ip[c] + p->input_offset);
          }
        }
        o[oc] = (int8_t)requantize(acc, p, oc);
      }
    }
  }
}

/* reference_integer_ops::DepthwiseConvPerChannel */
void se_depthwise(const se_conv_params *p, se_view in, se_view out, se_region r) {
  const int8_t *src = (const int8_t *)in.data;
  int8_t *dst = (int8_t *)out.data;
  const int ic = in.c, dm = p->depth_multiplier;
  for (int oy = r.y0; oy < r.y1; ++oy) {
    for (int ox = r.x0; ox < r.x1; ++ox) {
      int8_t *o = dst + ((oy - out.y0) * out.w + (ox - out.x0)) * p->out_c;
      const se_window win = window(p, oy, ox);
      for (int c = 0; c < ic; ++c) {
        for (int m = 0; m < dm; ++m) {
          const int oc = m + c * dm;
          int32_t acc = 0;
          for (int ky = win.ky0; ky < win.ky1; ++ky) {
            const int iy = win.iy0 + p->dh * ky;
            for (int kx = win.kx0; kx < win.kx1; ++kx) {
              const int ix = win.ix0 + p->dw * kx;
              acc += p->weights[(ky * p->kw + kx) * p->out_c + oc] *
                     (src[((iy - in.y0) * in.w + (ix - in.x0)) * ic + c] + p->input_offset);
            }
          }
          o[oc] = (int8_t)requantize(acc, p, oc);
        }
      }
    }
  }
}

/* The same sums, channel by channel, writing over the input (depth multiplier 1). */
void se_depthwise_inplace(const se_conv_params *p, se_view in, se_view out, se_region r, int8_t *plane) {
  int8_t *buf = (int8_t *)in.data;
  int8_t *dst = (int8_t *)out.data;
  const int C = in.c, npix = in.h * in.w;
  for (int c = 0; c < C; ++c) {
    for (int i = 0; i < npix; ++i) plane[i] = buf[i * C + c];
    for (int oy = r.y0; oy < r.y1; ++oy) {
      for (int ox = r.x0; ox < r.x1; ++ox) {
        const se_window win = window(p, oy, ox);
        int32_t acc = 0;
        for (int ky = win.ky0; ky < win.ky1; ++ky) {
          const int iy = win.iy0 + p->dh * ky;
          for (int kx = win.kx0; kx < win.kx1; ++kx) {
            const int ix = win.ix0 + p->dw * kx;
            acc += p->weights[(ky * p->kw + kx) * C + c] * (plane[(iy - in.y0) * in.w + (ix - in.x0)] + p->input_offset);
          }
        }
        dst[((oy - out.y0) * out.w + (ox - out.x0)) * C + c] = (int8_t)requantize(acc, p, c);
      }
    }
  }
}

static void pointwise_pixel(const se_conv_params *p, const int8_t *ip, int8_t *o, int in_c) {
  for (int oc = 0; oc < p->out_c; ++oc) {
    const int8_t *wp = p->weights + oc * in_c;
    int32_t acc = 0;
    for (int c = 0; c < in_c; ++c) acc += wp[c] * (ip[c] + p->input_offset);
    o[oc] = (int8_t)requantize(acc, p, oc);
  }
}

/* ConvPerChannel for a 1x1 stride-1 unpadded filter, pixel by pixel. */
void se_pointwise(const se_conv_params *p, const int8_t *in, int8_t *out, int npix, int in_c, int8_t *pixel) {
  if (in != out) {
    for (int i = 0; i < npix; ++i) pointwise_pixel(p, in + i * in_c, out + i * p->out_c, in_c);
  } else if (p->out_c <= in_c) {
    for (int i = 0; i < npix; ++i) {
      memcpy(pixel, in + i * in_c, (size_t)in_c);
      pointwise_pixel(p, pixel, out + i * p->out_c, in_c);
    }
  } else {
    for (int i = npix - 1; i >= 0; --i) {
      memcpy(pixel, in + i * in_c, (size_t)in_c);
      pointwise_pixel(p, pixel, out + i * p->out_c, in_c);
    }
  }
}

/* reference_integer_ops::AddFunc */
void se_add(const se_add_params *p, se_view a, se_view b, se_view out, se_region r) {
  const int C = out.c;
  for (int y = r.y0; y < r.y1; ++y) {
    for (int x = r.x0; x < r.x1; ++x) {
      const int8_t *pa = (const int8_t *)a.data + ((y - a.y0) * a.w + (x - a.x0)) * C;
      const int8_t *pb = (const int8_t *)b.data + ((y - b.y0) * b.w + (x - b.x0)) * C;
      int8_t *po = (int8_t *)out.data + ((y - out.y0) * out.w + (x - out.x0)) * C;
      for (int c = 0; c < C; ++c) {
        const int32_t s1 = (int32_t)((uint32_t)(p->input1_offset + pa[c]) << p->left_shift);
        const int32_t s2 = (int32_t)((uint32_t)(p->input2_offset + pb[c]) << p->left_shift);
        const int32_t v1 = rdbpot(srdhm(s1, p->input1_multiplier), -p->input1_shift);
        const int32_t v2 = rdbpot(srdhm(s2, p->input2_multiplier), -p->input2_shift);
        const int32_t raw = rdbpot(srdhm(v1 + v2, p->output_multiplier), -p->output_shift) + p->output_offset;
        po[c] = (int8_t)clamp(raw, p->act_min, p->act_max);
      }
    }
  }
}

/* reference_ops::Requantize (uint8 <-> int8) */
static int32_t quantize_one(const se_quantize_params *p, int32_t v) {
  const int32_t out = se_mbqm(v - p->input_zero_point, p->multiplier, p->shift) + p->output_zero_point;
  return p->output_unsigned ? clamp(out, 0, 255) : clamp(out, -128, 127);
}

void se_quantize_flat(const se_quantize_params *p, const void *in, void *out, int n) {
  for (int i = 0; i < n; ++i) {
    const int32_t v = p->input_unsigned ? ((const uint8_t *)in)[i] : ((const int8_t *)in)[i];
    const int32_t q = quantize_one(p, v);
    if (p->output_unsigned) ((uint8_t *)out)[i] = (uint8_t)q; else ((int8_t *)out)[i] = (int8_t)q;
  }
}

void se_quantize(const se_quantize_params *p, se_view in, se_view out, se_region r) {
  const int C = out.c, w = r.x1 - r.x0;
  for (int y = r.y0; y < r.y1; ++y) {
    const int ii = ((y - in.y0) * in.w + (r.x0 - in.x0)) * C, oi = ((y - out.y0) * out.w + (r.x0 - out.x0)) * C;
    se_quantize_flat(p, (const uint8_t *)in.data + ii, (uint8_t *)out.data + oi, w * C);
  }
}

/* reference_ops::QuantizedMeanOrSum over height and width; multiplier/shift already carry 1/(h*w). */
void se_mean_hw(const se_mean_params *p, const int8_t *in, int8_t *out, int h, int w, int c) {
  const int n = h * w;
  for (int ch = 0; ch < c; ++ch) {
    int32_t sum = 0;
    for (int i = 0; i < n; ++i) sum += in[i * c + ch];
    const int32_t shifted = (int32_t)((int64_t)sum - (int64_t)p->input_zero_point * n);
    out[ch] = (int8_t)clamp(se_mbqm(shifted, p->multiplier, p->shift) + p->output_zero_point, -128, 127);
  }
}

/* reference_integer_ops::FullyConnected(PerChannel) */
void se_fully_connected(const se_fc_params *p, const int8_t *in, int8_t *out) {
  for (int b = 0; b < p->batches; ++b) {
    for (int oc = 0; oc < p->out_features; ++oc) {
      const int8_t *wp = p->weights + oc * p->in_features;
      const int8_t *ip = in + b * p->in_features;
      int32_t acc = 0;
      for (int d = 0; d < p->in_features; ++d) acc += wp[d] * (ip[d] + p->input_offset);
      if (p->bias) acc += p->bias[oc];
      acc = se_mbqm(acc, p->multiplier[oc], p->shift[oc]) + p->output_offset;
      out[b * p->out_features + oc] = (int8_t)clamp(acc, p->act_min, p->act_max);
    }
  }
}

/* gemmlowp exp_on_interval_between_negative_one_quarter_and_0_excl (Q0.31) */
static int32_t exp_quarter(int32_t a) {
  const int32_t constant_term = 1895147668, one_third = 715827883;
  const int32_t x = a + (1 << 28);
  const int32_t x2 = srdhm(x, x), x3 = srdhm(x2, x), x4 = srdhm(x2, x2);
  const int32_t x4_over_4 = rdbpot(x4, 2);
  const int32_t poly = rdbpot(srdhm(x4_over_4 + x3, one_third) + x2, 1);
  return constant_term + srdhm(constant_term, x + poly);
}

/* gemmlowp exp_on_negative_values for Q5.26 input, Q0.31 output */
static int32_t exp_negative(int32_t a) {
  static const int32_t multipliers[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
  const int32_t quarter = 1 << 24;
  const int32_t a_mod = (a & (quarter - 1)) - quarter;
  int32_t result = exp_quarter(sat_lshift(a_mod, 5));
  const int32_t remainder = a_mod - a;
  for (int k = 0; k < 7; ++k) {
    if (remainder & (1 << (26 + k - 2))) result = srdhm(result, multipliers[k]);
  }
  return a == 0 ? INT32_MAX : result;
}

/* gemmlowp one_over_one_plus_x_for_x_in_0_1 (Q0.31 in and out, Newton-Raphson in Q2.29) */
static int32_t one_over_one_plus_x(int32_t a) {
  const int64_t sum = (int64_t)a + INT32_MAX;
  const int32_t half_denominator = (int32_t)((sum + (sum >= 0 ? 1 : -1)) / 2);
  int32_t x = 1515870810 + srdhm(half_denominator, -1010580540);
  for (int i = 0; i < 3; ++i) {
    const int32_t one_minus = (1 << 29) - srdhm(half_denominator, x);
    x = x + sat_lshift(srdhm(x, one_minus), 2);
  }
  return sat_lshift(x, 1);
}

/* reference_ops::Softmax, int8 in and out (output scale 1/256, zero point -128) */
void se_softmax(const se_softmax_params *p, const int8_t *in, int8_t *out) {
  for (int row = 0; row < p->rows; ++row) {
    const int8_t *x = in + row * p->depth;
    int8_t *o = out + row * p->depth;
    int32_t max_in_row = -128;
    for (int c = 0; c < p->depth; ++c) max_in_row = x[c] > max_in_row ? x[c] : max_in_row;
    int32_t sum_of_exps = 0;   /* Q12.19 */
    for (int c = 0; c < p->depth; ++c) {
      const int32_t diff = x[c] - max_in_row;
      if (diff >= p->diff_min) {
        const int32_t scaled = srdhm((int32_t)((uint32_t)diff << p->input_left_shift), p->input_multiplier);
        sum_of_exps += rdbpot(exp_negative(scaled), 12);
      }
    }
    const int headroom_plus_one = __builtin_clz((uint32_t)sum_of_exps);
    const int num_bits_over_unit = 12 - headroom_plus_one;
    const int32_t shifted_sum_minus_one = (int32_t)(((uint32_t)sum_of_exps << headroom_plus_one) - (1u << 31));
    const int32_t shifted_scale = one_over_one_plus_x(shifted_sum_minus_one);
    const int exponent = num_bits_over_unit + 31 - 8;
    for (int c = 0; c < p->depth; ++c) {
      const int32_t diff = x[c] - max_in_row;
      if (diff >= p->diff_min) {
        const int32_t scaled = srdhm((int32_t)((uint32_t)diff << p->input_left_shift), p->input_multiplier);
        const int32_t unsat = rdbpot(srdhm(shifted_scale, exp_negative(scaled)), exponent);
        o[c] = (int8_t)clamp(unsat - 128, -128, 127);
      } else {
        o[c] = -128;
      }
    }
  }
}
