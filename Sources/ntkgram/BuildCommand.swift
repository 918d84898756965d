import ArgumentParser
import GramBuild
import GramKernels
import GramStorage

/// The kernel spec flags, shared by every command that needs a network.
struct KernelOptions: ParsableArguments {
  @Option(help: "Number of hidden [Dense, activation] blocks (≥ 1).")
  var depth: Int = 3

  @Option(help: "Activation: \(Activation.validNames.joined(separator: ", ")).")
  var activation: String = "relu"

  @Option(name: .customLong("leaky-slope"), help: "Negative slope of leaky_relu.")
  var leakySlope: Double = 0.01

  @Option(name: .customLong("W-std"), help: "Weight standard deviation σw (√2 = He scaling for ReLU).")
  var wStd: Double = 2.0.squareRoot()

  @Option(name: .customLong("b-std"), help: "Bias standard deviation σb, or 'none' for no bias at all (not the same as 0).")
  var bStd: String = "0.1"

  @Option(help: "Parameterization: ntk or standard.")
  var parameterization: String = "ntk"

  @Option(help: "Hidden width (only the standard parameterization's NTK depends on it).")
  var width: Int = 512

  func network() throws -> FullyConnected {
    guard let act = Activation(name: activation, leakySlope: leakySlope) else {
      throw CommandError("unknown activation '\(activation)' (valid: \(Activation.validNames.joined(separator: ", ")))")
    }
    guard let p = Parameterization(rawValue: parameterization) else {
      throw CommandError("unknown parameterization '\(parameterization)' (valid: ntk, standard)")
    }
    let b: Double?
    if bStd.lowercased() == "none" { b = nil } else {
      guard let v = Double(bStd) else { throw CommandError("--b-std must be a number or 'none' (got '\(bStd)')") }
      b = v
    }
    let net = FullyConnected(depth: depth, activation: act, wStd: wStd, bStd: b, parameterization: p, width: width)
    do { try net.validate() } catch let e as KernelSpecError { throw CommandError(e.description) }
    return net
  }
}

struct BuildCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "build",
    abstract: "Compute the NTK and NNGP of a dataset into an HDF5 kernel file.")

  @Option(help: "Training samples: a 2-D float32/float64 .npy file, rows are samples.")
  var train: String

  @Option(help: "Test samples (same feature count): adds K(test, train) as /test/*.")
  var test: String?

  @OptionGroup var kernel: KernelOptions

  @Option(help: "Storage precision: float32 or float64 (computation is float64 either way).")
  var dtype: String = "float32"

  @Option(help: "Tile edge in samples (also the HDF5 chunk edge).")
  var tile: Int = 1024

  @Option(help: "Output kernel file (.h5).")
  var out: String

  @Flag(help: "Replace an existing output file (only once the new one is complete).")
  var force = false

  @Flag(help: "Print nothing on success.")
  var quiet = false

  func run() throws {
    let net = try kernel.network()
    guard let type = ScalarType(rawValue: dtype) else { throw CommandError("unknown dtype '\(dtype)' (valid: float32, float64)") }
    guard tile >= 1 else { throw CommandError("--tile must be at least 1 (got \(tile))") }
    let report = try buildKernelFile(BuildSettings(train: train, test: test, network: net, dtype: type,
                                                   tileSize: tile, out: out, force: force))
    if !quiet {
      print("wrote \(out): train \(report.trainCount)×\(report.trainCount)" +
            (report.testCount > 0 ? ", test \(report.testCount)×\(report.trainCount)" : "") +
            ", \(report.tiles) tiles in \(String(format: "%.2f", report.seconds)) s")
    }
  }
}
