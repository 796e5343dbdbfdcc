#include "clinuxnet.h"
