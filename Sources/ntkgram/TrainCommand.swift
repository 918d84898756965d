import ArgumentParser
import Foundation
import GramAnalysis
import GramBuild
import GramJobs
import GramStorage
import GramTraining

struct TrainCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "train",
    abstract: "Train the concrete network of an empirical kernel by full-batch gradient descent (the conventions of dynamics); runs under mpirun.",
    discussion: """
      The job file or flags give the data and the network as for build; the weights are drawn from
      --seed (default 0) or read from --params. The loss is ½·Σ(f − y)²/(N·C) and each step is
      θ ← θ − η·∇L, so step s is time s of `ntkgram dynamics --learning-rate η`. The output holds
      /times, /train/outputs and /test/outputs (times × rows × outputs), losses and accuracies,
      /initial_outputs (for dynamics --initial-outputs), /initial_params and the final /params
      (for build --params). See docs/finite-width.md.
      """)

  @Argument(help: "A job file (TOML). Optional when --train is given.")
  var job: String?
  @OptionGroup var data: DataOptions
  @OptionGroup var kernel: KernelOptions
  @Option(name: .customLong("learning-rate"), parsing: .unconditional, help: "Learning rate η. Default 1.", transform: decimal) var learningRate: Double = 1
  @Option(parsing: .unconditional, help: "Steps at which the outputs are recorded, increasing (each once): whole numbers, or log:START:STOP:COUNT (rounded to whole steps; a step reached twice is recorded once); the last is the number of steps. Training stops at the first non-finite loss.")
  var times: String
  @Option(help: "Regression targets (N rows): .npy, file.h5:/dataset or .csv. Default: the labels, one column per class.") var targets: String?
  @Option(name: .customLong("test-targets"), help: "Regression targets of the test set, for the test loss.") var testTargets: String?
  @Option(help: "Class encoding: onehot (0/1) or centered (−0.1/0.9).") var encoding: String = "onehot"
  @Option(help: "Output file (.h5).") var out: String
  @Option(help: "Write metrics as JSON to this file.") var metrics: String?
  @Option(parsing: .unconditional, help: "BLAS threads per rank.") var threads: Int = 1
  @Flag(help: "Replace an existing output file.") var force = false
  @Flag(help: "No progress output.") var quiet = false
  @Option(name: .customLong("log-json"), help: "Write one JSON object per event to this file.") var logJSON: String?

  func settings() throws -> TrainSettings {
    var f = data.flags
    f.kernel = kernel.flags
    f.kernel.empirical = true
    f.out = out
    f.force = force
    var s = TrainSettings(build: try Settings.build(job: job, flags: f))
    s.learningRate = learningRate
    s.times = try parseSteps(times)
    s.targets = targets
    s.testTargets = testTargets
    s.encoding = try parseEncoding(encoding)
    s.metrics = metrics
    s.threads = threads
    do { try TrainDriver.validate(s) } catch let e as TrainError { throw CommandError(e.description) }
    return s
  }

  func run() throws {
    let s = try settings()
    let report = try withProgress(quiet: quiet, logJSON: logJSON, paths: kernel.withLayersFile(s.paths)) { comm, sink in
      let notice = InterruptNotice(rank: comm.rank, output: s.out, others: [s.metrics].compactMap { $0 }) { signal, written in
        InterruptNotice.trainLine(signal, written: written, progress: (sink as? ProgressRenderer)?.lastProgress, out: s.out)
      }
      defer { notice.stop() }
      return try TrainDriver(settings: s, comm: comm, events: sink).run()
    }
    guard launcherRank == 0 else { return }
    print("trained \(report.parameters) parameters on \(report.trainCount) samples for \(report.steps) steps (η = \(report.learningRate)) on \(report.ranks) rank(s) in \(String(format: "%.1f", report.seconds)) s; wrote \(report.out)")
    let shown = pointsToPrint(report.points.count, quiet: quiet)
    if shown.count < report.points.count && !quiet {
      print("\(report.points.count) recorded steps: the first and last \(perTimeLinesShownAtEnds) shown; every one in \(report.out) (/train/loss, /test/loss, accuracies)\(s.metrics.map { " and \($0)" } ?? "")")
    }
    for p in shown.map({ report.points[$0] }) {
      var line = "step \(p.step): train loss \(String(format: "%.4g", p.trainLoss))"
      if let a = p.trainAccuracy { line += ", train accuracy \(String(format: "%.4f", a))" }
      if let l = p.testLoss { line += ", test loss \(String(format: "%.4g", l))" }
      if let a = p.testAccuracy { line += ", test accuracy \(String(format: "%.4f", a))" }
      print(line)
    }
  }
}
