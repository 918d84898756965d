import GramData
import GramKernels
import GramNetwork
import GramStorage
import GramTransport

/// Everything `ntkgram build` needs, after the job file and the command-line flags are merged
/// and validated (`GramJobs` makes them).
public struct BuildSettings: Sendable {
  public var train: DataSource
  public var test: DataSource?
  public var preprocess: Preprocess = .scale
  /// `zca`'s strength ε (`zca_strength`, `--zca-strength`); nil: the default (0.1). Only with `zca`.
  public var zcaStrength: Double?
  /// The network as a layer list (the fully-connected shorthand already expanded).
  public var network: Network
  public var gramPrecision: GramPrecision = .float64
  /// `[kernel] compute_precision`: the convolutional recursion's arithmetic.
  public var computePrecision: ComputePrecision = .float64
  /// The shape of one sample when the data gives flat rows (`--input-shape H,W,C`); nil: as
  /// the files give it.
  public var inputShape: [Int]?
  public var dtype: ScalarType = .float32
  public var tileSize: Int = 1024
  public var out: String
  /// Checkpoint folder; nil = `<out without .h5>.tiles`.
  public var checkpoints: String?
  /// Keep the checkpoint folder (the tile records) after a successful build.
  public var keepCheckpoints = false
  /// Replace an existing output file.
  public var force = false
  /// Discard a checkpoint folder that belongs to another job.
  public var restart = false
  /// Check every tile of the existing output (built by this same job) against its stored
  /// checksums and recompute, in place, the ones that do not match (`--repair`).
  public var repair = false
  /// Threads computing tiles inside each rank (for one rank per node: use `--bind-to none`).
  public var threads = 1
  /// Where errors about the spec point: the job file, when there is one.
  public var specOrigin: String?
  /// Where the layer list came from, for the problems found only against the data (a window
  /// larger than the images): `--layers`, the JSON file it named, `--preset`, or the job file;
  /// nil for the shorthand flags.
  public var networkOrigin: String?
  /// The preset the network is (`--preset`, `[kernel] preset`), if any.
  public var preset: String?
  /// Build only K(test, train) against this stored training kernel (`--against`): its network,
  /// preprocessing (with its training statistics) and training data, checked by content.
  public var against: StoredTraining?
  /// The kernels to write (`--kernels`); nil: every output of the kernel.
  public var kernels: [String]?
  /// How the kernels are laid out in a new file (`--layout`).
  public var layout: KernelStorageLayout = .auto
  /// The empirical kernels of one concrete network instead of the analytic ones: its weights
  /// drawn from a seed or read from a file (`[kernel] empirical`, `seed`, `params`).
  public var empirical: EmpiricalWeights?

  public init(train: DataSource, test: DataSource? = nil, network: Network, out: String) {
    self.train = train
    self.test = test
    self.network = network
    self.out = out
  }

  /// The files this build reads and writes, checked together before any work
  /// (`CommandPaths.check`): the output may exist with `force`, or to be mended (`repair`).
  public var paths: CommandPaths {
    var inputs: [(String, String)] = [(train.samples, "the training data")]
    if let l = train.labels { inputs.append((l, "the training labels")) }
    if let t = test { inputs.append((t.samples, "the test data")) }
    if let l = test?.labels { inputs.append((l, "the test labels")) }
    if let a = against { inputs.append((a.path, "the training kernel (--against)")) }
    if case .file(let p)? = empirical { inputs.append((p, "the network's weights (--params)")) }
    if let job = specOrigin { inputs.append((job, "the job file")) }
    var paths = CommandPaths(inputs: inputs,
                             outputs: [PlannedOutput(out, "the kernel file", mayExist: repair,
                                                     remedy: "use --force to replace it, or --repair to check and mend it"),
                                       PlannedOutput(checkpointFolder, "the checkpoint folder", kind: .folder)],
                             force: force)
    paths.resuming = FileType.of(checkpointFolder) == .folder
    return paths
  }

  public var checkpointFolder: String {
    if let checkpoints { return checkpoints }
    let base = out.hasSuffix(".h5") ? String(out.dropLast(3)) : out
    return derivedPath(of: base, prefix: "", suffix: ".tiles")
  }

  /// The sample shape the network sees: `inputShape` (its product must be the feature count),
  /// else the files' own.
  public func resolvedInputShape(fileShape: [Int], features: Int) throws -> [Int] {
    guard let inputShape else { return fileShape }
    let (product, overflow) = inputShape.reduce((1, false)) { acc, v in
      let (p, o) = acc.0.multipliedReportingOverflow(by: v)
      return (p, acc.1 || o)
    }
    guard !overflow, product == features, inputShape.allSatisfy({ $0 >= 1 }) else {
      throw BuildError("\(specOrigin.map { "\($0): " } ?? "")input shape \(inputShape.map(String.init).joined(separator: ",")) has \(overflow ? "too many" : String(product)) values per sample, the data has \(features) features")
    }
    return inputShape
  }
}

/// Where a concrete network's weights come from.
public enum EmpiricalWeights: Sendable, Equatable {
  /// Drawn from this seed (`CounterNormal`), the same on every rank.
  case seed(UInt64)
  /// Read from the `/params` group of this HDF5 file (a kernel file, a `train` output, or
  /// weights written by another program in the same layout).
  case file(String)
}

/// A build failure that is not about one file (a bad spec, mismatched data, …).
public struct BuildError: Error, CustomStringConvertible {
  public let description: String
  public init(_ description: String) { self.description = description }
}

/// A layer list the user gave (job file, `--layers`, `--preset`, the shorthand) that cannot
/// make a kernel of the data: an invalid value (exit status 2), like the list's own problems
/// found when it is read, wherever it is found.
public struct InvalidNetworkError: Error, CustomStringConvertible, InvalidValue {
  public let description: String
  public init(_ description: String) { self.description = description }
}
