import GramKernels
import GramStorage
import GramTiling

/// What one rank of a build holds, in bytes, by part (see `BuildPlan.memory`). The data is
/// held whole only while it is read and checked; the tile phase keeps only the rows of the
/// blocks the rank's tiles touch (`TileAssignment.blocks`), so the peak is the larger phase.
public struct MemoryEstimate: Sendable {
  /// The process itself: code, libraries, runtime (measured: `docs/performance.md`).
  public var baseline: Double
  /// While the data is read: a chunk of rows as read and preprocessed (about 32 MiB each),
  /// with every sample preprocessed when the data is kept (`BuildPlan.keptDataBytes`), or
  /// every sample as read and preprocessed for a network with weights (held whole).
  public var samples: Double
  /// In the tile phase: the kernel's prepared features of the held samples
  /// (`GramKernel.preparedBytesPerSample`).
  public var features: Double
  /// The held samples themselves (float64). They are released once their features are
  /// prepared, but counted beside the tiles: measured peaks lie between the two phases' larger
  /// one and their sum (`benchmarks/plan-memory.sh`), and a plan must not promise too little.
  public var heldSamples: Double
  /// Computed tiles waiting for or being written, and their storage copies (tile and mirror).
  public var tiles: Double
  /// Each compute thread's scratch (`GramKernel.scratchCount`).
  public var scratch: Double
  /// Samples a rank holds in the tile phase (train and test rows of its blocks).
  public var heldRows: Double
  /// Labels (every row's, as 64-bit integers), kept throughout.
  public var labels: Double
  /// A network with weights (`--empirical`): its weights (`EmpiricalKernel.buildWeightCopies`
  /// copies), held throughout, and its forward passes (a block per thread, and all samples
  /// once for the initial outputs); 0 for the analytic kernels.
  public var weights: Double = 0
  public var total: Double { baseline + labels + weights + max(samples, features + heldSamples + tiles + scratch) }
}

/// What a build will cost, computed without computing anything: tiles, work per rank,
/// memory per rank, disk, and wall time — from the kernel's own declared cost per entry,
/// prepared bytes and scratch, never from a formula of one architecture.
public struct BuildPlan: Sendable {
  public let trainCount: Int
  public let testCount: Int
  public let features: Int
  public let tileSize: Int
  public let ranks: Int
  public let threads: Int
  public let bytesPerValue: Int
  public let outputs: [String]
  /// The kernels are tiled in the file (`--layout`, `KernelStorageLayout`).
  public let tiled: Bool
  public let tiles: Int
  public let assignment: TileAssignment
  /// Floating-point operations per kernel entry (the kernel's estimate).
  public let costPerEntry: Double
  public let memory: MemoryEstimate
  /// Kernel entries per second of one rank (measured, or derived from `flopsPerSecondPerRank`).
  public let entriesPerSecondPerRank: Double

  /// Resident size of the process before any data: measured for a build of ten samples on
  /// this machine, alone and under mpirun (which maps the MPI libraries and their buffers);
  /// `benchmarks/plan-memory.sh` compares the whole estimate with measured peaks.
  public static let baselineBytes = 42.0 * 1024 * 1024
  public static let mpiBaselineBytes = 48.0 * 1024 * 1024
  /// The effective rate of the kernel's operations per rank and thread, calibrated on the
  /// fully-connected kernel (7.3e6 entries/s for depth 3 on 784 features, docs/performance.md).
  public static let flopsPerSecondPerThread = 1.3e10

  public init<K: GramKernel>(kernel: K, trainCount: Int, testCount: Int, features: Int, tileSize: Int, ranks: Int,
                             threads: Int = 1, dtype: ScalarType, entriesPerSecondPerRank: Double? = nil, outputs: [String]? = nil,
                             layout: KernelStorageLayout = .auto) {
    self.trainCount = trainCount
    tiled = layout.tiles(rows: max(trainCount, testCount), cols: trainCount, bytesPerValue: dtype.byteCount)
    self.testCount = testCount
    self.features = features
    self.tileSize = tileSize
    self.ranks = ranks
    self.threads = threads
    bytesPerValue = dtype.byteCount
    self.outputs = outputs ?? kernel.outputNames
    let plan = TilePlan(trainCount: trainCount, testCount: testCount, tileSize: tileSize)
    tiles = plan.count
    assignment = TileAssignment.summary(plan: plan, ranks: ranks)
    costPerEntry = kernel.costPerEntry(inputFeatures: features)
    self.entriesPerSecondPerRank = entriesPerSecondPerRank
      ?? Self.flopsPerSecondPerThread * Double(threads) / max(costPerEntry, 1)

    let rows = Double(trainCount) + Double(testCount)
    let held = Double(TileAssignment.heldRowsEstimate(plan: plan, ranks: ranks))
    let t = Double(min(tileSize, max(trainCount, 1)))
    // Computed tiles hold every output of the kernel (float64); the written ones, the selected.
    let tileBytes = t * t * 8 * Double(kernel.outputNames.count)
    // Tiles held at once: 2·threads + 2 computed (float64), and the two being written (two
    // writers when tiles are written directly, `BuildDriver.computeTiles`) in storage precision,
    // with a chunk-sized buffer each.
    let heldTiles = Double(2 * threads + 2) * tileBytes + 2 * 2 * t * t * Double(bytesPerValue) * Double(self.outputs.count)
    let tileEdge = min(tileSize, max(trainCount, 1))
    memory = MemoryEstimate(
      baseline: ranks > 1 ? Self.mpiBaselineBytes : Self.baselineBytes,
      samples: kernel is EmpiricalKernel ? rows * Double(features) * 8 * 2
        : 2 * Double(max(1, (32 << 20) / max(8, 8 * features)) * max(features, 1) * 8)
          + (Self.keepsData(rows: trainCount + testCount, features: features) ? rows * Double(features) * 8 : 0),
      features: held * Double(kernel.preparedBytesPerSample(inputFeatures: features)),
      heldSamples: held * Double(features) * 8,
      tiles: heldTiles,
      scratch: Double(threads) * Double(kernel.scratchCount(inputFeatures: features, rows: tileEdge, cols: tileEdge)) * 8,
      heldRows: held,
      labels: rows * 8,
      weights: (kernel as? EmpiricalKernel).map {
        $0.weightBytes() + $0.passBytes(rows: trainCount + testCount, heldRows: Int(held), threads: threads)
      } ?? 0)
    // A network with weights first runs its samples through it (`EmpiricalKernel.prepare`).
    preparationSeconds = (kernel as? EmpiricalKernel).map {
      (held * $0.preparationFlopsPerRow + rows * 2 * $0.parameterCount) / (Self.flopsPerSecondPerThread * Double(threads))
    } ?? 0

  }

  /// Preprocessed data (float64) up to this size is kept from its one reading, so that the
  /// tile phase does not read the files again (`BuildDriver.loadStreamed`); larger data is read
  /// in chunks each time.
  public static let keptDataBytes = 256.0 * 1024 * 1024

  static func keepsData(rows: Int, features: Int, upTo limit: Double = keptDataBytes) -> Bool {
    Double(rows) * Double(features) * 8 <= limit
  }

  public var totalEntries: Double { assignment.workByRank.reduce(0, +) }
  public var memoryPerRank: Double { memory.total }

  /// Checkpoints: one small record per tile (the tiles themselves are written once, into the
  /// kernel file).
  public var checkpointBytes: Double { Double(tiles) * 4096 }
  /// The kernel file: the full symmetric train kernels and the cross kernels (tiled: with the
  /// edge chunks' padding).
  public var kernelFileBytes: Double {
    let tile = tiled ? tileSize : nil
    return (KernelRegion.storedBytes(rows: trainCount, cols: trainCount, bytesPerValue: bytesPerValue, tile: tile)
            + KernelRegion.storedBytes(rows: testCount, cols: trainCount, bytesPerValue: bytesPerValue, tile: tile)) * Double(outputs.count)
  }
  /// Seconds before the tiles: a network with weights prepares the samples a rank holds
  /// (forward and backward passes) and computes every sample's initial outputs; 0 otherwise.
  public let preparationSeconds: Double
  public var wallSeconds: Double { (assignment.workByRank.max() ?? 0) / entriesPerSecondPerRank + preparationSeconds }
}
