/* The firmware in two calls, so each board's main stays a few lines:
 *   emn_firmware_start();  once, after the clocks are up
 *   emn_firmware_poll();   forever (Arduino loop(), or a while(1) in main) */
#ifndef EDGEMNV2_FIRMWARE_H_
#define EDGEMNV2_FIRMWARE_H_

#ifdef __cplusplus
extern "C" {
#endif

void emn_firmware_start(void);
void emn_firmware_poll(void);

#ifdef __cplusplus
}
#endif

#endif /* EDGEMNV2_FIRMWARE_H_ */
