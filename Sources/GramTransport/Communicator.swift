/// Reduction operators for `allReduce`.
public enum ReduceOp: Sendable {
  case sum, max, min
}

/// A transport failure (an MPI call that returned an error, a broken in-process group).
public struct TransportError: Error, CustomStringConvertible {
  public let description: String
  public init(_ description: String) { self.description = description }
}

/// The collective operations the build and the solver need, over a fixed group of ranks.
///
/// Every rank must call the same collectives in the same order. `MPICommunicator` runs over
/// Open MPI; `LocalCommunicator` runs ranks as threads of one process (tests) or a singleton.
public protocol Communicator: AnyObject {
  /// This rank, `0 ..< size`.
  var rank: Int { get }
  var size: Int { get }
  /// Waits until every rank has arrived.
  func barrier() throws
  /// Element-wise reduction of `values` (same count on every rank); every rank gets the result.
  func allReduce(_ values: inout [Double], _ op: ReduceOp) throws
  /// Every rank's bytes, indexed by rank (the counts may differ).
  func allGather(_ bytes: [UInt8]) throws -> [[UInt8]]
  /// Ends every rank of the job at once with exit status `code` (the failing rank has already
  /// said why). Used when one rank fails where the others cannot be told in an orderly way.
  func abort(code: Int32) -> Never
  /// Ends the communicator (MPI_Finalize); a no-op for the in-process one.
  func finalize()
  /// Where the rank runs (host name), for messages.
  var processorName: String { get }
}

extension Communicator {
  /// The root's bytes, on every rank.
  public func broadcast(_ bytes: [UInt8], root: Int = 0) throws -> [UInt8] {
    try allGather(rank == root ? bytes : [])[root]
  }

  /// Runs `body` on every rank and agrees on the outcome: when any rank throws, every rank
  /// throws a `CollectiveFailure` carrying the lowest failing rank's message.
  public func collectively<T>(_ body: () throws -> T) throws -> T {
    var result: T? = nil
    var failure: Error? = nil
    do { result = try body() } catch { failure = error }
    try raiseIfAnyFailed(failure)
    return result!
  }

  /// A meeting point every rank reaches: when any rank brings a failure, every rank throws a
  /// `CollectiveFailure` with the lowest failing rank's message. Call it before a collective
  /// that a failed rank could otherwise skip, so that no rank waits forever.
  public func raiseIfAnyFailed(_ failure: Error?) throws {
    if let failure = failure as? CollectiveFailure {
      // Already agreed (a nested collective failed on every rank alike): rethrow as is.
      throw failure
    }
    let message = failure.map { "\($0)" } ?? ""
    // An invalid value travels as a leading marker byte (no message starts with a control character).
    let marker: [UInt8] = failure is InvalidValue ? [CollectiveFailure.invalidValueMarker] : []
    let all = try allGather(failure == nil ? [] : marker + Array((message.isEmpty ? "error" : message).utf8))
    if let first = all.firstIndex(where: { !$0.isEmpty }) {
      let bytes = all[first], invalid = bytes.first == CollectiveFailure.invalidValueMarker
      throw CollectiveFailure(rank: first, message: String(decoding: invalid ? bytes.dropFirst() : bytes[...], as: UTF8.self),
                              isLocal: first == rank, isInvalidValue: invalid)
    }
  }
}

/// An error about a value the user gave (a flag, a job file's key, a layer list) rather than a
/// failure while running: the command line exits with status 2 for it, as for a usage error,
/// also when it is raised inside a collective (`CollectiveFailure.isInvalidValue`).
public protocol InvalidValue: Error {}

/// An error some rank met inside `collectively`; every rank throws it, with the same message.
public struct CollectiveFailure: Error, CustomStringConvertible {
  /// The lowest rank that failed.
  public let rank: Int
  public let message: String
  /// Whether this rank is the one that failed.
  public let isLocal: Bool
  /// Whether the failure is an `InvalidValue` (exit status 2).
  public let isInvalidValue: Bool
  public var description: String { message }

  public init(rank: Int, message: String, isLocal: Bool, isInvalidValue: Bool = false) {
    self.rank = rank
    self.message = message
    self.isLocal = isLocal
    self.isInvalidValue = isInvalidValue
  }

  static let invalidValueMarker: UInt8 = 1
}
