import ArgumentParser
import Foundation
import GramAnalysis
import GramJobs

struct PlanCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "plan",
    abstract: "Size a build without computing anything: tiles, work and memory per rank, disk, estimated wall time.")

  @Argument(help: "A job file (its data files are read for their shapes only).") var job: String?
  @Option(parsing: .unconditional, help: "Number of ranks.") var ranks: Int
  @Option(parsing: .unconditional, help: "Threads per rank (build --threads).") var threads: Int = 1
  @Option(name: .customLong("entries-per-second"), parsing: .unconditional, help: "Measured kernel entries per second of one rank (default: from the kernel's declared cost per entry; docs/performance.md).", transform: decimal)
  var entriesPerSecond: Double?
  @Option(name: .customLong("train-count"), parsing: .unconditional, help: "Training samples (instead of reading the job's data).") var trainCount: Int?
  @Option(name: .customLong("test-count"), parsing: .unconditional, help: "Test samples.") var testCount: Int?
  @Option(parsing: .unconditional, help: "Features per sample (flat rows).") var features: Int?
  @Option(name: .customLong("input-shape"), help: "Shape H,W,C of one sample (instead of the data's).") var inputShape: String?
  @Option(parsing: .unconditional, help: "Tile edge (default: the job's, or 1024).") var tile: Int?
  @Option(help: "float32 or float64 (default: the job's, or float32).") var dtype: String?
  @Option(help: "The kernels the build writes: ntk, nngp or ntk,nngp (default: the job's, or every output).") var kernels: String?
  @Option(help: "The build's --layout: auto, contiguous or tiles (default: the job's, or auto).") var layout: String?
  @OptionGroup var kernel: KernelOptions
  @Option(name: .customLong("memory-budget"), help: "The solve's --memory-budget per rank, for its line (default 4GiB).") var memoryBudget: String = "4GiB"
  @Option(parsing: .unconditional, help: "The solve's preconditioner rank, for its line.") var rank: Int = 1000
  @Option(help: "The solve's preconditioner, for its line.") var preconditioner: String = "rpcholesky"
  @Option(parsing: .unconditional, help: "Right-hand sides of the solve (classes), for its line.") var columns: Int = 10

  func run() throws {
    var f = PlanFlags()
    f.ranks = ranks
    f.threads = threads
    f.entriesPerSecond = entriesPerSecond
    f.trainCount = trainCount
    f.testCount = testCount
    f.features = features
    f.inputShape = inputShape
    f.tile = tile
    f.dtype = dtype
    f.kernels = kernels
    f.layout = layout
    f.kernel = kernel.flags
    let report = try PlanReport(job: job, flags: f)
    for line in report.lines { print(line) }
    // The regression over the train kernel this build writes: what `ntkgram solve` holds per rank.
    guard let kind = SolveSettings.PreconditionerKind(rawValue: preconditioner) else {
      throw CommandError("unknown preconditioner '\(preconditioner)' (valid: rpcholesky, nystrom, jacobi, none)")
    }
    guard rank >= 1, columns >= 1 else { throw CommandError("--rank and --columns must be at least 1") }
    let budget = try parseBytes(memoryBudget)
    let p = report.plan
    guard p.trainCount > 0 else { return }
    let m = SolveMemory(n: p.trainCount, tile: p.tileSize, bytesPerValue: p.bytesPerValue, ranks: ranks, budget: budget,
                        preconditioner: kind, rank: rank, columns: columns, tiled: p.tiled)
    func size(_ b: Double) -> String { b >= Double(1 << 30) ? String(format: "%.1f GiB", b / Double(1 << 30)) : String(format: "%.1f MiB", b / Double(1 << 20)) }
    let streamed = m.share > m.tiles ? String(format: ", %.0f%% read from the file on every pass", 100 * (1 - m.tiles / m.share)) : ""
    let mapped = m.mappedBytes()
    print("solve (\(kind.rawValue)\(kind == .rpcholesky || kind == .nystrom ? " rank \(rank)" : ""), \(columns) columns, --memory-budget \(memoryBudget)): " +
          "memory per rank \(size(m.total)) (process \(size(SolveMemory.baselineBytes)), tiles kept \(size(m.tiles)) of \(size(m.share))\(streamed), " +
          "preconditioner \(size(m.preconditioner)), vectors \(size(m.vectors))); the kept tiles are mapped from the kernel file " +
          "(page cache, shared by a host's ranks), and the pages mapped around them count in RSS too: peak RSS per rank about " +
          "\(size(m.total - m.tiles + mapped)) (mapped pages \(size(mapped)))")
  }
}
