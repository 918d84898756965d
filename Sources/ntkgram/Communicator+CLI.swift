import GramEvents
import GramStorage
import GramTransport

/// The communicator of this process: MPI when a launcher started it, else a singleton.
/// `body` runs with it; MPI is finalised afterwards, whatever `body` did.
func withCommunicator<T>(_ body: (Communicator) throws -> T) throws -> T {
  let comm: Communicator = MPICommunicator.isLaunched ? try MPICommunicator() : LocalCommunicator.single()
  defer { comm.finalize() }
  return try body(comm)
}

/// `withCommunicator` with the progress renderer every driver reports to (rank 0 renders).
/// `paths` (the command's inputs and outputs) and the JSON log are checked together first, so
/// the log is opened only once it is known not to be an input or another output; a log that
/// could not be written whole fails the command after its other outputs are written. A rerun
/// of an interrupted command (`paths.resuming`) continues its existing log.
func withProgress<T>(quiet: Bool, logJSON: String?, paths: CommandPaths, _ body: (Communicator, EventSink) throws -> T) throws -> T {
  var paths = paths
  if let logJSON { paths.outputs.append(PlannedOutput(logJSON, "the JSON log (--log-json)", kind: .text, mayExist: paths.resuming)) }
  return try withCommunicator { comm in
    // Every rank checks before rank 0 creates the log: two collectives, so no rank finds the
    // log rank 0 has just made and takes it for an existing file.
    try comm.collectively { try paths.check() }
    let sink = try comm.collectively {
      try ProgressRenderer(options: ProgressOptions(quiet: quiet, jsonLog: logJSON, appendLog: paths.resuming), rank: comm.rank)
    }
    let result = try body(comm, sink)
    if let failure = sink.logFailure { throw failure }
    return result
  }
}
