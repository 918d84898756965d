import ArgumentParser
import GramBuild

struct InfoCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "info",
    abstract: "Print a kernel file's datasets (shape, dtype), its network layer by layer, and its attributes.")

  @Argument(help: "A kernel file written by `ntkgram build`.")
  var file: String

  func run() throws {
    for line in try KernelFileSummary(path: file).lines { print(line) }
  }
}
