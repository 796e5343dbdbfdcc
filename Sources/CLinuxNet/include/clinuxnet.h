#pragma once
#include <linux/if_packet.h>
#include <linux/if_ether.h>
