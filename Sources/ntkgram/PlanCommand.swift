import ArgumentParser
import Foundation
import GramJobs

struct PlanCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "plan",
    abstract: "Size a build without computing anything: tiles, work and memory per rank, disk, estimated wall time.")

  @Argument(help: "A job file (its data files are read for their shapes only).") var job: String?
  @Option(help: "Number of ranks.") var ranks: Int
  @Option(help: "Threads per rank (build --threads).") var threads: Int = 1
  @Option(name: .customLong("entries-per-second"), help: "Measured kernel entries per second of one rank (default: from the kernel's declared cost per entry; docs/performance.md).")
  var entriesPerSecond: Double?
  @Option(name: .customLong("train-count"), help: "Training samples (instead of reading the job's data).") var trainCount: Int?
  @Option(name: .customLong("test-count"), help: "Test samples.") var testCount: Int?
  @Option(help: "Features per sample (flat rows).") var features: Int?
  @Option(name: .customLong("input-shape"), help: "Shape H,W,C of one sample (instead of the data's).") var inputShape: String?
  @Option(help: "Tile edge (default: the job's, or 1024).") var tile: Int?
  @Option(help: "float32 or float64 (default: the job's, or float32).") var dtype: String?
  @Option(help: "The kernels the build writes: ntk, nngp or ntk,nngp (default: the job's, or every output).") var kernels: String?
  @OptionGroup var kernel: KernelOptions

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
    f.kernel = kernel.flags
    for line in try PlanReport(job: job, flags: f).lines { print(line) }
  }
}
