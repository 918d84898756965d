import Foundation
import GramEvents
import GramSolver
import GramStorage
import GramTransport

/// Applies a stored solution α to another kernel file's cross kernel: `K(test, train) · α`.
public struct Predictor {
  public let solution: String
  public let kernelFile: String
  public let kernelName: String?
  public let out: String
  public let force: Bool
  public let comm: Communicator
  /// Where warnings go (a solution without a checksum).
  public let events: EventSink

  public init(solution: String, kernelFile: String, kernelName: String?, out: String, force: Bool, comm: Communicator,
              events: EventSink = SilentSink()) {
    self.solution = solution
    self.kernelFile = kernelFile
    self.kernelName = kernelName
    self.out = out
    self.force = force
    self.comm = comm
    self.events = events
  }

  /// The files `predict` reads and writes, checked together before any work.
  public var paths: CommandPaths { Self.paths(solution: solution, kernelFile: kernelFile, out: out, force: force) }

  public static func paths(solution: String, kernelFile: String, out: String, force: Bool) -> CommandPaths {
    CommandPaths(inputs: [(solution, "the solution file"), (kernelFile, "the kernel file")],
                 outputs: [PlannedOutput(out, "the predictions file")], force: force)
  }

  /// Accuracy per ridge value when the kernel file has test labels and the solution classes.
  public func run() throws -> [Double?] {
    let (alpha, shape, classes, kernel) = try comm.collectively { () -> (DenseBlock, [Int], [Int64]?, String) in
      try paths.check()
      let f = try H5File.open(solution)
      guard f.exists("/alpha") else { throw StorageError(solution, "has no /alpha: not a solution file") }
      let d = try f.dataset("/alpha")
      let values = try d.readAll()
      let shape = d.shape
      guard shape.count == 2 || shape.count == 3 else { throw StorageError(solution, "/alpha has shape \(shape)") }
      let (r, n, c) = shape.count == 2 ? (1, shape[0], shape[1]) : (shape[0], shape[1], shape[2])
      // Side by side: column block s holds ridge value s.
      var block = DenseBlock(rows: n, cols: r * c)
      for s in 0..<r { for i in 0..<n { for j in 0..<c { block[i, s * c + j] = values[(s * n + i) * c + j] } } }
      let classes = f.exists("/classes") ? try f.dataset("/classes").readAllInt64() : nil
      var kernel = kernelName ?? "ntk"
      if case .string(let k)? = try f.attribute("kernel") {
        if let kernelName, kernelName != k {
          throw StorageError(solution, "was solved on the \(k) kernel; predicting with --kernel-name \(kernelName) would mix two kernels")
        }
        kernel = k
      }
      try checkSolution(f, alpha: values, shape: shape, classes: classes)
      // The cross kernel must belong to the training kernel the solution was solved on.
      let kf = try H5File.open(kernelFile)
      if case .string(let solved)? = try f.attribute("kernel_train_fingerprint") {
        guard case .string(let own)? = try kf.attribute("train_fingerprint") else {
          throw StorageError(kernelFile, "records no train_fingerprint: cannot tell which training kernel it belongs to (rebuild it with ntkgram 0.2 or later, or with build --against)")
        }
        guard own == solved else {
          throw StorageError(kernelFile, "belongs to another training kernel (train fingerprint \(own)) than \(solution) was solved on (\(solved))")
        }
      }
      return (block, shape, classes, kernel)
    }
    let predictions = try crossKernelProduct(path: kernelFile, kernel: kernel, alpha: alpha, comm: comm)
    let ridges = shape.count == 3 ? shape[0] : 1, c = shape.last!
    var accuracies: [Double?] = Array(repeating: nil, count: ridges)
    try comm.collectively {
      guard comm.rank == 0 else { return }
      let kf = try H5File.open(kernelFile)
      let labels = kf.exists(KernelFileLayout.testLabels) ? try kf.readCheckedLabels(KernelFileLayout.testLabels) : nil
      let writer = try KernelFileWriter(destination: out, overwrite: force)
      defer { writer.discard() }
      var stacked: [Double] = []
      for s in 0..<ridges {
        let p = predictions.columns(Array(s * c ..< (s + 1) * c))
        stacked += p.values
        if let classes, let labels { accuracies[s] = classificationAccuracy(p, classes: classes, labels: labels) }
      }
      let pshape = ridges == 1 ? [predictions.rows, c] : [ridges, predictions.rows, c]
      let d = try writer.handle.createDataset("/predictions", shape: pshape, type: .float64)
      try stacked.withUnsafeBufferPointer { try d.write($0, start: pshape.map { _ in 0 }, count: pshape) }
      try writer.handle.setAttribute("solution", .string(solution))
      try writer.handle.setAttribute("kernel_file", .string(kernelFile))
      try writer.handle.setAttribute("kernel", .string(kernel))
      try writer.commit()
    }
    return accuracies
  }

  /// α must be finite, and what predict reads must match the checksum solve recorded
  /// (`solution_checksum`); a solution written before solutions had one gets a warning.
  func checkSolution(_ f: H5File, alpha: [Double], shape: [Int], classes: [Int64]?) throws {
    if let k = alpha.firstIndex(where: { !$0.isFinite }) {
      throw StorageError(solution, "/alpha holds a non-finite value (\(alpha[k]) at flat index \(k)): not a usable solution; solve again")
    }
    func string(_ name: String) throws -> String? {
      if case .string(let s)? = try f.attribute(name) { return s }
      return nil
    }
    guard let recorded = try string("solution_checksum") else {
      if comm.rank == 0 {
        events.warning("\(solution) records no solution_checksum (written before solutions were checksummed): only the finiteness of /alpha is checked; solve again to have it checked whole")
      }
      return
    }
    let now = solutionChecksum(alpha: alpha, shape: shape, classes: classes, kernel: try string("kernel") ?? "ntk",
                               trainFingerprint: try string("kernel_train_fingerprint"), preprocess: try string("kernel_preprocess_checksum"))
    guard now == recorded else {
      throw StorageError(solution, "/alpha, /classes or the attributes predict reads do not match the solution's recorded checksum (solution_checksum \(recorded), now \(now)): the file was modified after the solve; solve again")
    }
  }
}
