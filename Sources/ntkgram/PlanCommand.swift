import ArgumentParser
import Foundation
import GramBuild
import GramStorage

struct PlanCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "plan",
    abstract: "Size a build without computing anything: tiles, work and memory per rank, disk, estimated wall time.")

  @Argument(help: "A job file (its data files are read for their shapes only).") var job: String?
  @Option(help: "Number of ranks.") var ranks: Int
  @Option(name: .customLong("entries-per-second"), help: "Measured kernel entries per second of one rank (default: 7.3e6, measured here: see docs/performance.md).")
  var entriesPerSecond: Double = 7.3e6
  @Option(name: .customLong("train-count"), help: "Training samples (instead of reading the job's data).") var trainCount: Int?
  @Option(name: .customLong("test-count"), help: "Test samples.") var testCount: Int?
  @Option(help: "Features per sample.") var features: Int?
  @Option(help: "Tile edge (default: the job's, or 1024).") var tile: Int?
  @Option(help: "float32 or float64 (default: the job's, or float32).") var dtype: String?
  @Option(help: "Network depth (default: the job's, or 3).") var depth: Int?

  func run() throws {
    guard ranks >= 1 else { throw CommandError("--ranks must be at least 1") }
    guard entriesPerSecond > 0 else { throw CommandError("--entries-per-second must be positive") }
    let jobFile = try job.map { try JobFile(path: $0) }
    var n = trainCount, m = testCount, d = features
    if n == nil || d == nil, let train = jobFile?.string("train") {
      let (rows, cols) = try DatasetReader.shape(train, labelColumn: jobFile?.int("train_label_column"))
      n = n ?? min(rows, jobFile?.int("train_limit") ?? rows)
      d = d ?? cols
    }
    if m == nil, let test = jobFile?.string("test") {
      let (rows, _) = try DatasetReader.shape(test, labelColumn: jobFile?.int("test_label_column"))
      m = min(rows, jobFile?.int("test_limit") ?? rows)
    }
    guard let n, n >= 1, let d, d >= 1 else { throw CommandError("give a job file, or --train-count and --features") }
    let tileSize = tile ?? jobFile?.int("tile") ?? 1024
    guard tileSize >= 1 else { throw CommandError("--tile must be at least 1") }
    guard let type = ScalarType(rawValue: dtype ?? jobFile?.string("dtype") ?? "float32") else { throw CommandError("unknown dtype") }
    let plan = BuildPlan(trainCount: n, testCount: m ?? 0, features: d, tileSize: tileSize, ranks: ranks,
                         depth: depth ?? jobFile?.int("depth") ?? 3, dtype: type, entriesPerSecondPerRank: entriesPerSecond)
    let work = plan.assignment.workByRank, counts = plan.assignment.countByRank
    func size(_ bytes: Double) -> String {
      let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
      var v = bytes, u = 0
      while v >= 1024 && u < units.count - 1 { v /= 1024; u += 1 }
      return String(format: "%.1f %@", v, units[u])
    }
    func duration(_ s: Double) -> String {
      s < 120 ? String(format: "%.0f s", s) : s < 7200 ? String(format: "%.1f min", s / 60) : String(format: "%.1f h", s / 3600)
    }
    print("data: \(n) train × \(m ?? 0) test samples, \(d) features; tile \(tileSize), \(type.rawValue)")
    print("tiles: \(plan.tiles) (\(String(format: "%.4g", plan.totalEntries)) kernel entries, NTK + NNGP each)")
    print("ranks: \(ranks); tiles per rank \(counts.min()!)–\(counts.max()!); entries per rank \(String(format: "%.4g", work.min()!))–\(String(format: "%.4g", work.max()!)) (imbalance \(String(format: "%.2f", plan.assignment.imbalance * 100))%)")
    if ranks > plan.tiles { print("note: \(ranks - plan.tiles) ranks get no tile (more ranks than tiles)") }
    print("memory per rank: \(size(plan.memoryPerRank))")
    print("disk: checkpoints \(size(plan.checkpointBytes)), kernel file \(size(plan.kernelFileBytes)) (both until assembly ends)")
    print("estimated wall time: \(duration(plan.wallSeconds)) at \(String(format: "%.3g", entriesPerSecond)) entries/s per rank, plus assembly")
  }
}
