import Foundation
import GramData
import GramEvents
import GramKernels
import GramMicroKernels
import GramNetwork
import GramStorage
import GramTiling

/// Checks a kernel file against itself and against its recipe:
/// shapes and attributes, exact symmetry of `/train/*`, every tile against its stored
/// checksum, and a random sample of entries recomputed by the scalar reference kernel from
/// the data named in the file's attributes (or given anew), with the kernel rebuilt from the
/// file's own spec (`network`, `input_shape`, …), whatever the architecture.
public struct KernelVerifier {
  public var path: String
  public var samples: Int
  public var seed: UInt64
  /// Data paths replacing the recorded ones (files moved since the build).
  public var trainOverride: String?
  public var testOverride: String?

  public init(path: String, samples: Int = 100, seed: UInt64 = 1, trainOverride: String? = nil, testOverride: String? = nil) {
    self.path = path
    self.samples = samples
    self.seed = seed
    self.trainOverride = trainOverride
    self.testOverride = testOverride
  }

  /// A verification failure naming the tile or entry.
  public struct Mismatch: Error, CustomStringConvertible {
    public let description: String
  }

  public struct Report: Sendable {
    public var checks: [String] = []
  }

  private func fail(_ what: String) -> Mismatch { Mismatch(description: "\(path): \(what)") }

  /// Where data given anew (`--train`, `--test`) was read from, beside the recorded place: nothing
  /// when it is the recorded file (a relative path, `..`, a symbolic or hard link to it), "moved"
  /// only when nothing is at the recorded place any more, else both places.
  static func placeNote(_ given: String?, recorded: String) -> String {
    func split(_ p: String) -> (file: String, dataset: String) {
      guard let r = p.range(of: ":/") else { return (p, "") }
      return (String(p[..<r.lowerBound]), String(p[r.upperBound...]))
    }
    guard let given else { return "" }
    let (file, dataset) = split(recorded)
    if samePath(given, recorded), split(given).dataset == dataset { return "" }
    return FileManager.default.fileExists(atPath: file)
      ? " (read from \(given), not from the recorded \(recorded))"
      : " (moved: now at \(given))"
  }

  /// Runs every check; `events` gets the progress of the two long passes (every tile read,
  /// then the entries recomputed).
  public func run(events: EventSink = SilentSink()) throws -> Report {
    var report = Report()
    var passStart = Date()
    func step(_ what: String, _ done: Int, _ total: Int) {
      if done == 0 { passStart = Date() }
      events.progress(.steps(what, done: done, total: total, elapsed: Date().timeIntervalSince(passStart)), force: done == 0 || done == total)
      if done == total { events.finishProgress() }
    }
    let f = try H5File.open(path)
    func int(_ k: String) throws -> Int {
      guard case .int(let v)? = try f.attribute(k) else { throw fail("missing attribute \(k)") }
      return Int(v)
    }
    func string(_ k: String) throws -> String {
      guard case .string(let v)? = try f.attribute(k) else { throw fail("missing attribute \(k)") }
      return v
    }
    let n = try int("N"), m = try int("M"), tileSize = try int("tile")
    guard n > 0, m >= 0, tileSize > 0, n <= 1 << 31, m <= 1 << 31 else {
      throw fail("attributes N=\(n), M=\(m), tile=\(tileSize) are not the sizes of a kernel (damaged?)")
    }
    guard let dtype = ScalarType(rawValue: try string("dtype")) else { throw fail("attribute dtype is not float32 or float64") }
    let spec: KernelSpec
    let network: any GramKernel
    do {
      spec = try KernelSpec.read(from: f)
      network = try spec.makeKernel()
    } catch { throw fail("kernel spec attributes: \(error)") }
    // The spec attributes against the recorded identity, the statistics against their checksum.
    do {
      try KernelIdentity.checkTrainFingerprint(f, spec: spec)
      _ = try f.checkedPreprocessChecksum()
    } catch let e as StorageError { throw fail(e.message) }
    report.checks.append("the spec attributes give the recorded train_fingerprint")
    // A cross kernel built against a stored training kernel holds only /test/*; a build may
    // have written a subset of the kernel's outputs (`kernels`).
    let isCross = try f.attribute("against_fingerprint") != nil
    var names = network.outputNames
    if case .string(let list)? = try f.attribute("kernels") { names = list.split(separator: ",").map(String.init) }
    let outputIndex = try names.map { name -> Int in
      guard let k = network.outputNames.firstIndex(of: name) else { throw fail("attribute kernels names '\(name)', which this network does not produce") }
      return k
    }
    let plan = TilePlan(trainCount: n, testCount: m, tileSize: tileSize, includesTrain: !isCross)

    // Shapes and types.
    var datasets: [String: H5Dataset] = [:]
    for kernel in names {
      for (name, shape) in (isCross ? [] : [(KernelFileLayout.train(kernel), [n, n])]) + (m > 0 ? [(KernelFileLayout.test(kernel), [m, n])] : []) {
        guard f.exists(name) else { throw fail("no dataset \(name)") }
        let d = try f.dataset(name)
        guard d.shape == shape else { throw fail("\(name) has shape \(d.shape), attributes say \(shape)") }
        guard d.scalarType == dtype else { throw fail("\(name) is \(d.scalarType?.rawValue ?? "not float"), attributes say \(dtype.rawValue)") }
        datasets[name] = d
      }
    }
    guard f.exists(KernelFileLayout.tileChecksums) else { throw fail("no dataset \(KernelFileLayout.tileChecksums)") }
    let sums = try f.dataset(KernelFileLayout.tileChecksums)
    let stored: [UInt64]
    if sums.shape == [plan.count, names.count, 2] {
      // Format 2: high and low 32-bit words.
      let words = try sums.readAll(as: UInt32.self)
      stored = (0..<(plan.count * names.count)).map { UInt64(words[2 * $0]) << 32 | UInt64(words[2 * $0 + 1]) }
    } else if sums.shape == [plan.count, names.count] {
      stored = try sums.readAllUInt64()  // format 1
    } else {
      throw fail("\(KernelFileLayout.tileChecksums) has shape \(sums.shape), the plan has \(plan.count) tiles of \(names.count) kernels")
    }
    report.checks.append("shapes and attributes: N=\(n) M=\(m) dtype=\(dtype.rawValue) tile=\(tileSize), \(plan.count) tiles")

    // Tiled kernels: the padding of their edge chunks, which no value covers, read directly.
    var padded: [String: KernelRegion] = [:]
    for (name, d) in datasets { if let r = KernelRegion.of(d), r.isTiled { padded[name] = r } }
    let raw = padded.isEmpty ? nil : try RegionFile(path: path, writable: false)

    // Checksums and symmetry, tile by tile.
    for index in 0..<plan.count {
      step("tiles checked (checksums, symmetry)", index, plan.count)
      let tile = plan.tile(index)
      let (r, c) = (tile.rows.count, tile.cols.count)
      for (k, kernel) in names.enumerated() {
        let d = datasets[tile.dataset(kernel)]!
        let block = try d.readStored(start: [tile.rows.lowerBound, tile.cols.lowerBound], count: [r, c])
        guard block.checksum == stored[index * names.count + k] else {
          throw fail("\(tile): /\(tile.block.rawValue)/\(kernel) does not match its stored checksum")
        }
        if let region = padded[d.name], let raw, let (i, j) = try raw.firstDirtyPadding(of: tile, in: region) {
          throw fail("\(tile): the padding of the chunk of \(d.name) at (\(i), \(j)) is not zeros, as the build wrote it (changed since)")
        }
        guard tile.block == .train else { continue }
        let mirror = try d.readStored(start: [tile.cols.lowerBound, tile.rows.lowerBound], count: [c, r])
        guard mirror == block.transposed(rows: r, cols: c) else {
          throw fail("\(tile): /train/\(kernel) is not exactly symmetric")
        }
      }
    }
    step("tiles checked (checksums, symmetry)", plan.count, plan.count)
    // Labels: the stored ones (read once, compared with their source below) against their
    // recorded checksum (format 2).
    var storedLabels: [String: [Int64]] = [:]
    for split in ["train", "test"] where f.exists("/\(split)/labels") {
      storedLabels[split] = try f.dataset("/\(split)/labels").readAllInt64()
    }
    for split in ["train", "test"] {
      let name = "/\(split)/labels"
      guard let labels = storedLabels[split], case .string(let recorded)? = try f.attribute("\(split)_labels_checksum") else { continue }
      let now = hex(checksum64(labels))
      guard now == recorded else { throw fail("\(name) does not match its recorded checksum (\(now), recorded \(recorded)): the labels were modified after the build") }
      report.checks.append("\(name) matches its recorded checksum")
    }
    report.checks.append("all \(plan.count) tiles match their checksums" + (isCross ? " (a cross kernel: /test/* only)" : "; /train/* exactly symmetric"))

    // Recompute a random sample of entries from the data.
    guard samples > 0 else { return report }
    let preprocess = spec.preprocess
    let limit = { (k: String) throws -> Int? in let v = try int(k); return v > 0 ? v : nil }
    // Data that is no longer where the file says was moved (or deleted): say so, rather than
    // a reader's "no such file"; data found there but changed fails on its checksum below.
    func located(_ recorded: String, override: String?, flag: String, checksum: String) throws -> String {
      if let override { return override }
      let file = recorded.range(of: ":/").map { String(recorded[..<$0.lowerBound]) } ?? recorded
      guard FileManager.default.fileExists(atPath: file) else {
        throw fail("the data it was built from is no longer at \(recorded) (moved or deleted): give its new place with \(flag)" +
                   (checksum.isEmpty ? "" : "; its content must have checksum \(checksum)"))
      }
      return recorded
    }
    let recordedTrainChecksum: String = { if case .string(let s)? = try? f.attribute("train_data_checksum") { return s } else { return "" } }()
    let recordedTestChecksum: String = { if case .string(let s)? = try? f.attribute("test_data_checksum") { return s } else { return "" } }()
    /// The labels file recorded for a split, when it still exists (else the stored labels were
    /// checked against their checksum only).
    func labelsSource(_ split: String) -> String? {
      guard case .string(let p)? = try? f.attribute("\(split)_labels_source"), !p.isEmpty, FileManager.default.fileExists(atPath: p) else { return nil }
      return p
    }
    func labelColumn(_ split: String) -> Int? {
      guard case .int(let c)? = try? f.attribute("\(split)_label_column"), c >= 0 else { return nil }
      return Int(c)
    }
    let train = try loadSplit(DataSource(samples: located(string("train_source"), override: trainOverride, flag: "--train", checksum: recordedTrainChecksum),
                                         labels: labelsSource("train"), limit: limit("train_limit"), labelColumn: labelColumn("train"),
                                         augment: spec.augment), inputShape: spec.inputShape)
    let testSource = m > 0 ? try located(string("test_source"), override: testOverride, flag: "--test", checksum: recordedTestChecksum)
                           : (testOverride ?? "")
    let test = m > 0 ? try loadSplit(DataSource(samples: testSource, labels: labelsSource("test"), limit: limit("test_limit"),
                                                labelColumn: labelColumn("test"))) : nil
    // Labels read anew from their sources against the stored ones.
    for (split, loaded) in [("train", train.labels), ("test", test?.labels)] {
      guard let loaded, let stored = storedLabels[split] else { continue }
      guard loaded == stored else {
        throw fail("the \(split) labels now read from \((try? string("\(split)_labels_source")).flatMap { $0.isEmpty ? nil : $0 } ?? "the data file") differ from the labels stored at the build")
      }
      report.checks.append("\(split) labels read from their source match the stored ones")
    }
    // The training statistics the build stored (`standardize`), else computed from the train
    // data; stored ones must be those of the train data (a cross kernel copies its training
    // kernel's: recomputing with modified ones would agree with its wrong values).
    let trainStatistics: PreprocessStatistics?
    do {
      trainStatistics = try PreprocessStatistics.of(train.samples, isInteger: train.isInteger, for: preprocess,
                                                    zcaStrength: spec.zcaStrength ?? Preprocess.defaultZCAStrength)
    } catch let e as StorageError { throw fail(e.message) }
    var statistics = trainStatistics
    if f.exists(KernelFileLayout.preprocessMean) {
      do { statistics = try PreprocessStatistics.read(from: f, preprocess: preprocess, features: nil) }
      catch let e as StorageError { throw fail(e.message) }
      guard statistics?.mean.count == train.samples.cols else { throw fail("\(KernelFileLayout.preprocessMean) does not match the data's features") }
    }
    let a = preprocessed(train.samples, isInteger: train.isInteger, preprocess, statistics: statistics)
    let b = test.map { preprocessed($0.samples, isInteger: $0.isInteger, preprocess, statistics: statistics) }
    guard a.rows == n, (b?.rows ?? 0) == m else { throw fail("the data now has \(a.rows) train and \(b?.rows ?? 0) test rows, the file \(n) and \(m)") }
    // The data against what the kernel was built from: a moved file matches, a changed one does not.
    if case .string(let recorded)? = try f.attribute("train_data_checksum") {
      let now = hex(dataChecksum(train.samples))
      let source = try trainOverride ?? string("train_source")
      guard now == recorded else {
        throw fail("the training data \(source) differs from the data the kernel was built from (data checksum \(now), recorded \(recorded))")
      }
      report.checks.append("training data matches the recorded checksum \(recorded)" + Self.placeNote(trainOverride, recorded: try string("train_source")))
    }
    if f.exists(KernelFileLayout.preprocessMean) {
      do {
        try KernelIdentity.checkStatistics(statistics, recomputed: trainStatistics, path: path, data: try trainOverride ?? string("train_source"))
      } catch let e as StorageError { throw fail(e.message) }
      report.checks.append("\((statistics?.stored ?? []).map(\.name).joined(separator: " and ")) are the statistics of the training data" +
                           (preprocess == .zca ? " (the whitening within \(zcaTolerance) of its recomputation)" : ""))
    }
    if let test, !recordedTestChecksum.isEmpty {
      let now = hex(dataChecksum(test.samples))
      guard now == recordedTestChecksum else {
        throw fail("the test data \(testSource) differs from the data the kernel was built from (data checksum \(now), recorded \(recordedTestChecksum))")
      }
      report.checks.append("test data matches the recorded checksum \(recordedTestChecksum)" + Self.placeNote(testOverride, recorded: try string("test_source")))
    }
    // (Files of other releases may hash differently: only this release's are held to it.)
    if case .string(let recorded)? = try f.attribute("fingerprint"), !isCross, try f.attribute("tool_version") == .string(toolVersion) {
      // Builds with --kernels fold the kernel names into the fingerprint: either form matches.
      let plain = fingerprint(train: a, test: b, spec: spec, dtype: dtype, tileSize: tileSize)
      let names = ((try? string("kernels")) ?? "ntk,nngp").split(separator: ",").map(String.init)
      let folded = foldedFingerprint(plain, againstFingerprint: nil, kernels: names)
      guard recorded == plain || recorded == folded else {
        throw fail("the fingerprint \(recorded) does not match the data and spec (\(plain)): the test data \(test == nil ? "" : testSource + " ")or an attribute changed since the build")
      }
      report.checks.append("fingerprint \(recorded) matches the data, the spec, dtype and tile")
    }
    var rng = SplitMix64(seed: seed)
    // float32 storage rounds to ~6e-8; a float32 (or mixed) convolutional recursion is good to
    // ~1e-6 relative on the networks measured in docs/precision.md: 1e-4 leaves room for deeper
    // ones and still catches any wrong tile.
    let tolerance = spec.computePrecision != .float64 ? 1e-4 : dtype == .float32 ? 1e-6 : 1e-10
    guard a.cols == spec.inputShape.reduce(1, *) else {
      throw fail("the data now has \(a.cols) features per sample, the file's input_shape \(spec.inputShape)")
    }
    // The kernels' scale, from the first diagonal entries: the stored ones (their tiles' checksums
    // are verified above), recomputed for a cross kernel, which stores none.
    var diagonalScale = [Double](repeating: 0, count: names.count)
    for i in 0..<min(n, isCross ? 8 : 64) {
      if isCross {
        let x = Array(a.values[i * a.cols ..< (i + 1) * a.cols])
        let ref = network.referenceEntry(x, x)
        for (k, index) in outputIndex.enumerated() { diagonalScale[k] = max(diagonalScale[k], abs(ref[index])) }
      } else {
        for (k, kernel) in names.enumerated() {
          var v = [0.0]
          try v.withUnsafeMutableBufferPointer { try datasets[KernelFileLayout.train(kernel)]!.read(into: $0, start: [i, i], count: [1, 1]) }
          diagonalScale[k] = max(diagonalScale[k], abs(v[0]))
        }
      }
    }
    var worst = 0.0
    let recomputed = isCross && m == 0 ? 0 : samples
    for s in 0..<recomputed {
      step("entries recomputed", s, recomputed)
      let fromTest = m > 0 && (isCross || s % 4 == 3)
      let i = Int(rng.next() % UInt64(fromTest ? m : n)), j = Int(rng.next() % UInt64(n))
      let rowsMatrix = fromTest ? b! : a
      let x = Array(rowsMatrix.values[i * a.cols ..< (i + 1) * a.cols]), y = Array(a.values[j * a.cols ..< (j + 1) * a.cols])
      let ref = network.referenceEntry(x, y)
      let nx = x.reduce(0) { $0 + $1 * $1 }, ny = y.reduce(0) { $0 + $1 * $1 }
      let cosine = zip(x, y).reduce(0) { $0 + $1.0 * $1.1 } / max((nx * ny).squareRoot(), .leastNormalMagnitude)
      let pairTolerance = abs(cosine) > 1 - 1e-6 && x != y ? max(tolerance, 1e-6) : tolerance
      for (k, kernel) in names.enumerated() {
        let d = datasets[fromTest ? KernelFileLayout.test(kernel) : KernelFileLayout.train(kernel)]!
        var v = [0.0]
        try v.withUnsafeMutableBufferPointer { try d.read(into: $0, start: [i, j], count: [1, 1]) }
        let expected = ref[outputIndex[k]]
        guard v[0].isFinite else {
          throw fail("entry /\(fromTest ? "test" : "train")/\(kernel)[\(i), \(j)] is \(v[0].isNaN ? "NaN" : "infinite") (recomputed \(expected))")
        }
        let err = abs(v[0] - expected) / (abs(expected) + 0.01 * diagonalScale[k])
        worst = max(worst, err)
        guard err <= pairTolerance else {
          throw fail("entry /\(fromTest ? "test" : "train")/\(kernel)[\(i), \(j)] = \(v[0]), recomputed \(expected) (relative error \(err))")
        }
      }
    }
    step("entries recomputed", recomputed, recomputed)
    report.checks.append("\(samples) random entries recomputed by the scalar reference kernel: max relative error \(String(format: "%.2e", worst)) (tolerance \(tolerance))")
    return report
  }
}
