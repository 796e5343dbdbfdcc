// The deterministic simulator (issue 3).
//
// A run is a discrete-event loop over simulated nanoseconds (`Simulation`): events sit in a
// heap ordered by (time, sequence), and the trace's frames are merged in from their sorted
// array. The actors are the real core types — one `ControlPlane` as the supervisor, one
// `Forwarder` per worker — and a model of what lies between them and the wire
// (`KernelModel`, `PacketSockets`, the supervisor/worker channel in `Simulation`). No
// forwarding logic lives here: every forwarding decision is `Forwarder.decide`.
//
// Judging a run is the `Oracle`'s job. It knows only what the operator asked for (config,
// rule commands, reloads) and reads frames with its own classifier, so a bug in the core's
// parser or rule lookup shows up as a disagreement. Safety invariants are checked on every
// transmit and control action; then faults stop and the relay must converge (memberships,
// plans, one socket copy per frame) and forward a probe per rule within a bounded time.
//
// Randomness comes only from `SimRandom` streams derived from the seed; nothing iterates a
// Dictionary into an output without sorting; so the same inputs and seed give the same
// bytes (checked by `--check-determinism` and DeterminismTests).
//
// Files: Options (run settings), Trace (frames, pcap loading), Events (control script),
// Faults (probabilities, schedules, injector), KernelModel (IGMP, helper sockets, AF_PACKET
// fanout, send queues), Oracle (expected behaviour, invariant names), Simulation (the loop),
// Egress (output captures), Report (report.json), SimCase (cases on disk, determinism check),
// Fuzz (generator, fuzzer, malformed frames), Shrink, TraceCases (checked-in cases), Bench.
