import Foundation
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

  public init(solution: String, kernelFile: String, kernelName: String?, out: String, force: Bool, comm: Communicator) {
    self.solution = solution
    self.kernelFile = kernelFile
    self.kernelName = kernelName
    self.out = out
    self.force = force
    self.comm = comm
  }

  /// The files `predict` reads and writes, checked together before any work.
  public var paths: CommandPaths {
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
      let labels = kf.exists(KernelFileLayout.testLabels) ? try kf.dataset(KernelFileLayout.testLabels).readAllInt64() : nil
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
}
