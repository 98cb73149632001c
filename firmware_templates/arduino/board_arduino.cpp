// Arduino Mbed boards (Nano 33 BLE Sense: nRF52840 Cortex-M4F; Portenta H7: STM32H747 Cortex-M7):
// Serial (USB CDC) for the protocol, the DWT cycle counter extended to 64 bits in software.
#include <Arduino.h>

#include "edgemnv2_board.h"

namespace {

// Cortex-M debug registers (ARMv7-M Architecture Reference Manual, C1.6 and C1.8).
volatile uint32_t &kDemcr = *reinterpret_cast<volatile uint32_t *>(0xE000EDFCu);
volatile uint32_t &kDwtCtrl = *reinterpret_cast<volatile uint32_t *>(0xE0001000u);
volatile uint32_t &kDwtCyccnt = *reinterpret_cast<volatile uint32_t *>(0xE0001004u);
volatile uint32_t &kDwtLar = *reinterpret_cast<volatile uint32_t *>(0xE0001FB0u);  // Cortex-M7 lock
constexpr uint32_t kTrcEna = 1u << 24;
constexpr uint32_t kCycCntEna = 1u;

uint32_t g_cycles_last, g_cycles_high, g_micros_last, g_micros_high;

}  // namespace

extern "C" void emn_board_init(uint32_t baud) {
  Serial.begin(baud);
  while (!Serial) {
  }  // USB CDC: wait for the host to open the port, or the boot INFO is lost
  kDemcr |= kTrcEna;
  kDwtLar = 0xC5ACCE55u;  // unlock on M7; ignored on M4
  kDwtCyccnt = 0;
  kDwtCtrl |= kCycCntEna;
}

extern "C" size_t emn_board_read(uint8_t *buf, size_t cap) {
  size_t n = 0;
  while (n < cap && Serial.available() > 0) buf[n++] = static_cast<uint8_t>(Serial.read());
  return n;
}

extern "C" void emn_board_write(const uint8_t *data, size_t n) { Serial.write(data, n); }

extern "C" uint64_t emn_board_cycles(void) {
  uint32_t now = kDwtCyccnt;
  if (now < g_cycles_last) ++g_cycles_high;  // wrapped since the last read
  g_cycles_last = now;
  return (static_cast<uint64_t>(g_cycles_high) << 32) | now;
}

extern "C" uint64_t emn_board_micros(void) {
  uint32_t now = micros();
  if (now < g_micros_last) ++g_micros_high;
  g_micros_last = now;
  return (static_cast<uint64_t>(g_micros_high) << 32) | now;
}

extern "C" uint32_t emn_board_entropy(void) {
  // time to USB enumeration and the host opening the port varies by thousands of cycles
  return kDwtCyccnt ^ (micros() << 16) ^ static_cast<uint32_t>(analogRead(A0));
}
