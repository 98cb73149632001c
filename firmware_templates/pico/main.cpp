// edgemnv2 firmware, pico-sdk entry point: start the protocol and poll UART0 forever.
#include "edgemnv2_firmware.h"

int main() {
  emn_firmware_start();
  for (;;) {
    emn_firmware_poll();
  }
}
