/* Host tests of the board-side protocol rules (edgemnv2_app.c) with a fake model and a captured UART:
 * boot INFO, HELLO, PING, RESET, chunked INPUT with ACKs, RESULT with the input CRC, retransmission,
 * lost chunk, wrong size, too large, GET_RESULT, garbage on the line, model mismatch; and two input slots,
 * where the fake model feeds the app the bytes that "arrived" while it computes, as a runner does between
 * its layers. */
#include <stdio.h>
#include <string.h>

#include "edgemnv2_app.h"
#include "test_check.h"

#define INPUT_BYTES 300u
#define OUTPUT_BYTES 10u
#define MAX_PAYLOAD 64u

/* ---------------------------------------------------------------- fake board: UART capture, model, clock */
static uint8_t g_wire[1 << 16];
static size_t g_wire_len;
static uint8_t g_tensor_in[INPUT_BYTES];
static uint8_t g_tensor_out[OUTPUT_BYTES];
static uint64_t g_cycles, g_lost;
static int g_invokes, g_fail_next, g_miss_wraps;
/* bytes the fake model feeds to the app between its two "layers", and how deep invoke is nested */
static emn_app *g_running_app;
static uint8_t g_nested[8192];
static size_t g_nested_len;
static int g_depth, g_max_depth;
#define MODEL_CYCLES 123456789012ull /* > 32 bits: the RESULT must carry 64-bit counts */
#define SERVICE_CYCLES 4800000u      /* what each write costs while the model computes */

static void fake_write(void *ctx, const uint8_t *data, size_t n) {
  (void)ctx;
  if (g_depth) g_cycles += SERVICE_CYCLES; /* answering between layers takes time: not the model's */
  if (g_wire_len + n <= sizeof g_wire) {
    memcpy(g_wire + g_wire_len, data, n);
    g_wire_len += n;
  }
}
static uint8_t *fake_input(void *ctx) { (void)ctx; return g_tensor_in; }
static int fake_invoke(void *ctx, const uint8_t **output, const char **error) {
  size_t i;
  unsigned sum = 0;
  (void)ctx;
  g_invokes++;
  if (++g_depth > g_max_depth) g_max_depth = g_depth;
  g_cycles += MODEL_CYCLES / 2u;
  if (g_nested_len) { /* between the layers: what the board received meanwhile */
    size_t len = g_nested_len;
    g_nested_len = 0;
    emn_app_feed(g_running_app, g_nested, len / 2u);
    emn_app_feed(g_running_app, g_nested + len / 2u, len - len / 2u);
  }
  g_cycles += MODEL_CYCLES - MODEL_CYCLES / 2u;
  g_depth--;
  if (g_miss_wraps) g_lost += (MODEL_CYCLES >> 32) << 32; /* a 32-bit counter nobody read meanwhile */
  if (g_fail_next) {
    g_fail_next = 0;
    *error = "tensor arena too small";
    return 1;
  }
  for (i = 0; i < INPUT_BYTES; ++i) sum += g_tensor_in[i]; /* after the nested feeds: they must not touch it */
  for (i = 0; i < OUTPUT_BYTES; ++i) g_tensor_out[i] = (uint8_t)(sum + i);
  *output = g_tensor_out;
  return 0;
}
static uint64_t fake_cycles(void *ctx) { (void)ctx; return g_cycles - g_lost; }
static uint64_t fake_micros(void *ctx) { (void)ctx; return g_cycles / 480u; }
static uint32_t fake_entropy(void *ctx) { (void)ctx; return 0xBEEF0002u; }

static const uint8_t kHash[EMN_HASH_BYTES] = {0xba, 0x01, 0x2f, 0x58, 1, 2, 3, 4};
static uint8_t g_rx[EMN_APP_RX_BYTES(MAX_PAYLOAD)], g_tx[EMN_APP_TX_BYTES], g_res[EMN_APP_RESULT_LAYER_BYTES(OUTPUT_BYTES, 3)];

/* ---------------------------------------------------------------- host side: what came back */
typedef struct {
  uint8_t type;
  uint8_t payload[512];
  size_t len;
} reply;
static reply g_replies[64];
static int g_n;

static void collect(void) {
  static uint8_t buf[4096];
  emn_decoder d;
  size_t i;
  emn_decoder_init(&d, buf, sizeof buf);
  g_n = 0;
  for (i = 0; i < g_wire_len; ++i) {
    emn_frame f;
    emn_event ev = emn_decoder_push(&d, g_wire[i], &f);
    CHECK(ev == EMN_NONE || ev == EMN_FRAME, "board sent a bad frame (event %d)", (int)ev);
    if (ev == EMN_FRAME && g_n < 64 && f.payload_len <= sizeof g_replies[0].payload) {
      g_replies[g_n].type = f.type;
      memcpy(g_replies[g_n].payload, f.payload, f.payload_len);
      g_replies[g_n].len = f.payload_len;
      ++g_n;
    }
  }
  g_wire_len = 0;
}

static emn_frame as_frame(const reply *r) {
  emn_frame f;
  f.type = r->type;
  f.payload = r->payload;
  f.payload_len = r->len;
  return f;
}

static void feed(emn_app *app, const uint8_t *data, size_t n) {
  emn_app_feed(app, data, n);
  collect();
}

/* An INPUT frame into out (cap bytes); returns its length. */
static size_t encode_input(uint32_t id, uint32_t offset, uint32_t total, const uint8_t *data, size_t n, uint8_t *out,
                           size_t cap) {
  const emn_input in = {.id = id, .offset = offset, .total = total, .data = data, .data_len = n};
  return emn_encode_input(&in, out, cap);
}

static void send_input(emn_app *app, uint32_t id, uint32_t offset, uint32_t total, const uint8_t *data, size_t n) {
  static uint8_t frame[1024];
  feed(app, frame, encode_input(id, offset, total, data, n, frame, sizeof frame));
}

static size_t chunk_len(uint32_t off) { return INPUT_BYTES - off < MAX_PAYLOAD ? INPUT_BYTES - off : MAX_PAYLOAD; }

/* Unpack reply i as a RESULT into r, with room for one layer time and one top-k entry. */
static int unpack_reply_result(int i, emn_result *r) {
  static uint32_t layers[4];
  static emn_topk_entry topk[1];
  emn_frame f = as_frame(&g_replies[i]);
  r->layer_us = layers;
  r->layer_cap = 4;
  r->topk = topk;
  r->topk_cap = 1;
  return emn_unpack_result(&f, r);
}

/* Reply i into f; 0 when fewer came back. */
static int reply_frame(int i, emn_frame *f) {
  if (i >= g_n) return 0;
  *f = as_frame(&g_replies[i]);
  return 1;
}

static int is_ack(int i, uint32_t id, uint32_t next) {
  emn_ack a;
  emn_frame f;
  return reply_frame(i, &f) && emn_unpack_ack(&f, &a) == EMN_OK && a.id == id && a.next_offset == next;
}

static int is_error(int i, uint8_t code, uint32_t detail) {
  emn_error e;
  emn_frame f;
  return reply_frame(i, &f) && emn_unpack_error(&f, &e) == EMN_OK && e.code == code && e.detail == detail;
}

static int fake_memory(void *ctx, emn_memory *m) {
  (void)ctx;
  m->arena_bytes = 1000u;
  m->arena_peak = 996u;
  m->stack_peak = 240u;
  m->stack_boot_peak = 1200u;
  m->stack_region = 4096u;
  m->inferences = (uint32_t)g_invokes;
  return 0;
}

/* Append the INPUT chunks [from, to) of image `id` to g_nested (fed while the model computes). */
static void nest_input(uint32_t id, const uint8_t *image, uint32_t from, uint32_t to) {
  uint32_t off;
  for (off = from; off < to; off += MAX_PAYLOAD)
    g_nested_len += encode_input(id, off, INPUT_BYTES, image + off, to - off < MAX_PAYLOAD ? to - off : MAX_PAYLOAD,
                                 g_nested + g_nested_len, sizeof g_nested - g_nested_len);
}

static void nest_frame(const uint8_t *frame, size_t n) {
  memcpy(g_nested + g_nested_len, frame, n);
  g_nested_len += n;
}

static void upload(emn_app *app, uint32_t id, const uint8_t *image) {
  uint32_t off;
  for (off = 0; off < INPUT_BYTES; off += MAX_PAYLOAD) send_input(app, id, off, INPUT_BYTES, image + off, chunk_len(off));
}

static void output_of(const uint8_t *image, uint8_t *out) {
  unsigned sum = 0;
  size_t i;
  for (i = 0; i < INPUT_BYTES; ++i) sum += image[i];
  for (i = 0; i < OUTPUT_BYTES; ++i) out[i] = (uint8_t)(sum + i);
}

/* Reply i is the RESULT of `image` under `id`, with the model's own cycles (service time taken out). */
static int is_result_of(int i, uint32_t id, const uint8_t *image) {
  emn_result r;
  uint8_t expected[OUTPUT_BYTES];
  if (i >= g_n || g_replies[i].type != EMN_RESULT || unpack_reply_result(i, &r) != EMN_OK) return 0;
  output_of(image, expected);
  return r.id == id && r.input_crc32 == emn_crc32(image, INPUT_BYTES) && r.cycles == MODEL_CYCLES &&
         r.micros + 1u >= MODEL_CYCLES / 480u && r.micros <= MODEL_CYCLES / 480u + 1u &&
         r.output_len == OUTPUT_BYTES && memcmp(r.output, expected, OUTPUT_BYTES) == 0;
}

static int acks_in_order(int from, uint32_t id, int *next_reply) {
  uint32_t off;
  int i = from;
  for (off = 0; off < INPUT_BYTES; off += MAX_PAYLOAD, ++i)
    if (!is_ack(i, id, off + (uint32_t)chunk_len(off))) return 0;
  *next_reply = i;
  return 1;
}

/* Two input slots: the next image is acknowledged while the current one computes, then runs from the spare
 * buffer; PING is answered meanwhile, a third image is refused as busy, GET_RESULT of the computing input is
 * busy, the last two RESULTs are kept; a HELLO during an inference drops it without a RESULT. */
static void test_two_slots(emn_app_ops ops, emn_app_config cfg) {
  static uint8_t spare_in[INPUT_BYTES], spare_res[sizeof g_res];
  uint8_t a[INPUT_BYTES], b[INPUT_BYTES], c[INPUT_BYTES], frame[512];
  emn_app app;
  emn_info info;
  emn_frame f;
  size_t i;
  int k;
  for (i = 0; i < INPUT_BYTES; ++i) {
    a[i] = (uint8_t)(i * 3u + 1u);
    b[i] = (uint8_t)(i * 5u + 2u);
    c[i] = (uint8_t)(i * 11u + 9u);
  }
  g_running_app = &app;
  ops.layer_times = NULL;
  cfg.spare_input = spare_in;
  CHECK(emn_app_start(&app, &cfg, &ops, 0x2u) == EMN_ERR_MALFORMED, "spare input without a spare result accepted");
  cfg.spare_result = spare_res;
  CHECK(emn_app_start(&app, &cfg, &ops, 0x2u) == EMN_OK, "start with two slots");
  collect();
  f = as_frame(&g_replies[0]);
  CHECK(g_n == 1 && emn_unpack_info(&f, &info) == EMN_OK && info.input_slots == 2, "INFO does not say 2 slots");

  /* image a (id 1) uploaded; while it computes: all of b (id 2), a PING, GET_RESULT(1), a third image */
  g_invokes = 0;
  g_max_depth = 0;
  nest_input(2, b, 0, INPUT_BYTES);
  {
    emn_ping p;
    emn_get_result g;
    p.token = 0x5107u;
    nest_frame(frame, emn_encode_ping(&p, frame, sizeof frame));
    g.id = 1;
    nest_frame(frame, emn_encode_get_result(&g, frame, sizeof frame));
  }
  nest_input(3, c, 0, MAX_PAYLOAD);
  upload(&app, 1, a);
  {
    int next = 0;
    emn_pong pong;
    CHECK(g_invokes == 2 && g_max_depth == 1, "%d invokes, nested %d deep", g_invokes, g_max_depth);
    /* the last chunk of a was acknowledged before it ran: then b's ACKs, PONG, busy, busy, RESULT a, RESULT b */
    CHECK(is_ack(0, 1, INPUT_BYTES) && acks_in_order(1, 2, &next), "b not acknowledged while a computes");
    f = as_frame(&g_replies[next]);
    CHECK(emn_unpack_pong(&f, &pong) == EMN_OK && pong.token == 0x5107u, "PING not answered while computing");
    CHECK(is_error(next + 1, EMN_E_BUSY, 0), "GET_RESULT of the computing input is not busy");
    CHECK(is_error(next + 2, EMN_E_BUSY, 0), "a third input while both slots are taken is not busy");
    CHECK(is_result_of(next + 3, 1, a), "RESULT of a wrong (output, CRC, or service time counted)");
    CHECK(is_result_of(next + 4, 2, b), "RESULT of b (run from the spare buffer) wrong");
    CHECK(g_n == next + 5, "%d replies", g_n);
  }
  /* both RESULTs kept; b re-sent is complete; c runs and replaces the oldest (a) */
  for (k = 1; k <= 2; ++k) {
    emn_get_result g;
    g.id = (uint32_t)k;
    feed(&app, frame, emn_encode_get_result(&g, frame, sizeof frame));
    CHECK(g_n == 1 && is_result_of(0, (uint32_t)k, k == 1 ? a : b), "GET_RESULT(%d) after two slots", k);
  }
  send_input(&app, 2, 0, INPUT_BYTES, b, MAX_PAYLOAD);
  CHECK(g_n == 1 && is_ack(0, 2, INPUT_BYTES) && g_invokes == 2, "a completed id re-sent");
  upload(&app, 3, c);
  CHECK(is_result_of(g_n - 1, 3, c) && g_invokes == 3, "c");
  {
    emn_get_result g;
    g.id = 1;
    feed(&app, frame, emn_encode_get_result(&g, frame, sizeof frame));
    CHECK(g_n == 1 && is_error(0, EMN_E_UNKNOWN_ID, 0), "the oldest RESULT was not replaced");
  }

  /* an upload into the spare buffer abandoned for a new id, which takes its place */
  nest_input(5, a, 0, MAX_PAYLOAD);
  nest_input(6, c, 0, INPUT_BYTES);
  upload(&app, 4, b);
  CHECK(is_result_of(g_n - 2, 4, b) && is_result_of(g_n - 1, 6, c), "an abandoned spare upload");

  /* a HELLO while computing: no RESULT for that inference, the spare upload is dropped, and the same ids
   * are new again */
  {
    emn_hello h;
    int next = 0;
    memset(&h, 0, sizeof h);
    h.version = 1;
    nest_input(8, b, 0, INPUT_BYTES);
    nest_frame(frame, emn_encode_hello(&h, frame, sizeof frame));
    upload(&app, 7, a);
    CHECK(is_ack(0, 7, INPUT_BYTES) && acks_in_order(1, 8, &next) && g_replies[next].type == EMN_INFO &&
              g_n == next + 1 && g_invokes == 6,
          "HELLO during an inference: %d replies, %d invokes", g_n, g_invokes);
    upload(&app, 7, c);
    CHECK(is_result_of(g_n - 1, 7, c), "id 7 after the new session");
  }

  /* one slot: an upload while computing is busy */
  cfg.spare_input = NULL;
  cfg.spare_result = NULL;
  CHECK(emn_app_start(&app, &cfg, &ops, 0x3u) == EMN_OK, "start with one slot");
  collect();
  nest_input(10, b, 0, MAX_PAYLOAD);
  upload(&app, 9, a);
  CHECK(g_n == 3 && is_ack(0, 9, INPUT_BYTES) && is_error(1, EMN_E_BUSY, 0) && is_result_of(2, 9, a),
        "one slot: an upload while computing (%d replies)", g_n);
  g_running_app = NULL;
}

static const uint32_t kLayerUs[3] = {1000u, 20u, 7u};
static size_t fake_layer_times(void *ctx, const uint32_t **layer_us) {
  (void)ctx;
  *layer_us = kLayerUs;
  return 3;
}

int main(void) {
  emn_app app;
  emn_app_ops ops;
  emn_app_config cfg;
  emn_info info;
  emn_frame f;
  uint8_t image[INPUT_BYTES], frame[512];
  size_t i;
  uint32_t off;

  ops.ctx = NULL;
  ops.write = fake_write;
  ops.input_buffer = fake_input;
  ops.invoke = fake_invoke;
  ops.cycles = fake_cycles;
  ops.micros = fake_micros;
  ops.entropy = fake_entropy;
  ops.layer_times = NULL;
  ops.memory = NULL;
  memset(&cfg, 0, sizeof cfg);
  cfg.board_name = "test-board";
  cfg.runtime = "tflm";
  cfg.cpu_hz = 480000000u;
  cfg.arena_bytes = 123456u;
  cfg.max_payload = MAX_PAYLOAD;
  cfg.window = 2;
  cfg.model_sha256 = kHash;
  cfg.input.dtype = EMN_DTYPE_INT8;
  cfg.input.rank = 4;
  cfg.input.dims[0] = 1;
  cfg.input.dims[1] = 10;
  cfg.input.dims[2] = 10;
  cfg.input.dims[3] = 3;
  cfg.input.scale = 0.0078125f;
  cfg.input.zero_point = -1;
  cfg.output.dtype = EMN_DTYPE_INT8;
  cfg.output.rank = 2;
  cfg.output.dims[0] = 1;
  cfg.output.dims[1] = OUTPUT_BYTES;
  cfg.output.scale = 0.00390625f;
  cfg.output.zero_point = -128;
  cfg.rx_frame = g_rx;
  cfg.rx_frame_cap = sizeof g_rx;
  cfg.tx = g_tx;
  cfg.tx_cap = sizeof g_tx;
  cfg.result_frame = g_res;
  cfg.result_cap = sizeof g_res;
  for (i = 0; i < INPUT_BYTES; ++i) image[i] = (uint8_t)(i * 7u + 3u);

  /* buffers too small are refused */
  cfg.result_cap = 10;
  CHECK(emn_app_start(&app, &cfg, &ops, 1) == EMN_ERR_MALFORMED && g_wire_len == 0, "small result buffer accepted");
  cfg.result_cap = sizeof g_res;

  /* boot: INFO unsolicited */
  CHECK(emn_app_start(&app, &cfg, &ops, 0x12345678u) == EMN_OK, "start failed");
  collect();
  f = as_frame(&g_replies[0]);
  CHECK(g_n == 1 && emn_unpack_info(&f, &info) == EMN_OK && info.boot_nonce == 0x12345678u && info.input_slots == 1 &&
            info.window == 2 && info.max_payload == MAX_PAYLOAD && info.arena_bytes == 123456u &&
            emn_tensor_bytes(&info.input) == INPUT_BYTES && info.output.zero_point == -128 &&
            memcmp(info.model_sha256, kHash, EMN_HASH_BYTES) == 0 && info.board_name.len == 10,
        "boot INFO wrong (%d frames)", g_n);

  /* HELLO (any model) -> INFO; HELLO with another hash -> INFO + ERROR model_mismatch */
  {
    emn_hello h;
    memset(&h, 0, sizeof h);
    h.version = 1;
    feed(&app, frame, emn_encode_hello(&h, frame, sizeof frame));
    CHECK(g_n == 1 && g_replies[0].type == EMN_INFO, "HELLO(any) gave %d frames", g_n);
    memcpy(h.model_sha256, kHash, EMN_HASH_BYTES);
    feed(&app, frame, emn_encode_hello(&h, frame, sizeof frame));
    CHECK(g_n == 1 && g_replies[0].type == EMN_INFO, "HELLO(matching hash) gave %d frames", g_n);
    h.model_sha256[5] ^= 1;
    feed(&app, frame, emn_encode_hello(&h, frame, sizeof frame));
    CHECK(g_n == 2 && g_replies[0].type == EMN_INFO && is_error(1, EMN_E_MODEL_MISMATCH, 0), "HELLO(other hash)");
  }

  /* PING -> PONG with the nonce */
  {
    emn_ping p;
    emn_pong r;
    p.token = 0xDEADBEEFu;
    feed(&app, frame, emn_encode_ping(&p, frame, sizeof frame));
    f = as_frame(&g_replies[0]);
    CHECK(g_n == 1 && emn_unpack_pong(&f, &r) == EMN_OK && r.token == 0xDEADBEEFu && r.boot_nonce == 0x12345678u,
          "PING");
  }

  /* an input in 64-byte chunks: ACK each, then RESULT with the CRC of the input and the output */
  for (off = 0; off < INPUT_BYTES; off += MAX_PAYLOAD) {
    size_t n = chunk_len(off);
    send_input(&app, 7, off, INPUT_BYTES, image + off, n);
    if (off + n < INPUT_BYTES) CHECK(g_n == 1 && is_ack(0, 7, off + (uint32_t)n), "ACK after chunk at %u", off);
  }
  {
    emn_result r;
    CHECK(g_n == 2 && is_ack(0, 7, INPUT_BYTES), "last chunk not acknowledged");
    CHECK(unpack_reply_result(1, &r) == EMN_OK && r.id == 7 && r.boot_nonce == 0x12345678u &&
              r.input_crc32 == emn_crc32(image, INPUT_BYTES) && r.cycles == 123456789012ull && r.micros == 123456789012ull / 480u &&
              r.kind == EMN_RESULT_RAW && r.output_len == OUTPUT_BYTES && memcmp(r.output, g_tensor_out, OUTPUT_BYTES) == 0 &&
              memcmp(g_tensor_in, image, INPUT_BYTES) == 0,
          "RESULT wrong");
  }
  CHECK(g_invokes == 1, "%d invokes after one input", g_invokes);

  /* GET_RESULT: the same RESULT again; an unknown id -> ERROR unknown_id */
  {
    emn_get_result g;
    size_t first_len = g_replies[1].len;
    uint8_t first[512];
    memcpy(first, g_replies[1].payload, first_len);
    g.id = 7;
    feed(&app, frame, emn_encode_get_result(&g, frame, sizeof frame));
    CHECK(g_n == 1 && g_replies[0].type == EMN_RESULT && g_replies[0].len == first_len &&
              memcmp(g_replies[0].payload, first, first_len) == 0,
          "GET_RESULT(7) did not repeat the RESULT");
    g.id = 99;
    feed(&app, frame, emn_encode_get_result(&g, frame, sizeof frame));
    CHECK(g_n == 1 && is_error(0, EMN_E_UNKNOWN_ID, 0), "GET_RESULT(99)");
  }

  /* a completed id sent again: ACK(id, total), no second inference */
  send_input(&app, 7, 0, INPUT_BYTES, image, MAX_PAYLOAD);
  CHECK(g_n == 1 && is_ack(0, 7, INPUT_BYTES) && g_invokes == 1, "completed id re-sent");

  /* new id: retransmission, lost chunk, wrong total, too large, new id at offset != 0 */
  send_input(&app, 8, 0, INPUT_BYTES, image, MAX_PAYLOAD);
  CHECK(g_n == 1 && is_ack(0, 8, MAX_PAYLOAD), "id 8 first chunk");
  send_input(&app, 8, 0, INPUT_BYTES, image, MAX_PAYLOAD);
  CHECK(g_n == 1 && is_ack(0, 8, MAX_PAYLOAD), "retransmitted chunk must be acknowledged at the expected offset");
  send_input(&app, 8, 2 * MAX_PAYLOAD, INPUT_BYTES, image, MAX_PAYLOAD);
  CHECK(g_n == 1 && is_error(0, EMN_E_SEQUENCE, MAX_PAYLOAD), "gap must give ERROR sequence(expected)");
  send_input(&app, 8, MAX_PAYLOAD, INPUT_BYTES + 1, image, MAX_PAYLOAD);
  CHECK(g_n == 1 && is_error(0, EMN_E_WRONG_SIZE, INPUT_BYTES), "wrong total");
  {
    static uint8_t big[MAX_PAYLOAD + 1];
    send_input(&app, 8, MAX_PAYLOAD, INPUT_BYTES, big, sizeof big);
    CHECK(g_n == 1 && is_error(0, EMN_E_TOO_LARGE, MAX_PAYLOAD), "chunk > max_payload");
  }
  send_input(&app, 9, MAX_PAYLOAD, INPUT_BYTES, image, MAX_PAYLOAD);
  CHECK(g_n == 1 && is_error(0, EMN_E_SEQUENCE, 0), "new id at offset != 0");

  /* garbage on the line: one ERROR bad_crc, then the upload goes on */
  {
    static const uint8_t noise[] = {0x13, 0x37, 0xff, 0x42, 0x00};
    feed(&app, noise, sizeof noise);
    CHECK(g_n == 1 && is_error(0, EMN_E_BAD_CRC, 0), "garbage gave %d frames", g_n);
    send_input(&app, 8, MAX_PAYLOAD, INPUT_BYTES, image + MAX_PAYLOAD, MAX_PAYLOAD);
    CHECK(g_n == 1 && is_ack(0, 8, 2 * MAX_PAYLOAD), "upload after garbage");
  }

  /* unknown type -> unsupported; malformed payload -> malformed */
  {
    emn_writer w;
    emn_writer_begin(&w, frame, sizeof frame, 0x55);
    feed(&app, frame, emn_writer_end(&w));
    CHECK(g_n == 1 && is_error(0, EMN_E_UNSUPPORTED, 0x55), "unknown type");
    emn_writer_begin(&w, frame, sizeof frame, EMN_PING);
    emn_writer_u8(&w, 1);
    feed(&app, frame, emn_writer_end(&w));
    CHECK(g_n == 1 && is_error(0, EMN_E_MALFORMED, EMN_PING), "short PING");
  }

  /* the model fails: ERROR runtime with its message */
  g_fail_next = 1;
  for (off = 2 * MAX_PAYLOAD; off < INPUT_BYTES; off += MAX_PAYLOAD) {
    size_t n = chunk_len(off);
    send_input(&app, 8, off, INPUT_BYTES, image + off, n);
  }
  CHECK(g_n == 2 && is_ack(0, 8, INPUT_BYTES) && is_error(1, EMN_E_RUNTIME, 0), "invoke failure");

  /* RESET: INFO with a new nonce; the new session forgets results */
  {
    emn_get_result g;
    feed(&app, frame, emn_encode_reset(frame, sizeof frame));
    f = as_frame(&g_replies[0]);
    CHECK(g_n == 1 && emn_unpack_info(&f, &info) == EMN_OK && info.boot_nonce == 0xBEEF0002u, "RESET");
    g.id = 7;
    feed(&app, frame, emn_encode_get_result(&g, frame, sizeof frame));
    CHECK(g_n == 1 && is_error(0, EMN_E_UNKNOWN_ID, 0), "results survive a RESET");
  }

  /* a cycle counter that missed its wraps during the inference: corrected from the microsecond timer */
  g_miss_wraps = 1;
  for (off = 0; off < INPUT_BYTES; off += MAX_PAYLOAD) {
    size_t n = chunk_len(off);
    send_input(&app, 20, off, INPUT_BYTES, image + off, n);
  }
  {
    emn_result r;
    CHECK(g_n == 2 && unpack_reply_result(1, &r) == EMN_OK && r.cycles == 123456789012ull,
          "missed counter wraps not corrected");
  }

  /* a runner that times its layers: INFO says so and every RESULT carries them in operator order */
  g_miss_wraps = 0;
  ops.layer_times = fake_layer_times;
  CHECK(emn_app_start(&app, &cfg, &ops, 0x600Du) == EMN_OK, "start with layer times");
  collect();
  f = as_frame(&g_replies[0]);
  CHECK(g_n == 1 && emn_unpack_info(&f, &info) == EMN_OK && info.flags == EMN_FLAG_LAYER_TIMES,
        "INFO does not advertise layer times");
  for (off = 0; off < INPUT_BYTES; off += MAX_PAYLOAD) {
    size_t n = chunk_len(off);
    send_input(&app, 30, off, INPUT_BYTES, image + off, n);
  }
  {
    emn_result r;
    CHECK(g_n == 2 && unpack_reply_result(1, &r) == EMN_OK && r.n_layers == 3 && r.layer_us[0] == 1000u &&
              r.layer_us[1] == 20u && r.layer_us[2] == 7u && r.output_len == OUTPUT_BYTES,
          "RESULT layer times wrong");
  }

  /* GET_MEMORY: unsupported without a measuring runner; with one, INFO says so and MEMORY carries it */
  feed(&app, frame, emn_encode_get_memory(frame, sizeof frame));
  CHECK(g_n == 1 && is_error(0, EMN_E_UNSUPPORTED, EMN_GET_MEMORY), "GET_MEMORY without a measurement");
  ops.memory = fake_memory;
  CHECK(emn_app_start(&app, &cfg, &ops, 0x3E3u) == EMN_OK, "start with a RAM measurement");
  collect();
  f = as_frame(&g_replies[0]);
  CHECK(g_n == 1 && emn_unpack_info(&f, &info) == EMN_OK &&
            info.flags == (EMN_FLAG_LAYER_TIMES | EMN_FLAG_MEMORY),
        "INFO does not advertise the RAM measurement");
  feed(&app, frame, emn_encode_get_memory(frame, sizeof frame));
  {
    emn_memory m;
    f = as_frame(&g_replies[0]);
    CHECK(g_n == 1 && emn_unpack_memory(&f, &m) == EMN_OK && m.boot_nonce == 0x3E3u && m.arena_bytes == 1000u &&
              m.arena_peak == 996u && m.stack_peak == 240u && m.stack_boot_peak == 1200u &&
              m.stack_region == 4096u && m.inferences == (uint32_t)g_invokes,
          "MEMORY wrong");
  }

  ops.memory = NULL;
  ops.layer_times = NULL;
  test_two_slots(ops, cfg);

  printf("%d checks, %d failed\n", g_checks, g_failures);
  return g_failures ? 1 : 0;
}
