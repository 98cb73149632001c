/* The firmware in two calls, so each board's main stays a few lines:
 *   emn_firmware_start();  once, after the clocks are up
 *   emn_firmware_poll();   forever (Arduino loop(), or a while(1) in main)
 * and one the model runner makes after every operator, so the link is served while the model computes:
 *   emn_firmware_between_layers();  answers what emn_board_read() has kept meanwhile (the next input's
 *                                   chunks with two input slots, a PING) */
#ifndef EDGEMNV2_FIRMWARE_H_
#define EDGEMNV2_FIRMWARE_H_

#ifdef __cplusplus
extern "C" {
#endif

void emn_firmware_start(void);
void emn_firmware_poll(void);
void emn_firmware_between_layers(void);

#ifdef __cplusplus
}
#endif

#endif /* EDGEMNV2_FIRMWARE_H_ */
