/* QEMU mps3-an547 (Cortex-M55, Secure state): UART0 (CMSDK, Secure alias 0x59303000, receive into a ring
 * from its combined interrupt, IRQ 43) and a 64-bit clock from SysTick (32 MHz processor clock, 24-bit) whose
 * wrap exception counts the high part. QEMU's hw/arm/mps2-tz.c wires UART0 to IRQs 33, 34 (RX and TX, in an
 * order that changed in QEMU 9.1) and 43 (combined): only RX is enabled, so the combined line is RX.
 *
 * Cycles are nanoseconds of the machine's virtual time (125 per 4 ticks): under `qemu -icount shift=0`
 * one instruction takes 1 ns, so they are instruction counts. */
#include <time.h>

#include "cmsdk_uart.h"
#include "edgemnv2_board.h"

#define EMN_UART0 ((emn_cmsdk_uart *)0x59303000u)
#define EMN_UART_CLOCK_HZ 25000000u
#define EMN_SYSTICK_HZ 32000000u
#define EMN_SYSTICK_BITS 24u

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SCB_ICSR (*(volatile uint32_t *)0xE000ED04u)
#define ICSR_PENDSTSET (1u << 26)
#define NVIC_ISER1 (*(volatile uint32_t *)0xE000E104u)
#define EMN_UART0_IRQ 43u

static volatile uint32_t g_wraps;
static uint8_t g_rx_bytes[EMN_UART_RING_BYTES];
static emn_uart_ring g_rx = {g_rx_bytes, EMN_UART_RING_BYTES, 0, 0, 0};

void UART0_IRQHandler(void) { emn_uart_rx_isr(EMN_UART0, &g_rx); }

void SysTick_Handler(void) { g_wraps++; }

void emn_board_init(uint32_t baud) {
  emn_uart_init(EMN_UART0, EMN_UART_CLOCK_HZ, baud);
  SYST_CSR = 0;
  SYST_RVR = (1u << EMN_SYSTICK_BITS) - 1u;
  SYST_CVR = 0;
  SYST_CSR = 0x7u; /* processor clock, exception on wrap, enabled */
  NVIC_ISER1 = 1u << (EMN_UART0_IRQ - 32u);
  __asm volatile("cpsie i" ::: "memory");
}

size_t emn_board_read(uint8_t *buf, size_t cap) { return emn_uart_ring_read(&g_rx, buf, cap); }

void emn_board_write(const uint8_t *data, size_t n) { emn_uart_write(EMN_UART0, data, n); }

/* SysTick ticks since init; a wrap whose exception is still pending is counted here. */
static uint64_t ticks(void) {
  uint32_t primask, wraps, value;
  const uint32_t top = (1u << EMN_SYSTICK_BITS) - 1u;
  __asm volatile("mrs %0, primask\n\tcpsid i" : "=r"(primask)::"memory");
  wraps = g_wraps;
  value = SYST_CVR;
  if (SCB_ICSR & ICSR_PENDSTSET) {
    wraps++;
    value = SYST_CVR;
  }
  __asm volatile("msr primask, %0" ::"r"(primask) : "memory");
  return ((uint64_t)wraps << EMN_SYSTICK_BITS) + (top - value);
}

uint64_t emn_board_cycles(void) { return ticks() * 125u / 4u; }

uint64_t emn_board_micros(void) { return ticks() / (EMN_SYSTICK_HZ / 1000000u); }

uint32_t emn_board_entropy(void) { return (uint32_t)time(NULL) ^ SYST_CVR; }
