import RelayCore

/// The egress settings reach worker processes through their environment, set by
/// `mcrelay daemon --egress` (`MCRELAY_EGRESS`) and `--segmentation` (`MCRELAY_SEGMENTATION`).
/// What they mean: `RelayCore.EgressMode`, `RelayCore.SegmentationSetting`, `EgressPolicy`.
public protocol EnvironmentSetting: RawRepresentable<String>, CaseIterable {
    static var environmentVariable: String { get }
    static var `default`: Self { get }
}

extension EnvironmentSetting {
    /// The setting named by the variable's value (unset or empty: the default).
    public static func fromEnvironment(_ value: String?) -> Result<Self, EgressSettingError> {
        guard let value, !value.isEmpty else { return .success(.default) }
        guard let setting = Self(rawValue: value) else {
            return .failure(EgressSettingError(variable: environmentVariable, value: value,
                                               choices: allCases.map(\.rawValue), fallback: Self.default.rawValue))
        }
        return .success(setting)
    }
}

extension EgressMode: EnvironmentSetting {
    public static let environmentVariable = "MCRELAY_EGRESS"
}

extension SegmentationSetting: EnvironmentSetting {
    public static let environmentVariable = "MCRELAY_SEGMENTATION"
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
