/* Arm CMSDK APB UART, polled: one-byte RX buffer, no FIFO. QEMU holds further input until DATA is read,
 * so polling loses nothing there; real hardware at high baud rates wants the RX interrupt. */
#ifndef EDGEMNV2_CMSDK_UART_H_
#define EDGEMNV2_CMSDK_UART_H_

#include <stddef.h>
#include <stdint.h>

typedef struct {
  volatile uint32_t data;      /* +0x00 */
  volatile uint32_t state;     /* +0x04: bit 0 TX full, bit 1 RX full */
  volatile uint32_t ctrl;      /* +0x08: bit 0 TX enable, bit 1 RX enable */
  volatile uint32_t intstatus; /* +0x0C */
  volatile uint32_t bauddiv;   /* +0x10: >= 16 */
} emn_cmsdk_uart;

#define EMN_UART_TX_FULL 0x1u
#define EMN_UART_RX_FULL 0x2u

static inline void emn_uart_init(emn_cmsdk_uart *uart, uint32_t clock_hz, uint32_t baud) {
  uint32_t div = baud ? clock_hz / baud : 16u;
  uart->bauddiv = div < 16u ? 16u : div;
  uart->ctrl = 0x3u;
}

static inline size_t emn_uart_read(emn_cmsdk_uart *uart, uint8_t *buf, size_t cap) {
  size_t n = 0;
  while (n < cap && (uart->state & EMN_UART_RX_FULL)) buf[n++] = (uint8_t)uart->data;
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
