import Foundation

/// Ranks as threads of one process, over shared memory: the singleton of a run without
/// `mpirun` (`LocalCommunicator.single()`), and the way tests exercise every collective path
/// without MPI (`LocalCommunicator.group(size:)`).
public final class LocalCommunicator: Communicator, @unchecked Sendable {
  public let rank: Int
  public let size: Int
  private let shared: Shared

  /// State every rank of one group sees: a generation-counted rendezvous.
  final class Shared: @unchecked Sendable {
    let condition = NSCondition()
    let size: Int
    var arrived = 0
    var generation = 0
    var slots: [[UInt8]]
    var published: [[UInt8]] = []

    init(size: Int) {
      self.size = size
      slots = Array(repeating: [], count: size)
    }

    /// Every rank deposits `bytes`; all get every rank's deposit.
    func exchange(rank: Int, _ bytes: [UInt8]) -> [[UInt8]] {
      condition.lock()
      defer { condition.unlock() }
      let myGeneration = generation
      slots[rank] = bytes
      arrived += 1
      if arrived == size {
        published = slots
        arrived = 0
        generation += 1
        condition.broadcast()
        return published
      }
      while generation == myGeneration { condition.wait() }
      return published
    }
  }

  private init(rank: Int, shared: Shared) {
    self.rank = rank
    self.size = shared.size
    self.shared = shared
  }

  /// A group of `size` ranks, one communicator each (give each to its own thread).
  public static func group(size: Int) -> [LocalCommunicator] {
    precondition(size >= 1, "LocalCommunicator.group: size must be ≥ 1")
    let shared = Shared(size: size)
    return (0..<size).map { LocalCommunicator(rank: $0, shared: shared) }
  }

  /// A group of one: the process runs alone.
  public static func single() -> LocalCommunicator { group(size: 1)[0] }

  public func barrier() throws { _ = shared.exchange(rank: rank, []) }

  public func allGather(_ bytes: [UInt8]) throws -> [[UInt8]] { shared.exchange(rank: rank, bytes) }

  public func allReduce(_ values: inout [Double], _ op: ReduceOp) throws {
    if size == 1 { return }
    let bytes = values.withUnsafeBytes { Array($0) }
    let all = shared.exchange(rank: rank, bytes)
    var result = values
    for (r, b) in all.enumerated() where r != rank {
      guard b.count == bytes.count else { throw TransportError("allReduce: ranks passed different counts") }
      b.withUnsafeBytes { raw in
        let other = raw.bindMemory(to: Double.self)
        for k in result.indices {
          switch op {
          case .sum: result[k] += other[k]
          case .max: result[k] = Swift.max(result[k], other[k])
          case .min: result[k] = Swift.min(result[k], other[k])
          }
        }
      }
    }
    // Sum in rank order on every rank, so that all ranks agree bit for bit.
    if op == .sum {
      result = [Double](repeating: 0, count: values.count)
      for b in all {
        b.withUnsafeBytes { raw in
          let v = raw.bindMemory(to: Double.self)
          for k in result.indices { result[k] += v[k] }
        }
      }
    }
    values = result
  }

  public func abort(code: Int32) -> Never { exit(code) }
  public func finalize() {}
  public var processorName: String { ProcessInfo.processInfo.hostName }
}
