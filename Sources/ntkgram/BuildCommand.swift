import ArgumentParser
import Foundation
import GramBuild
import GramKernels
import GramStorage

/// The kernel spec flags, shared by every command that needs a network. Each overrides the
/// job file's `[kernel]` key of the same name.
struct KernelOptions: ParsableArguments {
  @Option(help: "Architecture (only fully_connected today).")
  var architecture: String?
  @Option(help: "Number of hidden [Dense, activation] blocks (≥ 1). Default 3.")
  var depth: Int?
  @Option(help: "Activation: \(Activation.validNames.joined(separator: ", ")). Default relu.")
  var activation: String?
  @Option(name: .customLong("leaky-slope"), help: "Negative slope of leaky_relu. Default 0.01.")
  var leakySlope: Double?
  @Option(name: .customLong("W-std"), help: "Weight standard deviation σw (√2 = He scaling for ReLU). Default √2.")
  var wStd: Double?
  @Option(name: .customLong("b-std"), help: "Bias standard deviation σb, or 'none' for no bias at all (not the same as 0). Default 0.1.")
  var bStd: String?
  @Option(help: "Parameterization: ntk or standard. Default ntk.")
  var parameterization: String?
  @Option(help: "Hidden width (only the standard parameterization's NTK depends on it). Default 512.")
  var width: Int?
  @Option(name: .customLong("gram-precision"),
          help: "Precision of the input dot products: float64 (~1e-15 relative) or float32 (about twice as fast, a few 1e-6; docs/precision.md). Default float64.")
  var gramPrecision: String?

  func network(job: JobFile?) throws -> FullyConnected {
    let arch = architecture ?? job?.string("architecture") ?? "fully_connected"
    guard arch == "fully_connected" else { throw CommandError("unknown architecture '\(arch)' (valid: fully_connected)") }
    let name = activation ?? job?.string("activation") ?? "relu"
    guard let act = Activation(name: name, leakySlope: leakySlope ?? job?.double("leaky_slope") ?? 0.01) else {
      throw CommandError("unknown activation '\(name)' (valid: \(Activation.validNames.joined(separator: ", ")))")
    }
    let pName = parameterization ?? job?.string("parameterization") ?? "ntk"
    guard let p = Parameterization(rawValue: pName) else {
      throw CommandError("unknown parameterization '\(pName)' (valid: ntk, standard)")
    }
    let gName = gramPrecision ?? job?.string("gram_precision") ?? "float64"
    guard let g = GramPrecision(rawValue: gName) else {
      throw CommandError("unknown gram_precision '\(gName)' (valid: float64, float32)")
    }
    let b: Double?
    if let bStd {
      if bStd.lowercased() == "none" { b = nil } else {
        guard let v = Double(bStd) else { throw CommandError("--b-std must be a number or 'none' (got '\(bStd)')") }
        b = v
      }
    } else if job?.string("b_std") == "none" {
      b = nil
    } else {
      b = job?.double("b_std") ?? 0.1
    }
    let net = FullyConnected(depth: depth ?? job?.int("depth") ?? 3, activation: act,
                             wStd: wStd ?? job?.double("W_std") ?? 2.0.squareRoot(), bStd: b,
                             parameterization: p, width: width ?? job?.int("width") ?? 512, gramPrecision: g)
    do { try net.validate() } catch let e as KernelSpecError {
      throw CommandError(job.map { "\($0.path): \(e.description)" } ?? e.description)
    }
    return net
  }
}

struct BuildCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "build",
    abstract: "Compute the NTK and NNGP of a dataset into an HDF5 kernel file (tiled, checkpointed, resumable; runs under mpirun).",
    discussion: """
      Give a job file (jobs/*.toml), flags, or both: every job key has a flag of the same name that
      overrides it (train_limit → --train-limit). Datasets: .npy, IDX (plain or .gz), file.h5:/dataset,
      or .csv. A killed build rerun with the same command resumes from its checkpoints.
      """)

  @Argument(help: "A job file (TOML). Optional when --train and --out are given.")
  var job: String?

  @Option(help: "Training samples.") var train: String?
  @Option(name: .customLong("train-labels"), help: "Training labels (NPY, IDX, HDF5 or CSV).") var trainLabels: String?
  @Option(name: .customLong("train-label-column"), help: "CSV only: the column of the train file holding labels.") var trainLabelColumn: Int?
  @Option(name: .customLong("train-limit"), help: "Use only the first N training rows.") var trainLimit: Int?
  @Option(help: "Test samples (same feature count): adds K(test, train) as /test/*.") var test: String?
  @Option(name: .customLong("test-labels"), help: "Test labels.") var testLabels: String?
  @Option(name: .customLong("test-label-column"), help: "CSV only: the column of the test file holding labels.") var testLabelColumn: Int?
  @Option(name: .customLong("test-limit"), help: "Use only the first N test rows.") var testLimit: Int?
  @Option(help: "scale (integer data / 255), standardize, unit_norm or none. Default scale.") var preprocess: String?

  @OptionGroup var kernel: KernelOptions

  @Option(help: "Storage precision: float32 or float64 (computation is float64 either way). Default float32.")
  var dtype: String?
  @Option(help: "Tile edge in samples (also the HDF5 chunk edge). Default 1024.") var tile: Int?
  @Option(help: "Output kernel file (.h5).") var out: String?
  @Option(help: "Checkpoint folder. Default: the output path with .tiles instead of .h5.") var checkpoints: String?
  @Flag(name: .customLong("keep-checkpoints"), help: "Keep the checkpoint folder after a successful build.") var keepCheckpoints = false
  @Flag(help: "Replace an existing output file (only once the new one is complete).") var force = false
  @Flag(help: "Discard a checkpoint folder that belongs to another job.") var restart = false
  @Option(help: "Threads computing tiles inside each rank (one rank per node: launch with mpirun --bind-to none).") var threads: Int = 1
  @Flag(help: "No progress output.") var quiet = false
  @Option(name: .customLong("log-json"), help: "Write one JSON object per event to this file.") var logJSON: String?

  func settings() throws -> BuildSettings {
    let jobFile = try job.map { try JobFile(path: $0) }
    let where_ = jobFile.map { "\($0.path): " } ?? ""
    guard let trainPath = train ?? jobFile?.string("train") else { throw CommandError("\(where_)no training data: give --train or [data] train") }
    guard let outPath = out ?? jobFile?.string("out") else { throw CommandError("\(where_)no output: give --out or [build] out") }
    var s = BuildSettings(
      train: DataSource(samples: trainPath, labels: trainLabels ?? jobFile?.string("train_labels"),
                        limit: trainLimit ?? jobFile?.int("train_limit"),
                        labelColumn: trainLabelColumn ?? jobFile?.int("train_label_column")),
      network: try kernel.network(job: jobFile), out: outPath)
    if let testPath = test ?? jobFile?.string("test") {
      s.test = DataSource(samples: testPath, labels: testLabels ?? jobFile?.string("test_labels"),
                          limit: testLimit ?? jobFile?.int("test_limit"),
                          labelColumn: testLabelColumn ?? jobFile?.int("test_label_column"))
    }
    let pre = preprocess ?? jobFile?.string("preprocess") ?? "scale"
    guard let p = Preprocess(rawValue: pre) else {
      throw CommandError("\(where_)unknown preprocess '\(pre)' (valid: \(Preprocess.allCases.map(\.rawValue).joined(separator: ", ")))")
    }
    s.preprocess = p
    let typeName = dtype ?? jobFile?.string("dtype") ?? "float32"
    guard let type = ScalarType(rawValue: typeName) else { throw CommandError("\(where_)unknown dtype '\(typeName)' (valid: float32, float64)") }
    s.dtype = type
    s.tileSize = tile ?? jobFile?.int("tile") ?? 1024
    guard s.tileSize >= 1 else { throw CommandError("\(where_)tile must be at least 1 (got \(s.tileSize))") }
    for (name, v) in [("train_limit", s.train.limit), ("test_limit", s.test?.limit)] {
      if let v, v < 1 { throw CommandError("\(where_)\(name) must be at least 1 (got \(v))") }
    }
    s.checkpoints = checkpoints ?? jobFile?.string("checkpoints")
    s.keepCheckpoints = keepCheckpoints || (jobFile?.bool("keep_checkpoints") ?? false)
    s.force = force
    s.restart = restart
    guard threads >= 1 else { throw CommandError("--threads must be at least 1 (got \(threads))") }
    s.threads = threads
    return s
  }

  func run() throws {
    let s = try settings()
    let outcome = try withCommunicator { comm in
      try BuildDriver(settings: s, comm: comm, progress: ProgressOptions(quiet: quiet, jsonLog: logJSON)).run()
    }
    if !quiet && launcherRank == 0 {
      FileHandle.standardError.write(Data((
        "wrote \(s.out): train \(outcome.trainCount)×\(outcome.trainCount)" +
        (outcome.testCount > 0 ? ", test \(outcome.testCount)×\(outcome.trainCount)" : "") +
        ", \(outcome.tiles) tiles (\(outcome.reusedTiles) reused from checkpoints) in \(String(format: "%.2f", outcome.seconds)) s\n").utf8))
    }
  }
}
