/* edgemnv2 serial protocol v1: framing (COBS + CRC-32) and messages. See edgemnv2_protocol.h. */
#include "edgemnv2_protocol.h"

#include <string.h>

/* ------------------------------------------------------------------------------------------ CRC */

/* Half-byte table: 64 bytes of flash instead of 1 KB, two lookups per byte. */
static const uint32_t kCrcNibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
    0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu, 0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

uint32_t emn_crc32_update(uint32_t crc, const uint8_t *data, size_t n) {
  size_t i;
  crc = ~crc;
  for (i = 0; i < n; ++i) {
    crc ^= data[i];
    crc = (crc >> 4) ^ kCrcNibble[crc & 0x0Fu];
    crc = (crc >> 4) ^ kCrcNibble[crc & 0x0Fu];
  }
  return ~crc;
}

uint32_t emn_crc32(const uint8_t *data, size_t n) { return emn_crc32_update(0u, data, n); }

/* ------------------------------------------------------------------------------------------ COBS */

/* Streaming COBS encoder shared by emn_cobs_encode and the frame writer. */
typedef struct {
  uint8_t *out;
  size_t cap, len, code_pos;
  uint8_t code, after_full, overflow;
} cobs_enc;

static void cobs_begin(cobs_enc *e, uint8_t *out, size_t cap) {
  e->out = out;
  e->cap = cap;
  e->code_pos = 0;
  e->len = 1; /* the first code byte is reserved */
  e->code = 1;
  e->after_full = 0;
  e->overflow = (uint8_t)(cap < 1u);
}

static void cobs_put(cobs_enc *e, uint8_t byte) {
  if (e->overflow) return;
  if (byte != 0u) {
    if (e->len >= e->cap) { e->overflow = 1; return; }
    e->out[e->len++] = byte;
    e->code++;
  }
  if (byte == 0u || e->code == 0xFFu) {
    if (e->len >= e->cap) { e->overflow = 1; return; }
    e->after_full = (uint8_t)(byte != 0u);
    e->out[e->code_pos] = e->code;
    e->code_pos = e->len++;
    e->code = 1;
  }
}

/* Closes the last block; data ending on a full block gets no empty trailing block (as in Python). */
static size_t cobs_finish(cobs_enc *e) {
  if (e->overflow) return 0;
  if (e->code == 1u && e->after_full) {
    e->len--; /* drop the block reserved after the full one */
  } else {
    e->out[e->code_pos] = e->code;
  }
  return e->len;
}

size_t emn_cobs_encode(const uint8_t *in, size_t n, uint8_t *out, size_t cap) {
  cobs_enc e;
  size_t i;
  cobs_begin(&e, out, cap);
  for (i = 0; i < n; ++i) cobs_put(&e, in[i]);
  return cobs_finish(&e);
}

size_t emn_cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap) {
  size_t i = 0, len = 0;
  while (i < n) {
    uint8_t code = in[i];
    size_t end, j;
    if (code == 0u) return EMN_COBS_ERROR;
    end = i + code;
    if (end > n) return EMN_COBS_ERROR;
    for (j = i + 1; j < end; ++j) {
      if (in[j] == 0u || len >= cap) return EMN_COBS_ERROR;
      out[len++] = in[j];
    }
    i = end;
    if (code < 0xFFu && i < n) {
      if (len >= cap) return EMN_COBS_ERROR;
      out[len++] = 0u;
    }
  }
  return len;
}

/* ------------------------------------------------------------------------------------------ frames */

static uint32_t get_u32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* Length, CRC and version of a decoded body. */
static emn_event check_body(const uint8_t *body, size_t len, emn_frame *frame, uint32_t *detail) {
  if (len < EMN_HEADER_BYTES + EMN_CRC_BYTES) return EMN_FAULT_SHORT;
  if (emn_crc32(body, len - EMN_CRC_BYTES) != get_u32(body + len - EMN_CRC_BYTES)) return EMN_FAULT_CRC;
  if (body[0] != EMN_PROTOCOL_VERSION) {
    *detail = body[0];
    return EMN_FAULT_VERSION;
  }
  frame->type = body[1];
  frame->payload = body + EMN_HEADER_BYTES;
  frame->payload_len = len - EMN_HEADER_BYTES - EMN_CRC_BYTES;
  return EMN_FRAME;
}

void emn_decoder_init(emn_decoder *d, uint8_t *buf, size_t max_frame) {
  d->buf = buf;
  d->cap = max_frame;
  emn_decoder_reset(d);
}

void emn_decoder_reset(emn_decoder *d) {
  d->len = 0;
  d->encoded = 0;
  d->block_left = 0;
  d->block_code = 0;
  d->discarding = 0;
  d->fault_detail = 0;
}

/* COBS is decoded byte by byte as it arrives, so the body is ready when the delimiter comes. */
emn_event emn_decoder_push(emn_decoder *d, uint8_t byte, emn_frame *frame) {
  if (byte == 0u) {
    emn_event ev = EMN_NONE;
    if (d->discarding) {
      ev = EMN_NONE; /* the oversize fault was reported when it happened */
    } else if (d->encoded == 0u) {
      ev = EMN_NONE; /* empty chunk between delimiters: idle line */
    } else if (d->block_left != 0u) {
      ev = EMN_FAULT_COBS; /* the last block promised more bytes than came */
    } else {
      ev = check_body(d->buf, d->len, frame, &d->fault_detail);
    }
    d->len = 0;
    d->encoded = 0;
    d->block_left = 0;
    d->block_code = 0;
    d->discarding = 0;
    return ev;
  }
  if (d->discarding) return EMN_NONE;
  if (d->encoded + 1u > d->cap) {
    d->discarding = 1;
    d->fault_detail = (uint32_t)(d->encoded + 1u);
    return EMN_FAULT_OVERSIZE;
  }
  d->encoded++;
  if (d->block_left == 0u) {
    /* a code byte: the previous block (if short) stood for a zero */
    if (d->block_code != 0u && d->block_code < 0xFFu) d->buf[d->len++] = 0u;
    d->block_code = byte;
    d->block_left = (uint8_t)(byte - 1u);
  } else {
    d->buf[d->len++] = byte;
    d->block_left--;
  }
  return EMN_NONE;
}

emn_event emn_frame_check(const uint8_t *encoded, size_t n, uint8_t *work, size_t cap, emn_frame *frame) {
  uint32_t detail = 0;
  size_t len = emn_cobs_decode(encoded, n, work, cap);
  if (len == EMN_COBS_ERROR) return EMN_FAULT_COBS;
  return check_body(work, len, frame, &detail);
}

/* ------------------------------------------------------------------------------------------ writer */

/* The writer keeps its COBS state in its own fields so callers see one plain struct. */
static void writer_load(const emn_writer *w, cobs_enc *e) {
  e->out = w->out;
  e->cap = w->cap;
  e->len = w->len;
  e->code_pos = w->code_pos;
  e->code = w->code;
  e->after_full = w->after_full;
  e->overflow = w->overflow;
}

static void writer_store(emn_writer *w, const cobs_enc *e) {
  w->len = e->len;
  w->code_pos = e->code_pos;
  w->code = e->code;
  w->after_full = e->after_full;
  w->overflow = e->overflow;
}

static void writer_raw(emn_writer *w, const uint8_t *data, size_t n) {
  cobs_enc e;
  size_t i;
  writer_load(w, &e);
  for (i = 0; i < n; ++i) cobs_put(&e, data[i]);
  writer_store(w, &e);
  w->crc = emn_crc32_update(w->crc, data, n);
}

/* The leading 0x00 cuts off any line noise before the frame (docs/protocol.md section 1); the COBS
 * state then works on out + 1. */
void emn_writer_begin(emn_writer *w, uint8_t *out, size_t cap, uint8_t type) {
  cobs_enc e;
  uint8_t header[2];
  if (cap < 2u) {
    w->out = out;
    w->cap = 0;
    w->crc = 0;
    cobs_begin(&e, out, 0);
    writer_store(w, &e);
    return;
  }
  out[0] = 0u;
  cobs_begin(&e, out + 1, cap - 1u);
  w->out = out + 1;
  w->cap = cap - 1u;
  w->crc = 0;
  writer_store(w, &e);
  header[0] = (uint8_t)EMN_PROTOCOL_VERSION;
  header[1] = type;
  writer_raw(w, header, sizeof header);
}

void emn_writer_u8(emn_writer *w, uint8_t v) { writer_raw(w, &v, 1); }

void emn_writer_u16(emn_writer *w, uint16_t v) {
  uint8_t b[2];
  b[0] = (uint8_t)v;
  b[1] = (uint8_t)(v >> 8);
  writer_raw(w, b, 2);
}

void emn_writer_u32(emn_writer *w, uint32_t v) {
  uint8_t b[4];
  b[0] = (uint8_t)v;
  b[1] = (uint8_t)(v >> 8);
  b[2] = (uint8_t)(v >> 16);
  b[3] = (uint8_t)(v >> 24);
  writer_raw(w, b, 4);
}

void emn_writer_u64(emn_writer *w, uint64_t v) {
  emn_writer_u32(w, (uint32_t)v);
  emn_writer_u32(w, (uint32_t)(v >> 32));
}

void emn_writer_f32(emn_writer *w, float v) {
  uint32_t bits;
  memcpy(&bits, &v, sizeof bits); /* IEEE-754 binary32 on every supported target */
  emn_writer_u32(w, bits);
}

void emn_writer_bytes(emn_writer *w, const uint8_t *data, size_t n) { writer_raw(w, data, n); }

void emn_writer_str(emn_writer *w, emn_str s) {
  emn_writer_u8(w, s.len);
  writer_raw(w, (const uint8_t *)s.ptr, s.len);
}

size_t emn_writer_end(emn_writer *w) {
  cobs_enc e;
  uint8_t crc[4];
  size_t len;
  uint32_t value = w->crc;
  crc[0] = (uint8_t)value;
  crc[1] = (uint8_t)(value >> 8);
  crc[2] = (uint8_t)(value >> 16);
  crc[3] = (uint8_t)(value >> 24);
  writer_raw(w, crc, 4);
  writer_load(w, &e);
  len = cobs_finish(&e);
  if (len == 0u || len >= w->cap) return 0;
  w->out[len] = 0u;
  return len + 2u; /* leading delimiter, COBS body, trailing delimiter */
}

/* ------------------------------------------------------------------------------------------ messages */

emn_str emn_cstr(const char *s) {
  emn_str out;
  size_t n = strlen(s);
  out.ptr = s;
  out.len = (uint8_t)(n > 255u ? 255u : n);
  return out;
}

static size_t dtype_size(uint8_t dtype) {
  switch (dtype) {
    case EMN_DTYPE_INT8:
    case EMN_DTYPE_UINT8: return 1;
    case EMN_DTYPE_INT16: return 2;
    case EMN_DTYPE_INT32:
    case EMN_DTYPE_FLOAT32: return 4;
    default: return 0;
  }
}

size_t emn_tensor_bytes(const emn_tensor_desc *t) {
  size_t count = 1;
  uint8_t i;
  for (i = 0; i < t->rank && i < EMN_MAX_RANK; ++i) count *= t->dims[i];
  return count * dtype_size(t->dtype);
}

static void write_tensor(emn_writer *w, const emn_tensor_desc *t) {
  uint8_t i;
  emn_writer_u8(w, t->dtype);
  emn_writer_u8(w, t->rank);
  for (i = 0; i < t->rank; ++i) emn_writer_u32(w, t->dims[i]);
  emn_writer_f32(w, t->scale);
  emn_writer_u32(w, (uint32_t)t->zero_point);
}

/* The messages that are u32 fields alone (none for RESET and GET_MEMORY), in wire order: one encoder and one
 * decoder serve them all, each message naming its fields once below. */
static size_t encode_u32s(uint8_t type, const uint32_t *const *fields, size_t n, uint8_t *out, size_t cap) {
  emn_writer w;
  size_t i;
  emn_writer_begin(&w, out, cap, type);
  for (i = 0; i < n; ++i) emn_writer_u32(&w, *fields[i]);
  return emn_writer_end(&w);
}

size_t emn_encode_hello(const emn_hello *m, uint8_t *out, size_t cap) {
  emn_writer w;
  emn_writer_begin(&w, out, cap, EMN_HELLO);
  emn_writer_u8(&w, m->version);
  emn_writer_bytes(&w, m->model_sha256, EMN_HASH_BYTES);
  return emn_writer_end(&w);
}

size_t emn_encode_ping(const emn_ping *m, uint8_t *out, size_t cap) {
  const uint32_t *const fields[] = {&m->token};
  return encode_u32s(EMN_PING, fields, 1, out, cap);
}

size_t emn_encode_reset(uint8_t *out, size_t cap) { return encode_u32s(EMN_RESET, NULL, 0, out, cap); }

size_t emn_encode_input(const emn_input *m, uint8_t *out, size_t cap) {
  emn_writer w;
  emn_writer_begin(&w, out, cap, EMN_INPUT);
  emn_writer_u32(&w, m->id);
  emn_writer_u32(&w, m->offset);
  emn_writer_u32(&w, m->total);
  emn_writer_bytes(&w, m->data, m->data_len);
  return emn_writer_end(&w);
}

size_t emn_encode_get_result(const emn_get_result *m, uint8_t *out, size_t cap) {
  const uint32_t *const fields[] = {&m->id};
  return encode_u32s(EMN_GET_RESULT, fields, 1, out, cap);
}

size_t emn_encode_info(const emn_info *m, uint8_t *out, size_t cap) {
  emn_writer w;
  emn_writer_begin(&w, out, cap, EMN_INFO);
  emn_writer_u8(&w, m->version);
  emn_writer_u8(&w, m->flags);
  emn_writer_u8(&w, m->input_slots);
  emn_writer_u8(&w, m->window);
  emn_writer_u32(&w, m->max_payload);
  emn_writer_u32(&w, m->boot_nonce);
  emn_writer_u32(&w, m->cpu_hz);
  emn_writer_u32(&w, m->arena_bytes);
  emn_writer_bytes(&w, m->model_sha256, EMN_HASH_BYTES);
  emn_writer_str(&w, m->board_name);
  emn_writer_str(&w, m->runtime);
  write_tensor(&w, &m->input);
  write_tensor(&w, &m->output);
  return emn_writer_end(&w);
}

size_t emn_encode_ack(const emn_ack *m, uint8_t *out, size_t cap) {
  const uint32_t *const fields[] = {&m->id, &m->next_offset};
  return encode_u32s(EMN_ACK, fields, 2, out, cap);
}

size_t emn_encode_result(const emn_result *m, uint8_t *out, size_t cap) {
  emn_writer w;
  uint16_t i;
  emn_writer_begin(&w, out, cap, EMN_RESULT);
  emn_writer_u32(&w, m->id);
  emn_writer_u32(&w, m->boot_nonce);
  emn_writer_u32(&w, m->input_crc32);
  emn_writer_u64(&w, m->cycles);
  emn_writer_u64(&w, m->micros);
  emn_writer_u8(&w, m->kind);
  emn_writer_u16(&w, m->n_layers);
  for (i = 0; i < m->n_layers; ++i) emn_writer_u32(&w, m->layer_us[i]);
  if (m->kind == EMN_RESULT_TOPK) {
    emn_writer_u16(&w, m->k);
    for (i = 0; i < m->k; ++i) {
      emn_writer_u32(&w, m->topk[i].index);
      emn_writer_u32(&w, (uint32_t)m->topk[i].value);
    }
  } else {
    emn_writer_bytes(&w, m->output, m->output_len);
  }
  return emn_writer_end(&w);
}

size_t emn_encode_error(const emn_error *m, uint8_t *out, size_t cap) {
  emn_writer w;
  emn_writer_begin(&w, out, cap, EMN_ERROR);
  emn_writer_u8(&w, m->code);
  emn_writer_u32(&w, m->boot_nonce);
  emn_writer_u32(&w, m->id);
  emn_writer_u32(&w, m->detail);
  emn_writer_str(&w, m->message);
  return emn_writer_end(&w);
}

size_t emn_encode_pong(const emn_pong *m, uint8_t *out, size_t cap) {
  const uint32_t *const fields[] = {&m->token, &m->boot_nonce};
  return encode_u32s(EMN_PONG, fields, 2, out, cap);
}

size_t emn_encode_get_memory(uint8_t *out, size_t cap) { return encode_u32s(EMN_GET_MEMORY, NULL, 0, out, cap); }

size_t emn_encode_memory(const emn_memory *m, uint8_t *out, size_t cap) {
  const uint32_t *const fields[] = {&m->boot_nonce, &m->arena_bytes, &m->arena_peak, &m->stack_peak,
                                    &m->stack_boot_peak, &m->stack_region, &m->inferences};
  return encode_u32s(EMN_MEMORY, fields, 7, out, cap);
}

/* Bounds-checked cursor: any overrun sets `bad` and later reads return zeros. */
typedef struct {
  const uint8_t *p;
  size_t n, pos;
  int bad;
} reader;

static void reader_init(reader *r, const emn_frame *f) {
  r->p = f->payload;
  r->n = f->payload_len;
  r->pos = 0;
  r->bad = 0;
}

static const uint8_t *take(reader *r, size_t size) {
  const uint8_t *at;
  if (r->bad || size > r->n - r->pos) {
    r->bad = 1;
    return NULL;
  }
  at = r->p + r->pos;
  r->pos += size;
  return at;
}

static uint8_t rd_u8(reader *r) {
  const uint8_t *b = take(r, 1);
  return b ? b[0] : 0u;
}

static uint16_t rd_u16(reader *r) {
  const uint8_t *b = take(r, 2);
  return b ? (uint16_t)(b[0] | (b[1] << 8)) : 0u;
}

static uint32_t rd_u32(reader *r) {
  const uint8_t *b = take(r, 4);
  return b ? get_u32(b) : 0u;
}

static uint64_t rd_u64(reader *r) {
  uint64_t lo = rd_u32(r);
  uint64_t hi = rd_u32(r);
  return lo | (hi << 32);
}

static float rd_f32(reader *r) {
  uint32_t bits = rd_u32(r);
  float v;
  memcpy(&v, &bits, sizeof v);
  return v;
}

static emn_str rd_str(reader *r) {
  emn_str s;
  s.len = rd_u8(r);
  s.ptr = (const char *)take(r, s.len);
  if (s.ptr == NULL) s.len = 0;
  return s;
}

static void rd_tensor(reader *r, emn_tensor_desc *t) {
  uint8_t i;
  memset(t, 0, sizeof *t);
  t->dtype = rd_u8(r);
  t->rank = rd_u8(r);
  if (dtype_size(t->dtype) == 0u || t->rank > EMN_MAX_RANK) {
    r->bad = 1;
    return;
  }
  for (i = 0; i < t->rank; ++i) t->dims[i] = rd_u32(r);
  t->scale = rd_f32(r);
  t->zero_point = (int32_t)rd_u32(r);
}

/* The message parsed only if nothing overran and (for fixed layouts) nothing is left over. */
static int finish(const reader *r, int exact) {
  if (r->bad) return EMN_ERR_MALFORMED;
  if (exact && r->pos != r->n) return EMN_ERR_MALFORMED;
  return EMN_OK;
}

static int expect_type(const emn_frame *f, uint8_t type) { return f->type == type; }

/* The decoder of the u32-only messages (see encode_u32s): exactly these fields, nothing after them. */
static int unpack_u32s(const emn_frame *f, uint8_t type, uint32_t *const *fields, size_t n) {
  reader r;
  size_t i;
  if (!expect_type(f, type)) return EMN_ERR_MALFORMED;
  reader_init(&r, f);
  for (i = 0; i < n; ++i) *fields[i] = rd_u32(&r);
  return finish(&r, 1);
}

int emn_unpack_hello(const emn_frame *f, emn_hello *m) {
  reader r;
  const uint8_t *digest;
  if (!expect_type(f, EMN_HELLO)) return EMN_ERR_MALFORMED;
  reader_init(&r, f);
  m->version = rd_u8(&r);
  digest = take(&r, EMN_HASH_BYTES);
  if (digest) memcpy(m->model_sha256, digest, EMN_HASH_BYTES);
  return finish(&r, 1);
}

int emn_unpack_ping(const emn_frame *f, emn_ping *m) {
  uint32_t *const fields[] = {&m->token};
  return unpack_u32s(f, EMN_PING, fields, 1);
}

int emn_unpack_reset(const emn_frame *f) { return unpack_u32s(f, EMN_RESET, NULL, 0); }

int emn_unpack_input(const emn_frame *f, emn_input *m) {
  reader r;
  if (!expect_type(f, EMN_INPUT)) return EMN_ERR_MALFORMED;
  reader_init(&r, f);
  m->id = rd_u32(&r);
  m->offset = rd_u32(&r);
  m->total = rd_u32(&r);
  if (r.bad) return EMN_ERR_MALFORMED;
  m->data = f->payload + r.pos;
  m->data_len = f->payload_len - r.pos;
  return EMN_OK;
}

int emn_unpack_get_result(const emn_frame *f, emn_get_result *m) {
  uint32_t *const fields[] = {&m->id};
  return unpack_u32s(f, EMN_GET_RESULT, fields, 1);
}

int emn_unpack_info(const emn_frame *f, emn_info *m) {
  reader r;
  const uint8_t *digest;
  if (!expect_type(f, EMN_INFO)) return EMN_ERR_MALFORMED;
  reader_init(&r, f);
  m->version = rd_u8(&r);
  m->flags = rd_u8(&r);
  m->input_slots = rd_u8(&r);
  m->window = rd_u8(&r);
  m->max_payload = rd_u32(&r);
  m->boot_nonce = rd_u32(&r);
  m->cpu_hz = rd_u32(&r);
  m->arena_bytes = rd_u32(&r);
  digest = take(&r, EMN_HASH_BYTES);
  if (digest) memcpy(m->model_sha256, digest, EMN_HASH_BYTES);
  m->board_name = rd_str(&r);
  m->runtime = rd_str(&r);
  rd_tensor(&r, &m->input);
  rd_tensor(&r, &m->output);
  return finish(&r, 1);
}

int emn_unpack_ack(const emn_frame *f, emn_ack *m) {
  uint32_t *const fields[] = {&m->id, &m->next_offset};
  return unpack_u32s(f, EMN_ACK, fields, 2);
}

int emn_unpack_result(const emn_frame *f, emn_result *m) {
  reader r;
  uint16_t i;
  if (!expect_type(f, EMN_RESULT)) return EMN_ERR_MALFORMED;
  reader_init(&r, f);
  m->id = rd_u32(&r);
  m->boot_nonce = rd_u32(&r);
  m->input_crc32 = rd_u32(&r);
  m->cycles = rd_u64(&r);
  m->micros = rd_u64(&r);
  m->kind = rd_u8(&r);
  m->n_layers = rd_u16(&r);
  if (r.bad || m->n_layers > m->layer_cap) return EMN_ERR_MALFORMED;
  for (i = 0; i < m->n_layers; ++i) m->layer_us[i] = rd_u32(&r);
  m->output = NULL;
  m->output_len = 0;
  m->k = 0;
  if (m->kind == EMN_RESULT_RAW) {
    if (r.bad) return EMN_ERR_MALFORMED;
    m->output = f->payload + r.pos;
    m->output_len = f->payload_len - r.pos;
    return EMN_OK;
  }
  if (m->kind != EMN_RESULT_TOPK) return EMN_ERR_MALFORMED;
  m->k = rd_u16(&r);
  if (r.bad || m->k > m->topk_cap) return EMN_ERR_MALFORMED;
  for (i = 0; i < m->k; ++i) {
    m->topk[i].index = rd_u32(&r);
    m->topk[i].value = (int32_t)rd_u32(&r);
  }
  return finish(&r, 1);
}

int emn_unpack_error(const emn_frame *f, emn_error *m) {
  reader r;
  if (!expect_type(f, EMN_ERROR)) return EMN_ERR_MALFORMED;
  reader_init(&r, f);
  m->code = rd_u8(&r);
  m->boot_nonce = rd_u32(&r);
  m->id = rd_u32(&r);
  m->detail = rd_u32(&r);
  m->message = rd_str(&r);
  return finish(&r, 1);
}

int emn_unpack_pong(const emn_frame *f, emn_pong *m) {
  uint32_t *const fields[] = {&m->token, &m->boot_nonce};
  return unpack_u32s(f, EMN_PONG, fields, 2);
}

int emn_unpack_get_memory(const emn_frame *f) { return unpack_u32s(f, EMN_GET_MEMORY, NULL, 0); }

int emn_unpack_memory(const emn_frame *f, emn_memory *m) {
  uint32_t *const fields[] = {&m->boot_nonce, &m->arena_bytes, &m->arena_peak, &m->stack_peak,
                              &m->stack_boot_peak, &m->stack_region, &m->inferences};
  return unpack_u32s(f, EMN_MEMORY, fields, 7);
}
