/* What each board provides (board_<target>.c/.cpp): the UART, a 64-bit cycle count, a microsecond clock.
 * Everything above this line is hardware independent and host tested. */
#ifndef EDGEMNV2_BOARD_H_
#define EDGEMNV2_BOARD_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* UART at `baud` 8N1 (USB CDC boards ignore the rate), cycle counter on. */
void emn_board_init(uint32_t baud);
/* Non-blocking: copy up to `cap` received bytes, return how many. */
size_t emn_board_read(uint8_t *buf, size_t cap);
/* Blocking until the bytes are queued for sending. */
void emn_board_write(const uint8_t *data, size_t n);
/* 64-bit core cycles (DWT CYCCNT / CCOUNT extended in software, or derived from the µs timer). */
uint64_t emn_board_cycles(void);
uint64_t emn_board_micros(void);
/* A value that differs between boots (for the boot nonce). */
uint32_t emn_board_entropy(void);

#ifdef __cplusplus
}
#endif

#endif /* EDGEMNV2_BOARD_H_ */
