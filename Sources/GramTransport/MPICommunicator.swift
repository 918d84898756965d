import CMPI
import Foundation

/// `MPI_COMM_WORLD` of Open MPI.
///
/// Created only when the process was launched by `mpirun`/`srun` (`MPICommunicator.isLaunched`);
/// a plain run uses `LocalCommunicator.single()` and never initialises MPI. Errors return codes
/// (`MPI_ERRORS_RETURN`), which become `TransportError`s.
public final class MPICommunicator: Communicator, @unchecked Sendable {
  public let rank: Int
  public let size: Int
  private let world: MPI_Comm
  private var finalized = false

  /// Whether a launcher started this process as one rank of a job.
  public static var isLaunched: Bool {
    let env = ProcessInfo.processInfo.environment
    return ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"].contains { env[$0] != nil }
  }

  /// Initialises MPI (`MPI_Init`).
  public init() throws {
    var initialized: Int32 = 0
    MPI_Initialized(&initialized)
    if initialized == 0 {
      guard MPI_Init(nil, nil) == cmpi_success() else { throw TransportError("MPI_Init failed") }
    }
    world = cmpi_comm_world()
    MPI_Comm_set_errhandler(world, cmpi_errors_return())
    var r: Int32 = 0, s: Int32 = 0
    MPI_Comm_rank(world, &r)
    MPI_Comm_size(world, &s)
    rank = Int(r)
    size = Int(s)
  }

  private func check(_ code: Int32, _ what: String) throws {
    if code != cmpi_success() {
      var buffer = [CChar](repeating: 0, count: 512)
      var length: Int32 = 0
      MPI_Error_string(code, &buffer, &length)
      let text = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
      throw TransportError("\(what) failed on rank \(rank): \(text)")
    }
  }

  public func barrier() throws { try check(MPI_Barrier(world), "MPI_Barrier") }

  public func allReduce(_ values: inout [Double], _ op: ReduceOp) throws {
    let mpiOp: MPI_Op = switch op {
    case .sum: cmpi_sum()
    case .max: cmpi_max()
    case .min: cmpi_min()
    }
    // In pieces of at most 2²⁴ values: MPI counts are 32-bit, and the piece is the only copy.
    let piece = 1 << 24
    var result = [Double](repeating: 0, count: min(piece, values.count))
    var start = 0
    while start < values.count {
      let count = min(piece, values.count - start)
      try values.withUnsafeMutableBufferPointer { v in
        try result.withUnsafeMutableBufferPointer { r in
          try check(MPI_Allreduce(v.baseAddress! + start, r.baseAddress!, Int32(count), cmpi_double(), mpiOp, world), "MPI_Allreduce")
          (v.baseAddress! + start).update(from: r.baseAddress!, count: count)
        }
      }
      start += count
    }
  }

  public func allGather(_ bytes: [UInt8]) throws -> [[UInt8]] {
    var counts = [Int32](repeating: 0, count: size)
    var mine = Int32(bytes.count)
    try check(MPI_Allgather(&mine, 1, cmpi_int32(), &counts, 1, cmpi_int32(), world), "MPI_Allgather")
    var offsets = [Int32](repeating: 0, count: size)
    for r in 1..<max(size, 1) where r < size { offsets[r] = offsets[r - 1] + counts[r - 1] }
    let total = Int(counts.reduce(0, +))
    var all = [UInt8](repeating: 0, count: max(total, 1))
    var send = bytes.isEmpty ? [0] : bytes
    try check(MPI_Allgatherv(&send, mine, cmpi_uint8(), &all, counts, offsets, cmpi_uint8(), world), "MPI_Allgatherv")
    return (0..<size).map { Array(all[Int(offsets[$0]) ..< Int(offsets[$0] + counts[$0])]) }
  }

  public func abort(code: Int32) -> Never {
    MPI_Abort(world, code)
    exit(code)
  }

  public func finalize() {
    if !finalized {
      finalized = true
      MPI_Finalize()
    }
  }

  public var processorName: String {
    var buffer = [CChar](repeating: 0, count: 256)
    var length: Int32 = 0
    MPI_Get_processor_name(&buffer, &length)
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }
}
