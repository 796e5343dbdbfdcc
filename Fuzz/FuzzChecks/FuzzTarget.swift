/// Every fuzz target, by the name used for `Fuzz/Targets/<name>.swift`, `Fuzz/corpus/<name>/`
/// and `Fuzz/regressions/<name>/`. The libFuzzer entry points and `FuzzRegressionTests` both
/// go through `check`, so a crash the fuzzer finds replays through exactly the same code.
///
/// Adding a target: a `check<Name>(_:)` file in this folder, a case here, a three-line entry
/// point in `Fuzz/Targets/`, and a seed folder in `Fuzz/corpus/`.
public enum FuzzTarget: String, CaseIterable, Sendable {
    case frame
    case pcap
    case config
    case control
    case events
    case egress
    case listener
    case journal
    case napidump
    case linkcounters

    public func check(_ input: UnsafeRawBufferPointer) {
        switch self {
        case .frame: checkFrame(input)
        case .pcap: checkPcap(input)
        case .config: checkConfig(input)
        case .control: checkControl(input)
        case .events: checkEvents(input)
        case .egress: checkEgress(input)
        case .listener: checkListener(input)
        case .journal: checkJournal(input)
        case .napidump: checkNAPIDump(input)
        case .linkcounters: checkLinkCounters(input)
        }
    }
}
