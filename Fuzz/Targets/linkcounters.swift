// libFuzzer entry point for the `linkcounters` target; built only by scripts/fuzz.sh.
import FuzzChecks

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    FuzzTarget.linkcounters.check(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
