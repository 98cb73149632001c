/* Arm CMSDK APB UART: one-byte RX buffer, no FIFO. Receive is interrupt driven: the RX interrupt moves
 * every byte into a ring that emn_board_read() drains, so the bytes that arrive while the model computes are
 * kept until the runner serves the link between layers (two input slots), on QEMU (which holds further input
 * until DATA is read) and on hardware (which would overrun). Transmit is polled. */
#ifndef EDGEMNV2_CMSDK_UART_H_
#define EDGEMNV2_CMSDK_UART_H_

#include <stddef.h>
#include <stdint.h>

#include "edgemnv2_app.h"
#include "edgemnv2_config.h"

/* A whole window of INPUT frames (what the host may send unacknowledged while one layer computes), plus room
 * for a PING or GET_RESULT. */
#define EMN_UART_RING_BYTES (EDGEMNV2_WINDOW * EMN_APP_RX_BYTES(EDGEMNV2_MAX_PAYLOAD) + 256u)

typedef struct {
  volatile uint32_t data;      /* +0x00 */
  volatile uint32_t state;     /* +0x04: bit 0 TX full, bit 1 RX full */
  volatile uint32_t ctrl;      /* +0x08: bit 0 TX enable, bit 1 RX enable */
  volatile uint32_t intstatus; /* +0x0C */
  volatile uint32_t bauddiv;   /* +0x10: >= 16 */
} emn_cmsdk_uart;

#define EMN_UART_TX_FULL 0x1u
#define EMN_UART_RX_FULL 0x2u
#define EMN_UART_CTRL_TX_RX_RXINT 0xBu /* TX enable, RX enable, RX interrupt enable */
#define EMN_UART_INT_RX 0x2u           /* INTSTATUS bit, write 1 to clear */

/* Single producer (the RX interrupt) and single consumer (the main loop) on one core. */
typedef struct {
  uint8_t *buf;
  uint32_t cap;
  volatile uint32_t head;    /* next byte the interrupt writes */
  volatile uint32_t tail;    /* next byte the main loop reads */
  volatile uint32_t dropped; /* bytes lost to a full ring: the host's window keeps this 0 */
} emn_uart_ring;

static inline void emn_uart_init(emn_cmsdk_uart *uart, uint32_t clock_hz, uint32_t baud) {
  uint32_t div = baud ? clock_hz / baud : 16u;
  uart->bauddiv = div < 16u ? 16u : div;
  uart->ctrl = EMN_UART_CTRL_TX_RX_RXINT;
}

/* The RX interrupt handler: acknowledge first, then drain, so a byte arriving meanwhile raises it again. */
static inline void emn_uart_rx_isr(emn_cmsdk_uart *uart, emn_uart_ring *ring) {
  uart->intstatus = EMN_UART_INT_RX;
  while (uart->state & EMN_UART_RX_FULL) {
    uint8_t byte = (uint8_t)uart->data;
    uint32_t head = ring->head, next = head + 1u == ring->cap ? 0u : head + 1u;
    if (next == ring->tail) {
      ring->dropped++;
      continue;
    }
    ring->buf[head] = byte;
    __asm volatile("" ::: "memory"); /* the byte is stored before the interrupt publishes it */
    ring->head = next;
  }
}

static inline size_t emn_uart_ring_read(emn_uart_ring *ring, uint8_t *buf, size_t cap) {
  uint32_t tail = ring->tail;
  size_t n = 0;
  while (n < cap && tail != ring->head) {
    buf[n++] = ring->buf[tail];
    tail = tail + 1u == ring->cap ? 0u : tail + 1u;
  }
  __asm volatile("" ::: "memory"); /* the bytes are copied before their room is given back */
  ring->tail = tail;
  return n;
}

static inline void emn_uart_write(emn_cmsdk_uart *uart, const uint8_t *data, size_t n) {
  size_t i;
  for (i = 0; i < n; ++i) {
    while (uart->state & EMN_UART_TX_FULL) {
    }
    uart->data = data[i];
  }
}

#endif /* EDGEMNV2_CMSDK_UART_H_ */
