/* The model runner seen from C: edgemnv2_tflm.cpp (TensorFlow Lite Micro) or edgemnv2_static.c (the static
 * engine of `edgemnv2 export --engine static`). */
#ifndef EDGEMNV2_MODEL_H_
#define EDGEMNV2_MODEL_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Build the interpreter in the static arena; 0 on success, else *error says why (too small an arena,
 * an op missing from the resolver, tensors that differ from edgemnv2_config.h). */
int emn_model_init(const char **error);
/* The input tensor's bytes (EDGEMNV2_INPUT_BYTES). */
uint8_t *emn_model_input(void);
/* Run once; 0 and *output (EDGEMNV2_OUTPUT_BYTES) on success, else *error. */
int emn_model_invoke(const uint8_t **output, const char **error);
/* Per-operator µs of the last invoke (from emn_board_cycles, so virtual time under QEMU), in operator
 * order; returns how many (EDGEMNV2_LAYER_COUNT once an invoke has run, 0 before). */
size_t emn_model_layer_times(const uint32_t **layer_us);
/* Arena bytes the interpreter really used (0 before a successful init). */
size_t emn_model_arena_used(void);

/* RAM the runner measured on the board itself (runners that define EDGEMNV2_MEASURES_RAM in the config). */
typedef struct {
  uint32_t arena_bytes;     /* the static arena */
  uint32_t arena_peak;      /* high-water mark of the arena (painted at init) over every invoke */
  uint32_t stack_peak;      /* deepest stack below the runner's call into the model, over every invoke */
  uint32_t stack_boot_peak; /* deepest stack of the whole firmware since boot (painted at boot) */
  uint32_t stack_region;    /* bytes of stack painted and checked */
  uint32_t inferences;
} emn_model_ram_use;
/* 0 when *use holds the measurement. */
int emn_model_ram(emn_model_ram_use *use);

#ifdef __cplusplus
}
#endif

#endif /* EDGEMNV2_MODEL_H_ */
