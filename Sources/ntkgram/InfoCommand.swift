import ArgumentParser
import GramStorage

struct InfoCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "info",
    abstract: "Print a kernel file's datasets (shape, dtype) and its kernel spec.")

  @Argument(help: "A kernel file written by `ntkgram build`.")
  var file: String

  func run() throws {
    let f = try H5File.open(file)
    print("file: \(file)")
    for name in ["/train/ntk", "/train/nngp", "/test/ntk", "/test/nngp", "/train/labels", "/test/labels"] where f.exists(name) {
      let d = try f.dataset(name)
      let type = d.scalarType?.rawValue ?? (d.isInteger ? "int64" : "?")
      print("  \(name): \(d.shape.map(String.init).joined(separator: "×")) \(type)")
    }
    for name in try f.attributeNames() {
      if let v = try f.attribute(name) { print("  @\(name) = \(v)") }
    }
  }
}
