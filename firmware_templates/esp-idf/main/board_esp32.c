/* ESP32-S3 board: UART0 (the DevKit's USB-UART bridge) for the protocol while the console and logs go to
 * the native USB Serial/JTAG port (sdkconfig.defaults), CCOUNT extended to 64 bits, esp_timer for µs. */
#include "driver/uart.h"
#include "edgemnv2_board.h"
#include "edgemnv2_config.h"
#include "esp_cpu.h"
#include "esp_random.h"
#include "esp_timer.h"

#define EMN_UART UART_NUM_0
/* The driver's ring buffer absorbs a whole window of INPUT frames while the app computes or sends. */
#define EMN_UART_RX_BYTES (EDGEMNV2_WINDOW * (EDGEMNV2_MAX_PAYLOAD + 64u) + 1024u)

static uint32_t g_cycles_last, g_cycles_high;

void emn_board_init(uint32_t baud) {
  uart_config_t cfg = {
      .baud_rate = (int)baud,
      .data_bits = UART_DATA_8_BITS,
      .parity = UART_PARITY_DISABLE,
      .stop_bits = UART_STOP_BITS_1,
      .flow_ctrl = UART_HW_FLOWCTRL_DISABLE,
      .source_clk = UART_SCLK_DEFAULT,
  };
  uart_driver_install(EMN_UART, (int)EMN_UART_RX_BYTES, 0, 0, NULL, 0);
  uart_param_config(EMN_UART, &cfg);
  /* the poll loop never blocks, so the task watchdog is off in sdkconfig.defaults */
}

size_t emn_board_read(uint8_t *buf, size_t cap) {
  int n = uart_read_bytes(EMN_UART, buf, (uint32_t)cap, 0);
  return n > 0 ? (size_t)n : 0u;
}

void emn_board_write(const uint8_t *data, size_t n) { uart_write_bytes(EMN_UART, (const char *)data, n); }

uint64_t emn_board_cycles(void) {
  uint32_t now = (uint32_t)esp_cpu_get_cycle_count();
  if (now < g_cycles_last) ++g_cycles_high;
  g_cycles_last = now;
  return ((uint64_t)g_cycles_high << 32) | now;
}

uint64_t emn_board_micros(void) { return (uint64_t)esp_timer_get_time(); }

uint32_t emn_board_entropy(void) { return esp_random(); }
