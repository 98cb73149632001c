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

/* ------------------------------------------------------------------------------------------ message layouts */

/* A message's fixed fields in wire order, each by its wire kind and its place in the message's struct: one
 * writer and one reader walk these tables, so each layout is written once for both directions. */
enum { FLD_U8, FLD_U16, FLD_U32, FLD_U64, FLD_HASH, FLD_STR, FLD_TENSOR };

typedef struct {
  uint8_t kind;
  uint16_t offset;
} field;

#define FIELD(kind, type, member) {FLD_##kind, (uint16_t)offsetof(type, member)}
#define FIELDS(table) table, sizeof table / sizeof table[0]

/* The fixed head of INPUT (then the chunk's data, to the end of the payload) and of RESULT (then the layer
 * times, and the top-k entries or the raw output). */
static const field kInput[] = {FIELD(U32, emn_input, id), FIELD(U32, emn_input, offset), FIELD(U32, emn_input, total)};
static const field kResult[] = {
    FIELD(U32, emn_result, id),     FIELD(U32, emn_result, boot_nonce), FIELD(U32, emn_result, input_crc32),
    FIELD(U64, emn_result, cycles), FIELD(U64, emn_result, micros),     FIELD(U8, emn_result, kind),
    FIELD(U16, emn_result, n_layers)};

static void write_fields(emn_writer *w, const field *fields, size_t n, const void *m) {
  size_t i;
  for (i = 0; i < n; ++i) {
    const uint8_t *at = (const uint8_t *)m + fields[i].offset;
    switch (fields[i].kind) {
      case FLD_U8: emn_writer_u8(w, *at); break;
      case FLD_U16: emn_writer_u16(w, *(const uint16_t *)(const void *)at); break;
      case FLD_U32: emn_writer_u32(w, *(const uint32_t *)(const void *)at); break;
      case FLD_U64: emn_writer_u64(w, *(const uint64_t *)(const void *)at); break;
      case FLD_HASH: emn_writer_bytes(w, at, EMN_HASH_BYTES); break;
      case FLD_STR: emn_writer_str(w, *(const emn_str *)(const void *)at); break;
      default: write_tensor(w, (const emn_tensor_desc *)(const void *)at); break;
    }
  }
}

/* Fills the fields; an overrun sets r->bad (see finish) and leaves a hash as it was. */
static void read_fields(reader *r, const field *fields, size_t n, void *m) {
  size_t i;
  for (i = 0; i < n; ++i) {
    uint8_t *at = (uint8_t *)m + fields[i].offset;
    const uint8_t *digest;
    switch (fields[i].kind) {
      case FLD_U8: *at = rd_u8(r); break;
      case FLD_U16: *(uint16_t *)(void *)at = rd_u16(r); break;
      case FLD_U32: *(uint32_t *)(void *)at = rd_u32(r); break;
      case FLD_U64: *(uint64_t *)(void *)at = rd_u64(r); break;
      case FLD_HASH:
        digest = take(r, EMN_HASH_BYTES);
        if (digest) memcpy(at, digest, EMN_HASH_BYTES);
        break;
      case FLD_STR: *(emn_str *)(void *)at = rd_str(r); break;
      default: rd_tensor(r, (emn_tensor_desc *)(void *)at); break;
    }
  }
}

/* A message that is its fixed fields alone (none for RESET and GET_MEMORY). */
static size_t encode(uint8_t type, const field *fields, size_t n, const void *m, uint8_t *out, size_t cap) {
  emn_writer w;
  emn_writer_begin(&w, out, cap, type);
  write_fields(&w, fields, n, m);
  return emn_writer_end(&w);
}

/* The same, parsed: exactly these fields, nothing after them. */
static int unpack(const emn_frame *f, uint8_t type, const field *fields, size_t n, void *m) {
  reader r;
  if (!expect_type(f, type)) return EMN_ERR_MALFORMED;
  reader_init(&r, f);
  read_fields(&r, fields, n, m);
  return finish(&r, 1);
}

/* ------------------------------------------------------------------------------------------ messages */

/* A message that is its fixed fields alone: its layout (the fields in wire order) and its typed
 * emn_encode_<name> and emn_unpack_<name>, from one line each below. */
#define FIXED_MESSAGE(name, type, ...)                                                  \
  static const field k_##name[] = {__VA_ARGS__};                                        \
  size_t emn_encode_##name(const emn_##name *m, uint8_t *out, size_t cap) {             \
    return encode(type, FIELDS(k_##name), m, out, cap);                                 \
  }                                                                                     \
  int emn_unpack_##name(const emn_frame *f, emn_##name *m) { return unpack(f, type, FIELDS(k_##name), m); }

FIXED_MESSAGE(hello, EMN_HELLO, FIELD(U8, emn_hello, version), FIELD(HASH, emn_hello, model_sha256))
FIXED_MESSAGE(ping, EMN_PING, FIELD(U32, emn_ping, token))
FIXED_MESSAGE(get_result, EMN_GET_RESULT, FIELD(U32, emn_get_result, id))
FIXED_MESSAGE(info, EMN_INFO, FIELD(U8, emn_info, version), FIELD(U8, emn_info, flags),
              FIELD(U8, emn_info, input_slots), FIELD(U8, emn_info, window), FIELD(U32, emn_info, max_payload),
              FIELD(U32, emn_info, boot_nonce), FIELD(U32, emn_info, cpu_hz), FIELD(U32, emn_info, arena_bytes),
              FIELD(HASH, emn_info, model_sha256), FIELD(STR, emn_info, board_name), FIELD(STR, emn_info, runtime),
              FIELD(TENSOR, emn_info, input), FIELD(TENSOR, emn_info, output))
FIXED_MESSAGE(ack, EMN_ACK, FIELD(U32, emn_ack, id), FIELD(U32, emn_ack, next_offset))
FIXED_MESSAGE(error, EMN_ERROR, FIELD(U8, emn_error, code), FIELD(U32, emn_error, boot_nonce),
              FIELD(U32, emn_error, id), FIELD(U32, emn_error, detail), FIELD(STR, emn_error, message))
FIXED_MESSAGE(pong, EMN_PONG, FIELD(U32, emn_pong, token), FIELD(U32, emn_pong, boot_nonce))
FIXED_MESSAGE(memory, EMN_MEMORY, FIELD(U32, emn_memory, boot_nonce), FIELD(U32, emn_memory, arena_bytes),
              FIELD(U32, emn_memory, arena_peak), FIELD(U32, emn_memory, stack_peak),
              FIELD(U32, emn_memory, stack_boot_peak), FIELD(U32, emn_memory, stack_region),
              FIELD(U32, emn_memory, inferences))

/* RESET and GET_MEMORY carry no payload. */
size_t emn_encode_reset(uint8_t *out, size_t cap) { return encode(EMN_RESET, NULL, 0, NULL, out, cap); }
int emn_unpack_reset(const emn_frame *f) { return unpack(f, EMN_RESET, NULL, 0, NULL); }
size_t emn_encode_get_memory(uint8_t *out, size_t cap) { return encode(EMN_GET_MEMORY, NULL, 0, NULL, out, cap); }
int emn_unpack_get_memory(const emn_frame *f) { return unpack(f, EMN_GET_MEMORY, NULL, 0, NULL); }

size_t emn_encode_input(const emn_input *m, uint8_t *out, size_t cap) {
  emn_writer w;
  emn_writer_begin(&w, out, cap, EMN_INPUT);
  write_fields(&w, FIELDS(kInput), m);
  emn_writer_bytes(&w, m->data, m->data_len);
  return emn_writer_end(&w);
}

int emn_unpack_input(const emn_frame *f, emn_input *m) {
  reader r;
  if (!expect_type(f, EMN_INPUT)) return EMN_ERR_MALFORMED;
  reader_init(&r, f);
  read_fields(&r, FIELDS(kInput), m);
  if (r.bad) return EMN_ERR_MALFORMED;
  m->data = f->payload + r.pos;
  m->data_len = f->payload_len - r.pos;
  return EMN_OK;
}

size_t emn_encode_result(const emn_result *m, uint8_t *out, size_t cap) {
  emn_writer w;
  uint16_t i;
  emn_writer_begin(&w, out, cap, EMN_RESULT);
  write_fields(&w, FIELDS(kResult), m);
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

int emn_unpack_result(const emn_frame *f, emn_result *m) {
  reader r;
  uint16_t i;
  if (!expect_type(f, EMN_RESULT)) return EMN_ERR_MALFORMED;
  reader_init(&r, f);
  read_fields(&r, FIELDS(kResult), m);
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
