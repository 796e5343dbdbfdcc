// libFuzzer entry point for the `napidump` target; built only by scripts/fuzz.sh.
import FuzzChecks

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    FuzzTarget.napidump.check(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
