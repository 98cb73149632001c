/* Raspberry Pi Pico (RP2040, Cortex-M0+): UART0 on GP0 (TX) / GP1 (RX) with an interrupt-fed ring
 * buffer (the hardware FIFO holds only 32 bytes), and time_us_64() for time: the M0+ has no DWT
 * cycle counter, so cycles are microseconds times clk_sys. */
#include "edgemnv2_board.h"
#include "edgemnv2_config.h"
#include "hardware/clocks.h"
#include "hardware/gpio.h"
#include "hardware/irq.h"
#include "hardware/structs/rosc.h"
#include "hardware/uart.h"
#include "pico/stdlib.h"
#include "pico/time.h"

#define EMN_UART uart0
#define EMN_TX_PIN 0
#define EMN_RX_PIN 1
/* power of two, holding a whole window of INPUT frames */
#define EMN_RING_BYTES 16384u

static volatile uint8_t g_ring[EMN_RING_BYTES];
static volatile uint32_t g_head, g_tail;

static void on_uart_rx(void) {
  while (uart_is_readable(EMN_UART)) {
    uint8_t byte = (uint8_t)uart_get_hw(EMN_UART)->dr;
    uint32_t next = (g_head + 1u) & (EMN_RING_BYTES - 1u);
    if (next != g_tail) { /* full: drop; the CRC and the host's go-back-N recover */
      g_ring[g_head] = byte;
      g_head = next;
    }
  }
}

void emn_board_init(uint32_t baud) {
  uart_init(EMN_UART, baud);
  gpio_set_function(EMN_TX_PIN, GPIO_FUNC_UART);
  gpio_set_function(EMN_RX_PIN, GPIO_FUNC_UART);
  uart_set_format(EMN_UART, 8, 1, UART_PARITY_NONE);
  uart_set_fifo_enabled(EMN_UART, true);
  irq_set_exclusive_handler(UART0_IRQ, on_uart_rx);
  irq_set_enabled(UART0_IRQ, true);
  uart_set_irq_enables(EMN_UART, true, false);
}

size_t emn_board_read(uint8_t *buf, size_t cap) {
  size_t n = 0;
  while (n < cap && g_tail != g_head) {
    buf[n++] = g_ring[g_tail];
    g_tail = (g_tail + 1u) & (EMN_RING_BYTES - 1u);
  }
  return n;
}

void emn_board_write(const uint8_t *data, size_t n) { uart_write_blocking(EMN_UART, data, n); }

uint64_t emn_board_micros(void) { return time_us_64(); }

uint64_t emn_board_cycles(void) { return time_us_64() * (uint64_t)(clock_get_hz(clk_sys) / 1000000u); }

uint32_t emn_board_entropy(void) {
  /* the ring oscillator's jitter, 32 samples of its random bit */
  uint32_t value = 0;
  int i;
  for (i = 0; i < 32; ++i) value = (value << 1) | (rosc_hw->randombit & 1u);
  return value ^ (uint32_t)time_us_64();
}
