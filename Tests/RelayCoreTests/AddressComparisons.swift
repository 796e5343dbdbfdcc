@testable import RelayCore

// Tests written before IPv6 compare parsed IPv4 fields with IPv4Address values; these keep
// them readable without wrapping every expected value in `.v4`.
func == (lhs: IPAddress, rhs: IPv4Address) -> Bool { lhs == .v4(rhs) }
func == (lhs: IPAddress?, rhs: IPv4Address) -> Bool { lhs == .v4(rhs) }
