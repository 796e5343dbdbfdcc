import PcapFile
import RelayCore

// The pcap file's link type and the core's are the same four framings under two names: the
// core must not depend on libpcap, and PcapFile must not depend on the core.
extension LinkType {
    init(_ pcap: PcapLinkType) {
        switch pcap {
        case .ethernet: self = .ethernet
        case .linuxCooked: self = .linuxCooked
        case .linuxCooked2: self = .linuxCooked2
        case .rawIP: self = .rawIP
        }
    }
}

extension PcapLinkType {
    init(_ link: LinkType) {
        switch link {
        case .ethernet: self = .ethernet
        case .linuxCooked: self = .linuxCooked
        case .linuxCooked2: self = .linuxCooked2
        case .rawIP: self = .rawIP
        }
    }
}
