import ArgumentParser
import Foundation
import GramBuild
import GramJobs
import GramStorage

/// The kernel spec flags, shared by every command that needs a network. Each overrides the
/// job file's `[kernel]` key of the same name.
struct KernelOptions: ParsableArguments {
  @Option(help: "Architecture of the shorthand (fully_connected); any other network is a layer list (--layers, [[kernel.layers]]).")
  var architecture: String?
  @Option(parsing: .unconditional, help: "Shorthand: number of hidden [Dense, activation] blocks (≥ 1). Default 3.")
  var depth: Int?
  @Option(help: "Shorthand: activation \(Settings.activationNames.joined(separator: ", ")). Default relu.")
  var activation: String?
  @Option(name: .customLong("leaky-slope"), parsing: .unconditional, help: "Shorthand: negative slope of leaky_relu. Default 0.01.", transform: decimal)
  var leakySlope: Double?
  @Option(name: .customLong("W-std"), parsing: .unconditional, help: "Shorthand: weight standard deviation σw (√2 = He scaling for ReLU). Default √2.", transform: decimal)
  var wStd: Double?
  @Option(name: .customLong("b-std"), help: "Shorthand: bias standard deviation σb, or 'none' for no bias at all (not the same as 0). Default 0.1.")
  var bStd: String?
  @Option(help: "Parameterization: ntk or standard (the default of every layer). Default ntk.")
  var parameterization: String?
  @Option(parsing: .unconditional, help: "Shorthand: hidden width (only the standard parameterization's NTK depends on it). Default 512.")
  var width: Int?
  @Option(name: .customLong("gram-precision"),
          help: "Precision of the input dot products: float64 (~1e-15 relative) or float32 (about twice as fast, a few 1e-6; docs/precision.md). Default float64.")
  var gramPrecision: String?
  @Option(name: .customLong("compute-precision"),
          help: "Arithmetic of the convolutional kernels' pixel-pair recursion: float64, float32 (about twice as fast; errors in docs/precision.md) or mixed (float32 before the last pooling, float64 after). Default float64.")
  var computePrecision: String?
  @Option(help: "The network as a layer list: JSON (as in a kernel file's network attribute) or a .json file holding it. Replaces the shorthand flags.")
  var layers: String?
  @Option(help: "A named network: myrtle5, myrtle7 or myrtle10 (neural-tangents' Myrtle family, closing with a global average pool; README).")
  var preset: String?
  @Option(name: .customLong("readout-width"), parsing: .unconditional, help: "Shorthand: outputs of the readout layer (the concrete network's outputs per sample, e.g. the classes). Default 1.")
  var readoutWidth: Int?
  @Flag(help: "The empirical NTK and NNGP of one concrete network (the hidden widths real, weights drawn from --seed) instead of the infinite-width limit (docs/finite-width.md).")
  var empirical = false
  @Option(parsing: .unconditional, help: "Empirical kernels: the seed the weights are drawn from (the same on every rank). Default 0.")
  var seed: Int?
  @Option(help: "Empirical kernels: take the weights from this HDF5 file's /params (a kernel file, a train output, or /params/<k>/W and b written by another program) instead of drawing them.")
  var params: String?

  /// `paths` with the `--layers` file among the inputs, when the list is given as a file.
  func withLayersFile(_ paths: CommandPaths) -> CommandPaths {
    guard let layers, !layers.trimmingCharacters(in: .whitespaces).hasPrefix("[") else { return paths }
    var paths = paths
    paths.inputs.append((layers, "the layer list (--layers)"))
    return paths
  }

  var flags: KernelFlags {
    var f = KernelFlags()
    f.architecture = architecture
    f.depth = depth
    f.activation = activation
    f.leakySlope = leakySlope
    f.wStd = wStd
    f.bStd = bStd
    f.parameterization = parameterization
    f.width = width
    f.gramPrecision = gramPrecision
    f.computePrecision = computePrecision
    f.layers = layers
    f.preset = preset
    f.readoutWidth = readoutWidth
    f.empirical = empirical
    f.seed = seed
    f.params = params
    return f
  }
}

/// The data flags, shared by `build` and `train`. Each overrides the job file's `[data]` key of
/// the same name.
struct DataOptions: ParsableArguments {
  @Option(help: "Training samples.") var train: String?
  @Option(name: .customLong("train-labels"), help: "Training labels (NPY, IDX, HDF5 or CSV).") var trainLabels: String?
  @Option(name: .customLong("train-label-column"), parsing: .unconditional, help: "CSV only: the column of the train file holding labels.") var trainLabelColumn: Int?
  @Option(name: .customLong("train-limit"), parsing: .unconditional, help: "Use only the first N training rows.") var trainLimit: Int?
  @Option(help: "Test samples (same feature count): adds K(test, train) as /test/*.") var test: String?
  @Option(name: .customLong("test-labels"), help: "Test labels.") var testLabels: String?
  @Option(name: .customLong("test-label-column"), parsing: .unconditional, help: "CSV only: the column of the test file holding labels.") var testLabelColumn: Int?
  @Option(name: .customLong("test-limit"), parsing: .unconditional, help: "Use only the first N test rows.") var testLimit: Int?
  @Option(help: "scale (integer data / 255), standardize, unit_norm, zca (regularized ZCA whitening fitted on the training set, after scale) or none. Default scale.") var preprocess: String?
  @Option(name: .customLong("zca-strength"), parsing: .unconditional, help: "zca only: the regularization ε ≥ 0, W = (Σ + ε·tr(Σ)/d·I)^(−1/2). Default 0.1.", transform: decimal)
  var zcaStrength: Double?
  @Option(help: "Training-set augmentation: none (the default) or flip (every training image's horizontal mirror appended after the originals, with its label; needs images).")
  var augment: String?
  @Option(name: .customLong("input-shape"), help: "The shape H,W,C of one sample when the data has flat rows (CSV, 2-D NPY): needed by convolutions. Images (IDX, 3-D/4-D NPY and HDF5) keep their own.")
  var inputShape: String?

  /// These flags in a `BuildFlags` (the rest left unset).
  var flags: BuildFlags {
    var f = BuildFlags()
    f.train = train
    f.trainLabels = trainLabels
    f.trainLabelColumn = trainLabelColumn
    f.trainLimit = trainLimit
    f.test = test
    f.testLabels = testLabels
    f.testLabelColumn = testLabelColumn
    f.testLimit = testLimit
    f.preprocess = preprocess
    f.zcaStrength = zcaStrength
    f.augment = augment
    f.inputShape = inputShape
    return f
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

  @OptionGroup var data: DataOptions

  @OptionGroup var kernel: KernelOptions

  @Option(help: "Storage precision: float32 or float64 (computation is float64 either way). Default float32.")
  var dtype: String?
  @Option(parsing: .unconditional, help: "Tile edge in samples (the unit of work, of resume and of the stored checksums). Default 1024.") var tile: Int?
  @Option(help: "Output kernel file (.h5).") var out: String?
  @Option(help: "Checkpoint folder. Default: the output path with .tiles instead of .h5.") var checkpoints: String?
  @Flag(name: .customLong("keep-checkpoints"), help: "Keep the checkpoint folder after a successful build.") var keepCheckpoints = false
  @Flag(help: "Replace an existing output file (only once the new one is complete).") var force = false
  @Flag(help: "Discard a checkpoint folder that belongs to another job.") var restart = false
  @Flag(help: "Check every tile of the existing output (built by this same job) against its checksums and recompute, in place, those that do not match.") var repair = false
  @Option(parsing: .unconditional, help: "Threads computing tiles inside each rank (one rank per node: launch with mpirun --bind-to none).") var threads: Int = 1
  @Option(help: "A training kernel file: compute only K(test, train) for --test against it, with its network, preprocessing and training data (checked by content; --train if it moved).")
  var against: String?
  @Option(help: "Kernels to write: ntk, nngp, or ntk,nngp (the default: every kernel of the network).") var kernels: String?
  @Option(help: "Kernel layout in a new file: contiguous (row-major, one offset: memory-mappable by any reader), tiles (HDF5 chunks of one tile each, written to the disk directly), or auto (the default: tiles for kernels of 256 MiB or more).")
  var layout: String?
  @Flag(help: "No progress output.") var quiet = false
  @Option(name: .customLong("log-json"), help: "Write one JSON object per event to this file.") var logJSON: String?

  func settings() throws -> BuildSettings {
    var f = data.flags
    f.kernel = kernel.flags
    f.dtype = dtype
    f.tile = tile
    f.out = out
    f.checkpoints = checkpoints
    f.keepCheckpoints = keepCheckpoints
    f.force = force
    f.restart = restart
    f.repair = repair
    f.threads = threads
    f.against = against
    f.kernels = kernels
    f.layout = layout
    return try Settings.build(job: job, flags: f)
  }

  func run() throws {
    let s = try settings()
    let outcome = try withProgress(quiet: quiet, logJSON: logJSON, paths: kernel.withLayersFile(s.paths)) { comm, sink in
      try BuildDriver(settings: s, comm: comm, events: sink).run()
    }
    if !quiet && launcherRank == 0 {
      FileHandle.standardError.write(Data((
        "wrote \(s.out): " + (s.against.map { "test \(outcome.testCount)×\(outcome.trainCount) against \($0.path)" } ?? "train \(outcome.trainCount)×\(outcome.trainCount)" +
        (outcome.testCount > 0 ? ", test \(outcome.testCount)×\(outcome.trainCount)" : "")) +
        ", \(outcome.tiles) tiles (\(outcome.reusedTiles) reused from an earlier run) in \(String(format: "%.2f", outcome.seconds)) s\n").utf8))
    }
  }
}
