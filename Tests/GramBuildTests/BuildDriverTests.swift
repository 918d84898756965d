import Foundation
import GramBuild
import GramData
import GramEvents
import GramNetwork
import GramStorage
import GramTiling
import GramTransport
import Testing

/// Runs `body` on `size` in-process ranks (`LocalCommunicator`), one thread each.
func onRanks<T: Sendable>(_ size: Int, _ body: @escaping @Sendable (Communicator) throws -> T) throws -> [T] {
  let comms = LocalCommunicator.group(size: size)
  let lock = NSLock()
  nonisolated(unsafe) var results = [Result<T, Error>?](repeating: nil, count: size)
  let group = DispatchGroup()
  for comm in comms {
    group.enter()
    nonisolated(unsafe) let c = comm
    Thread.detachNewThread {
      let r = Result { try body(c) }
      lock.withLock { results[c.rank] = r }
      group.leave()
    }
  }
  group.wait()
  return try results.map { try $0!.get() }
}

/// The build driver in-process: rank counts, resume and damaged checkpoints without mpirun.
@Suite("build driver, in-process ranks", .serialized)
struct BuildDriverTests {
  static func folder() throws -> String {
    let path = FileManager.default.temporaryDirectory.appendingPathComponent("ntkgram-driver-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
  }

  static func writeData(_ d: String) throws {
    var state: UInt64 = 7
    func values(_ n: Int) -> [Double] {
      (0..<n).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Double(state >> 11) / Double(1 << 53) * 2 - 1
      }
    }
    try NPY.write(DenseArray(rows: 41, cols: 9, values: values(41 * 9)), to: d + "/train.npy")
    try NPY.write(DenseArray(rows: 13, cols: 9, values: values(13 * 9)), to: d + "/test.npy")
  }

  static func settings(_ d: String, out: String, network: Network? = nil) -> BuildSettings {
    let net = network ?? (try! Network(tables: [
      ["type": .string("dense"), "width": .int(64), "W_std": .double(1.5), "b_std": .double(0.1)],
      ["type": .string("erf")],
      ["type": .string("dense"), "width": .int(32), "W_std": .double(1.2), "b_std": .string("none"), "parameterization": .string("standard")],
      ["type": .string("relu")],
      ["type": .string("dense"), "width": .int(1), "W_std": .double(0.9), "b_std": .double(0.2)],
    ]))
    var s = BuildSettings(train: DataSource(samples: d + "/train.npy"), test: DataSource(samples: d + "/test.npy"), network: net, out: out)
    s.tileSize = 7
    s.dtype = .float64
    s.checkpoints = out + ".tiles"
    s.keepCheckpoints = true
    return s
  }

  static func build(_ s: BuildSettings, ranks: Int, sink: EventSink = SilentSink()) throws -> BuildOutcome {
    try onRanks(ranks) { comm in try BuildDriver(settings: s, comm: comm, events: sink).run() }[0]
  }

  static func datasets(_ path: String) throws -> [StoredValues] {
    let f = try H5File.open(path)
    return try ["/train/ntk", "/train/nngp", "/test/ntk", "/test/nngp"].map { name in
      let d = try f.dataset(name)
      return try d.readStored(start: [0, 0], count: d.shape)
    }
  }

  @Test("1, 2 and 3 ranks and a resume on another rank count write the same bytes")
  func rankCounts() throws {
    let d = try Self.folder()
    defer { try? FileManager.default.removeItem(atPath: d) }
    try Self.writeData(d)
    let one = try Self.build(Self.settings(d, out: d + "/one.h5"), ranks: 1)
    #expect(one.tiles == 6 * 7 / 2 + 2 * 6 && one.reusedTiles == 0)
    let reference = try Self.datasets(d + "/one.h5")
    for ranks in [2, 3] {
      let out = d + "/r\(ranks).h5"
      let o = try Self.build(Self.settings(d, out: out), ranks: ranks)
      #expect(o.fingerprint == one.fingerprint)
      #expect(try Self.datasets(out) == reference, "\(ranks) ranks")
    }
    // Resume: the finished file put back as an interrupted build leaves it (the hidden partial
    // file), half of the tile records removed and those tiles' bytes zeroed; two ranks finish.
    let wholeFile = try Data(contentsOf: URL(fileURLWithPath: d + "/one.h5"))
    let (regions, _) = try Self.regions(d + "/one.h5")
    try FileManager.default.moveItem(atPath: d + "/one.h5", toPath: d + "/.one.h5.partial")
    let records = try FileManager.default.contentsOfDirectory(atPath: d + "/one.h5.tiles").compactMap(TileRecord.index).sorted()
    #expect(records.count == one.tiles)
    let plan = TilePlan(trainCount: 41, testCount: 13, tileSize: 7)
    let file = try RegionFile(path: d + "/.one.h5.partial", writable: true)
    for index in records where index % 2 == 0 {
      try FileManager.default.removeItem(atPath: TileRecord.path(folder: d + "/one.h5.tiles", index: index))
      let t = plan.tile(index)
      for kernel in ["ntk", "nngp"] {
        try file.write(.float64([Double](repeating: 0, count: t.entryCount)), to: regions["/\(t.block.rawValue)/\(kernel)"]!,
                       rowStart: t.rows.lowerBound, colStart: t.cols.lowerBound, rows: t.rows.count, cols: t.cols.count)
      }
    }
    let resumed = try Self.build(Self.settings(d, out: d + "/one.h5"), ranks: 2)
    #expect(resumed.reusedTiles == records.count / 2)
    #expect(try Self.datasets(d + "/one.h5") == reference)
    #expect(try Data(contentsOf: URL(fileURLWithPath: d + "/one.h5")) == wholeFile, "the resumed file is byte-identical")
    #expect(!FileManager.default.fileExists(atPath: d + "/.one.h5.partial"))
  }

  /// Flips the bits `mask` of the byte at `offset` of `path`, in place.
  static func flipBits(_ path: String, at offset: Int, mask: UInt8) {
    let fd = open(path, O_RDWR)
    defer { close(fd) }
    var byte: UInt8 = 0
    pread(fd, &byte, 1, off_t(offset))
    byte ^= mask
    pwrite(fd, &byte, 1, off_t(offset))
  }

  /// The byte regions of a kernel file's datasets, and its tile checksums.
  static func regions(_ path: String) throws -> ([String: KernelRegion], [UInt32]) {
    let f = try H5File.open(path)
    var out: [String: KernelRegion] = [:]
    for name in ["/train/ntk", "/train/nngp", "/test/ntk", "/test/nngp"] where f.exists(name) {
      out[name] = KernelRegion.of(try f.dataset(name))
    }
    return (out, try f.dataset(KernelFileLayout.tileChecksums).readAll(as: UInt32.self))
  }

  @Test("damaged tile bytes of an interrupted build are reported as a warning, recomputed, and the bytes are the same")
  func damagedCheckpoint() throws {
    let d = try Self.folder()
    defer { try? FileManager.default.removeItem(atPath: d) }
    try Self.writeData(d)
    let s = Self.settings(d, out: d + "/k.h5")
    let first = try Self.build(s, ranks: 3)
    let reference = try Data(contentsOf: URL(fileURLWithPath: d + "/k.h5"))
    let (regions, _) = try Self.regions(d + "/k.h5")
    try FileManager.default.moveItem(atPath: d + "/k.h5", toPath: d + "/.k.h5.partial")
    // Flip one byte inside tile 4's mirrored (lower) block of /train/nngp.
    let t = TilePlan(trainCount: 41, testCount: 13, tileSize: 7).tile(4)
    #expect(!t.isDiagonal && t.block == .train)
    let r = regions["/train/nngp"]!
    let offset = r.offset + ((t.cols.lowerBound + 1) * r.cols + t.rows.lowerBound + 2) * 8 + 3
    Self.flipBits(d + "/.k.h5.partial", at: offset, mask: 0x40)
    let sink = CollectingSink()
    let again = try Self.build(s, ranks: 3, sink: sink)
    #expect(again.rejectedTiles == 1)
    #expect(again.reusedTiles == first.tiles - 1)
    #expect(sink.warnings.count == 1 && sink.warnings[0].contains("tile-0000004.done"), "\(sink.warnings)")
    #expect(try Data(contentsOf: URL(fileURLWithPath: d + "/k.h5")) == reference)
    // Progress and records come from rank 0 only: one start record.
    let starts = sink.entries.filter { if case .record("start", _) = $0 { true } else { false } }
    #expect(starts.count == 1)
  }

  @Test("--repair finds a flipped byte in a finished file and mends it in place; a file of another job is refused")
  func repair() throws {
    let d = try Self.folder()
    defer { try? FileManager.default.removeItem(atPath: d) }
    try Self.writeData(d)
    var s = Self.settings(d, out: d + "/k.h5")
    s.keepCheckpoints = false
    _ = try Self.build(s, ranks: 1)
    let reference = try Data(contentsOf: URL(fileURLWithPath: d + "/k.h5"))
    let (regions, _) = try Self.regions(d + "/k.h5")
    let r = regions["/test/ntk"]!
    Self.flipBits(d + "/k.h5", at: r.offset + (5 * r.cols + 30) * 8 + 6, mask: 0x01)
    #expect(throws: (any Error).self) { try KernelVerifier(path: d + "/k.h5", samples: 0).run() }
    s.repair = true
    let sink = CollectingSink()
    let repaired = try Self.build(s, ranks: 2, sink: sink)
    #expect(repaired.rejectedTiles == 1 && repaired.reusedTiles == repaired.tiles - 1)
    #expect(try Data(contentsOf: URL(fileURLWithPath: d + "/k.h5")) == reference)
    _ = try KernelVerifier(path: d + "/k.h5", samples: 5).run()
    // Another network's settings do not repair (or touch) this file.
    var other = Self.settings(d, out: d + "/k.h5", network: .fullyConnected(depth: 2, activation: .relu, wStd: 1.4, bStd: 0.1))
    other.repair = true
    other.keepCheckpoints = false
    #expect(throws: (any Error).self) { _ = try Self.build(other, ranks: 1) }
    #expect(try Data(contentsOf: URL(fileURLWithPath: d + "/k.h5")) == reference)
  }

  @Test("a checkpoint folder of another network is refused, and nothing is written")
  func foreignFolder() throws {
    let d = try Self.folder()
    defer { try? FileManager.default.removeItem(atPath: d) }
    try Self.writeData(d)
    _ = try Self.build(Self.settings(d, out: d + "/k.h5"), ranks: 1)
    try FileManager.default.removeItem(atPath: d + "/k.h5")
    var other = Self.settings(d, out: d + "/k.h5", network: .fullyConnected(depth: 2, activation: .relu, wStd: 1.4, bStd: 0.1))
    other.checkpoints = d + "/k.h5.tiles"
    do {
      _ = try Self.build(other, ranks: 2)
      Issue.record("a foreign checkpoint folder was used")
    } catch {
      #expect("\(error)".contains("belongs to another job"), "\(error)")
    }
    #expect(!FileManager.default.fileExists(atPath: d + "/k.h5"))
  }

  @Test("a layer that cannot take its input fails before anything is written, naming the job and the layer")
  func badSpec() throws {
    let d = try Self.folder()
    defer { try? FileManager.default.removeItem(atPath: d) }
    try Self.writeData(d)
    let conv = try Network(tables: [
      ["type": .string("conv"), "width": .int(4), "filter": .list([.int(3), .int(3)])], ["type": .string("relu")],
      ["type": .string("flatten")], ["type": .string("dense"), "width": .int(1)],
    ])
    var s = Self.settings(d, out: d + "/k.h5", network: conv)
    s.specOrigin = "job.toml"
    let before = try FileManager.default.contentsOfDirectory(atPath: d).sorted()
    func expectFailure(_ settings: BuildSettings, ranks: Int, _ message: String) {
      do {
        _ = try Self.build(settings, ranks: ranks)
        Issue.record("built, but expected: \(message)")
      } catch {
        #expect("\(error)".contains(message), "\(error)")
      }
    }
    expectFailure(s, ranks: 2, "job.toml: kernel.layers[0] (conv): a convolution needs images")
    s.inputShape = [2, 2, 2]
    expectFailure(s, ranks: 1, "job.toml: input shape 2,2,2 has 8 values per sample, the data has 9 features")
    var twoActivations = s
    twoActivations.network = Network(layers: conv.layers.prefix(2) + [.activation(.erf)] + conv.layers.dropFirst(2))
    twoActivations.inputShape = [3, 3, 1]
    expectFailure(twoActivations, ranks: 1, "job.toml: kernel.layers[2] (erf): two activations in a row are not implemented")
    #expect(try FileManager.default.contentsOfDirectory(atPath: d).sorted() == before)
    // With the shape given (3×3×1 = 9 features), the convolutional kernel builds.
    s.inputShape = [3, 3, 1]
    let built = try Self.build(s, ranks: 2)
    #expect(built.trainCount == 41 && FileManager.default.fileExists(atPath: d + "/k.h5"))
  }
}
