/* Test-only board for running the exported firmware on the host: the UART is stdin/stdout, time is
 * CLOCK_MONOTONIC and the "model" is a checksum (output[i] = sum(input) + i, mod 256), so a Python test
 * can drive the real C firmware loop (edgemnv2_firmware.c + app + protocol) through pipes. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "edgemnv2_board.h"
#include "edgemnv2_config.h"
#include "edgemnv2_firmware.h"
#include "edgemnv2_model.h"

static uint8_t g_input[EDGEMNV2_INPUT_BYTES];
static uint8_t g_output[EDGEMNV2_OUTPUT_BYTES];

void emn_board_init(uint32_t baud) {
  (void)baud;
  fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
}

size_t emn_board_read(uint8_t *buf, size_t cap) {
  ssize_t n = read(0, buf, cap);
  if (n == 0) exit(0); /* the host closed the pipe */
  if (n < 0) {
    struct timespec pause = {0, 200000};
    nanosleep(&pause, NULL); /* EAGAIN: nothing yet */
    return 0;
  }
  return (size_t)n;
}

void emn_board_write(const uint8_t *data, size_t n) {
  while (n > 0) {
    ssize_t w = write(1, data, n);
    if (w < 0 && errno != EINTR && errno != EAGAIN) exit(1);
    if (w > 0) {
      data += w;
      n -= (size_t)w;
    }
  }
}

uint64_t emn_board_micros(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

uint64_t emn_board_cycles(void) { return emn_board_micros() * (EDGEMNV2_CPU_HZ / 1000000u); }

uint32_t emn_board_entropy(void) { return (uint32_t)getpid() ^ (uint32_t)emn_board_micros(); }

int emn_model_init(const char **error) {
  (void)error;
  return 0;
}

uint8_t *emn_model_input(void) { return g_input; }

int emn_model_invoke(const uint8_t **output, const char **error) {
  unsigned sum = 0;
  size_t i;
  (void)error;
  for (i = 0; i < sizeof g_input; ++i) sum += g_input[i];
  for (i = 0; i < sizeof g_output; ++i) g_output[i] = (uint8_t)(sum + i);
  *output = g_output;
  return 0;
}

size_t emn_model_arena_used(void) { return 0; }

size_t emn_model_layer_times(const uint32_t **layer_us) {
  (void)layer_us;
  return 0;
}

int main(void) {
  emn_firmware_start();
  for (;;) emn_firmware_poll();
}
