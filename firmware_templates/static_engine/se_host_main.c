/* Host harness for the static engine: raw inputs on stdin, raw outputs on stdout (one per input). */
#include <stdio.h>
#include <string.h>
#include "se_model.h"
int main(void) {
  while (fread(se_arena + SE_INPUT_OFFSET, 1, SE_INPUT_BYTES, stdin) == SE_INPUT_BYTES) {
    se_invoke();
    fwrite(se_arena + SE_OUTPUT_OFFSET, 1, SE_OUTPUT_BYTES, stdout);
  }
  return 0;
}
