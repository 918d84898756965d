import GramKernels
import GramStorage

/// Everything `ntkgram build` needs, after the job file and the command-line flags are merged.
public struct BuildSettings: Sendable {
  public var train: DataSource
  public var test: DataSource?
  public var preprocess: Preprocess = .scale
  public var network: FullyConnected
  public var dtype: ScalarType = .float32
  public var tileSize: Int = 1024
  public var out: String
  /// Checkpoint folder; nil = `<out without .h5>.tiles`.
  public var checkpoints: String?
  /// Keep the checkpoint folder after a successful assembly.
  public var keepCheckpoints = false
  /// Replace an existing output file.
  public var force = false
  /// Discard a checkpoint folder that belongs to another job.
  public var restart = false
  /// Threads computing tiles inside each rank (for one rank per node: use `--bind-to none`).
  public var threads = 1

  public init(train: DataSource, test: DataSource? = nil, network: FullyConnected, out: String) {
    self.train = train
    self.test = test
    self.network = network
    self.out = out
  }

  public var checkpointFolder: String {
    if let checkpoints { return checkpoints }
    let base = out.hasSuffix(".h5") ? String(out.dropLast(3)) : out
    return base + ".tiles"
  }
}

/// A build failure that is not about one file (a bad spec, mismatched data, …).
public struct BuildError: Error, CustomStringConvertible {
  public let description: String
  public init(_ description: String) { self.description = description }
}
