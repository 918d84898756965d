import ArgumentParser
import Foundation
import GramAnalysis
import GramBuild

struct PredictCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "predict",
    abstract: "Apply a stored solution α to another kernel file's cross kernel K(test, train).")

  @Argument(help: "A solution file written by `ntkgram solve`.") var solution: String
  @Argument(help: "A kernel file whose /test/* was built against the same training set.") var kernelFile: String
  @Option(name: .customLong("kernel-name"), help: "ntk or nngp (default: the one the solution used).") var kernelName: String?
  @Option(help: "Predictions file (.h5): /predictions.") var out: String
  @Flag(help: "Replace an existing predictions file.") var force = false

  func run() throws {
    let accuracies = try withProgress(quiet: false, logJSON: nil,
                                                paths: Predictor.paths(solution: solution, kernelFile: kernelFile, out: out, force: force)) { comm, sink in
      // The cross kernel's own records (spec, statistics) against its identity and the solution's.
      try comm.collectively { try KernelIdentity.checkPredictionKernel(kernelFile, solution: solution) }
      return try Predictor(solution: solution, kernelFile: kernelFile, kernelName: kernelName, out: out, force: force,
                           comm: comm, events: sink).run()
    }
    guard launcherRank == 0 else { return }
    print("wrote \(out)")
    for (s, a) in accuracies.enumerated() { if let a { print("ridge #\(s): test accuracy \(String(format: "%.4f", a))") } }
  }
}
