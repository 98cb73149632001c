/* The static engine's CMSIS-NN backend: the same calls as se_kernels.h, run by Arm's CMSIS-NN kernels where one
 * fits the view and region, else by the portable kernel. CMSIS-NN's requantisation (arm_nn_requantize without
 * CMSIS_NN_USE_SINGLE_ROUNDING) is TFLM's MultiplyByQuantizedMultiplier with the same double rounding, its
 * padding skips taps exactly as the reference kernels do, and TFLite's weight layouts (OHWI, 1HWO) are CMSIS-NN's,
 * so the outputs stay bit-exact with TFLite Micro.
 *
 * A CMSIS-NN kernel reads a dense h x w x c input and writes a dense output, so a tile maps onto it when the view
 * starts at or before the first row and column the region needs (the view's extra leading rows are skipped by
 * moving the pointer; extra leading columns cannot be, and fall back). When the region is narrower than its
 * output view (a tile written into the full split tensor) the kernel runs once per output row. */
#include "se_cmsis.h"

#include "arm_nnfunctions.h"

typedef struct {
  const int8_t *in;
  int in_h, in_w, pad_t, pad_l;
} se_cmsis_input;

/* The input of output rows [oy, oy + rows) x the region's columns as CMSIS-NN sees it; 0 if it does not fit. */
static int cmsis_input(const se_conv_params *p, se_view in, int oy, int rows, se_region r, se_cmsis_input *ci) {
  int pad_t = p->pad_t + in.y0 - oy * p->sh;
  const int pad_l = p->pad_l + in.x0 - r.x0 * p->sw;
  const int8_t *base = (const int8_t *)in.data;
  int h = in.h;
  if (pad_l < 0) return 0;
  if (pad_t < 0) { /* the view holds rows above the first one needed: start below them */
    base += (-pad_t) * in.w * in.c;
    h += pad_t;
    pad_t = 0;
  }
  if (p->kh == 1 && p->kw == 1 && p->sh == 1 && p->sw == 1 && pad_t == 0 && pad_l == 0) {
    /* arm_convolve_1x1_s8_fast runs over the input's pixels: they must be exactly the output's */
    if (in.w != r.x1 - r.x0 || h < rows) return 0;
    h = rows;
  }
  ci->in = base;
  ci->in_h = h;
  ci->in_w = in.w;
  ci->pad_t = pad_t;
  ci->pad_l = pad_l;
  return 1;
}

static void conv_rows(const se_conv_params *p, se_view in, se_view out, se_region r, int y0, int rows, int8_t *buf,
                      int32_t buf_bytes, int depthwise) {
  se_cmsis_input ci;
  cmsis_nn_context ctx;
  cmsis_nn_per_channel_quant_params q;
  cmsis_nn_dims in_d, f_d, b_d, o_d;
  int8_t *o = (int8_t *)out.data + ((y0 - out.y0) * out.w + (r.x0 - out.x0)) * p->out_c;
  const int wide = r.x1 - r.x0;
  arm_cmsis_nn_status status;
  if (!cmsis_input(p, in, y0, rows, r, &ci)) {
    se_region part = {y0, y0 + rows, r.x0, r.x1};
    if (depthwise) se_depthwise(p, in, out, part); else se_conv(p, in, out, part);
    return;
  }
  ctx.buf = buf;
  ctx.size = buf_bytes;
  q.multiplier = (int32_t *)p->multiplier;
  q.shift = (int32_t *)p->shift;
  in_d.n = 1; in_d.h = ci.in_h; in_d.w = ci.in_w; in_d.c = in.c;
  f_d.n = p->out_c; f_d.h = p->kh; f_d.w = p->kw; f_d.c = in.c;
  b_d.n = 1; b_d.h = 1; b_d.w = 1; b_d.c = p->out_c;
  o_d.n = 1; o_d.h = rows; o_d.w = wide; o_d.c = p->out_c;
  {
    /* the fields both parameter structs share, set once */
    const cmsis_nn_conv_params cp = {p->input_offset, p->output_offset, {p->sw, p->sh}, {ci.pad_l, ci.pad_t},
                                     {p->dw, p->dh}, {p->act_min, p->act_max}};
    if (depthwise) {
      const cmsis_nn_dw_conv_params dp = {cp.input_offset, cp.output_offset, p->depth_multiplier, cp.stride,
                                          cp.padding, cp.dilation, cp.activation};
      f_d.n = 1;
      f_d.c = p->out_c;
      status = arm_depthwise_conv_wrapper_s8(&ctx, &dp, &q, &in_d, ci.in, &f_d, p->weights, &b_d, p->bias, &o_d, o);
    } else {
      status = arm_convolve_wrapper_s8(&ctx, &cp, &q, &in_d, ci.in, &f_d, p->weights, &b_d, p->bias, &o_d, o);
    }
  }
  if (status != ARM_CMSIS_NN_SUCCESS) { /* a shape CMSIS-NN refuses: the portable kernel computes the same */
    se_region part = {y0, y0 + rows, r.x0, r.x1};
    if (depthwise) se_depthwise(p, in, out, part); else se_conv(p, in, out, part);
  }
}

static void conv_any(const se_conv_params *p, se_view in, se_view out, se_region r, int8_t *buf, int32_t buf_bytes,
                     int depthwise) {
  if (r.x0 == out.x0 && r.x1 - r.x0 == out.w) {
    conv_rows(p, in, out, r, r.y0, r.y1 - r.y0, buf, buf_bytes, depthwise);
  } else {
    for (int y = r.y0; y < r.y1; ++y) conv_rows(p, in, out, r, y, 1, buf, buf_bytes, depthwise);
  }
}

void se_cmsis_conv(const se_conv_params *p, se_view in, se_view out, se_region r, int8_t *buf, int32_t buf_bytes) {
  conv_any(p, in, out, r, buf, buf_bytes, 0);
}

void se_cmsis_depthwise(const se_conv_params *p, se_view in, se_view out, se_region r, int8_t *buf,
                        int32_t buf_bytes) {
  conv_any(p, in, out, r, buf, buf_bytes, 1);
}

void se_cmsis_pointwise(const se_conv_params *p, const int8_t *in, int8_t *out, int npix, int in_c) {
  se_view vin = {(void *)in, 1, npix, in_c, 0, 0};
  se_view vout = {out, 1, npix, p->out_c, 0, 0};
  se_region r = {0, 1, 0, npix};
  se_conv_params flat = *p;
  flat.in_h = 1;
  flat.in_w = npix;
  conv_rows(&flat, vin, vout, r, 0, 1, NULL, 0, 0); /* 1x1, stride 1, no padding: arm_convolve_1x1_s8_fast */
}

void se_cmsis_add(const se_add_params *p, se_view a, se_view b, se_view out, se_region r) {
  const int C = out.c, n = (r.x1 - r.x0) * C;
  for (int y = r.y0; y < r.y1; ++y) {
    const int8_t *pa = (const int8_t *)a.data + ((y - a.y0) * a.w + (r.x0 - a.x0)) * C;
    const int8_t *pb = (const int8_t *)b.data + ((y - b.y0) * b.w + (r.x0 - b.x0)) * C;
    int8_t *po = (int8_t *)out.data + ((y - out.y0) * out.w + (r.x0 - out.x0)) * C;
    arm_elementwise_add_s8(pa, pb, p->input1_offset, p->input1_multiplier, p->input1_shift, p->input2_offset,
                           p->input2_multiplier, p->input2_shift, p->left_shift, po, p->output_offset,
                           p->output_multiplier, p->output_shift, p->act_min, p->act_max, n);
  }
}
