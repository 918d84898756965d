import GramEvents
import GramTransport

/// The communicator of this process: MPI when a launcher started it, else a singleton.
/// `body` runs with it; MPI is finalised afterwards, whatever `body` did.
func withCommunicator<T>(_ body: (Communicator) throws -> T) throws -> T {
  let comm: Communicator = MPICommunicator.isLaunched ? try MPICommunicator() : LocalCommunicator.single()
  defer { comm.finalize() }
  return try body(comm)
}

/// `withCommunicator` with the progress renderer every driver reports to (rank 0 renders).
func withProgress<T>(quiet: Bool, logJSON: String?, _ body: (Communicator, EventSink) throws -> T) throws -> T {
  try withCommunicator { comm in
    let sink = try comm.collectively { try ProgressRenderer(options: ProgressOptions(quiet: quiet, jsonLog: logJSON), rank: comm.rank) }
    return try body(comm, sink)
  }
}
