// edgemnv2 firmware for Arduino (TensorFlow Lite Micro): the protocol, the model and the board code are
// in src/; this sketch only starts them and polls the serial port.
#include "src/edgemnv2_firmware.h"

void setup() { emn_firmware_start(); }

void loop() { emn_firmware_poll(); }
