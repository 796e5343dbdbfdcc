import RelayCore

/// The egress settings reach worker processes through their environment, set by
/// `mcrelay daemon --egress` (`MCRELAY_EGRESS`) and `--segmentation` (`MCRELAY_SEGMENTATION`).
/// What they mean: `RelayCore.EgressMode`, `RelayCore.SegmentationSetting`, `EgressPolicy`.
extension EgressMode {
    public static let environmentVariable = "MCRELAY_EGRESS"

    /// The mode named by `MCRELAY_EGRESS` (unset or empty: the default).
    public static func fromEnvironment(_ value: String?) -> Result<EgressMode, EgressSettingError> {
        guard let value, !value.isEmpty else { return .success(.default) }
        guard let mode = EgressMode(rawValue: value) else {
            return .failure(EgressSettingError(variable: environmentVariable, value: value,
                                               choices: allCases.map(\.rawValue), fallback: EgressMode.default.rawValue))
        }
        return .success(mode)
    }
}

extension SegmentationSetting {
    public static let environmentVariable = "MCRELAY_SEGMENTATION"

    public static func fromEnvironment(_ value: String?) -> Result<SegmentationSetting, EgressSettingError> {
        guard let value, !value.isEmpty else { return .success(.default) }
        guard let setting = SegmentationSetting(rawValue: value) else {
            return .failure(EgressSettingError(variable: environmentVariable, value: value,
                                               choices: allCases.map(\.rawValue), fallback: SegmentationSetting.default.rawValue))
        }
        return .success(setting)
    }
}

public struct EgressSettingError: Error, Equatable, Sendable, CustomStringConvertible {
    public var variable: String
    public var value: String
    public var choices: [String]
    public var fallback: String
    public var description: String {
        "\(variable)=\"\(value)\" is not one of \(choices.joined(separator: ", ")); using \(fallback)"
    }
}
