/* The static engine's CMSIS-NN backend (se_cmsis.c): the calls of se_kernels.h that have a CMSIS-NN kernel, same
 * arguments, plus the kernel's scratch buffer (planned in the arena). Bit-exact with the portable kernels. */
#ifndef SE_CMSIS_H
#define SE_CMSIS_H

#include "se_kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

void se_cmsis_conv(const se_conv_params *p, se_view in, se_view out, se_region r, int8_t *buf, int32_t buf_bytes);
void se_cmsis_depthwise(const se_conv_params *p, se_view in, se_view out, se_region r, int8_t *buf,
                        int32_t buf_bytes);
/* 1x1 stride-1 conv over npix dense pixels, out != in. */
void se_cmsis_pointwise(const se_conv_params *p, const int8_t *in, int8_t *out, int npix, int in_c);
void se_cmsis_add(const se_add_params *p, se_view a, se_view b, se_view out, se_region r);

#ifdef __cplusplus
}
#endif
#endif
