import GramTransport

/// The communicator of this process: MPI when a launcher started it, else a singleton.
/// `body` runs with it; MPI is finalised afterwards, whatever `body` did.
func withCommunicator<T>(_ body: (Communicator) throws -> T) throws -> T {
  let comm: Communicator = MPICommunicator.isLaunched ? try MPICommunicator() : LocalCommunicator.single()
  defer { comm.finalize() }
  return try body(comm)
}
