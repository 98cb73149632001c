/* Board side of the edgemnv2 protocol: the rules of docs/protocol.md section 3. See edgemnv2_app.h. */
#include "edgemnv2_app.h"

#include <string.h>

#define RESULT_HEADER_BYTES 31u

static void send(emn_app *app, size_t n) {
  if (n) app->ops->write(app->ops->ctx, app->cfg->tx, n);
}

static void send_error(emn_app *app, uint8_t code, uint32_t id, uint32_t detail, const char *message) {
  emn_error e;
  e.code = code;
  e.boot_nonce = app->boot_nonce;
  e.id = id;
  e.detail = detail;
  e.message = emn_cstr(message);
  send(app, emn_encode_error(&e, app->cfg->tx, app->cfg->tx_cap));
}

static void send_info(emn_app *app) {
  const emn_app_config *c = app->cfg;
  emn_info m;
  m.version = (uint8_t)EMN_PROTOCOL_VERSION;
  m.flags = (uint8_t)((app->ops->layer_times ? EMN_FLAG_LAYER_TIMES : 0u) | (app->ops->memory ? EMN_FLAG_MEMORY : 0u));
  m.input_slots = app->slots;
  m.window = c->window;
  m.max_payload = c->max_payload;
  m.boot_nonce = app->boot_nonce;
  m.cpu_hz = c->cpu_hz;
  m.arena_bytes = c->arena_bytes;
  memcpy(m.model_sha256, c->model_sha256, EMN_HASH_BYTES);
  m.board_name = emn_cstr(c->board_name);
  m.runtime = emn_cstr(c->runtime);
  m.input = c->input;
  m.output = c->output;
  send(app, emn_encode_info(&m, c->tx, c->tx_cap));
}

static void send_ack(emn_app *app, uint32_t id, uint32_t next_offset) {
  emn_ack a;
  a.id = id;
  a.next_offset = next_offset;
  send(app, emn_encode_ack(&a, app->cfg->tx, app->cfg->tx_cap));
}

/* HELLO and RESET start a new session: uploads, queued inputs and kept results are dropped; an inference
 * still running finishes without a RESULT (its session is over). */
static void new_session(emn_app *app) {
  app->session++;
  if (app->tensor.state != EMN_SLOT_RUN) app->tensor.state = EMN_SLOT_FREE;
  app->spare.state = EMN_SLOT_FREE;
  app->upload = NULL;
  app->results[0].len = 0;
  app->results[1].len = 0;
}

int emn_app_start(emn_app *app, const emn_app_config *cfg, const emn_app_ops *ops, uint32_t boot_nonce) {
  size_t input_bytes = emn_tensor_bytes(&cfg->input), output_bytes = emn_tensor_bytes(&cfg->output);
  memset(app, 0, sizeof *app);
  if (input_bytes == 0u || output_bytes == 0u || cfg->max_payload == 0u || cfg->window == 0u ||
      cfg->rx_frame_cap < EMN_APP_RX_BYTES(cfg->max_payload) || cfg->tx_cap < EMN_APP_TX_BYTES ||
      cfg->result_cap < EMN_APP_RESULT_BYTES(output_bytes) || (cfg->spare_input == NULL) != (cfg->spare_result == NULL))
    return EMN_ERR_MALFORMED;
  app->cfg = cfg;
  app->ops = ops;
  app->boot_nonce = boot_nonce;
  app->input_bytes = input_bytes;
  app->output_bytes = output_bytes;
  app->slots = cfg->spare_input ? 2u : 1u;
  app->results[0].frame = cfg->result_frame;
  app->results[1].frame = cfg->spare_result;
  /* the receive buffer holds one encoded frame, delimiters excluded */
  emn_decoder_init(&app->decoder, cfg->rx_frame, cfg->rx_frame_cap);
  new_session(app);
  send_info(app);
  return EMN_OK;
}

/* A board whose 64-bit count is extended from a 32-bit counter (DWT CYCCNT, Xtensa CCOUNT) misses wraps
 * when nothing reads it for 2^32 cycles (9 s at 480 MHz), e.g. during a long inference. The microsecond
 * timer tells how many wraps were missed; add them back. */
static uint64_t cycles_elapsed(uint32_t cpu_hz, uint64_t cycles, uint64_t micros) {
  const uint64_t wrap = (uint64_t)1 << 32;
  uint64_t expected;
  if (cpu_hz == 0u) return cycles;
  expected = micros * (cpu_hz / 1000000u);
  while (expected > cycles + wrap / 2u) cycles += wrap;
  return cycles;
}

static uint64_t minus(uint64_t a, uint64_t b) { return a > b ? a - b : 0u; }

/* Run the model on the input tensor (tensor slot READY) and send its RESULT into the oldest kept frame. */
static void run_model(emn_app *app) {
  const uint8_t *output = NULL;
  const char *error = "invoke failed";
  uint64_t c0, t0, c1, t1, micros;
  const uint32_t *layer_us = NULL;
  size_t n_layers = 0, i;
  uint32_t id = app->tensor.id, crc = app->tensor.crc;
  uint8_t which;
  emn_app_result *r;
  emn_writer w;
  int status;
  app->tensor.state = EMN_SLOT_RUN;
  app->run_session = app->session;
  app->service_cycles = 0;
  app->service_micros = 0;
  c0 = app->ops->cycles(app->ops->ctx);
  t0 = app->ops->micros(app->ops->ctx);
  status = app->ops->invoke(app->ops->ctx, &output, &error);
  c1 = app->ops->cycles(app->ops->ctx);
  t1 = app->ops->micros(app->ops->ctx);
  app->tensor.state = EMN_SLOT_FREE;
  if (app->run_session != app->session) return; /* a HELLO or RESET arrived meanwhile */
  if (status != 0 || output == NULL) {
    send_error(app, EMN_E_RUNTIME, id, 0, error ? error : "invoke failed");
    return;
  }
  app->inferences++;
  if (app->ops->layer_times) n_layers = app->ops->layer_times(app->ops->ctx, &layer_us);
  if (n_layers > 0xFFFFu || layer_us == NULL) n_layers = 0;
  which = app->slots > 1u ? (uint8_t)(app->newest_result ^ 1u) : 0u;
  r = &app->results[which];
  micros = minus(t1 - t0, app->service_micros);
  emn_writer_begin(&w, r->frame, app->cfg->result_cap, EMN_RESULT);
  emn_writer_u32(&w, id);
  emn_writer_u32(&w, app->boot_nonce);
  emn_writer_u32(&w, crc);
  emn_writer_u64(&w, cycles_elapsed(app->cfg->cpu_hz, minus(c1 - c0, app->service_cycles), micros));
  emn_writer_u64(&w, micros);
  emn_writer_u8(&w, EMN_RESULT_RAW);
  emn_writer_u16(&w, (uint16_t)n_layers);
  for (i = 0; i < n_layers; ++i) emn_writer_u32(&w, layer_us[i]);
  emn_writer_bytes(&w, output, app->output_bytes);
  r->len = emn_writer_end(&w);
  r->id = id;
  if (r->len) {
    app->newest_result = which;
    app->ops->write(app->ops->ctx, r->frame, r->len);
  }
}

/* Run what is ready, oldest first: the tensor slot, then the spare one (copied into the tensor). Only at the
 * top level: never from a feed nested in the model. */
static void run_ready(emn_app *app) {
  for (;;) {
    if (app->tensor.state == EMN_SLOT_READY) {
      run_model(app);
    } else if (app->tensor.state == EMN_SLOT_FREE && app->spare.state == EMN_SLOT_READY) {
      memcpy(app->ops->input_buffer(app->ops->ctx), app->cfg->spare_input, app->input_bytes);
      app->tensor = app->spare;
      app->spare.state = EMN_SLOT_FREE;
      run_model(app);
    } else {
      return;
    }
  }
}

/* queued, computing or answered in this session */
static int is_complete(const emn_app *app, uint32_t id) {
  const emn_app_slot *t = &app->tensor, *s = &app->spare;
  int r;
  if ((t->state == EMN_SLOT_READY && t->id == id) || (s->state == EMN_SLOT_READY && s->id == id) ||
      (t->state == EMN_SLOT_RUN && t->id == id && app->run_session == app->session))
    return 1;
  for (r = 0; r < 2; ++r)
    if (app->results[r].len && app->results[r].id == id) return 1;
  return 0;
}

/* The INPUT rules of docs/protocol.md ("Board rules for INPUT"). */
static void on_input(emn_app *app, const emn_input *in) {
  emn_app_slot *slot = app->upload;
  uint8_t *buffer;
  if (in->total != app->input_bytes) {
    send_error(app, EMN_E_WRONG_SIZE, in->id, (uint32_t)app->input_bytes, "total is not the input tensor size");
    return;
  }
  if (in->data_len > app->cfg->max_payload) {
    send_error(app, EMN_E_TOO_LARGE, in->id, app->cfg->max_payload, "chunk longer than max_payload");
    return;
  }
  if (slot == NULL || slot->id != in->id) {
    if (is_complete(app, in->id)) {
      send_ack(app, in->id, in->total);
      return;
    }
    if (in->offset != 0u) {
      send_error(app, EMN_E_SEQUENCE, in->id, 0, "a new input starts at offset 0");
      return;
    }
    /* a slot that is free or holds an unfinished upload (the host abandoned it): the tensor first */
    if (app->tensor.state == EMN_SLOT_FREE || app->upload == &app->tensor)
      slot = &app->tensor;
    else if (app->slots > 1u && (app->spare.state == EMN_SLOT_FREE || app->upload == &app->spare))
      slot = &app->spare;
    else {
      send_error(app, EMN_E_BUSY, in->id, 0, "no free input slot");
      return;
    }
    if (app->upload && app->upload != slot) app->upload->state = EMN_SLOT_FREE;
    slot->state = EMN_SLOT_UPLOAD;
    slot->id = in->id;
    slot->next = 0;
    slot->crc = 0;
    app->upload = slot;
  }
  if (in->offset < slot->next) {
    send_ack(app, in->id, slot->next); /* a retransmission */
    return;
  }
  if (in->offset > slot->next) {
    send_error(app, EMN_E_SEQUENCE, in->id, slot->next, "a chunk was lost");
    return;
  }
  if (in->data_len > app->input_bytes - slot->next) {
    send_error(app, EMN_E_WRONG_SIZE, in->id, (uint32_t)app->input_bytes, "chunk runs past the input tensor");
    return;
  }
  buffer = slot == &app->spare ? app->cfg->spare_input : app->ops->input_buffer(app->ops->ctx);
  memcpy(buffer + slot->next, in->data, in->data_len);
  slot->crc = emn_crc32_update(slot->crc, in->data, in->data_len);
  slot->next += (uint32_t)in->data_len;
  send_ack(app, in->id, slot->next);
  if (slot->next == app->input_bytes) {
    slot->state = EMN_SLOT_READY; /* runs when this feed has consumed its bytes */
    app->upload = NULL;
  }
}

/* GET_MEMORY: the runner's own measurement (a board without one answers as for an unknown type). */
static void on_get_memory(emn_app *app) {
  emn_memory m;
  memset(&m, 0, sizeof m);
  if (app->ops->memory == NULL) {
    send_error(app, EMN_E_UNSUPPORTED, 0, EMN_GET_MEMORY, "no RAM measurement");
    return;
  }
  if (app->ops->memory(app->ops->ctx, &m) != 0) {
    send_error(app, EMN_E_RUNTIME, 0, 0, "RAM measurement failed");
    return;
  }
  m.boot_nonce = app->boot_nonce;
  send(app, emn_encode_memory(&m, app->cfg->tx, app->cfg->tx_cap));
}

static void on_get_result(emn_app *app, uint32_t id) {
  const emn_app_slot *u = app->upload;
  int r;
  for (r = 0; r < 2; ++r) {
    if (app->results[r].len && app->results[r].id == id) {
      app->ops->write(app->ops->ctx, app->results[r].frame, app->results[r].len);
      return;
    }
  }
  if (is_complete(app, id) || (u && u->id == id))
    send_error(app, EMN_E_BUSY, id, 0, "still working on this input");
  else
    send_error(app, EMN_E_UNKNOWN_ID, id, 0, "no result for this id");
}

static void on_frame(emn_app *app, const emn_frame *f) {
  app->frames_ok++;
  switch (f->type) {
    case EMN_HELLO: {
      emn_hello h;
      static const uint8_t any[EMN_HASH_BYTES] = {0};
      if (emn_unpack_hello(f, &h) != EMN_OK) break;
      new_session(app);
      send_info(app);
      if (memcmp(h.model_sha256, any, EMN_HASH_BYTES) != 0 &&
          memcmp(h.model_sha256, app->cfg->model_sha256, EMN_HASH_BYTES) != 0)
        send_error(app, EMN_E_MODEL_MISMATCH, 0, 0, "model hash differs");
      return;
    }
    case EMN_PING: {
      emn_ping p;
      emn_pong r;
      if (emn_unpack_ping(f, &p) != EMN_OK) break;
      r.token = p.token;
      r.boot_nonce = app->boot_nonce;
      send(app, emn_encode_pong(&r, app->cfg->tx, app->cfg->tx_cap));
      return;
    }
    case EMN_RESET: {
      uint32_t nonce;
      if (emn_unpack_reset(f) != EMN_OK) break;
      nonce = app->ops->entropy(app->ops->ctx);
      app->boot_nonce = nonce != app->boot_nonce ? nonce : nonce + 1u;
      emn_decoder_reset(&app->decoder);
      new_session(app);
      send_info(app);
      return;
    }
    case EMN_INPUT: {
      emn_input in;
      if (emn_unpack_input(f, &in) != EMN_OK) break;
      on_input(app, &in);
      return;
    }
    case EMN_GET_RESULT: {
      emn_get_result g;
      if (emn_unpack_get_result(f, &g) != EMN_OK) break;
      on_get_result(app, g.id);
      return;
    }
    case EMN_GET_MEMORY:
      if (emn_unpack_get_memory(f) != EMN_OK) break;
      on_get_memory(app);
      return;
    default:
      send_error(app, EMN_E_UNSUPPORTED, 0, f->type, "unknown message type");
      return;
  }
  send_error(app, EMN_E_MALFORMED, 0, f->type, "payload does not parse");
}

void emn_app_feed(emn_app *app, const uint8_t *data, size_t n) {
  const int nested = app->tensor.state == EMN_SLOT_RUN; /* called by the model between its layers */
  uint64_t c0 = 0, t0 = 0;
  size_t i;
  if (nested) {
    c0 = app->ops->cycles(app->ops->ctx);
    t0 = app->ops->micros(app->ops->ctx);
  }
  for (i = 0; i < n; ++i) {
    emn_frame f;
    emn_event ev = emn_decoder_push(&app->decoder, data[i], &f);
    switch (ev) {
      case EMN_NONE: break;
      case EMN_FRAME: on_frame(app, &f); break;
      case EMN_FAULT_VERSION:
        app->frames_bad++;
        send_error(app, EMN_E_UNSUPPORTED, 0, app->decoder.fault_detail, "unsupported protocol version");
        break;
      default: /* cobs, short, crc, oversize: the board cannot know whose frame it was */
        app->frames_bad++;
        send_error(app, EMN_E_BAD_CRC, 0, 0, "");
        break;
    }
  }
  if (nested) {
    app->service_cycles += app->ops->cycles(app->ops->ctx) - c0;
    app->service_micros += app->ops->micros(app->ops->ctx) - t0;
  } else {
    run_ready(app);
  }
}
