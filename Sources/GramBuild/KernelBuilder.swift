import Foundation
import GramKernels
import GramStorage
import GramTiling

/// What `ntkgram build` is asked to do.
public struct BuildSettings: Sendable {
  public var train: String
  public var test: String?
  public var network: FullyConnected
  public var dtype: ScalarType
  public var tileSize: Int
  public var out: String
  public var force: Bool

  public init(train: String, test: String?, network: FullyConnected, dtype: ScalarType = .float32,
              tileSize: Int = 1024, out: String, force: Bool = false) {
    self.train = train
    self.test = test
    self.network = network
    self.dtype = dtype
    self.tileSize = tileSize
    self.out = out
    self.force = force
  }
}

/// A build failure that is not about one file (a bad spec, mismatched data, …).
public struct BuildError: Error, CustomStringConvertible {
  public let description: String
  public init(_ description: String) { self.description = description }
}

/// What a finished build reports.
public struct BuildReport: Sendable {
  public let trainCount: Int
  public let testCount: Int
  public let tiles: Int
  public let seconds: Double
}

/// Builds a kernel file in one process.
public func buildKernelFile(_ settings: BuildSettings) throws -> BuildReport {
  let start = Date()
  do { try settings.network.validate() } catch let e as KernelSpecError { throw BuildError(e.description) }
  guard settings.tileSize >= 1 else { throw BuildError("tile size must be at least 1 (got \(settings.tileSize))") }
  let trainArray = try loadSamples(settings.train)
  let testArray = try settings.test.map(loadSamples)
  if let t = testArray, t.cols != trainArray.cols {
    throw StorageError(settings.test!, "has \(t.cols) features per row but the train data \(settings.train) has \(trainArray.cols)")
  }
  let writer = try KernelFileWriter(destination: settings.out, overwrite: settings.force)
  defer { writer.discard() }

  let net = settings.network
  let train = net.prepare(Matrix(trainArray))
  let test = testArray.map { net.prepare(Matrix($0)) }
  let n = trainArray.rows, m = testArray?.rows ?? 0
  let plan = TilePlan(trainCount: n, testCount: m, tileSize: settings.tileSize)
  var computer = TileComputer(kernel: net, train: train, test: test)
  let chunk = [settings.tileSize, settings.tileSize]
  for index in 0..<plan.count {
    let values = computer.compute(plan.tile(index))
    try writeTile(values, to: writer, plan: plan, dtype: settings.dtype, chunk: chunk)
  }
  let root = writer.handle
  for (k, v) in net.attributes { try root.setAttribute(k, v) }
  try root.setAttribute("dtype", .string(settings.dtype.rawValue))
  try root.setAttribute("N", .int(Int64(n)))
  try root.setAttribute("M", .int(Int64(m)))
  try root.setAttribute("features", .int(Int64(trainArray.cols)))
  try root.setAttribute("tile", .int(Int64(settings.tileSize)))
  try root.setAttribute("tool_version", .string(toolVersion))
  try root.setAttribute("created", .string(ISO8601DateFormatter().string(from: Date())))
  try writer.commit()
  return BuildReport(trainCount: n, testCount: m, tiles: plan.count, seconds: Date().timeIntervalSince(start))
}

/// Writes a tile into the kernel file: train tiles also into their mirror position.
func writeTile(_ values: TileValues, to writer: KernelFileWriter, plan: TilePlan, dtype: ScalarType, chunk: [Int]) throws {
  let tile = values.tile
  let (m, n) = (tile.rows.count, tile.cols.count)
  for kernel in KernelFileLayout.kernelNames {
    let v = values.values(kernel)
    switch tile.block {
    case .train:
      let d = try writer.dataset(KernelFileLayout.train(kernel), shape: [plan.trainCount, plan.trainCount], type: dtype, chunk: chunk)
      try v.withUnsafeBufferPointer { try d.write($0, start: [tile.rows.lowerBound, tile.cols.lowerBound], count: [m, n]) }
      if !tile.isDiagonal {
        var transposed = [Double](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n { transposed[j * m + i] = v[i * n + j] } }
        try transposed.withUnsafeBufferPointer { try d.write($0, start: [tile.cols.lowerBound, tile.rows.lowerBound], count: [n, m]) }
      }
    case .test:
      let d = try writer.dataset(KernelFileLayout.test(kernel), shape: [plan.testCount, plan.trainCount], type: dtype, chunk: chunk)
      try v.withUnsafeBufferPointer { try d.write($0, start: [tile.rows.lowerBound, tile.cols.lowerBound], count: [m, n]) }
    }
  }
}
