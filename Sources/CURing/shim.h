#include <features.h>
#include <liburing.h>
