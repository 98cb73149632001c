/* edgemnv2 static engine: int8 kernels arithmetically identical to TensorFlow Lite Micro's reference
 * kernels (same MultiplyByQuantizedMultiplier double rounding, saturation, and gemmlowp fixed-point
 * softmax), written over "views" so one kernel serves a whole tensor or one tile of it.
 * C99, no heap, no interpreter. See docs/static-engine.md. */
#ifndef SE_KERNELS_H
#define SE_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A buffer holding rows [y0, y0+h) and columns [x0, x0+w) (full-tensor coordinates) of an NHWC tensor
 * with c channels, stored densely as h x w x c. */
typedef struct {
  void *data;
  int h, w, c;
  int y0, x0;
} se_view;

/* The part of an output tensor to compute: rows [y0, y1), columns [x0, x1). */
typedef struct {
  int y0, y1, x0, x1;
} se_region;

typedef struct {
  const int8_t *weights;     /* conv: OHWI; depthwise: 1HWO */
  const int32_t *bias;       /* may be NULL */
  const int32_t *multiplier; /* per output channel */
  const int32_t *shift;      /* per output channel */
  int out_c, kh, kw, sh, sw, dh, dw, pad_t, pad_l;
  int in_h, in_w;            /* full input size (bounds for padding) */
  int depth_multiplier;
  int32_t input_offset, output_offset, act_min, act_max;
} se_conv_params;

typedef struct {
  int32_t input1_offset, input2_offset, output_offset;
  int32_t input1_multiplier, input2_multiplier, output_multiplier;
  int input1_shift, input2_shift, output_shift, left_shift;
  int32_t act_min, act_max;
} se_add_params;

typedef struct {
  int32_t input_zero_point, output_zero_point, multiplier;
  int shift;
  int input_unsigned, output_unsigned;
} se_quantize_params;

typedef struct {
  int32_t input_zero_point, output_zero_point, multiplier;
  int shift;
} se_mean_params;

typedef struct {
  const int8_t *weights;     /* [out][in] */
  const int32_t *bias;
  const int32_t *multiplier, *shift;
  int in_features, out_features, batches;
  int32_t input_offset, output_offset, act_min, act_max;
} se_fc_params;

typedef struct {
  int32_t input_multiplier;
  int input_left_shift;
  int diff_min;
  int rows, depth;
} se_softmax_params;

int32_t se_mbqm(int32_t x, int32_t multiplier, int shift);

void se_conv(const se_conv_params *p, se_view in, se_view out, se_region r);
void se_depthwise(const se_conv_params *p, se_view in, se_view out, se_region r);
/* In place: `out` lies at the start of in.data (same channel count); plane holds in.h*in.w bytes. */
void se_depthwise_inplace(const se_conv_params *p, se_view in, se_view out, se_region r, int8_t *plane);
/* 1x1 stride-1 conv over npix pixels laid out alike in `in` and `out` (out may equal in: then `pixel`
 * holds in_c bytes and the pixel order is chosen so no unread input is overwritten). */
void se_pointwise(const se_conv_params *p, const int8_t *in, int8_t *out, int npix, int in_c, int8_t *pixel);
void se_add(const se_add_params *p, se_view a, se_view b, se_view out, se_region r);
void se_quantize(const se_quantize_params *p, se_view in, se_view out, se_region r);
void se_quantize_flat(const se_quantize_params *p, const void *in, void *out, int n);
void se_mean_hw(const se_mean_params *p, const int8_t *in, int8_t *out, int h, int w, int c);
void se_fully_connected(const se_fc_params *p, const int8_t *in, int8_t *out);
void se_softmax(const se_softmax_params *p, const int8_t *in, int8_t *out);

#ifdef __cplusplus
}
#endif
#endif
