/* Wires the board (edgemnv2_board.h) and the model (edgemnv2_model.h) into the protocol app, with every
 * buffer static and sized from the generated edgemnv2_config.h. Hardware independent: compiled and
 * cross-compiled on the host by the export tests. */
#include "edgemnv2_firmware.h"

#include "edgemnv2_app.h"
#include "edgemnv2_board.h"
#include "edgemnv2_config.h"
#include "edgemnv2_model.h"

#ifndef EDGEMNV2_RUNTIME
#define EDGEMNV2_RUNTIME "tflm" /* what INFO names; the static engine's config sets "tflm+static-<schedule>" */
#endif
#ifndef EDGEMNV2_INPUT_SLOTS
#define EDGEMNV2_INPUT_SLOTS 1 /* export sets 2 where the board keeps bytes during inference and RAM allows */
#endif

static uint8_t g_rx_frame[EMN_APP_RX_BYTES(EDGEMNV2_MAX_PAYLOAD)];
static uint8_t g_tx[EMN_APP_TX_BYTES];
static uint8_t g_result[EMN_APP_RESULT_LAYER_BYTES(EDGEMNV2_OUTPUT_BYTES, EDGEMNV2_LAYER_COUNT)];
#if EDGEMNV2_INPUT_SLOTS > 1
static uint8_t g_spare_input[EDGEMNV2_INPUT_BYTES];
static uint8_t g_spare_result[sizeof g_result];
#endif
static const uint8_t g_model_sha256[EMN_HASH_BYTES] = EDGEMNV2_MODEL_SHA256_BYTES;
static const uint32_t g_input_dims[] = EDGEMNV2_INPUT_DIMS;
static const uint32_t g_output_dims[] = EDGEMNV2_OUTPUT_DIMS;

static emn_app g_app;
static int g_model_ok;
static const char *g_model_error = "model not initialised";

static void op_write(void *ctx, const uint8_t *data, size_t n) {
  (void)ctx;
  emn_board_write(data, n);
}

static uint8_t *op_input(void *ctx) {
  static uint8_t scratch[EDGEMNV2_INPUT_BYTES]; /* only when the model failed to initialise */
  (void)ctx;
  return g_model_ok ? emn_model_input() : scratch;
}

/* A model that failed to initialise still answers: every input gets ERROR runtime with the reason. */
static int op_invoke(void *ctx, const uint8_t **output, const char **error) {
  (void)ctx;
  if (!g_model_ok) {
    *error = g_model_error;
    return 1;
  }
  return emn_model_invoke(output, error);
}

static uint64_t op_cycles(void *ctx) { (void)ctx; return emn_board_cycles(); }
static uint64_t op_micros(void *ctx) { (void)ctx; return emn_board_micros(); }
static size_t op_layer_times(void *ctx, const uint32_t **layer_us) {
  (void)ctx;
  return g_model_ok ? emn_model_layer_times(layer_us) : 0u;
}
#ifdef EDGEMNV2_MEASURES_RAM
/* The runner's own measurement of the arena and stack it used (GET_MEMORY -> MEMORY). */
static int op_memory(void *ctx, emn_memory *m) {
  emn_model_ram_use use;
  (void)ctx;
  if (!g_model_ok || emn_model_ram(&use) != 0) return 1;
  m->arena_bytes = use.arena_bytes;
  m->arena_peak = use.arena_peak;
  m->stack_peak = use.stack_peak;
  m->stack_boot_peak = use.stack_boot_peak;
  m->stack_region = use.stack_region;
  m->inferences = use.inferences;
  return 0;
}
#endif
static uint32_t op_entropy(void *ctx) { (void)ctx; return emn_board_entropy() ^ (uint32_t)emn_board_cycles(); }

/* Every setting is known when the project is generated: both tables are constants (in flash). */
static const emn_app_ops g_ops = {
    .write = op_write,
    .input_buffer = op_input,
    .invoke = op_invoke,
    .cycles = op_cycles,
    .micros = op_micros,
    .entropy = op_entropy,
    .layer_times = op_layer_times,
#ifdef EDGEMNV2_MEASURES_RAM
    .memory = op_memory,
#endif
};

static const emn_app_config g_cfg = {
    .board_name = EDGEMNV2_BOARD_NAME,
    .runtime = EDGEMNV2_RUNTIME,
    .cpu_hz = EDGEMNV2_CPU_HZ,
    .arena_bytes = EDGEMNV2_ARENA_BYTES,
    .max_payload = EDGEMNV2_MAX_PAYLOAD,
    .window = EDGEMNV2_WINDOW,
    .model_sha256 = g_model_sha256,
    .input = {EDGEMNV2_INPUT_DTYPE, (uint8_t)(sizeof g_input_dims / sizeof g_input_dims[0]), EDGEMNV2_INPUT_DIMS,
              EDGEMNV2_INPUT_SCALE, EDGEMNV2_INPUT_ZERO_POINT},
    .output = {EDGEMNV2_OUTPUT_DTYPE, (uint8_t)(sizeof g_output_dims / sizeof g_output_dims[0]), EDGEMNV2_OUTPUT_DIMS,
               EDGEMNV2_OUTPUT_SCALE, EDGEMNV2_OUTPUT_ZERO_POINT},
    .rx_frame = g_rx_frame,
    .rx_frame_cap = sizeof g_rx_frame,
    .tx = g_tx,
    .tx_cap = sizeof g_tx,
    .result_frame = g_result,
    .result_cap = sizeof g_result,
#if EDGEMNV2_INPUT_SLOTS > 1
    .spare_input = g_spare_input,
    .spare_result = g_spare_result,
#endif
};

void emn_firmware_start(void) {
  emn_board_init(EDGEMNV2_BAUD);
  g_model_ok = emn_model_init(&g_model_error) == 0;
  (void)emn_app_start(&g_app, &g_cfg, &g_ops, emn_board_entropy());
}

void emn_firmware_poll(void) {
  uint8_t buf[64];
  size_t n = emn_board_read(buf, sizeof buf);
  (void)emn_board_cycles(); /* boards extending a 32-bit counter must see every wrap */
  if (n) emn_app_feed(&g_app, buf, n);
}

void emn_firmware_between_layers(void) {
  uint8_t buf[64];
  size_t n;
  while ((n = emn_board_read(buf, sizeof buf)) > 0) emn_app_feed(&g_app, buf, n);
}
