// edgemnv2 firmware, ESP-IDF entry point: start the protocol and poll UART0 forever.
#include "edgemnv2_firmware.h"
#include "freertos/FreeRTOS.h"
#include "freertos/task.h"

extern "C" void app_main(void) {
  emn_firmware_start();
  for (;;) {
    emn_firmware_poll();
  }
}
