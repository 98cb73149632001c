/* QEMU mps2-an386 (Cortex-M4F): UART0 (CMSDK, 0x40004000, receive interrupt IRQ 0 into a ring) and a 64-bit
 * clock from CMSDK timer0 (0x40000000, 25 MHz, 32-bit down counter) whose wrap interrupt (IRQ 8) counts the
 * high word. IRQ numbers from QEMU's hw/arm/mps2.c (UART0 RX 0, TX 1; timer0 8).
 *
 * Cycles are nanoseconds of the machine's virtual time, 40 per timer tick: under `qemu -icount shift=0`
 * one instruction takes 1 ns, so they are instruction counts (QEMU models no caches or wait states). */
#include <time.h>

#include "cmsdk_uart.h"
#include "edgemnv2_board.h"

#define EMN_UART0 ((emn_cmsdk_uart *)0x40004000u)
#define EMN_TIMER_HZ 25000000u
#define EMN_NS_PER_TICK (1000000000u / EMN_TIMER_HZ)

typedef struct {
  volatile uint32_t ctrl;      /* bit 0 enable, bit 3 interrupt enable */
  volatile uint32_t value;
  volatile uint32_t reload;
  volatile uint32_t intstatus; /* write 1 to clear */
} emn_cmsdk_timer;

#define EMN_TIMER0 ((emn_cmsdk_timer *)0x40000000u)
#define NVIC_ISER0 (*(volatile uint32_t *)0xE000E100u)
#define EMN_TIMER0_IRQ 8u
#define EMN_UART0_RX_IRQ 0u

static volatile uint32_t g_wraps;
static uint8_t g_rx_bytes[EMN_UART_RING_BYTES];
static emn_uart_ring g_rx = {g_rx_bytes, EMN_UART_RING_BYTES, 0, 0, 0};

void UART0_RX_IRQHandler(void) { emn_uart_rx_isr(EMN_UART0, &g_rx); }

void TIMER0_IRQHandler(void) {
  EMN_TIMER0->intstatus = 1u;
  g_wraps++;
}

void emn_board_init(uint32_t baud) {
  emn_uart_init(EMN_UART0, EMN_TIMER_HZ, baud);
  EMN_TIMER0->ctrl = 0;
  EMN_TIMER0->reload = 0xFFFFFFFFu;
  EMN_TIMER0->value = 0xFFFFFFFFu;
  EMN_TIMER0->intstatus = 1u;
  NVIC_ISER0 = (1u << EMN_TIMER0_IRQ) | (1u << EMN_UART0_RX_IRQ);
  EMN_TIMER0->ctrl = 0x9u;
  __asm volatile("cpsie i" ::: "memory");
}

size_t emn_board_read(uint8_t *buf, size_t cap) { return emn_uart_ring_read(&g_rx, buf, cap); }

void emn_board_write(const uint8_t *data, size_t n) { emn_uart_write(EMN_UART0, data, n); }

/* Timer ticks since init; a wrap whose interrupt is still pending is counted here. */
static uint64_t ticks(void) {
  uint32_t primask, wraps, value;
  __asm volatile("mrs %0, primask\n\tcpsid i" : "=r"(primask)::"memory");
  wraps = g_wraps;
  value = EMN_TIMER0->value;
  if (EMN_TIMER0->intstatus & 1u) {
    wraps++;
    value = EMN_TIMER0->value;
  }
  __asm volatile("msr primask, %0" ::"r"(primask) : "memory");
  return ((uint64_t)wraps << 32) + (0xFFFFFFFFu - value);
}

uint64_t emn_board_cycles(void) { return ticks() * EMN_NS_PER_TICK; }

uint64_t emn_board_micros(void) { return ticks() / (EMN_TIMER_HZ / 1000000u); }

/* The host's clock over semihosting: differs between runs even when the guest is deterministic. */
uint32_t emn_board_entropy(void) { return (uint32_t)time(NULL) ^ EMN_TIMER0->value; }
