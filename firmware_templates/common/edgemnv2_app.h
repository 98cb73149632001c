/* The board side of the edgemnv2 protocol (docs/protocol.md section 3), independent of any hardware.
 *
 * A board's main() wires its UART, cycle counter and model runner into emn_app_ops, gives static
 * buffers in emn_app_config, calls emn_app_start() once and then emn_app_feed() with whatever bytes
 * the UART delivered. The app answers HELLO/PING/RESET/GET_RESULT, reassembles INPUT chunks straight
 * into the model's input tensor, runs the model when an input is complete and sends the RESULT.
 *
 * One or two input slots (input_slots in INFO). With one, the host uploads the next image after the RESULT.
 * With two (cfg.spare_input), the runner hands the link back between its layers: the board's receive path
 * keeps the bytes that arrive meanwhile (an RX interrupt into a ring, or the OS's tty buffer) and the model
 * runner calls emn_app_feed() with them after every operator, so the app acknowledges the next image's chunks
 * into the spare buffer while the current one computes, and runs it as soon as the RESULT is out. The time
 * spent in those nested feeds is taken out of the RESULT's cycles and micros. No malloc; C99. */
#ifndef EDGEMNV2_APP_H_
#define EDGEMNV2_APP_H_

#include "edgemnv2_protocol.h"

#ifdef __cplusplus
extern "C" {
#endif

#define EMN_APP_TX_BYTES 320u /* INFO, ACK, PONG, ERROR: INFO is the largest (< 300 bytes, rank <= 8) */
/* Frame buffer the decoder needs for INPUT chunks of max_payload bytes (encoded, no delimiters). */
#define EMN_APP_RX_BYTES(max_payload) (EMN_FRAME_MAX_BYTES(EMN_INPUT_HEADER_BYTES + (max_payload)))
/* RESULT frame kept for GET_RESULT: header (31 bytes) + raw output tensor (+ 4 bytes per timed layer). */
#define EMN_APP_RESULT_BYTES(output_bytes) (EMN_FRAME_MAX_BYTES(31u + (output_bytes)))
#define EMN_APP_RESULT_LAYER_BYTES(output_bytes, layers) (EMN_FRAME_MAX_BYTES(31u + (output_bytes) + 4u * (layers)))

typedef struct {
  void *ctx;
  /* Send bytes; returns when they are queued or sent. */
  void (*write)(void *ctx, const uint8_t *data, size_t n);
  /* The model's input tensor (input.total bytes); INPUT data is copied here. */
  uint8_t *(*input_buffer)(void *ctx);
  /* Run the model on the input tensor; 0 and *output on success, else non-zero and *error. */
  int (*invoke)(void *ctx, const uint8_t **output, const char **error);
  uint64_t (*cycles)(void *ctx); /* 64-bit, monotonic */
  uint64_t (*micros)(void *ctx);
  uint32_t (*entropy)(void *ctx); /* for the boot nonce after a RESET */
  /* Optional (NULL: none): per-layer µs of the last invoke, in operator order; returns how many. A board
   * that sets it advertises EMN_FLAG_LAYER_TIMES and its RESULTs carry them. */
  size_t (*layer_times)(void *ctx, const uint32_t **layer_us);
  /* Optional (NULL: none): the RAM the runner measured (all but boot_nonce, which the app fills); 0 on
   * success. A board that sets it advertises EMN_FLAG_MEMORY and answers GET_MEMORY with MEMORY. */
  int (*memory)(void *ctx, emn_memory *m);
} emn_app_ops;

typedef struct {
  const char *board_name;
  const char *runtime;
  uint32_t cpu_hz;
  uint32_t arena_bytes;
  uint32_t max_payload;
  uint8_t window;
  const uint8_t *model_sha256; /* 32 bytes */
  emn_tensor_desc input, output;
  uint8_t *rx_frame;           /* EMN_APP_RX_BYTES(max_payload) bytes */
  size_t rx_frame_cap;
  uint8_t *tx;                 /* EMN_APP_TX_BYTES bytes */
  size_t tx_cap;
  uint8_t *result_frame;       /* EMN_APP_RESULT_BYTES(output bytes) */
  size_t result_cap;
  /* The second input slot, NULL for one: input.total bytes for the upload that arrives while the model
   * computes, and another result_cap bytes so the last two RESULTs stay available to GET_RESULT. */
  uint8_t *spare_input;
  uint8_t *spare_result;
} emn_app_config;

/* A RESULT frame kept for GET_RESULT. */
typedef struct {
  uint8_t *frame;
  size_t len; /* 0: none */
  uint32_t id;
} emn_app_result;

/* An input slot: the model's input tensor, or the spare buffer (which is copied into the tensor to run). */
typedef enum { EMN_SLOT_FREE, EMN_SLOT_UPLOAD, EMN_SLOT_READY, EMN_SLOT_RUN } emn_slot_state;
typedef struct {
  emn_slot_state state;
  uint32_t id, next, crc; /* next: bytes received so far; crc: of those bytes */
} emn_app_slot;

typedef struct {
  const emn_app_config *cfg;
  const emn_app_ops *ops;
  emn_decoder decoder;
  uint32_t boot_nonce;
  size_t input_bytes, output_bytes;
  uint8_t slots;     /* 1, or 2 with cfg->spare_input */
  uint32_t session;  /* HELLO and RESET start a new one: an inference of an older session sends no RESULT */
  emn_app_slot tensor, spare;
  emn_app_slot *upload; /* the upload in progress (one at a time), or NULL */
  /* the inference running (tensor.state == EMN_SLOT_RUN): its session, and the time spent meanwhile in
   * nested emn_app_feed calls, taken out of its RESULT */
  uint32_t run_session;
  uint64_t service_cycles, service_micros;
  /* the last `slots` answered inputs */
  emn_app_result results[2];
  uint8_t newest_result;
  /* counters, for a debugger or a status LED */
  uint32_t frames_ok, frames_bad, inferences;
} emn_app;

/* Checks the buffers, resets the protocol state and sends the boot INFO. Returns EMN_OK, or
 * EMN_ERR_MALFORMED when a buffer is too small for the configuration (nothing is sent then). */
int emn_app_start(emn_app *app, const emn_app_config *cfg, const emn_app_ops *ops, uint32_t boot_nonce);
/* Process received bytes: may send ACK/INFO/PONG/ERROR, run the model and send a RESULT. Called again from
 * within the model (between its layers) it only receives and answers; the inputs it completes run after. */
void emn_app_feed(emn_app *app, const uint8_t *data, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* EDGEMNV2_APP_H_ */
