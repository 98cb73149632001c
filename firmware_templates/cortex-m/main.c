/* edgemnv2 firmware entry point on the QEMU Cortex-M boards: start the protocol, poll UART0 forever. */
#include "edgemnv2_firmware.h"

int main(void) {
  emn_firmware_start();
  for (;;) emn_firmware_poll();
}
