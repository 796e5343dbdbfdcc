/// A min-heap of simulated events ordered by (time, sequence number). The sequence number
/// is the order of scheduling, so two events at the same instant always run in the order
/// they were scheduled: ties never depend on heap layout, and runs are reproducible.
struct EventQueue<Payload> {
    struct Entry {
        var time: UInt64
        var sequence: UInt64
        var payload: Payload
        @inline(__always) func precedes(_ other: Entry) -> Bool {
            time != other.time ? time < other.time : sequence < other.sequence
        }
    }

    private var heap: ContiguousArray<Entry> = []
    private(set) var nextSequence: UInt64 = 0

    var isEmpty: Bool { heap.isEmpty }
    var count: Int { heap.count }
    var peekTime: UInt64? { heap.first?.time }
    /// The sequence number the next `push` will get (used to order merged streams).
    var peekSequence: UInt64? { heap.first?.sequence }

    mutating func push(_ payload: Payload, at time: UInt64) {
        heap.append(Entry(time: time, sequence: nextSequence, payload: payload))
        nextSequence &+= 1
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].precedes(heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    /// Every queued payload, in no particular order (soak compaction scans for references).
    func forEachPayload(_ body: (Payload) -> Void) {
        for entry in heap { body(entry.payload) }
    }

    /// Rewrites payloads in place; times and sequence numbers, and so the order, stay as they are.
    mutating func updatePayloads(_ body: (inout Payload) -> Void) {
        for index in heap.indices { body(&heap[index].payload) }
    }

    mutating func pop() -> Entry? {
        guard !heap.isEmpty else { return nil }
        let top = heap[0]
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var parent = 0
            let n = heap.count
            while true {
                let left = 2 * parent + 1
                guard left < n else { break }
                var best = left
                if left + 1 < n, heap[left + 1].precedes(heap[left]) { best = left + 1 }
                guard heap[best].precedes(heap[parent]) else { break }
                heap.swapAt(best, parent)
                parent = best
            }
        }
        return top
    }
}
