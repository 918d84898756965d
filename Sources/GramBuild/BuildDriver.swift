import Foundation
import GramData
import GramEvents
import GramKernels
import GramNetwork
import GramStorage
import GramTiling
import GramTransport

// The distributed build, every rank running the same steps:
//
//   1. load and check the data and the spec                          (every rank, agreed)
//   2. claim the checkpoint folder for this job's fingerprint, and lay
//      out the kernel file (a hidden partial file beside the output):
//      metadata written, kernels allocated and reserved, not written  (rank 0, agreed)
//   3. check the tiles an earlier run recorded against the file's
//      bytes, a share per rank; bad ones are reported and recomputed  (all, allReduce)
//   4. balance the remaining tiles over the ranks; compute; each tile
//      is written once, by its rank, straight to its places in the
//      file (pwrite), then recorded with its checksums                (all; a failure aborts the job)
//   5. the checksums into the file, fsync, rename over the output     (rank 0, agreed)
//
// Tiles are named by index, not by rank, and every entry depends only on its two samples, so
// any number of ranks, any interruption and any resume give the same bytes. The checkpoint is
// the partial file itself plus one small record per finished tile: nothing is written twice.

/// What a finished build reports.
public struct BuildOutcome: Sendable {
  public let trainCount: Int
  public let testCount: Int
  public let tiles: Int
  /// Tiles an earlier run wrote, checked and kept.
  public let reusedTiles: Int
  /// Recorded tiles found damaged (or foreign) and computed again.
  public let rejectedTiles: Int
  public let seconds: Double
  public let fingerprint: String
}

/// The kernel file being built, as every rank needs it: its path and where each kernel's
/// bytes and the tile checksums are.
struct KernelLayout: Codable {
  var path: String
  var regions: [KernelRegion]
  var checksumsOffset: Int
  var tiles: Int
  var kernels: [String]
}

/// The checkpoint folder's claim file: which job its tiles belong to.
struct CheckpointManifest: Codable, Equatable {
  var fingerprint: String
  var tile: Int
  var trainCount: Int
  var testCount: Int
  var dtype: String
  var kernel: String

  static let fileName = "checkpoint.json"
}

/// What `BuildDriver.loadNetworkData` gives: preprocessed samples, labels, and the network.
public struct NetworkData: Sendable {
  public let train: Matrix
  public let test: Matrix?
  public let trainLabels: [Int64]?
  public let testLabels: [Int64]?
  public let spec: KernelSpec
  public let empirical: EmpiricalSpec
  public let network: ConcreteNetwork
  public let trainChecksum: String
}

public struct BuildDriver {
  public let settings: BuildSettings
  public let comm: Communicator
  /// Where progress, messages and warnings go (see `EventSink` for which rank sends what).
  public let events: EventSink

  /// Copies of a network's weights the command holds (`EmpiricalKernel.buildWeightCopies` for
  /// a build; `ntkgram train` holds more: its model, gradient and recorded networks).
  public var weightCopies = EmpiricalKernel.buildWeightCopies

  public init(settings: BuildSettings, comm: Communicator, events: EventSink = SilentSink()) {
    self.settings = settings
    self.comm = comm
    self.events = events
  }

  struct Inputs {
    var train: LoadedSplit
    var test: LoadedSplit?
    /// The preprocessed samples when they are held whole (networks with weights: their
    /// initial outputs and `ntkgram train` need them); nil when the build streams them.
    var trainMatrix: Matrix?
    var testMatrix: Matrix?
    /// The splits to read again for the rows a rank keeps (streamed builds).
    let trainStream: StreamedSplit?
    let testStream: StreamedSplit?
    let trainRows: Int
    let testRows: Int
    let cols: Int
    let spec: KernelSpec
    let kernel: any GramKernel
    /// The outputs written, in the kernel's order, with their position among its outputs.
    let outputs: [(name: String, index: Int)]
    let statistics: PreprocessStatistics?
    let preprocess: Preprocess
    /// `dataChecksum` of the training (and test) samples as read.
    let trainChecksum: UInt64
    let testChecksum: UInt64?
    /// `checksum64` of the preprocessed values (what the fingerprint covers).
    let trainValuesChecksum: UInt64
    let testValuesChecksum: UInt64

    /// Drops the samples (as read and preprocessed): the tile phase keeps only its rows.
    mutating func releaseSamples() {
      train = train.withoutSamples()
      test = test?.withoutSamples()
      trainMatrix = nil
      testMatrix = nil
    }

    /// The preprocessed samples of `rows`, packed: sliced from the held matrices, or read
    /// again from the files (checked against the first reading: the same content, or an error).
    func heldRows(_ rows: (train: RowBlocks, test: RowBlocks)) throws -> HeldRows {
      if let a = trainMatrix {
        // (All of a set is shared, not copied.)
        return HeldRows(train: rows.train.count == trainRows ? a : a.rows(rows.train.sampleRanges),
                        test: testMatrix.map { rows.test.count == testRows ? $0 : $0.rows(rows.test.sampleRanges) })
      }
      func collect(_ split: StreamedSplit, _ blocks: RowBlocks, expected: UInt64) throws -> Matrix {
        var values: [Double] = []
        values.reserveCapacity(blocks.count * cols)
        var sum = StreamingChecksum64()
        try split.forEachChunk { first, raw in
          let m = preprocessed(raw, isInteger: split.isInteger, preprocess, statistics: statistics)
          sum.add(m.values)
          for i in 0..<m.rows where blocks.holds(first + i) { values += m.values[i * cols ..< (i + 1) * cols] }
        }
        guard sum.finish() == expected else {
          throw StorageError(split.source.samples, "changed while the build was reading it (a second reading differs from the first): leave the data alone during a build")
        }
        return Matrix(rows: blocks.count, cols: cols, values: values)
      }
      return HeldRows(train: try collect(trainStream!, rows.train, expected: trainValuesChecksum),
                      test: try testStream.map { try collect($0, rows.test, expected: testValuesChecksum) })
    }
  }

  /// The samples a rank keeps for its tiles, until they are prepared.
  final class HeldRows {
    var train: Matrix
    var test: Matrix?
    init(train: Matrix, test: Matrix?) { self.train = train; self.test = test }
    func release() { train = Matrix(rows: 0, cols: train.cols); test = nil }
  }

  // MARK: 1. inputs

  /// The spec checked against the data's shape and made into a kernel: a layer that cannot
  /// take its input, or is not implemented, is one line naming the job file and the layer.
  /// With `shapesOnly`, a concrete network is checked from its shapes without drawing or
  /// reading its weights (the early check against the files' headers).
  static func kernel(for settings: BuildSettings, sampleShape: [Int], features: Int, shapesOnly: Bool = false) throws -> (KernelSpec, any GramKernel) {
    let shape = try settings.resolvedInputShape(fileShape: sampleShape, features: features)
    var spec = KernelSpec(network: settings.network, inputShape: shape, preprocess: settings.preprocess,
                          gramPrecision: settings.gramPrecision, zcaStrength: settings.zcaStrength, augment: settings.train.augment)
    spec.computePrecision = settings.computePrecision
    do {
      if shapesOnly && settings.against == nil && settings.empirical != nil {
        return (spec, try EmpiricalKernel.sizing(network: settings.network, inputShape: shape))
      }
      if let stored = settings.against?.spec.empirical {
        spec.empirical = stored
      } else {
        switch settings.empirical {
        case nil: break
        case .seed(let seed):
          spec.empirical = EmpiricalSpec(parameters: try NetworkParameters.draw(settings.network, inputShape: shape, seed: seed),
                                         seed: seed, source: nil)
        case .file(let path):
          spec.empirical = EmpiricalSpec(parameters: try ParametersFile.read(path: path, network: settings.network, inputShape: shape),
                                         seed: nil, source: path)
        }
      }
      return (spec, try spec.makeKernel())
    } catch let e as NetworkError {
      throw networkProblem(e.description, settings: settings, shape: shape)
    } catch let e as KernelSpecError {
      throw networkProblem(e.description, settings: settings, shape: shape)
    }
  }

  /// A layer list that cannot make a kernel of the data. One the user gave (job file,
  /// `--layers`, `--preset`, the shorthand) is an invalid value (exit status 2), as when its own
  /// problems are found on reading it; a stored kernel's (`--against`) is that file's content.
  static func networkProblem(_ problem: String, settings: BuildSettings, shape: [Int]) -> Error {
    if let against = settings.against { return StorageError(against.path, problem) }
    let data = settings.train.samples + (settings.inputShape == nil ? "" : " (given the shape \(shape.map(String.init).joined(separator: ",")) by --input-shape)")
    return InvalidNetworkError(NetworkProblem.describe(problem, network: settings.network, preset: settings.preset,
                                                       origin: settings.networkOrigin ?? settings.specOrigin, data: data, shape: shape))
  }

  func loadInputs() throws -> Inputs {
    guard settings.tileSize >= 1 else { throw BuildError("tile size must be at least 1 (got \(settings.tileSize))") }
    try checkOutputPath()
    // The spec against the files' headers first: a network that cannot run fails before any data is read.
    let (headerRows, headerShape) = try DatasetReader.sampleShape(settings.train.samples, labelColumn: settings.train.labelColumn)
    do { try Network.checkInputShape(headerShape) }
    catch let e as NetworkError { throw StorageError(settings.train.samples, e.description) }
    // A flip needs images; zca a d × d matrix that fits: said before any data is read.
    _ = try settings.train.augmentShape(fileShape: headerShape, cols: headerShape.reduce(1, *), inputShape: settings.inputShape)
    if settings.preprocess == .zca, headerShape.reduce(1, *) > zcaMaxFeatures {
      let d = headerShape.reduce(1, *)
      throw StorageError(settings.train.samples, "has \(d) features per sample: zca whitening holds a \(d)×\(d) matrix (several copies); at most \(zcaMaxFeatures) features")
    }
    let (_, sizing) = try Self.kernel(for: settings, sampleShape: headerShape, features: headerShape.reduce(1, *), shapesOnly: true)
    if let empirical = sizing as? EmpiricalKernel {
      try checkMemory(of: empirical, trainRows: headerRows, features: headerShape.reduce(1, *))
    }
    // A network with weights is evaluated on every sample (its initial outputs): held whole.
    // Every other build reads its data in chunks and keeps only what it needs.
    let withWeights = settings.empirical != nil || settings.against?.spec.empirical != nil
    return withWeights ? try loadWhole() : try loadStreamed()
  }

  /// A network with weights must fit this machine before any weight is drawn or read: its
  /// weights (`weightCopies`), the prepared features of the rows a rank holds, its passes and
  /// the data held whole (`EmpiricalKernel.peakBytes`), against the physical memory. Else one
  /// line naming the widths and the bytes needed (never a trap in the allocator).
  func checkMemory(of kernel: EmpiricalKernel, trainRows: Int, features: Int) throws {
    guard let memory = physicalMemoryBytes() else { return }
    let n = min(trainRows, settings.train.limit ?? trainRows)
    var m = 0
    if let test = settings.test {
      let rows = try DatasetReader.sampleShape(test.samples, labelColumn: test.labelColumn).0
      m = min(rows, test.limit ?? rows)
    }
    let held = n >= 1 && settings.tileSize >= 1
      ? TileAssignment.heldRowsEstimate(plan: TilePlan(trainCount: n, testCount: m, tileSize: settings.tileSize), ranks: comm.size)
      : n + m
    let weights = weightCopies * 8 * kernel.parameterCount
    let need = kernel.peakBytes(rows: n + m, heldRows: held, threads: settings.threads, weightCopies: weightCopies)
      + 2 * 8 * Double(n + m) * Double(features)
    guard need > memory else { return }
    let origin = settings.specOrigin.map { "\($0): " } ?? ""
    throw BuildError("\(origin)a network of dense widths \(kernel.widthsDescription) (\(String(format: "%.3g", kernel.parameterCount)) parameters) on \(n + m) samples needs about \(byteSize(need)) per rank (its weights \(byteSize(weights))), more than this machine's \(byteSize(memory)) of memory: use a smaller --width (or fewer samples)")
  }

  /// The split pair checked against each other: columns, and the sample shape.
  func checkSplits(trainSource: String, trainCols: Int, trainShape: [Int], testSource: String?, testCols: Int?, testShape: [Int]?) throws {
    if let testSource, let testCols, testCols != trainCols {
      throw StorageError(testSource, "has \(testCols) features per row but the train data \(trainSource) has \(trainCols)")
    }
    if let testSource, let testShape, settings.inputShape == nil, testShape != trainShape {
      throw StorageError(testSource, "has samples of shape \(testShape) but the train data \(trainSource) has \(trainShape)")
    }
  }

  /// `--against`: the training side must be the one the stored kernel was built from, bit for
  /// bit, and so must its stored statistics (`recompute`: those of the training data, computed
  /// as its build computed them).
  func checkAgainst(trainChecksum: UInt64, source: String, hasTest: Bool,
                    recompute: () throws -> PreprocessStatistics?) throws -> PreprocessStatistics?? {
    guard let against = settings.against else { return nil }
    guard hex(trainChecksum) == against.dataChecksum else {
      throw StorageError(source, "is not the training data of \(against.path) (content checksum \(hex(trainChecksum)), recorded \(against.dataChecksum)): it changed since that build; give the original with --train")
    }
    guard hasTest else { throw BuildError("--against \(against.path) needs new data: give --test") }
    try KernelIdentity.checkStatistics(against.statistics, recomputed: try recompute(), path: against.path, data: source)
    return .some(against.statistics)
  }

  /// `zca`'s ε for this build (the stored kernel's for `--against`).
  var zcaStrength: Double { settings.zcaStrength ?? Preprocess.defaultZCAStrength }

  func loadWhole() throws -> Inputs {
    let train = try loadSplit(settings.train, inputShape: settings.inputShape)
    let test = try settings.test.map { try loadSplit($0) }
    try checkSplits(trainSource: train.source.samples, trainCols: train.samples.cols, trainShape: train.sampleShape,
                    testSource: test?.source.samples, testCols: test?.samples.cols, testShape: test?.sampleShape)
    let (spec, kernel) = try Self.kernel(for: settings, sampleShape: train.sampleShape, features: train.samples.cols)
    let trainChecksum = dataChecksum(train.samples)
    let fit = { try PreprocessStatistics.of(train.samples, isInteger: train.isInteger, for: settings.preprocess, zcaStrength: zcaStrength) }
    let statistics = try checkAgainst(trainChecksum: trainChecksum, source: train.source.samples, hasTest: test != nil, recompute: fit)
      ?? fit()
    let outputs = try Self.outputs(kernel.outputNames, selected: settings.kernels)
    let a = preprocessed(train.samples, isInteger: train.isInteger, settings.preprocess, statistics: statistics)
    let b = test.map { preprocessed($0.samples, isInteger: $0.isInteger, settings.preprocess, statistics: statistics) }
    var largest = LargestRow()
    largest.scan(a, first: 0)
    try largest.check(kernel, source: train.source.samples, dtype: settings.dtype, spec: spec)
    if let b, let test {
      var largestTest = LargestRow()
      largestTest.scan(b, first: 0)
      try largestTest.check(kernel, source: test.source.samples, dtype: settings.dtype, spec: spec)
    }
    return Inputs(train: train, test: test, trainMatrix: a, testMatrix: b, trainStream: nil, testStream: nil,
                  trainRows: a.rows, testRows: b?.rows ?? 0, cols: a.cols, spec: spec, kernel: kernel, outputs: outputs,
                  statistics: statistics, preprocess: settings.preprocess, trainChecksum: trainChecksum,
                  testChecksum: test.map { dataChecksum($0.samples) },
                  trainValuesChecksum: checksum64(a.values), testValuesChecksum: checksum64(b?.values ?? []))
  }

  /// The same checks and checksums as `loadWhole`, the data read in chunks of rows: the
  /// samples as read (checksum, statistics), then preprocessed (the fingerprint's checksum, the
  /// largest self-pair). When no statistics are needed first (every preprocessing but a
  /// `standardize` of the training set itself), both are taken in one reading. Data of at most
  /// `BuildPlan.keptDataBytes` (preprocessed, float64) is kept from that reading, so the tile
  /// phase takes its rows from memory instead of reading the files a last time; larger data is
  /// not kept (nor any, with `keeping` 0).
  func loadStreamed(keeping: Double = BuildPlan.keptDataBytes) throws -> Inputs {
    let train = try StreamedSplit(settings.train, inputShape: settings.inputShape)
    let test = try settings.test.map { try StreamedSplit($0) }
    try checkSplits(trainSource: train.source.samples, trainCols: train.cols, trainShape: train.sampleShape,
                    testSource: test?.source.samples, testCols: test?.cols, testShape: test?.sampleShape)
    let (spec, kernel) = try Self.kernel(for: settings, sampleShape: train.sampleShape, features: train.cols)
    let outputs = try Self.outputs(kernel.outputNames, selected: settings.kernels)
    let keep = BuildPlan.keepsData(rows: train.rows + (test?.rows ?? 0), features: train.cols, upTo: keeping)
    func rawChecksum(_ split: StreamedSplit) throws -> UInt64 {
      var sum = StreamingChecksum64()
      try split.forEachChunk { _, m in sum.add(m.values) }
      return dataChecksum(valuesChecksum: sum.finish(), rows: split.rows, cols: split.cols)
    }
    /// The preprocessed values' checksum (and, with `raw`, the samples' as read), the largest
    /// self-pair checked, the values kept when `keep`.
    func pass(_ split: StreamedSplit, _ statistics: PreprocessStatistics?, raw: Bool) throws -> (raw: UInt64?, values: UInt64, kept: Matrix?) {
      var rawSum = StreamingChecksum64(), sum = StreamingChecksum64()
      var largest = LargestRow()
      var kept: [Double] = []
      if keep { kept.reserveCapacity(split.rows * split.cols) }
      try split.forEachChunk { first, read in
        if raw { rawSum.add(read.values) }
        let m = preprocessed(read, isInteger: split.isInteger, settings.preprocess, statistics: statistics)
        sum.add(m.values)
        largest.scan(m, first: first)
        if keep { kept += m.values }
      }
      try largest.check(kernel, source: split.source.samples, dtype: settings.dtype, spec: spec)
      return (raw ? dataChecksum(valuesChecksum: rawSum.finish(), rows: split.rows, cols: split.cols) : nil, sum.finish(),
              keep ? Matrix(rows: split.rows, cols: split.cols, values: kept) : nil)
    }
    let trainPass: (raw: UInt64?, values: UInt64, kept: Matrix?), trainChecksum: UInt64, statistics: PreprocessStatistics?
    if settings.against == nil && !settings.preprocess.needsTrainingStatistics {
      statistics = nil
      trainPass = try pass(train, nil, raw: true)
      trainChecksum = trainPass.raw!
    } else {
      trainChecksum = try rawChecksum(train)
      // (A cross kernel takes the stored kernel's statistics, checked against those of the
      // training data: the passes for them, as its build made them.)
      let fit = { try PreprocessStatistics.of(train, for: settings.preprocess, zcaStrength: zcaStrength) }
      statistics = try checkAgainst(trainChecksum: trainChecksum, source: train.source.samples, hasTest: test != nil, recompute: fit)
        ?? fit()
      trainPass = try pass(train, statistics, raw: false)
    }
    let testPass = try test.map { try pass($0, statistics, raw: true) }
    return Inputs(train: LoadedSplit(unheld: train), test: test.map { LoadedSplit(unheld: $0) },
                  trainMatrix: trainPass.kept, testMatrix: testPass?.kept,
                  trainStream: train, testStream: test, trainRows: train.rows, testRows: test?.rows ?? 0, cols: train.cols,
                  spec: spec, kernel: kernel, outputs: outputs, statistics: statistics, preprocess: settings.preprocess,
                  trainChecksum: trainChecksum, testChecksum: testPass?.raw,
                  trainValuesChecksum: trainPass.values, testValuesChecksum: testPass?.values ?? checksum64([Double]()))
  }

  /// The preprocessed data and the concrete network of an empirical build, checked as a build
  /// checks them, without computing any tile: what `ntkgram train` starts from.
  public func loadNetworkData() throws -> NetworkData {
    let inputs = try loadInputs()
    guard let kernel = inputs.kernel as? EmpiricalKernel, let spec = inputs.spec.empirical else {
      throw BuildError("training needs a concrete network: its weights from a seed (--seed) or a file (--params)")
    }
    return NetworkData(train: inputs.trainMatrix!, test: inputs.testMatrix, trainLabels: inputs.train.labels,
                       testLabels: inputs.test?.labels, spec: inputs.spec, empirical: spec, network: kernel.network,
                       trainChecksum: hex(inputs.trainChecksum))
  }

  /// The sample of largest squared norm (the first non-finite one stops the search): the
  /// kernel of it with itself bounds every entry. `check` fails before any tile when that
  /// overflows (data around 1e150, a W_std of 1e200): every entry would be infinite or NaN.
  struct LargestRow {
    var row = -1, norm = -1.0, values: [Double] = [], stopped = false

    mutating func scan(_ m: Matrix, first: Int) {
      for i in 0..<m.rows where !stopped {
        var s = 0.0
        for k in 0..<m.cols { s += m.values[i * m.cols + k] * m.values[i * m.cols + k] }
        if !(s <= norm) { row = first + i; norm = s; values = Array(m.values[i * m.cols ..< (i + 1) * m.cols]) }
        if !s.isFinite { stopped = true }
      }
    }

    /// Fails when the largest self-pair is out of range, naming the cause (`OverflowCause`):
    /// the data, a weights file (`--params`) or a layer's `W_std` / `b_std`.
    func check(_ kernel: some GramKernel, source: String, dtype: ScalarType, spec: KernelSpec) throws {
      guard row >= 0 else { return }
      let entry = kernel.referenceEntry(values, values)
      if let k = entry.firstIndex(where: { !$0.isFinite }) {
        let cause = OverflowCause.find(kernel: kernel, row: values, spec: spec) { !$0.isFinite }
        throw cause.error(output: kernel.outputNames[k], row: row, source: source, problem: entry[k].isNaN ? "NaN" : "infinite",
                          dataRemedy: "the data (squared norm \(norm)) and this network overflow float64: scale the data (--preprocess standardize or unit_norm)",
                          parametersRemedy: "every entry would overflow float64; use smaller parameters")
      }
      // Kernels are positive semi-definite, |K(x, y)| ≤ max K(x, x): the largest self-pair bounds them all.
      let float32Limit = Double(Float.greatestFiniteMagnitude)
      if dtype == .float32, let k = entry.firstIndex(where: { abs($0) > float32Limit }) {
        let cause = OverflowCause.find(kernel: kernel, row: values, spec: spec) { abs($0) > float32Limit }
        throw cause.error(output: kernel.outputNames[k], row: row, source: source, problem: "\(entry[k]), beyond float32's range",
                          dataRemedy: "store float64 (--dtype float64) or scale the data",
                          parametersRemedy: "store float64 (--dtype float64) or use smaller parameters")
      }
      // A float32 recursion holds every layer's covariances in float32: its largest self-pair
      // and variance maps must stay far inside float32's range.
      if let conv = kernel as? Convolutional, conv.computePrecision != .float64, let largest = conv.largestMagnitude(values),
         !(largest <= 1e30) {
        throw BuildError("\(source): row \(row) reaches \(largest) in a layer's covariances, beyond what compute_precision \(conv.computePrecision.rawValue) holds (float32, 3.4e38 at most, with room for sums): use compute_precision float64, or scale the data or the parameters")
      }
    }
  }

  /// The outputs to write: `selected` (each one the kernel produces), in the kernel's order.
  static func outputs(_ names: [String], selected: [String]?) throws -> [(name: String, index: Int)] {
    guard let selected else { return names.enumerated().map { ($1, $0) } }
    for name in selected where !names.contains(name) {
      throw BuildError("unknown kernel '\(name)' in --kernels (this network gives \(names.joined(separator: ", ")))")
    }
    guard !selected.isEmpty else { throw BuildError("--kernels names no kernel (valid: \(names.joined(separator: ", ")))") }
    return names.enumerated().filter { selected.contains($0.element) }.map { ($1, $0) }
  }

  func checkOutputPath() throws {
    try settings.paths.check()
    // The checkpoint folder is removed after a successful build: it must not hold the output.
    if canonicalPath(settings.out).hasPrefix(canonicalPath(settings.checkpointFolder) + "/") {
      throw StorageError(settings.out, "is inside the checkpoint folder \(settings.checkpointFolder), which is removed after the build; choose another output or checkpoint folder")
    }
    var isDirectory: ObjCBool = false
    // The output folder is created (with the checkpoint folder) once the inputs are known good.
    var folder = URL(fileURLWithPath: settings.out).deletingLastPathComponent()
    while !FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDirectory) { folder.deleteLastPathComponent() }
    guard isDirectory.boolValue else { throw StorageError(settings.out, "\(folder.path) is not a folder") }
  }

  // MARK: 2. checkpoint folder

  func claimCheckpointFolder(_ manifest: CheckpointManifest, reporter: EventSink) throws {
    let folder = settings.checkpointFolder
    let fm = FileManager.default
    let outFolder = URL(fileURLWithPath: settings.out).deletingLastPathComponent().path
    do { try fm.createDirectory(atPath: outFolder, withIntermediateDirectories: true) }
    catch { throw StorageError(settings.out, "cannot create output folder \(outFolder): \(error.localizedDescription)") }
    let manifestPath = folder + "/" + CheckpointManifest.fileName
    var isDirectory: ObjCBool = false
    if fm.fileExists(atPath: folder, isDirectory: &isDirectory) {
      guard isDirectory.boolValue else { throw StorageError(folder, "checkpoint path exists and is not a folder") }
      let entries = try fm.contentsOfDirectory(atPath: folder)
      if let data = fm.contents(atPath: manifestPath) {
        let existing = try? JSONDecoder().decode(CheckpointManifest.self, from: data)
        if existing != manifest {
          guard settings.restart else {
            throw StorageError(folder, "checkpoint folder belongs to another job (fingerprint \(existing?.fingerprint ?? "unreadable"), this job \(manifest.fingerprint)); use --restart to discard it")
          }
          reporter.message("discarding checkpoints of another job in \(folder) (--restart)")
          for name in entries where name.hasPrefix("tile-") || name.hasPrefix(".tile-") || name == CheckpointManifest.fileName {
            try fm.removeItem(atPath: folder + "/" + name)
          }
        }
      } else if entries.contains(where: { !$0.hasPrefix(".") }) {
        throw StorageError(folder, "checkpoint folder is not empty and has no \(CheckpointManifest.fileName); refusing to use it")
      }
      // Records a killed run was writing (`.tile-N.done.tmp-PID`): this run holds the folder's
      // lock, so no one is writing them any more.
      for name in entries where name.hasPrefix(".tile-") && name.contains(".tmp-") {
        unlink(folder + "/" + name)
      }
    } else {
      do { try fm.createDirectory(atPath: folder, withIntermediateDirectories: true) }
      catch { throw StorageError(folder, "cannot create checkpoint folder: \(error.localizedDescription)") }
    }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    let temporary = manifestPath + ".tmp-\(getpid())"
    do { try encoder.encode(manifest).write(to: URL(fileURLWithPath: temporary)) }
    catch { throw StorageError(folder, "cannot write \(CheckpointManifest.fileName): \(error.localizedDescription)") }
    try fsyncPath(temporary)
    guard rename(temporary, manifestPath) == 0 else { throw StorageError(manifestPath, "cannot write: \(String(cString: strerror(errno)))") }
  }

  // MARK: 3. the kernel file, laid out once

  /// Where the kernel file is built: a hidden file beside the output, renamed over it when
  /// every tile is in (so the output never exists unfinished). Its name does not depend on
  /// the process: a rerun finds it and continues it.
  var partialPath: String {
    derivedPath(of: settings.out, suffix: ".partial")
  }

  /// Lays out a fresh kernel file at `partialPath`: every attribute and small dataset
  /// (labels, statistics, weights, initial outputs) written now, the kernels (contiguous, or
  /// tiled: `--layout`) and the tile checksums allocated but not written, and the whole file
  /// reserved on disk. Returns its layout.
  func createPartial(plan: TilePlan, inputs: Inputs, fingerprint: String) throws -> KernelLayout {
    let path = partialPath
    unlink(path)
    var created = false
    defer { if !created { unlink(path) } }
    let n = plan.trainCount, m = plan.testCount
    let names = inputs.outputs.map(\.name)
    let tiled = Self.tiles(settings, plan: plan)
    // The HDF5 part in a closure: the file is closed when it returns, and HDF5 writes nothing more.
    let layout = try { () throws -> KernelLayout in
    let root = try H5File.create(path, chunkBytes: tiled ? min(plan.tileSize, n) * min(plan.tileSize, n) * settings.dtype.byteCount : nil)
    var regions: [KernelRegion] = []
    for kernel in names {
      for (name, rows, axes) in [(KernelFileLayout.train(kernel), plan.includesTrain ? n : 0, "train sample, train sample"),
                                 (KernelFileLayout.test(kernel), m, "test sample, train sample")] where rows > 0 {
        let d = tiled
          ? try root.createTiledDataset(name, shape: [rows, n], type: settings.dtype, chunk: [plan.tileSize, plan.tileSize])
          : try root.createAllocatedDataset(name, shape: [rows, n], type: settings.dtype)
        try d.setAttribute("axes", .string(axes))
        try d.setAttribute("kernel", .string(kernel))
        guard let region = KernelRegion.of(d) else { throw StorageError(path, "HDF5 did not allocate \(name)") }
        regions.append(region)
      }
    }
    let sums = try root.createUInt32Dataset(KernelFileLayout.tileChecksums, shape: [plan.count, names.count, 2], allocated: true)
    guard let sumsOffset = sums.fileOffset else { throw StorageError(path, "HDF5 did not allocate \(KernelFileLayout.tileChecksums)") }
    try sums.setAttribute("axes", .string("tile, kernel, word"))
    try sums.setAttribute("kernels", .string(names.joined(separator: ",")))
    try sums.setAttribute("algorithm", .string(KernelFileLayout.checksumAlgorithm))
    try sums.setAttribute("words", .string("high 32 bits, low 32 bits of the 64-bit checksum"))
    if let labels = inputs.train.labels, plan.includesTrain {
      try root.createInt64Dataset(KernelFileLayout.trainLabels, shape: [labels.count]).write(labels: labels, axes: "train sample")
    }
    if let labels = inputs.test?.labels {
      try root.createInt64Dataset(KernelFileLayout.testLabels, shape: [labels.count]).write(labels: labels, axes: "test sample")
    }
    if let statistics = inputs.statistics {
      for (name, values, shape) in statistics.stored {
        let d = try root.createDataset(name, shape: shape, type: .float64)
        try values.withUnsafeBufferPointer { try d.write($0, start: shape.map { _ in 0 }, count: shape) }
        try d.setAttribute("axes", .string(shape.count == 2 ? "feature, feature" : "feature"))
      }
      // What `build --against`, `verify`, `solve` and `predict` check them against.
      try root.setAttribute("preprocess_checksum", .string(statistics.checksum))
    }
    if let empirical = inputs.spec.empirical {
      // The weights, and the network's outputs at them (f₀ for `dynamics --initial-outputs`).
      try ParametersFile.write(empirical.parameters, to: root)
      if let network = (inputs.kernel as? EmpiricalKernel)?.network {
        let k = network.outputCount
        for (name, data) in [("train", plan.includesTrain ? inputs.trainMatrix : nil), ("test", inputs.testMatrix)] {
          guard let data, data.rows > 0 else { continue }
          let values = network.outputs(data)
          let d = try root.createDataset("/initial_outputs/\(name)", shape: [data.rows, k], type: .float64)
          try values.withUnsafeBufferPointer { try d.write($0, start: [0, 0], count: [data.rows, k]) }
          try d.setAttribute("axes", .string("\(name) sample, output"))
        }
      }
    }
    for (k, v) in inputs.spec.attributes { try root.setAttribute(k, v) }
    var attributes: [(String, AttributeValue)] = [
      ("format_version", .int(Int64(KernelFileLayout.formatVersion(tiled: tiled)))),
      ("dtype", .string(settings.dtype.rawValue)),
      ("N", .int(Int64(n))),
      ("M", .int(Int64(m))),
      ("features", .int(Int64(inputs.cols))),
      ("tile", .int(Int64(settings.tileSize))),
      ("layout", .string(tiled ? "tiles" : "contiguous")),
      ("kernels", .string(names.joined(separator: ","))),
      ("train_source", .string(absolutePath(settings.train.samples))),
      ("train_source_given", .string(settings.train.samples)),
      ("train_limit", .int(Int64(settings.train.limit ?? -1))),
      ("train_label_column", .int(Int64(settings.train.labelColumn ?? -1))),
      ("test_source", .string(settings.test.map { absolutePath($0.samples) } ?? "")),
      ("test_source_given", .string(settings.test?.samples ?? "")),
      ("test_limit", .int(Int64(settings.test?.limit ?? -1))),
      ("fingerprint", .string(fingerprint)),
      ("train_data_checksum", .string(hex(inputs.trainChecksum))),
      ("train_fingerprint", .string(trainFingerprint(dataChecksum: inputs.trainChecksum, rows: n,
                                                     cols: inputs.cols, spec: inputs.spec))),
      ("tool_version", .string(toolVersion)),
    ]
    if let testChecksum = inputs.testChecksum { attributes.append(("test_data_checksum", .string(hex(testChecksum)))) }
    // Where the labels came from and a checksum of the stored ones, for `verify`.
    for (split, source, labels, stored) in [("train", settings.train, inputs.train.labels, plan.includesTrain),
                                            ("test", settings.test, inputs.test?.labels, true)] {
      guard let source, let labels, stored else { continue }
      attributes.append(("\(split)_labels_source", .string(source.labels.map(absolutePath) ?? "")))
      attributes.append(("\(split)_labels_source_given", .string(source.labels ?? "")))
      attributes.append(("\(split)_labels_checksum", .string(hex(checksum64(labels)))))
    }
    attributes.append(("test_label_column", .int(Int64(settings.test?.labelColumn ?? -1))))
    for (k, v) in attributes { try root.setAttribute(k, v) }
    if let against = settings.against {
      try root.setAttribute("against_fingerprint", .string(against.fingerprint))
      try root.setAttribute("against", .string(absolutePath(against.path)))
    }
    try root.flush()
    return KernelLayout(path: path, regions: regions, checksumsOffset: sumsOffset, tiles: plan.count, kernels: names)
    }()
    var st = stat()
    guard stat(path, &st) == 0 else { throw StorageError(path, "vanished while being created") }
    try RegionFile(path: path, writable: true).reserve(Int(st.st_size))
    created = true
    return layout
  }

  /// Whether a new kernel file of this job tiles its kernels (`--layout`, by the largest kernel's bytes).
  static func tiles(_ settings: BuildSettings, plan: TilePlan) -> Bool {
    settings.layout.tiles(rows: max(plan.includesTrain ? plan.trainCount : 0, plan.testCount), cols: plan.trainCount,
                          bytesPerValue: settings.dtype.byteCount)
  }

  /// The layout of an existing partial (or, for `--repair`, finished) kernel file when it was
  /// laid out for this very job; nil when it cannot be continued. `tiled`: the kernels must be
  /// laid out so (a partial is continued only in the layout a fresh build would give, so that
  /// a resumed build is byte for byte an uninterrupted one); nil: either (a repair keeps the
  /// file's own, format 2's contiguous kernels included).
  func existingLayout(_ path: String, plan: TilePlan, inputs: Inputs, fingerprint: String, tiled: Bool?) -> KernelLayout? {
    guard let f = try? H5File.open(path), (try? f.attribute("fingerprint")) == .string(fingerprint),
          case .int(let version)? = try? f.attribute("format_version"),
          tiled.map({ version == KernelFileLayout.formatVersion(tiled: $0) }) ?? (version == 2 || version == 3) else { return nil }
    let names = inputs.outputs.map(\.name)
    var regions: [KernelRegion] = []
    for kernel in names {
      for (name, rows) in [(KernelFileLayout.train(kernel), plan.includesTrain ? plan.trainCount : 0),
                           (KernelFileLayout.test(kernel), plan.testCount)] where rows > 0 {
        guard let d = try? f.dataset(name), let region = KernelRegion.of(d), region.rows == rows, region.cols == plan.trainCount,
              region.scalarType == settings.dtype, tiled.map({ $0 == region.isTiled }) ?? true,
              !region.isTiled || (region.chunkRows == min(plan.tileSize, rows) && region.chunkCols == min(plan.tileSize, plan.trainCount)) else { return nil }
        regions.append(region)
      }
    }
    guard let sums = try? f.dataset(KernelFileLayout.tileChecksums), sums.shape == [plan.count, names.count, 2],
          let offset = sums.fileOffset else { return nil }
    var st = stat()
    guard stat(path, &st) == 0, Int(st.st_size) >= (regions.map { $0.offset + $0.byteCount } + [offset + plan.count * names.count * 8]).max()! else { return nil }
    return KernelLayout(path: path, regions: regions, checksumsOffset: offset, tiles: plan.count, kernels: names)
  }

  /// `--repair`: stored labels that no longer match their recorded checksum are written again
  /// from the labels this job read, when those match it (the labels of the build).
  func mendLabels(_ path: String, inputs: Inputs, reporter: EventSink) throws {
    let f = try H5File.open(path, writable: true)
    for (name, split, read) in [(KernelFileLayout.trainLabels, "train", inputs.train.labels),
                                (KernelFileLayout.testLabels, "test", inputs.test?.labels)] {
      guard let labels = read, f.exists(name), case .string(let recorded)? = try f.attribute("\(split)_labels_checksum"),
            hex(checksum64(labels)) == recorded else { continue }
      let d = try f.dataset(name)
      guard d.shape == [labels.count], try d.readAllInt64() != labels else { continue }
      try labels.withUnsafeBufferPointer { try d.write($0, start: [0], count: [labels.count]) }
      reporter.message("repairing \(path): \(name) written again from its source (it no longer matched its recorded checksum)")
    }
    try f.flush()
  }

  /// Rank 0: the kernel file to write into. With `--repair`, the finished output of this
  /// job becomes the partial file again (a rename), and its stored tile checksums become tile
  /// records, which the resume then checks against the bytes. Else an existing partial of this
  /// job is continued; anything else is laid out afresh (and its records dropped).
  func preparePartial(plan: TilePlan, inputs: Inputs, fingerprint: String, reporter: EventSink) throws -> KernelLayout {
    let folder = settings.checkpointFolder
    let fm = FileManager.default
    func dropRecords() {
      for index in Self.recordedTiles(in: folder) { unlink(TileRecord.path(folder: folder, index: index)) }
    }
    if settings.repair && fm.fileExists(atPath: settings.out) {
      guard let layout = existingLayout(settings.out, plan: plan, inputs: inputs, fingerprint: fingerprint, tiled: nil) else {
        throw StorageError(settings.out, "cannot be repaired: it was not built by this job (fingerprint, kernels, dtype or format differ) or its layout is damaged; rebuild it with --force")
      }
      try mendLabels(settings.out, inputs: inputs, reporter: reporter)
      let f = try H5File.open(settings.out)
      let sums = try f.dataset(KernelFileLayout.tileChecksums).readAll(as: UInt32.self)
      dropRecords()
      let k = layout.kernels.count
      for index in 0..<plan.count {
        let checksums = (0..<k).map { c in UInt64(sums[2 * (index * k + c)]) << 32 | UInt64(sums[2 * (index * k + c) + 1]) }
        try TileRecord(index: index, checksums: checksums).write(folder: folder, fingerprint: fingerprint)
      }
      guard rename(settings.out, partialPath) == 0 else {
        throw StorageError(settings.out, "cannot move it aside for repair: \(String(cString: strerror(errno)))")
      }
      reporter.message("repairing \(settings.out): every tile is checked against its stored checksums")
      return KernelLayout(path: partialPath, regions: layout.regions, checksumsOffset: layout.checksumsOffset, tiles: layout.tiles, kernels: layout.kernels)
    }
    if settings.repair && !fm.fileExists(atPath: partialPath) {
      throw StorageError(settings.out, "nothing to repair: no such file")
    }
    if fm.fileExists(atPath: partialPath) {
      if let layout = existingLayout(partialPath, plan: plan, inputs: inputs, fingerprint: fingerprint, tiled: Self.tiles(settings, plan: plan)) {
        return layout
      }
      reporter.message("discarding \(partialPath): laid out for another job")
    }
    dropRecords()
    try checkFreeSpace(plan: plan, kernels: inputs.outputs.count)
    return try createPartial(plan: plan, inputs: inputs, fingerprint: fingerprint)
  }

  /// Refuses to start when the kernel file does not fit on its filesystem, before any compute
  /// (the file is then reserved whole, so the build cannot run out of space midway).
  func checkFreeSpace(plan: TilePlan, kernels: Int) throws {
    let tile = Self.tiles(settings, plan: plan) ? plan.tileSize : nil
    let (n, m, b) = (plan.trainCount, plan.testCount, settings.dtype.byteCount)
    let fileBytes = ((plan.includesTrain ? KernelRegion.storedBytes(rows: n, cols: n, bytesPerValue: b, tile: tile) : 0)
                     + KernelRegion.storedBytes(rows: m, cols: n, bytesPerValue: b, tile: tile)) * Double(kernels) + Double(n + m) * 8
    let outFolder = URL(fileURLWithPath: settings.out).deletingLastPathComponent().path
    var s = statvfs()
    guard statvfs(outFolder, &s) == 0 else { return }
    let free = Double(s.f_bavail) * Double(s.f_frsize)
    func size(_ b: Double) -> String { b >= Double(1 << 30) ? String(format: "%.1f GiB", b / Double(1 << 30)) : String(format: "%.1f MiB", b / Double(1 << 20)) }
    let need = fileBytes * 1.02 + Double(1 << 20)
    guard need <= free else {
      throw StorageError(settings.out, "needs about \(size(need)) free for the kernel file but its filesystem has \(size(free)); free space or choose another --out")
    }
  }

  // MARK: run

  /// Runs the build on this rank. Every rank returns the same outcome or throws.
  public func run() throws -> BuildOutcome {
    let start = Date()
    let isRoot = comm.rank == 0
    let reporter: EventSink = isRoot ? events : SilentSink()

    // 1. Inputs.
    var inputs = try comm.collectively { try loadInputs() }
    if let whitening = inputs.statistics?.whitening, comm.size > 1 {
      // Every rank fitted W (LAPACK inside): they must hold the same bits, or their tiles would
      // disagree (ranks on CPUs of other kinds may not).
      let mine = Array(preprocessChecksum(mean: inputs.statistics!.mean, std: whitening).utf8)
      let all = try comm.allGather(mine)
      try comm.collectively {
        guard all.allSatisfy({ $0 == all[0] }) else {
          throw BuildError("the ranks fitted different zca whitening matrices (hosts with CPUs of different kinds or other BLAS libraries give LAPACK's eigenvectors other last bits): run the build on nodes of one kind")
        }
      }
    }
    let n = inputs.trainRows, m = inputs.testRows
    var jobPrint = fingerprint(trainValues: inputs.trainValuesChecksum, trainRows: n, cols: inputs.cols,
                               testValues: inputs.testValuesChecksum, testRows: m, spec: inputs.spec,
                               dtype: settings.dtype, tileSize: settings.tileSize)
    if settings.against != nil || settings.kernels != nil {
      // Another job than the full build of the same data: its own checkpoints.
      jobPrint = foldedFingerprint(jobPrint, againstFingerprint: settings.against?.fingerprint, kernels: inputs.outputs.map(\.name))
    }
    let plan = TilePlan(trainCount: n, testCount: m, tileSize: settings.tileSize, includesTrain: settings.against == nil)
    let hosts = try comm.allGather(Array(comm.processorName.utf8)).map { String(decoding: $0, as: UTF8.self) }
    reporter.record("start", ["ranks": .int(comm.size), "hosts": .strings(hosts), "train": .int(n), "test": .int(m),
                              "tiles": .int(plan.count), "tile": .int(settings.tileSize), "fingerprint": .string(jobPrint),
                              "kernel": .string(inputs.spec.json)])
    if comm.size > 1 {
      let distinct = Array(Set(hosts)).sorted()
      reporter.message("\(comm.size) ranks on \(distinct.count) host(s): \(distinct.map { h in "\(h) (\(hosts.filter { $0 == h }.count))" }.joined(separator: ", "))")
    }

    // 2. Checkpoint folder and kernel file.
    let folder = settings.checkpointFolder
    let manifest = CheckpointManifest(fingerprint: jobPrint, tile: settings.tileSize, trainCount: n, testCount: m,
                                      dtype: settings.dtype.rawValue, kernel: inputs.spec.json)
    // Rank 0 holds the output's and the checkpoint folder's locks until the build ends.
    var locks: [RunLock] = []
    defer { locks.reversed().forEach { $0.release() } }
    let layoutBytes = try comm.collectively { () -> [UInt8] in
      guard isRoot else { return [] }
      let fm = FileManager.default
      for path in [settings.out, folder] {
        let parent = URL(fileURLWithPath: path).deletingLastPathComponent().path
        do { try fm.createDirectory(atPath: parent, withIntermediateDirectories: true) }
        catch { throw StorageError(path, "cannot create folder \(parent): \(error.localizedDescription)") }
      }
      locks.append(try RunLock.acquire(settings.out, what: "the output"))
      locks.append(try RunLock.acquire(folder, what: "the checkpoint folder"))
      let folderExisted = fm.fileExists(atPath: folder)
      do {
        try claimCheckpointFolder(manifest, reporter: reporter)
        let layout = try preparePartial(plan: plan, inputs: inputs, fingerprint: jobPrint, reporter: reporter)
        return Array(try JSONEncoder().encode(layout))
      } catch {
        // Refused before any tile (no space, a bad layout): a folder this run made goes again.
        if !folderExisted {
          try? fm.removeItem(atPath: folder + "/" + CheckpointManifest.fileName)
          rmdir(folder)
        }
        throw error
      }
    }
    let layout = try JSONDecoder().decode(KernelLayout.self, from: Data(try comm.broadcast(layoutBytes, root: 0)))
    let file = try comm.collectively { try RegionFile(path: layout.path, writable: true) }
    let regions = Dictionary(uniqueKeysWithValues: layout.regions.map { ($0.name, $0) })

    // 3. Check what an earlier run recorded against the file's bytes, a share per rank.
    var done = [Double](repeating: 0, count: plan.count)
    let rejected = try comm.collectively { () -> Int in
      let existing = Set(Self.recordedTiles(in: folder))
      var bad = 0
      for index in existing.sorted() where index < plan.count && index % comm.size == comm.rank {
        let problem: String?
        switch TileRecord.read(folder: folder, index: index, fingerprint: jobPrint, kernels: layout.kernels.count) {
        case .success(let record):
          problem = try Self.damage(of: plan.tile(index), record: record, file: file, regions: regions, kernels: layout.kernels)
        case .failure(let p):
          problem = "record \(p)"
        }
        if let problem {
          bad += 1
          events.warning("\(TileRecord.path(folder: folder, index: index)): \(problem); recomputing \(plan.tile(index))")
          unlink(TileRecord.path(folder: folder, index: index))
        } else {
          done[index] = 1
        }
      }
      return bad
    }
    try comm.allReduce(&done, .max)
    var badCount = [Double(rejected)]
    try comm.allReduce(&badCount, .sum)
    let reused = Int(done.reduce(0, +))
    let remaining = (0..<plan.count).filter { done[$0] == 0 }
    if reused > 0 || badCount[0] > 0 {
      reporter.message("resuming: \(reused) of \(plan.count) tiles reused, already in \(layout.path)" + (badCount[0] > 0 ? ", \(Int(badCount[0])) damaged tiles to recompute" : ""))
    }
    reporter.record("resume", ["reused": .int(reused), "rejected": .int(Int(badCount[0])), "remaining": .int(remaining.count)])

    // 4. Compute this rank's share, each tile written once, straight to its place.
    let assignment = TileAssignment(plan: plan, tiles: remaining, ranks: comm.size)
    let entriesTotal = plan.totalCost
    var entriesDone = 0.0
    for i in 0..<plan.count where done[i] == 1 { entriesDone += plan.cost(plan.tile(i)) }
    let countTiles = { Self.recordedTiles(in: folder).count }
    let watcher = comm.size > 1 && comm is MPICommunicator
      ? StopWatcher(folder: folder, rank: comm.rank, hosts: hosts, events: events, countTiles: countTiles, totalTiles: plan.count) : nil
    defer { watcher?.stop() }
    let interrupts = comm.size == 1
      ? InterruptWatcher(folder: folder, partial: layout.path, events: events, countTiles: countTiles, totalTiles: plan.count) : nil
    defer { interrupts?.stop() }
    // This rank keeps the samples of the blocks of rows its tiles touch, and nothing else.
    let mine = assignment.tiles(of: comm.rank)
    let held = TileAssignment.blocks(of: mine, plan: plan)
    let rows = (train: RowBlocks(blocks: held.train, tileSize: plan.tileSize, total: n),
                test: RowBlocks(blocks: held.test, tileSize: plan.tileSize, total: m))
    reporter.record("rows_held", ["train": .int(rows.train.count), "test": .int(rows.test.count)])
    do {
      let packed = try inputs.heldRows(rows)
      inputs.releaseSamples()
      try computeTiles(kernel: inputs.kernel, mine, plan: plan, rows: rows, held: packed,
                       outputs: inputs.outputs, fingerprint: jobPrint,
                       file: file, regions: regions, reporter: reporter, entriesTotal: entriesTotal, baseline: entriesDone)
      // Every rank's bytes on disk (each host syncs its own writes) before the file is named.
      try file.sync()
    } catch {
      // Other ranks are mid-computation and cannot be told in order: stop the whole job.
      events.fatal("rank \(comm.rank) (\(comm.processorName)): \(error)")
      comm.abort(code: 1)
    }

    // 5. Finish: the tile checksums, then the file under its name.
    try comm.barrier()
    try comm.collectively {
      guard isRoot else { return }
      reporter.progress(.build(tilesDone: plan.count, tilesTotal: plan.count, entriesDone: entriesTotal, entriesTotal: entriesTotal,
                               baselineEntries: entriesDone), force: true)
      reporter.finishProgress()
      reporter.record("finish_start", [:])
      try finish(layout: layout, file: file, fingerprint: jobPrint)
      reporter.record("finish_done", ["out": .string(settings.out)])
      if !settings.keepCheckpoints { try? FileManager.default.removeItem(atPath: folder) }
    }
    let outcome = BuildOutcome(trainCount: n, testCount: m, tiles: plan.count, reusedTiles: reused,
                               rejectedTiles: Int(badCount[0]), seconds: Date().timeIntervalSince(start), fingerprint: jobPrint)
    reporter.record("done", ["seconds": .double(outcome.seconds), "reused": .int(reused), "tiles": .int(plan.count)])
    return outcome
  }

  /// The tiles recorded in the checkpoint folder (by their record files' names).
  static func recordedTiles(in folder: String) -> [Int] {
    ((try? FileManager.default.contentsOfDirectory(atPath: folder)) ?? []).compactMap(TileRecord.index)
  }

  /// Why a recorded tile's bytes cannot be kept (nil: they match their record): each kernel's
  /// upper tile against its checksum, and a training tile's mirror against the upper tile.
  static func damage(of tile: Tile, record: TileRecord, file: RegionFile, regions: [String: KernelRegion], kernels: [String]) throws -> String? {
    let (r, c) = (tile.rows.count, tile.cols.count)
    for (k, kernel) in kernels.enumerated() {
      let name = tile.dataset(kernel)
      guard let region = regions[name] else { return "no region \(name)" }
      let upper = try file.read(region, rowStart: tile.rows.lowerBound, colStart: tile.cols.lowerBound, rows: r, cols: c)
      guard upper.checksum == record.checksums[k] else { return "\(name) does not match the recorded checksum" }
      if let (i, j) = try file.firstDirtyPadding(of: tile, in: region) { return "the padding of \(name)'s tile at (\(i), \(j)) is not zeros" }
      if tile.isMirrored {
        let mirror = try file.read(region, rowStart: tile.cols.lowerBound, colStart: tile.rows.lowerBound, rows: c, cols: r)
        guard mirror.transposed(rows: c, cols: r) == upper else { return "the mirrored block of \(name) differs" }
      }
    }
    return nil
  }

  /// Rank 0, once every tile is recorded: the checksums into `/tiles/checksums`, the file
  /// synced and renamed over the output.
  func finish(layout: KernelLayout, file: RegionFile, fingerprint: String) throws {
    let k = layout.kernels.count
    var bytes = [UInt8]()
    bytes.reserveCapacity(layout.tiles * k * 8)
    for index in 0..<layout.tiles {
      switch TileRecord.read(folder: settings.checkpointFolder, index: index, fingerprint: fingerprint, kernels: k) {
      case .success(let record):
        for sum in record.checksums {
          for word in [UInt32(truncatingIfNeeded: sum >> 32), UInt32(truncatingIfNeeded: sum)] {
            withUnsafeBytes(of: word.littleEndian) { bytes.append(contentsOf: $0) }
          }
        }
      case .failure(let problem):
        throw StorageError(TileRecord.path(folder: settings.checkpointFolder, index: index), "tile record \(problem) at the end of the build; rerun to recompute it")
      }
    }
    try file.write(bytes: bytes, at: layout.checksumsOffset, what: KernelFileLayout.tileChecksums)
    try file.sync()
    guard rename(layout.path, settings.out) == 0 else {
      throw StorageError(settings.out, "cannot move the finished file into place: \(String(cString: strerror(errno)))")
    }
    try? fsyncPath(URL(fileURLWithPath: settings.out).deletingLastPathComponent().path)
    KernelFileWriter.removeStalePartials(of: settings.out)
  }

  /// The absolute path of `p` as the file system resolves it (`..` after a symbolic link
  /// included); lexically against the working directory when it does not exist. An HDF5
  /// `file.h5:/dataset` keeps its dataset part.
  func absolutePath(_ p: String) -> String {
    for ext in [".h5:", ".hdf5:", ".he5:"] {
      if let r = p.range(of: ext) {
        return absolutePath(String(p[..<r.lowerBound]) + ext.dropLast()) + ":" + String(p[r.upperBound...])
      }
    }
    if let resolved = realpath(p, nil) {
      defer { free(resolved) }
      return String(cString: resolved)
    }
    let base = p.hasPrefix("/") ? p : FileManager.default.currentDirectoryPath + "/" + p
    return URL(fileURLWithPath: base).standardized.path
  }

  /// A NaN or infinite kernel entry is an error naming the first one and its cause, never a
  /// kernel file: the inputs or the network's parameters overflow (or, in float32 storage, an
  /// entry beyond float32's range).
  static func checkFinite(_ stored: [StoredValues], names: [String], tile: Tile, dtype: ScalarType,
                          weights: EmpiricalWeights? = nil) throws {
    for (k, values) in stored.enumerated() where !values.allFinite {
      // In the stored precision (no widened copy); searched only when a value is not finite.
      let bad: Int?, value: Double
      switch values {
      case .float32(let v): bad = v.firstIndex { !$0.isFinite }; value = bad.map { Double(v[$0]) } ?? 0
      case .float64(let v): bad = v.firstIndex { !$0.isFinite }; value = bad.map { v[$0] } ?? 0
      }
      guard let bad else { continue }
      let (r, c) = (bad / tile.cols.count, bad % tile.cols.count)
      let i = tile.rows.lowerBound + r, j = tile.cols.lowerBound + c
      let which = tile.block == .train ? "K(train \(i), train \(j))" : "K(test \(i), train \(j))"
      throw BuildError("\(names[k]) entry \(which) is \(value.isNaN ? "NaN" : "infinite")" +
                       ": the data or the network's parameters (W_std, b_std" +
                       (weights.flatMap { if case .file(let p) = $0 { ", the weights in \(p)" } else { nil } } ?? "") + ") overflow float64" +
                       (dtype == .float32 ? " or the entry exceeds float32's range (try --dtype float64)" : "") +
                       "; no kernel file was written")
    }
  }

  /// Computes and checkpoints `mine`, on `settings.threads` threads (each with its own
  /// scratch; thread t takes every t-th tile of the list). The math runs in parallel; the
  /// checkpoints are written by one writer thread.
  ///
  /// `held` has only the samples of `rows` (packed, `RowBlocks`); they are prepared here (and
  /// dropped: the prepared features are what the tiles read), and every tile is computed at its
  /// packed rows.
  func computeTiles<Kernel: GramKernel>(kernel net: Kernel, _ mine: [Int], plan: TilePlan,
                                        rows: (train: RowBlocks, test: RowBlocks), held: HeldRows,
                                        outputs: [(name: String, index: Int)], fingerprint: String,
                                        file: RegionFile, regions: [String: KernelRegion],
                                        reporter: EventSink, entriesTotal: Double, baseline: Double) throws {
    let train = net.prepare(held.train, threads: settings.threads)
    let test = held.test.map { net.prepare($0, threads: settings.threads) }
    held.release()
    let folder = settings.checkpointFolder
    // In index order (row of tiles by row of tiles): bands of rows are finished one after the
    // other, and each goes to disk, sequentially, as soon as this rank has written its part.
    let mine = mine.sorted()
    let names = outputs.map(\.name)
    nonisolated(unsafe) var bands = BandWriteback(plan: plan, tiles: mine, regions: regions, names: names)
    let threads = max(1, min(settings.threads, mine.count))
    let lock = NSLock()
    nonisolated(unsafe) var failure: Error? = nil
    // Tiles are written by writer threads while the next tiles compute: a tile's write
    // (conversion, checksums, the bytes, its record) overlaps the next tile's compute. Through
    // the page cache one writer (the writes take turns anyway, `inTurn`); written directly, two,
    // tiles taken in turn, so that one's conversion overlaps the other's disk write and the disk
    // has two writes in flight (measured here: 1.1 GB/s for one writer, 2.2 GB/s for two). At
    // most `threads + lanes` computed tiles are queued or being written, and each compute thread
    // holds at most one more while it waits for a slot: 2·threads + 2 tiles' values at most.
    let direct = regions.values.allSatisfy(file.writesDirectly)
    let lanes = direct ? 2 : 1
    let writers = (0..<lanes).map { DispatchQueue(label: "ntkgram.tile-writer-\($0)") }
    let scratches = (0..<lanes).map { _ in WriteScratch() }
    let slots = DispatchSemaphore(value: threads + lanes)
    let writes = DispatchGroup()
    // The driver and reporter are used by the writer thread only (progress) or read-only.
    // Progress lists the checkpoint folder (every rank's tiles), at most twice a second.
    nonisolated(unsafe) var lastReport = 0.0
    @Sendable func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
    nonisolated(unsafe) let driver = self
    nonisolated(unsafe) let progress = reporter
    let work: @Sendable (Int) -> Void = { thread in
      var computer = TileComputer(kernel: net, train: train, test: test)
      for (position, index) in mine.enumerated() where position % threads == thread {
        if lock.withLock({ failure != nil }) { return }
        let tile = plan.tile(index)
        // The pages this tile's write will fill are brought in here, on this rank's compute
        // thread, while another rank may hold the file for its write (`RegionFile.prepare`).
        Self.prepare(tile, names: names, file: file, regions: regions)
        let values = computer.compute(tile, rows: (tile.block == .train ? rows.train : rows.test).packed(tile.rows),
                                      cols: rows.train.packed(tile.cols))
        slots.wait()
        let lane = position % lanes
        let scratch = scratches[lane]
        writers[lane].async(group: writes) {
          defer { slots.signal() }
          if lock.withLock({ failure != nil }) { return }
          do {
            let stored = outputs.map { StoredValues(values.values($0.index), as: driver.settings.dtype) }
            try Self.checkFinite(stored, names: names, tile: tile, dtype: driver.settings.dtype, weights: driver.settings.empirical)
            // Direct writes hold no page-cache lock to take turns for.
            if direct {
              try Self.write(tile, stored, names: names, file: file, regions: regions, scratch: scratch)
            } else {
              try file.inTurn { try Self.write(tile, stored, names: names, file: file, regions: regions, scratch: scratch) }
            }
            lock.withLock { bands.written(tile, file: file) }
            try TileRecord(index: index, checksums: stored.map(\.checksum)).write(folder: folder, fingerprint: fingerprint)
          } catch {
            lock.withLock { if failure == nil { failure = error } }
            return
          }
          let due = driver.comm.rank == 0 && lock.withLock { () -> Bool in
            guard now() - lastReport >= 0.5 else { return false }
            lastReport = now()
            return true
          }
          if due {
            driver.reportFromFolder(plan: plan, reporter: progress, entriesTotal: entriesTotal, baseline: baseline)
          }
        }
      }
    }
    if threads == 1 { work(0) } else { DispatchQueue.concurrentPerform(iterations: threads, execute: work) }
    writes.wait()
    if let failure { throw failure }
    if comm.rank == 0 { reportFromFolder(plan: plan, reporter: reporter, entriesTotal: entriesTotal, baseline: baseline) }
  }

  /// Rank 0's view of the whole job: the tiles checkpointed so far by every rank.
  func reportFromFolder(plan: TilePlan, reporter: EventSink, entriesTotal: Double, baseline: Double) {
    var tiles = 0, entries = 0.0
    for index in Self.recordedTiles(in: settings.checkpointFolder) where index < plan.count {
      tiles += 1
      entries += plan.cost(plan.tile(index))
    }
    reporter.progress(.build(tilesDone: tiles, tilesTotal: plan.count, entriesDone: entries, entriesTotal: entriesTotal,
                             baselineEntries: baseline), force: false)
  }

  /// Brings the pages a tile's write will touch into the page cache (`RegionFile.prepare`).
  static func prepare(_ tile: Tile, names: [String], file: RegionFile, regions: [String: KernelRegion]) {
    let (r, c) = (tile.rows.count, tile.cols.count)
    for kernel in names {
      let name = tile.dataset(kernel)
      guard let region = regions[name] else { continue }
      file.prepare(region, rowStart: tile.rows.lowerBound, colStart: tile.cols.lowerBound, rows: r, cols: c)
      if tile.isMirrored {
        file.prepare(region, rowStart: tile.cols.lowerBound, colStart: tile.rows.lowerBound, rows: c, cols: r)
      }
    }
  }

  /// Writes a tile's values to their places: the upper tile, and for an off-diagonal training
  /// tile its transpose below the diagonal.
  static func write(_ tile: Tile, _ stored: [StoredValues], names: [String], file: RegionFile, regions: [String: KernelRegion],
                    scratch: WriteScratch) throws {
    let (r, c) = (tile.rows.count, tile.cols.count)
    for (kernel, values) in zip(names, stored) {
      let name = tile.dataset(kernel)
      guard let region = regions[name] else { throw StorageError(file.path, "no region \(name)") }
      try file.write(values, to: region, rowStart: tile.rows.lowerBound, colStart: tile.cols.lowerBound, rows: r, cols: c, scratch: scratch)
      if tile.isMirrored {
        try file.writeTransposed(values, to: region, rowStart: tile.cols.lowerBound, colStart: tile.rows.lowerBound, rows: r, cols: c,
                                 scratch: scratch)
      }
    }
  }
}

extension RegionFile {
  /// The corner of the first block `tile` is stored in (its own, then its mirror's below the
  /// diagonal) whose chunk padding in `region` is not all zeros; nil when none is (always, for
  /// a contiguous region).
  func firstDirtyPadding(of tile: Tile, in region: KernelRegion) throws -> (row: Int, col: Int)? {
    let corners = [(tile.rows.lowerBound, tile.cols.lowerBound)] + (tile.isMirrored ? [(tile.cols.lowerBound, tile.rows.lowerBound)] : [])
    return try corners.first { try !paddingIsZero(region, row: $0.0, col: $0.1) }
  }
}

extension Tile {
  /// The dataset of `kernel` this tile is stored in (`/train/…` or `/test/…`).
  func dataset(_ kernel: String) -> String { block == .train ? KernelFileLayout.train(kernel) : KernelFileLayout.test(kernel) }
  /// Stored transposed below the diagonal too (an off-diagonal training tile).
  var isMirrored: Bool { block == .train && !isDiagonal }
}

/// Which bands of rows (one tile high) this rank still has to write, per block: when its last
/// contribution to a band is written, the band's rows are handed to the disk
/// (`RegionFile.startWriteback`). Used from the writer thread only.
struct BandWriteback {
  let tileSize: Int
  let regions: [String: KernelRegion]
  let names: [String]
  var pending: [TileBlock: [Int: Int]] = [:]

  init(plan: TilePlan, tiles: [Int], regions: [String: KernelRegion], names: [String]) {
    tileSize = plan.tileSize
    self.regions = regions
    self.names = names
    for index in tiles {
      let t = plan.tile(index)
      for band in Self.bands(t, tileSize: tileSize) { pending[t.block, default: [:]][band, default: 0] += 1 }
    }
  }

  /// The bands a tile writes to: its rows, and for an off-diagonal training tile its mirror's.
  static func bands(_ t: Tile, tileSize: Int) -> [Int] {
    let rows = t.rows.lowerBound / tileSize
    return t.isMirrored ? [rows, t.cols.lowerBound / tileSize] : [rows]
  }

  mutating func written(_ t: Tile, file: RegionFile) {
    for band in Self.bands(t, tileSize: tileSize) {
      guard let left = pending[t.block]?[band] else { continue }
      pending[t.block]![band] = left - 1
      guard left == 1 else { continue }
      for kernel in names {
        let name = t.dataset(kernel)
        guard let region = regions[name] else { continue }
        let start = band * tileSize
        file.startWriteback(region, rowStart: start, rows: min(tileSize, region.rows - start))
      }
    }
  }
}
