/* Host tests of edgemnv2_protocol.c against tests/vectors/protocol_vectors.json (via the generated
 * edgemnv2_vectors.h), plus resynchronisation, corruption and buffer-bound checks.
 * Prints one line per failed check and a summary; exit status 0 only if every check passed. */
#include <stdio.h>
#include <string.h>

#include "edgemnv2_protocol.h"
#include "edgemnv2_vectors.h"
#include "test_check.h"

static uint8_t g_out[70000];
static uint8_t g_work[70000];

static int same_bytes(const uint8_t *a, size_t na, const uint8_t *b, size_t nb) {
  return na == nb && (na == 0 || memcmp(a, b, na) == 0);
}

static int same_str(emn_str a, emn_str b) {
  return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static int same_tensor(const emn_tensor_desc *a, const emn_tensor_desc *b) {
  uint8_t i;
  if (a->dtype != b->dtype || a->rank != b->rank || a->scale != b->scale || a->zero_point != b->zero_point) return 0;
  for (i = 0; i < a->rank; ++i)
    if (a->dims[i] != b->dims[i]) return 0;
  return 1;
}

/* ------------------------------------------------------------------------------------------ vectors */

static void test_crc(void) {
  int i;
  for (i = 0; i < VEC_CRC_COUNT; ++i) {
    const vec_crc *v = &VEC_CRC[i];
    size_t half = v->len / 2;
    CHECK(emn_crc32(v->data, v->len) == v->crc, "crc32 vector %d: got %08lx want %08lx", i,
          (unsigned long)emn_crc32(v->data, v->len), (unsigned long)v->crc);
    CHECK(emn_crc32_update(emn_crc32_update(0, v->data, half), v->data + half, v->len - half) == v->crc,
          "crc32 vector %d fed in two chunks", i);
  }
}

static void test_cobs(void) {
  int i;
  for (i = 0; i < VEC_COBS_COUNT; ++i) {
    const vec_cobs *v = &VEC_COBS[i];
    size_t n = emn_cobs_encode(v->decoded, v->decoded_len, g_out, sizeof g_out);
    CHECK(same_bytes(g_out, n, v->encoded, v->encoded_len), "cobs encode vector %d (%u bytes)", i,
          (unsigned)v->decoded_len);
    n = emn_cobs_decode(v->encoded, v->encoded_len, g_work, sizeof g_work);
    CHECK(n != EMN_COBS_ERROR && same_bytes(g_work, n, v->decoded, v->decoded_len), "cobs decode vector %d", i);
    if (v->encoded_len > 1) {
      /* one byte short of the worst case it needs: must refuse, never write past cap */
      g_out[v->encoded_len - 1] = 0xA5;
      CHECK(emn_cobs_encode(v->decoded, v->decoded_len, g_out, v->encoded_len - 1) == 0,
            "cobs encode vector %d into a short buffer must fail", i);
      CHECK(g_out[v->encoded_len - 1] == 0xA5, "cobs encode vector %d wrote past cap", i);
    }
  }
}

static size_t encode_fields(const vec_message *v, uint8_t *out, size_t cap) {
  switch (v->expected_type) {
    case EMN_HELLO: return emn_encode_hello((const emn_hello *)v->fields, out, cap);
    case EMN_PING: return emn_encode_ping((const emn_ping *)v->fields, out, cap);
    case EMN_RESET: return emn_encode_reset(out, cap);
    case EMN_INPUT: return emn_encode_input((const emn_input *)v->fields, out, cap);
    case EMN_GET_RESULT: return emn_encode_get_result((const emn_get_result *)v->fields, out, cap);
    case EMN_INFO: return emn_encode_info((const emn_info *)v->fields, out, cap);
    case EMN_ACK: return emn_encode_ack((const emn_ack *)v->fields, out, cap);
    case EMN_RESULT: return emn_encode_result((const emn_result *)v->fields, out, cap);
    case EMN_ERROR: return emn_encode_error((const emn_error *)v->fields, out, cap);
    case EMN_PONG: return emn_encode_pong((const emn_pong *)v->fields, out, cap);
    case EMN_GET_MEMORY: return emn_encode_get_memory(out, cap);
    case EMN_MEMORY: return emn_encode_memory((const emn_memory *)v->fields, out, cap);
    default: return 0;
  }
}

/* Unpack the frame and compare every field with the vector's. */
static int fields_match(const vec_message *v, const emn_frame *f) {
  switch (v->expected_type) {
    case EMN_HELLO: {
      const emn_hello *e = (const emn_hello *)v->fields;
      emn_hello m;
      return emn_unpack_hello(f, &m) == EMN_OK && m.version == e->version &&
             memcmp(m.model_sha256, e->model_sha256, EMN_HASH_BYTES) == 0;
    }
    case EMN_PING: {
      emn_ping m;
      return emn_unpack_ping(f, &m) == EMN_OK && m.token == ((const emn_ping *)v->fields)->token;
    }
    case EMN_RESET: return emn_unpack_reset(f) == EMN_OK;
    case EMN_INPUT: {
      const emn_input *e = (const emn_input *)v->fields;
      emn_input m;
      return emn_unpack_input(f, &m) == EMN_OK && m.id == e->id && m.offset == e->offset && m.total == e->total &&
             same_bytes(m.data, m.data_len, e->data, e->data_len);
    }
    case EMN_GET_RESULT: {
      emn_get_result m;
      return emn_unpack_get_result(f, &m) == EMN_OK && m.id == ((const emn_get_result *)v->fields)->id;
    }
    case EMN_INFO: {
      const emn_info *e = (const emn_info *)v->fields;
      emn_info m;
      return emn_unpack_info(f, &m) == EMN_OK && m.version == e->version && m.flags == e->flags &&
             m.input_slots == e->input_slots && m.window == e->window && m.max_payload == e->max_payload &&
             m.boot_nonce == e->boot_nonce && m.cpu_hz == e->cpu_hz && m.arena_bytes == e->arena_bytes &&
             memcmp(m.model_sha256, e->model_sha256, EMN_HASH_BYTES) == 0 && same_str(m.board_name, e->board_name) &&
             same_str(m.runtime, e->runtime) && same_tensor(&m.input, &e->input) && same_tensor(&m.output, &e->output);
    }
    case EMN_ACK: {
      const emn_ack *e = (const emn_ack *)v->fields;
      emn_ack m;
      return emn_unpack_ack(f, &m) == EMN_OK && m.id == e->id && m.next_offset == e->next_offset;
    }
    case EMN_RESULT: {
      const emn_result *e = (const emn_result *)v->fields;
      uint32_t layers[16];
      emn_topk_entry topk[16];
      emn_result m;
      uint16_t i;
      m.layer_us = layers;
      m.layer_cap = 16;
      m.topk = topk;
      m.topk_cap = 16;
      if (emn_unpack_result(f, &m) != EMN_OK) return 0;
      if (m.id != e->id || m.boot_nonce != e->boot_nonce || m.input_crc32 != e->input_crc32 || m.cycles != e->cycles ||
          m.micros != e->micros || m.kind != e->kind || m.n_layers != e->n_layers || m.k != e->k)
        return 0;
      for (i = 0; i < m.n_layers; ++i)
        if (m.layer_us[i] != e->layer_us[i]) return 0;
      for (i = 0; i < m.k; ++i)
        if (m.topk[i].index != e->topk[i].index || m.topk[i].value != e->topk[i].value) return 0;
      return m.kind == EMN_RESULT_TOPK || same_bytes(m.output, m.output_len, e->output, e->output_len);
    }
    case EMN_ERROR: {
      const emn_error *e = (const emn_error *)v->fields;
      emn_error m;
      return emn_unpack_error(f, &m) == EMN_OK && m.code == e->code && m.boot_nonce == e->boot_nonce &&
             m.id == e->id && m.detail == e->detail && same_str(m.message, e->message);
    }
    case EMN_PONG: {
      const emn_pong *e = (const emn_pong *)v->fields;
      emn_pong m;
      return emn_unpack_pong(f, &m) == EMN_OK && m.token == e->token && m.boot_nonce == e->boot_nonce;
    }
    case EMN_GET_MEMORY: return emn_unpack_get_memory(f) == EMN_OK;
    case EMN_MEMORY: {
      const emn_memory *e = (const emn_memory *)v->fields;
      emn_memory m;
      return emn_unpack_memory(f, &m) == EMN_OK && m.boot_nonce == e->boot_nonce && m.arena_bytes == e->arena_bytes &&
             m.arena_peak == e->arena_peak && m.stack_peak == e->stack_peak &&
             m.stack_boot_peak == e->stack_boot_peak && m.stack_region == e->stack_region &&
             m.inferences == e->inferences;
    }
    default: return 0;
  }
}

/* A fresh decoder for one vector, over a buffer shared by the vector tests: frames of at most max_frame
 * bytes (0: the whole buffer, more than any vector needs). */
static emn_decoder *vector_decoder(size_t max_frame) {
  static uint8_t buf[4096];
  static emn_decoder d;
  emn_decoder_init(&d, buf, max_frame ? max_frame : sizeof buf);
  return &d;
}

/* What a fresh vector decoder made of bytes pushed one at a time: the frames and faults, the last event, and
 * the first frame with the index of the byte that completed it. */
typedef struct {
  size_t frames, faults, first_at;
  emn_event last;
  emn_frame first;
} streamed;

static streamed stream_bytes(const uint8_t *bytes, size_t n) {
  streamed s;
  emn_decoder *d = vector_decoder(0);
  size_t j;
  memset(&s, 0, sizeof s);
  s.last = EMN_NONE;
  for (j = 0; j < n; ++j) {
    emn_frame f;
    emn_event ev = emn_decoder_push(d, bytes[j], &f);
    if (ev == EMN_NONE) continue;
    s.last = ev;
    if (ev != EMN_FRAME) {
      ++s.faults;
    } else if (s.frames++ == 0) {
      s.first = f;
      s.first_at = j;
    }
  }
  return s;
}

/* A vector's wire frame decoded both ways: checked in one go (without its delimiters) and streamed. */
typedef struct {
  emn_event once;
  emn_frame frame; /* the one-shot frame, when `once` is EMN_FRAME */
  streamed s;
} decoded;

static decoded decode_both(const uint8_t *frame, size_t len) {
  decoded d;
  d.once = emn_frame_check(frame + 1, len - 2, g_work, sizeof g_work, &d.frame);
  d.s = stream_bytes(frame, len);
  return d;
}

static void test_messages(void) {
  int i;
  for (i = 0; i < VEC_MESSAGE_COUNT; ++i) {
    const vec_message *v = &VEC_MESSAGES[i];
    decoded d;
    size_t n;
    CHECK(v->type == v->expected_type, "%s: vector type 0x%02x but the C constant is 0x%02x", v->name, v->type,
          v->expected_type);
    n = encode_fields(v, g_out, sizeof g_out);
    CHECK(same_bytes(g_out, n, v->frame, v->frame_len), "%s: encoded frame differs from the vector (%u vs %u bytes)",
          v->name, (unsigned)n, (unsigned)v->frame_len);
    CHECK(encode_fields(v, g_out, v->frame_len - 1) == 0, "%s: encoding into a buffer one byte short must fail",
          v->name);
    d = decode_both(v->frame, v->frame_len);
    CHECK(d.once == EMN_FRAME, "%s: frame rejected", v->name);
    CHECK(d.frame.type == v->type && same_bytes(d.frame.payload, d.frame.payload_len, v->payload, v->payload_len),
          "%s: decoded type/payload differ", v->name);
    CHECK(fields_match(v, &d.frame), "%s: unpacked fields differ from the vector", v->name);
    CHECK(d.s.frames == 1 && d.s.faults == 0, "%s: streaming decoder gave %u frames, %u faults (last %d)", v->name,
          (unsigned)d.s.frames, (unsigned)d.s.faults, (int)d.s.last);
    CHECK(d.s.frames == 0 || d.s.first_at == v->frame_len - 1, "%s: frame completed before the delimiter", v->name);
    CHECK(d.s.frames == 0 || fields_match(v, &d.s.first), "%s: streamed frame fields differ", v->name);
  }
}

static void test_invalid_frames(void) {
  int i;
  for (i = 0; i < VEC_INVALID_COUNT; ++i) {
    const vec_invalid *v = &VEC_INVALID[i];
    decoded d = decode_both(v->frame, v->len);
    CHECK(d.once == v->fault, "%s: one-shot fault %d", v->name, (int)d.once);
    CHECK(d.s.frames == 0 && d.s.last == v->fault, "%s: streaming gave %d, want fault %d", v->name, (int)d.s.last,
          (int)v->fault);
  }
}

static void test_streams(void) {
  int i;
  for (i = 0; i < VEC_STREAM_COUNT; ++i) {
    const vec_stream *v = &VEC_STREAMS[i];
    emn_decoder *d = vector_decoder(v->max_frame);
    emn_frame f;
    size_t j, seen = 0;
    for (j = 0; j < v->len; ++j) {
      emn_event ev = emn_decoder_push(d, v->stream[j], &f);
      if (ev == EMN_NONE) continue;
      if (seen >= v->n_events) {
        CHECK(0, "%s: unexpected extra event %d", v->name, (int)ev);
        continue;
      }
      CHECK(ev == v->events[seen].event, "%s: event %u is %d, want %d", v->name, (unsigned)seen, (int)ev,
            (int)v->events[seen].event);
      if (ev == EMN_FRAME && v->events[seen].event == EMN_FRAME)
        CHECK(f.type == v->events[seen].type &&
                  same_bytes(f.payload, f.payload_len, v->events[seen].payload, v->events[seen].payload_len),
              "%s: frame %u content differs", v->name, (unsigned)seen);
      ++seen;
    }
    CHECK(seen == v->n_events, "%s: %u events, want %u", v->name, (unsigned)seen, (unsigned)v->n_events);
  }
}

/* ------------------------------------------------------------------------------------------ beyond the vectors */

static uint32_t g_rng = 0x12345678u;
static uint32_t rnd(void) { /* xorshift32: deterministic, no libc rand() state */
  g_rng ^= g_rng << 13;
  g_rng ^= g_rng >> 17;
  g_rng ^= g_rng << 5;
  return g_rng;
}

/* Garbage (zeros included), then frames: every frame after the first delimiter must come through. */
static void test_resync_after_garbage(void) {
  static uint8_t buf[2048], stream[60000], payload[600];
  int round;
  for (round = 0; round < 200; ++round) {
    emn_decoder d;
    emn_frame f;
    size_t n = 0, j, garbage = rnd() % 300, frames_sent = 0, frames_got = 0, good = 1;
    int k;
    for (j = 0; j < garbage; ++j) stream[n++] = (uint8_t)rnd();
    stream[n++] = 0; /* the line idles or the host sends a delimiter before talking */
    for (k = 0; k < 5; ++k) {
      emn_input in;
      size_t len = rnd() % sizeof payload;
      for (j = 0; j < len; ++j) payload[j] = (uint8_t)rnd();
      in.id = (uint32_t)(round * 10 + k);
      in.offset = 0;
      in.total = (uint32_t)len;
      in.data = payload;
      in.data_len = len;
      n += emn_encode_input(&in, stream + n, sizeof stream - n);
      ++frames_sent;
    }
    emn_decoder_init(&d, buf, sizeof buf);
    for (j = 0; j < n; ++j) {
      emn_event ev = emn_decoder_push(&d, stream[j], &f);
      if (ev == EMN_FRAME && j > garbage) {
        emn_input got;
        good &= (emn_unpack_input(&f, &got) == EMN_OK && got.id == (uint32_t)(round * 10 + (int)frames_got));
        ++frames_got;
      }
    }
    CHECK(frames_got == frames_sent && good, "resync round %d: %u of %u frames after %u garbage bytes", round,
          (unsigned)frames_got, (unsigned)frames_sent, (unsigned)garbage);
  }
}

/* A flipped bit or a dropped byte never yields a frame; the next frame still does. */
static void test_corruption_rejected(void) {
  static uint8_t buf[2048], frame[1200], next[64], payload[500];
  int round, wrong = 0, lost_next = 0;
  for (round = 0; round < 2000; ++round) {
    emn_decoder d;
    emn_frame f;
    emn_input in;
    emn_ping ping;
    size_t len = 1 + rnd() % sizeof payload, j, n, m, pos;
    int frames = 0, next_ok = 0;
    for (j = 0; j < len; ++j) payload[j] = (uint8_t)rnd();
    in.id = 1;
    in.offset = 0;
    in.total = (uint32_t)len;
    in.data = payload;
    in.data_len = len;
    n = emn_encode_input(&in, frame, sizeof frame);
    ping.token = 0xC0FFEEu;
    m = emn_encode_ping(&ping, next, sizeof next);
    pos = 1 + rnd() % (n - 2); /* inside the COBS body: the delimiters are not part of the frame */
    if (round % 2) {
      frame[pos] ^= (uint8_t)(1u << (rnd() % 8)); /* bit flip (may create a 0x00: then two bad chunks) */
    } else {
      memmove(frame + pos, frame + pos + 1, n - pos - 1); /* dropped byte */
      --n;
    }
    emn_decoder_init(&d, buf, sizeof buf);
    for (j = 0; j < n; ++j)
      if (emn_decoder_push(&d, frame[j], &f) == EMN_FRAME) ++frames;
    for (j = 0; j < m; ++j)
      if (emn_decoder_push(&d, next[j], &f) == EMN_FRAME) next_ok = (f.type == EMN_PING);
    wrong += frames;
    lost_next += !next_ok;
  }
  CHECK(wrong == 0, "%d corrupted frames were accepted", wrong);
  CHECK(lost_next == 0, "%d good frames after a corrupted one were lost", lost_next);
}

/* A stream that overruns the decoder's buffer is dropped, then decoding resumes. */
static void test_oversize(void) {
  static uint8_t buf[64], big[400], payload[300];
  emn_decoder d;
  emn_frame f;
  emn_input in;
  emn_ping ping;
  size_t n, j, m;
  int faults = 0, frames = 0;
  memset(payload, 0x5A, sizeof payload);
  in.id = 3;
  in.offset = 0;
  in.total = sizeof payload;
  in.data = payload;
  in.data_len = sizeof payload;
  n = emn_encode_input(&in, big, sizeof big);
  ping.token = 9;
  m = emn_encode_ping(&ping, big + n, sizeof big - n);
  emn_decoder_init(&d, buf, sizeof buf);
  for (j = 0; j < n + m; ++j) {
    emn_event ev = emn_decoder_push(&d, big[j], &f);
    faults += ev == EMN_FAULT_OVERSIZE;
    frames += ev == EMN_FRAME && f.type == EMN_PING;
  }
  CHECK(faults == 1 && frames == 1, "oversize: %d faults, %d frames (want 1, 1)", faults, frames);
}

/* Round trip of random RESULT messages through the writer and the streaming decoder. */
static void test_result_roundtrip(void) {
  static uint8_t buf[8192], wire[8192], output[4000];
  int round, bad = 0;
  for (round = 0; round < 300; ++round) {
    emn_result r, got;
    uint32_t layers[8], got_layers[8];
    emn_topk_entry topk[5], got_topk[5];
    emn_decoder d;
    emn_frame f;
    size_t n, j, i;
    int frames = 0;
    r.id = rnd();
    r.boot_nonce = rnd();
    r.input_crc32 = rnd();
    r.cycles = ((uint64_t)rnd() << 32) | rnd();
    r.micros = rnd();
    r.kind = (uint8_t)(round % 3 == 0 ? EMN_RESULT_TOPK : EMN_RESULT_RAW);
    r.n_layers = (uint16_t)(rnd() % 9);
    for (i = 0; i < r.n_layers; ++i) layers[i] = rnd();
    r.layer_us = layers;
    r.output_len = rnd() % sizeof output;
    for (i = 0; i < r.output_len; ++i) output[i] = (uint8_t)(rnd() % 3 ? 0 : rnd());
    r.output = output;
    r.k = (uint16_t)(rnd() % 6);
    for (i = 0; i < r.k; ++i) {
      topk[i].index = rnd() % 1000;
      topk[i].value = (int32_t)(rnd() % 256) - 128;
    }
    r.topk = topk;
    n = emn_encode_result(&r, wire, sizeof wire);
    emn_decoder_init(&d, buf, sizeof buf);
    got.layer_us = got_layers;
    got.layer_cap = 8;
    got.topk = got_topk;
    got.topk_cap = 5;
    for (j = 0; j < n; ++j) {
      if (emn_decoder_push(&d, wire[j], &f) != EMN_FRAME) continue;
      ++frames;
      if (emn_unpack_result(&f, &got) != EMN_OK || got.id != r.id || got.cycles != r.cycles ||
          got.n_layers != r.n_layers || got.kind != r.kind) {
        ++bad;
        continue;
      }
      for (i = 0; i < r.n_layers; ++i) bad += got_layers[i] != layers[i];
      if (r.kind == EMN_RESULT_RAW) {
        bad += !same_bytes(got.output, got.output_len, output, r.output_len);
      } else {
        bad += got.k != r.k;
        for (i = 0; i < r.k && i < got.k; ++i) bad += got_topk[i].index != topk[i].index || got_topk[i].value != topk[i].value;
      }
    }
    bad += frames != 1;
    bad += n > EMN_FRAME_MAX_BYTES(31 + 4 * r.n_layers + (r.kind == EMN_RESULT_RAW ? r.output_len : (size_t)(2 + 8 * r.k)));
  }
  CHECK(bad == 0, "result round trip: %d mismatches", bad);
}

/* Truncated payloads must be refused, never read past the frame. */
static void test_malformed_payloads(void) {
  int i;
  for (i = 0; i < VEC_MESSAGE_COUNT; ++i) {
    const vec_message *v = &VEC_MESSAGES[i];
    emn_frame f;
    if (v->payload_len == 0 || v->expected_type == EMN_INPUT) continue; /* INPUT data may be any length */
    if (v->expected_type == EMN_RESULT && ((const emn_result *)v->fields)->kind == EMN_RESULT_RAW) continue;
    f.type = v->type;
    f.payload = v->payload;
    f.payload_len = v->payload_len - 1;
    CHECK(!fields_match(v, &f), "%s: a payload one byte short was accepted", v->name);
  }
}

int main(void) {
  test_crc();
  test_cobs();
  test_messages();
  test_invalid_frames();
  test_streams();
  test_resync_after_garbage();
  test_corruption_rejected();
  test_oversize();
  test_result_roundtrip();
  test_malformed_payloads();
  printf("protocol vectors: crc %d, cobs %d, messages %d, invalid %d, streams %d\n", VEC_CRC_COUNT, VEC_COBS_COUNT,
         VEC_MESSAGE_COUNT, VEC_INVALID_COUNT, VEC_STREAM_COUNT);
  printf("%d checks, %d failed\n", g_checks, g_failures);
  return g_failures ? 1 : 0;
}
