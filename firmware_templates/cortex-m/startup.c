/* Bare-metal start for the QEMU Cortex-M boards (mps2-an386, mps3-an547): vector table, reset handler
 * (FPU on, .data copied, .bss zeroed, newlib semihosting and C++ constructors), then main().
 * Linked with -nostartfiles against the linker script rendered beside this file. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

extern uint32_t __data_load__, __data_start__, __data_end__, __bss_start__, __bss_end__, __stack_top__;
extern int main(void);
extern void initialise_monitor_handles(void); /* newlib rdimon: stdio over semihosting */
extern void __libc_init_array(void);

void Reset_Handler(void);
void Default_Handler(void);
/* The board file defines the handlers it uses; the rest spin in Default_Handler. */
void HardFault_Handler(void) __attribute__((weak, alias("Default_Handler")));
void SysTick_Handler(void) __attribute__((weak, alias("Default_Handler")));
void TIMER0_IRQHandler(void) __attribute__((weak, alias("Default_Handler")));
void UART0_RX_IRQHandler(void) __attribute__((weak, alias("Default_Handler")));
void UART0_IRQHandler(void) __attribute__((weak, alias("Default_Handler")));

#define SCB_VTOR (*(volatile uint32_t *)0xE000ED08u)
#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)
#define EMN_IRQS 48u

typedef void (*vector)(void);
/* Initial stack pointer, then the exceptions (1-15), then the device interrupts (MPS2: UART0 RX is IRQ 0,
 * timer0 IRQ 8; MPS3 AN547: UART0 combined is IRQ 43). */
__attribute__((section(".vectors"), used)) const vector g_vectors[16u + EMN_IRQS] = {
    (vector)(uintptr_t)&__stack_top__, Reset_Handler, Default_Handler, HardFault_Handler,
    Default_Handler, Default_Handler, Default_Handler, 0, 0, 0, 0, Default_Handler, Default_Handler, 0,
    Default_Handler, SysTick_Handler,
    [16 + 0 ... 16 + EMN_IRQS - 1] = Default_Handler,
    [16 + 0] = UART0_RX_IRQHandler,
    [16 + 8] = TIMER0_IRQHandler,
    [16 + 43] = UART0_IRQHandler,
};

/* newlib's __libc_init_array/__libc_fini_array call these; a static C++ object with a destructor needs
 * __dso_handle. */
void _init(void) {}
void _fini(void) {}
void *__dso_handle = 0;

void Default_Handler(void) {
  for (;;) {
  }
}

void Reset_Handler(void) {
  SCB_VTOR = (uint32_t)(uintptr_t)g_vectors;
  SCB_CPACR |= 0xFu << 20; /* CP10/CP11 full access: -mfloat-abi=hard code uses the FPU from here on */
  __asm volatile("dsb\n\tisb" ::: "memory");
  memcpy(&__data_start__, &__data_load__, (size_t)((uint8_t *)&__data_end__ - (uint8_t *)&__data_start__));
  memset(&__bss_start__, 0, (size_t)((uint8_t *)&__bss_end__ - (uint8_t *)&__bss_start__));
  initialise_monitor_handles();
  __libc_init_array();
  exit(main());
}
