import CoreMetrics
import Prometheus

/// The relay's metrics as swift-metrics instruments backed by a private swift-prometheus
/// registry (no global `MetricsSystem.bootstrap`: the daemon owns exactly one, tests make
/// their own). The supervisor hands it whole snapshots of absolute counter values about once
/// a second; it turns them into increments, creates series that appeared and destroys series
/// that disappeared (a removed rule's series leave the exposition).
///
/// Nothing here runs per packet: the workers count in their own memory, and this is only
/// updated from the collected totals.
public final class RelayMetrics {
    public let registry = PrometheusCollectorRegistry()
    private let factory: PrometheusMetricsFactory
    private var counters: [MetricSeries: (counter: CoreMetrics.Counter, exported: UInt64)] = [:]
    private var gauges: [MetricSeries: CoreMetrics.Meter] = [:]
    /// Counter series whose value went down (a reset the ledger could not hide): recreated from zero.
    public private(set) var resets: UInt64 = 0
    /// The exposition of the current values, rendered once per update: a client scraping in a
    /// tight loop costs a copy, not a rendering, per request.
    private var rendered: [UInt8]?

    public init() {
        factory = PrometheusMetricsFactory(registry: registry)
    }

    public func update(_ snapshot: MetricsSnapshot) {
        rendered = nil
        var seen = Set<MetricSeries>()
        for sample in snapshot.counters {
            let series = sample.series
            seen.insert(series)
            if let existing = counters[series], sample.value >= existing.exported {
                if sample.value > existing.exported {
                    existing.counter.increment(by: Int64(clamping: sample.value - existing.exported))
                    counters[series] = (existing.counter, sample.value)
                }
                continue
            }
            if let stale = counters[series] {
                // The value went down: Prometheus treats a counter that drops as a reset, so
                // publish it as one (a new series from zero) instead of faking monotonicity.
                stale.counter.destroy()
                resets += 1
            }
            let counter = CoreMetrics.Counter(label: sample.name, dimensions: Self.dimensions(sample.labels), factory: factory)
            if sample.value > 0 { counter.increment(by: Int64(clamping: sample.value)) }
            counters[series] = (counter, sample.value)
        }
        for (series, entry) in counters where !seen.contains(series) {
            entry.counter.destroy()
            counters[series] = nil
        }

        var seenGauges = Set<MetricSeries>()
        for sample in snapshot.gauges {
            let series = sample.series
            seenGauges.insert(series)
            let meter = gauges[series] ?? CoreMetrics.Meter(label: sample.name, dimensions: Self.dimensions(sample.labels), factory: factory)
            gauges[series] = meter
            meter.set(Int64(clamping: sample.value))
        }
        for (series, meter) in gauges where !seenGauges.contains(series) {
            meter.destroy()
            gauges[series] = nil
        }
    }

    /// The text exposition (format 0.0.4): families sorted by name, series sorted within,
    /// each with `# HELP` and `# TYPE`, so equal states give equal bytes.
    public func exposition() -> [UInt8] {
        if let rendered { return rendered }
        var raw: [UInt8] = []
        registry.emit(into: &raw)
        let text = Self.arrange(raw, help: MetricsSnapshot.help)
        rendered = text
        return text
    }

    /// Sorts the registry's output (its families come out in dictionary order) and adds the
    /// HELP lines swift-metrics instruments cannot carry.
    static func arrange(_ raw: [UInt8], help: [String: String]) -> [UInt8] {
        var families: [(name: String, type: Substring, samples: [Substring])] = []
        let text = String(decoding: raw, as: UTF8.self)
        for line in text.split(separator: "\n") {
            if line.hasPrefix("# TYPE ") {
                let fields = line.split(separator: " ")
                guard fields.count == 4 else { continue }
                families.append((String(fields[2]), fields[3], []))
            } else if line.hasPrefix("#") {
                continue
            } else if !families.isEmpty {
                families[families.count - 1].samples.append(line)
            }
        }
        var out = ""
        for family in families.sorted(by: { $0.name < $1.name }) {
            if let text = help[family.name] { out += "# HELP \(family.name) \(escapeHelp(text))\n" }
            out += "# TYPE \(family.name) \(family.type)\n"
            for sample in family.samples.sorted() { out += sample + "\n" }
        }
        return Array(out.utf8)
    }

    static func escapeHelp(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\n", with: "\\n")
    }

    private static func dimensions(_ labels: [MetricSample.Label]) -> [(String, String)] {
        labels.map { ($0.name, $0.value) }
    }
}

extension String {
    fileprivate func replacingOccurrences(of target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
