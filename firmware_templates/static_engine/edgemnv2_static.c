/* The static engine behind edgemnv2_model.h: the generated se_invoke() over its one static arena (se_model.c,
 * written by `edgemnv2 export --engine static`), in place of the TensorFlow Lite Micro runner.
 *
 * It measures the RAM it uses, on the board itself:
 *  - arena: painted with a pattern at init; the high-water mark is one past the highest byte that no longer
 *    holds it (the input upload and every step write through the arena, so this is the plan's extent as run);
 *  - stack: painted once at boot (the whole stack region below the boot frame), then below the current frame
 *    right before each se_invoke(); after it, the lowest word that lost the pattern gives the engine's depth
 *    (from the call into se_invoke) and, with the boot paint, the deepest the firmware went since boot.
 * Bare metal (EDGEMNV2_STACK_LIMIT): the region is [__stack_limit__, __stack_top__) of the linker script;
 * elsewhere (host) the EDGEMNV2_STACK_PAINT_BYTES below the boot frame. */
#include <stdint.h>
#include <string.h>

#include "edgemnv2_config.h"
#include "edgemnv2_model.h"
#include "se_model.h"

#define EMN_PAINT 0xA5u
#define EMN_PAINT_WORD 0xA5A5A5A5u
#ifndef EDGEMNV2_STACK_PAINT_BYTES
#define EDGEMNV2_STACK_PAINT_BYTES 65536u
#endif

/* the engine and the firmware agree on the tensors (a negative array size fails the build otherwise) */
typedef char emn_input_bytes_match[(SE_INPUT_BYTES == EDGEMNV2_INPUT_BYTES) ? 1 : -1];
typedef char emn_output_bytes_match[(SE_OUTPUT_BYTES == EDGEMNV2_OUTPUT_BYTES) ? 1 : -1];

#if defined(__arm__) || defined(__thumb__)
#define EMN_READ_SP(v) __asm__ volatile("mov %0, sp" : "=r"(v))
#define EMN_RED_ZONE 0u
#elif defined(__x86_64__)
#define EMN_READ_SP(v) __asm__ volatile("mov %%rsp, %0" : "=r"(v))
#define EMN_RED_ZONE 128u /* the System V leaf-function red zone below rsp */
#elif defined(__aarch64__)
#define EMN_READ_SP(v) __asm__ volatile("mov %0, sp" : "=r"(v))
#define EMN_RED_ZONE 0u
#else
#error "no stack pointer read for this architecture"
#endif

#ifdef EDGEMNV2_STACK_LIMIT
extern uint32_t __stack_limit__, __stack_top__;
#endif

static uintptr_t g_stack_lo;       /* lowest stack address painted */
static uintptr_t g_stack_top;      /* the stack's top (bare metal) or the boot frame (host) */
static uintptr_t g_lowest_seen;    /* lowest address found written since boot */
static uint32_t g_stack_peak;      /* deepest se_invoke() went below its caller's frame, over all invokes */
static uint32_t g_arena_peak;
static uint32_t g_inferences;

/* Paints [g_stack_lo, own frame - red zone): everything below the caller's frame except this call's own. */
static __attribute__((noinline)) void paint_stack(void) {
  uintptr_t sp, p;
  EMN_READ_SP(sp);
  for (p = g_stack_lo; p + 4u <= sp - EMN_RED_ZONE; p += 4u) *(volatile uint32_t *)p = EMN_PAINT_WORD;
}

/* Lowest address of the painted region whose word lost the pattern (the region's top when none did). */
static uintptr_t lowest_written(uintptr_t limit) {
  uintptr_t p = g_stack_lo;
  while (p + 4u <= limit && *(volatile uint32_t *)p == EMN_PAINT_WORD) p += 4u;
  return p;
}

static uint32_t arena_high_water(void) {
  uint32_t n = SE_ARENA_BYTES;
  while (n > 0u && se_arena[n - 1u] == EMN_PAINT) --n;
  return n;
}

int emn_model_init(const char **error) {
  uintptr_t sp;
  (void)error;
  EMN_READ_SP(sp);
#ifdef EDGEMNV2_STACK_LIMIT
  g_stack_lo = (uintptr_t)&__stack_limit__;
  g_stack_top = (uintptr_t)&__stack_top__;
#else
  g_stack_lo = (sp - EDGEMNV2_STACK_PAINT_BYTES) & ~(uintptr_t)3u;
  g_stack_top = sp;
#endif
  paint_stack();
  g_lowest_seen = sp;
  memset(se_arena, EMN_PAINT, SE_ARENA_BYTES);
  return 0;
}

uint8_t *emn_model_input(void) { return se_arena + SE_INPUT_OFFSET; }

int emn_model_invoke(const uint8_t **output, const char **error) {
  uintptr_t sp, low;
  (void)error;
  EMN_READ_SP(sp);
  low = lowest_written(sp); /* what ran since the last check (the protocol, the upload) */
  if (low < g_lowest_seen) g_lowest_seen = low;
  paint_stack();
  se_invoke();
  low = lowest_written(sp);
  if (low < g_lowest_seen) g_lowest_seen = low;
  if ((uint32_t)(sp - low) > g_stack_peak) g_stack_peak = (uint32_t)(sp - low);
  low = arena_high_water();
  if (low > g_arena_peak) g_arena_peak = (uint32_t)low;
  g_inferences++;
  *output = se_arena + SE_OUTPUT_OFFSET;
  return 0;
}

size_t emn_model_layer_times(const uint32_t **layer_us) {
  *layer_us = 0;
  return 0;
}

size_t emn_model_arena_used(void) { return g_arena_peak; }

int emn_model_ram(emn_model_ram_use *use) {
  use->arena_bytes = SE_ARENA_BYTES;
  use->arena_peak = g_arena_peak;
  use->stack_peak = g_stack_peak;
  use->stack_boot_peak = (uint32_t)(g_stack_top - g_lowest_seen);
  use->stack_region = (uint32_t)(g_stack_top - g_stack_lo);
  use->inferences = g_inferences;
  return 0;
}
