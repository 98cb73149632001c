/* edgemnv2 serial protocol, version 1, in portable C99 (docs/protocol.md is the specification).
 *
 * frame = 0x00 COBS(body) 0x00,  body = version:u8 type:u8 payload crc32(version..payload):u32, little-endian.
 *
 * No malloc, no stdio: every function works in buffers the caller provides, so the same code runs on
 * a Cortex-M0+ with 264 KB of RAM and in the host unit tests (test_protocol.c), which check it
 * byte for byte against tests/vectors/protocol_vectors.json, the vectors the Python side uses too.
 *
 * Sending: emn_encode_<message>() writes one complete wire frame (both delimiters) into `out`
 * and returns its length, or 0 when `cap` is too small. Receiving: feed every byte from the UART to
 * emn_decoder_push(); it resynchronises at the next 0x00 after garbage, a lost byte or an overrun,
 * and hands out checked frames, which emn_unpack_<message>() parses (EMN_OK or EMN_ERR_MALFORMED).
 */
#ifndef EDGEMNV2_PROTOCOL_H_
#define EDGEMNV2_PROTOCOL_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define EMN_PROTOCOL_VERSION 1u
#define EMN_HEADER_BYTES 2u        /* version, type */
#define EMN_CRC_BYTES 4u
#define EMN_INPUT_HEADER_BYTES 12u /* id, offset, total */
#define EMN_HASH_BYTES 32u         /* SHA-256 of the .tflite file */
#define EMN_MAX_RANK 8u

/* Worst-case wire bytes of a frame whose payload is n bytes: COBS overhead, header, CRC, both delimiters. */
#define EMN_BODY_BYTES(n) ((size_t)(n) + EMN_HEADER_BYTES + EMN_CRC_BYTES)
#define EMN_FRAME_MAX_BYTES(n) (EMN_BODY_BYTES(n) + EMN_BODY_BYTES(n) / 254u + 3u)

/* Message types: host -> board below 0x80, board -> host from 0x80. */
enum {
  EMN_HELLO = 0x01, EMN_PING = 0x02, EMN_RESET = 0x03, EMN_INPUT = 0x10, EMN_GET_RESULT = 0x11,
  EMN_GET_MEMORY = 0x12,
  EMN_INFO = 0x81, EMN_ACK = 0x82, EMN_RESULT = 0x83, EMN_ERROR = 0x84, EMN_PONG = 0x85, EMN_MEMORY = 0x86
};

/* Error codes carried by ERROR messages. */
enum {
  EMN_E_BAD_CRC = 1, EMN_E_WRONG_SIZE = 2, EMN_E_MODEL_MISMATCH = 3, EMN_E_BUSY = 4, EMN_E_SEQUENCE = 5,
  EMN_E_UNKNOWN_ID = 6, EMN_E_RUNTIME = 7, EMN_E_UNSUPPORTED = 8, EMN_E_MALFORMED = 9, EMN_E_TOO_LARGE = 10
};

/* Tensor element types (the protocol's own codes). */
enum { EMN_DTYPE_INT8 = 1, EMN_DTYPE_UINT8 = 2, EMN_DTYPE_INT16 = 3, EMN_DTYPE_INT32 = 4, EMN_DTYPE_FLOAT32 = 5 };

/* INFO flags */
#define EMN_FLAG_LAYER_TIMES 0x01u
#define EMN_FLAG_TOPK 0x02u
#define EMN_FLAG_MEMORY 0x04u /* answers GET_MEMORY with the RAM it measured (MEMORY) */

#define EMN_RESULT_RAW 0u
#define EMN_RESULT_TOPK 1u

/* Return codes */
#define EMN_OK 0
#define EMN_ERR_MALFORMED (-1)

/* ------------------------------------------------------------------------------------------ CRC, COBS */

/* CRC-32/ISO-HDLC (zlib): emn_crc32_update(0, ...) starts; feed chunks by passing the previous value. */
uint32_t emn_crc32_update(uint32_t crc, const uint8_t *data, size_t n);
uint32_t emn_crc32(const uint8_t *data, size_t n);

/* COBS of n bytes into out (no delimiter); returns the length, 0 if cap is too small. */
size_t emn_cobs_encode(const uint8_t *in, size_t n, uint8_t *out, size_t cap);
/* Inverse; returns the length, or (size_t)-1 on a zero byte, an overrun block or a full `out`. */
size_t emn_cobs_decode(const uint8_t *in, size_t n, uint8_t *out, size_t cap);
#define EMN_COBS_ERROR ((size_t)-1)

/* ------------------------------------------------------------------------------------------ frames */

typedef struct {
  uint8_t type;
  const uint8_t *payload; /* points into the decoder's buffer: valid until the next push */
  size_t payload_len;
} emn_frame;

/* What a delimiter produced. Faults mirror the Python decoder's FrameFault kinds. */
typedef enum {
  EMN_NONE = 0,          /* byte consumed, nothing complete yet */
  EMN_FRAME,             /* a frame passed COBS, length, CRC and version checks */
  EMN_FAULT_COBS,        /* a zero-free run that is not valid COBS (block past the end) */
  EMN_FAULT_SHORT,       /* shorter than header + CRC */
  EMN_FAULT_CRC,         /* CRC mismatch: corrupted or lost bytes */
  EMN_FAULT_VERSION,     /* valid frame of another protocol version (fault_detail = version) */
  EMN_FAULT_OVERSIZE     /* more than max_frame encoded bytes without a delimiter; dropped */
} emn_event;

typedef struct {
  uint8_t *buf;          /* decoded body; caller-provided */
  size_t cap;            /* = max_frame: encoded bytes allowed per frame, delimiter excluded */
  size_t len;            /* decoded bytes so far */
  size_t encoded;        /* encoded bytes so far */
  uint8_t block_left;    /* data bytes left in the current COBS block */
  uint8_t block_code;    /* code byte of the current block (0: none yet) */
  uint8_t discarding;    /* oversize: drop bytes until the next delimiter */
  uint32_t fault_detail; /* detail of the last fault (the version for EMN_FAULT_VERSION) */
} emn_decoder;

/* `buf` must hold `max_frame` bytes; a decoded body is never longer than its encoding. */
void emn_decoder_init(emn_decoder *d, uint8_t *buf, size_t max_frame);
void emn_decoder_reset(emn_decoder *d);
/* Feed one received byte; on EMN_FRAME, *frame is filled. */
emn_event emn_decoder_push(emn_decoder *d, uint8_t byte, emn_frame *frame);

/* Check one frame (without its 0x00 delimiters) in one go, decoding into `work` (cap >= n). */
emn_event emn_frame_check(const uint8_t *encoded, size_t n, uint8_t *work, size_t cap, emn_frame *frame);

/* ------------------------------------------------------------------------------------------ messages */

typedef struct {
  const char *ptr; /* not NUL-terminated when it comes from emn_unpack_* */
  uint8_t len;
} emn_str;

typedef struct {
  uint8_t dtype;
  uint8_t rank;
  uint32_t dims[EMN_MAX_RANK];
  float scale;
  int32_t zero_point;
} emn_tensor_desc;

typedef struct {
  uint8_t version;
  uint8_t model_sha256[EMN_HASH_BYTES]; /* all zero: any model */
} emn_hello;

typedef struct { uint32_t token; } emn_ping;

typedef struct {
  uint32_t id, offset, total;
  const uint8_t *data;
  size_t data_len;
} emn_input;

typedef struct { uint32_t id; } emn_get_result;

typedef struct {
  uint8_t version, flags, input_slots, window;
  uint32_t max_payload, boot_nonce, cpu_hz, arena_bytes;
  uint8_t model_sha256[EMN_HASH_BYTES];
  emn_str board_name, runtime;
  emn_tensor_desc input, output;
} emn_info;

typedef struct { uint32_t id, next_offset; } emn_ack;

typedef struct {
  uint32_t index;
  int32_t value; /* raw quantized value */
} emn_topk_entry;

typedef struct {
  uint32_t id, boot_nonce, input_crc32;
  uint64_t cycles, micros;
  uint8_t kind;              /* EMN_RESULT_RAW or EMN_RESULT_TOPK */
  uint16_t n_layers;
  uint32_t *layer_us;        /* encode: n_layers values; unpack: filled, caller-provided (layer_cap) */
  size_t layer_cap;
  const uint8_t *output;     /* raw output tensor bytes (kind RAW) */
  size_t output_len;
  uint16_t k;
  emn_topk_entry *topk;      /* encode: k entries; unpack: filled, caller-provided (topk_cap) */
  size_t topk_cap;
} emn_result;

typedef struct {
  uint8_t code;
  uint32_t boot_nonce, id, detail;
  emn_str message;
} emn_error;

typedef struct { uint32_t token, boot_nonce; } emn_pong;

/* RAM measured on the board (arena and stack painted, high-water marks read back). */
typedef struct {
  uint32_t boot_nonce;
  uint32_t arena_bytes, arena_peak;               /* the static arena; highest byte written + 1 */
  uint32_t stack_peak, stack_boot_peak, stack_region; /* invoke's depth; deepest since boot; bytes checked */
  uint32_t inferences;                            /* inferences the peaks cover */
} emn_memory;

/* Bytes of one tensor: product of dims times element size; 0 for an unknown dtype. */
size_t emn_tensor_bytes(const emn_tensor_desc *t);
emn_str emn_cstr(const char *s);

size_t emn_encode_hello(const emn_hello *m, uint8_t *out, size_t cap);
size_t emn_encode_ping(const emn_ping *m, uint8_t *out, size_t cap);
size_t emn_encode_reset(uint8_t *out, size_t cap);
size_t emn_encode_input(const emn_input *m, uint8_t *out, size_t cap);
size_t emn_encode_get_result(const emn_get_result *m, uint8_t *out, size_t cap);
size_t emn_encode_info(const emn_info *m, uint8_t *out, size_t cap);
size_t emn_encode_ack(const emn_ack *m, uint8_t *out, size_t cap);
size_t emn_encode_result(const emn_result *m, uint8_t *out, size_t cap);
size_t emn_encode_error(const emn_error *m, uint8_t *out, size_t cap);
size_t emn_encode_pong(const emn_pong *m, uint8_t *out, size_t cap);
size_t emn_encode_get_memory(uint8_t *out, size_t cap);
size_t emn_encode_memory(const emn_memory *m, uint8_t *out, size_t cap);

int emn_unpack_hello(const emn_frame *f, emn_hello *m);
int emn_unpack_ping(const emn_frame *f, emn_ping *m);
int emn_unpack_reset(const emn_frame *f);
int emn_unpack_input(const emn_frame *f, emn_input *m);
int emn_unpack_get_result(const emn_frame *f, emn_get_result *m);
int emn_unpack_info(const emn_frame *f, emn_info *m);
int emn_unpack_ack(const emn_frame *f, emn_ack *m);
/* m->layer_us/layer_cap and m->topk/topk_cap must be set by the caller before the call. */
int emn_unpack_result(const emn_frame *f, emn_result *m);
int emn_unpack_error(const emn_frame *f, emn_error *m);
int emn_unpack_pong(const emn_frame *f, emn_pong *m);
int emn_unpack_get_memory(const emn_frame *f);
int emn_unpack_memory(const emn_frame *f, emn_memory *m);

/* ------------------------------------------------------------------------------------------ streaming writer */

/* Builds a frame field by field straight into `out` (COBS and CRC on the fly, no scratch copy); the
 * firmware uses it to send a RESULT whose output tensor sits in the interpreter's arena. */
typedef struct {
  uint8_t *out;
  size_t cap, len, code_pos;
  uint8_t code;
  uint8_t after_full; /* the current block was opened by a full 254-byte block, not by a zero */
  uint8_t overflow;
  uint32_t crc;
} emn_writer;

void emn_writer_begin(emn_writer *w, uint8_t *out, size_t cap, uint8_t type);
void emn_writer_u8(emn_writer *w, uint8_t v);
void emn_writer_u16(emn_writer *w, uint16_t v);
void emn_writer_u32(emn_writer *w, uint32_t v);
void emn_writer_u64(emn_writer *w, uint64_t v);
void emn_writer_f32(emn_writer *w, float v);
void emn_writer_bytes(emn_writer *w, const uint8_t *data, size_t n);
void emn_writer_str(emn_writer *w, emn_str s);
/* Appends CRC and the closing delimiter; returns the frame length (both delimiters), 0 if it did not fit. */
size_t emn_writer_end(emn_writer *w);

#ifdef __cplusplus
}
#endif

#endif /* EDGEMNV2_PROTOCOL_H_ */
