#include "connx.h"
extern "C" int connx_placeholder(void) { return 0; }
