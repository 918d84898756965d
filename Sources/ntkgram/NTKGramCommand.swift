import ArgumentParser
import GramBuild

/// A usage error found after parsing (an unknown activation, a bad value): exit status 2.
struct CommandError: Error, CustomStringConvertible {
  let description: String
  init(_ description: String) { self.description = description }
}

struct NTKGramCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ntkgram",
    abstract: "Neural Tangent Kernel Gram matrices: build them tile by tile into HDF5, inspect them.",
    version: ntkgramVersion,
    subcommands: [BuildCommand.self, SolveCommand.self, PredictCommand.self, DynamicsCommand.self, SpectrumCommand.self, TrainCommand.self, PlotCommand.self, PlanCommand.self, InfoCommand.self, VerifyCommand.self, BenchCommand.self])
}
