import Foundation
import GramStorage
import GramTiling
import Testing

/// Runs `ntkgram` under a real `mpirun` with `ranks` processes.
func runMPI(_ ranks: Int, _ arguments: [String]) throws -> RunResult {
  try runProcess("/usr/bin/env", ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "\(ranks)", try ntkgramBinary()] + arguments)
}

/// The kernel datasets' raw values (bit patterns), for byte-identity checks.
func kernelBits(_ path: String) throws -> [String: [UInt64]] {
  let f = try H5File.open(path)
  var result: [String: [UInt64]] = [:]
  for name in ["/train/ntk", "/train/nngp", "/test/ntk", "/test/nngp"] where f.exists(name) {
    result[name] = try f.dataset(name).readAll().map(\.bitPattern)
  }
  return result
}

@Suite("distributed build under mpirun", .serialized)
struct MPIBuildTests {
  @Test("1, 2 and 3 ranks with tiles of 64 and 100 give byte-identical kernels")
  func rankAndTileIndependence() throws {
    let d = try temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: d) }
    try writeRandomNPY(d + "/x.npy", rows: 230, cols: 17, seed: 21)
    try writeRandomNPY(d + "/t.npy", rows: 45, cols: 17, seed: 22)
    var reference: [String: [UInt64]]? = nil
    for ranks in [1, 2, 3] {
      for tile in [64, 100] {
        for dtype in ["float64", "float32"] where dtype == "float64" || (ranks == 2 && tile == 64) {
          let out = d + "/k-\(ranks)-\(tile)-\(dtype).h5"
          let r = try runMPI(ranks, ["build", "--train", d + "/x.npy", "--test", d + "/t.npy", "--tile", "\(tile)",
                                     "--dtype", dtype, "--out", out, "--quiet"])
          #expect(r.status == 0, "ranks \(ranks) tile \(tile): \(r.stderr)")
          let bits = try kernelBits(out)
          #expect(bits.count == 4)
          if dtype == "float32" {
            let f64 = try kernelBits(d + "/k-1-64-float64.h5")
            for (name, v) in bits { #expect(v.map { Float(Double(bitPattern: $0)) } == f64[name]!.map { Float(Double(bitPattern: $0)) }) }
            continue
          }
          if let reference { #expect(bits == reference, "ranks \(ranks) tile \(tile) differs") } else { reference = bits }
        }
      }
    }
  }

  @Test("tiled kernels: 1, 2 and 3 ranks give the contiguous kernels' values and byte-identical files; direct and cached writes alike",
        arguments: [64, 40])
  func tiledRankIndependence(tile: Int) throws {
    let d = try temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: d) }
    try writeRandomNPY(d + "/x.npy", rows: 530, cols: 11, seed: 23)
    try writeRandomNPY(d + "/t.npy", rows: 75, cols: 11, seed: 24)
    let common = ["build", "--train", d + "/x.npy", "--test", d + "/t.npy", "--tile", "\(tile)", "--dtype", "float64", "--quiet"]
    let contiguous = try runMPI(1, common + ["--layout", "contiguous", "--out", d + "/c.h5"])
    #expect(contiguous.status == 0, "\(contiguous.stderr)")
    var first: Data? = nil
    for ranks in [1, 2, 3] {
      let out = d + "/t\(ranks).h5"
      let r = try runMPI(ranks, common + ["--layout", "tiles", "--out", out])
      #expect(r.status == 0, "ranks \(ranks): \(r.stderr)")
      #expect(try kernelBits(out) == kernelBits(d + "/c.h5"), "ranks \(ranks): the tiled kernels differ from the contiguous ones")
      let f = try H5File.open(out)
      #expect(try f.attribute("layout") == .string("tiles") && f.attribute("format_version") == .int(3))
      let region = KernelRegion.of(try f.dataset("/train/ntk"))
      #expect(region?.isTiled == true && region?.chunkRows == tile)
      // 64² float64 chunks of 32 KiB, allocated together past 1 MiB: aligned, so written directly.
      #expect(try (region.map { try RegionFile(path: out, writable: true).writesDirectly($0) }) == (tile == 64))
      let bytes = try Data(contentsOf: URL(fileURLWithPath: out))
      if let first { #expect(bytes == first, "ranks \(ranks): the file's bytes differ from 1 rank's") } else { first = bytes }
    }
    let v = try runNTKGram(["verify", d + "/t3.h5"])
    #expect(v.status == 0, "\(v.stderr)")
  }

  @Test("a rank killed mid-build: rerun resumes (1 rank, then 2) and gives the same bytes", arguments: ["contiguous", "tiles"])
  func killAndResume(layout: String) throws {
    let d = try temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: d) }
    try writeRandomNPY(d + "/x.npy", rows: 900, cols: 64, seed: 31)
    try writeRandomNPY(d + "/t.npy", rows: 100, cols: 64, seed: 32)
    // Tiled: chunks of 64² float64 values, 32 KiB, written directly to the disk.
    let common = ["build", "--train", d + "/x.npy", "--test", d + "/t.npy", "--tile", layout == "tiles" ? "64" : "40", "--dtype", "float64",
                  "--layout", layout, "--quiet"]
    let clean = try runMPI(1, common + ["--out", d + "/clean.h5"])
    #expect(clean.status == 0, "\(clean.stderr)")

    // Start 2 ranks; once some tiles exist, kill -9 one rank.
    let tiles = d + "/k.tiles"
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    p.arguments = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2", try ntkgramBinary()] + common + ["--out", d + "/k.h5"]
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    let deadline = Date().addingTimeInterval(120)
    var killed = false
    while Date() < deadline && p.isRunning {
      let done = ((try? FileManager.default.contentsOfDirectory(atPath: tiles)) ?? []).filter { $0.hasPrefix("tile-") }.count
      if done >= 6 {
        // The ranks are mpirun's children running ntkgram.
        let ps = Process()
        ps.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        ps.arguments = ["pgrep", "-P", "\(p.processIdentifier)", "ntkgram"]
        let pipe = Pipe()
        ps.standardOutput = pipe
        try ps.run()
        ps.waitUntilExit()
        let pids = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).split(separator: "\n").compactMap { Int32($0) }
        if let victim = pids.last { kill(victim, SIGKILL); killed = true }
        break
      }
      usleep(20_000)
    }
    p.waitUntilExit()
    #expect(killed, "no rank was running once tiles appeared")
    #expect(p.terminationStatus != 0, "the killed job reported success")
    #expect(!FileManager.default.fileExists(atPath: d + "/k.h5"), "a killed job left an output file")
    #expect(FileManager.default.fileExists(atPath: d + "/.k.h5.partial"), "the killed job's partial file is kept for the resume")
    let left = ((try? FileManager.default.contentsOfDirectory(atPath: tiles)) ?? []).filter { $0.hasPrefix("tile-") }.count
    #expect(left >= 6)

    // Resume with 1 rank: it must finish, writing only the missing tiles.
    let resumed = try runMPI(1, Array(common.dropLast()) + ["--out", d + "/k.h5", "--keep-checkpoints"])
    #expect(resumed.status == 0, "\(resumed.stderr)")
    #expect(resumed.stderr.contains("tiles reused, already in"), "no resume report: \(resumed.stderr)")
    #expect(try kernelBits(d + "/k.h5") == kernelBits(d + "/clean.h5"))
    #expect(try Data(contentsOf: URL(fileURLWithPath: d + "/k.h5")) == Data(contentsOf: URL(fileURLWithPath: d + "/clean.h5")),
            "the resumed file is byte-identical to the uninterrupted one")

    // As if killed after the last tile, before the rename: 2 ranks reuse every tile.
    try FileManager.default.moveItem(atPath: d + "/k.h5", toPath: d + "/.k.h5.partial")
    let again = try runMPI(2, Array(common.dropLast()) + ["--out", d + "/k.h5"])
    #expect(again.status == 0, "\(again.stderr)")
    let reusedAll = again.stderr.range(of: #"resuming: (\d+) of (\d+) tiles reused, already in"#, options: .regularExpression).map { String(again.stderr[$0]) }
    #expect(reusedAll != nil, "\(again.stderr)")
    #expect(try Data(contentsOf: URL(fileURLWithPath: d + "/k.h5")) == Data(contentsOf: URL(fileURLWithPath: d + "/clean.h5")))
  }

  @Test("a flipped byte and a half-truncated checkpoint are detected and recomputed; another job's folder is refused")
  func damagedCheckpoints() throws {
    let d = try temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: d) }
    try writeRandomNPY(d + "/x.npy", rows: 120, cols: 9, seed: 41)
    let common = ["build", "--train", d + "/x.npy", "--tile", "30", "--dtype", "float64", "--quiet", "--out", d + "/k.h5", "--checkpoints", d + "/tiles"]
    let first = try runNTKGram(common + ["--keep-checkpoints"])
    #expect(first.status == 0, "\(first.stderr)")
    let original = try kernelBits(d + "/k.h5")
    // As an interrupted build leaves it: the hidden partial file and the tile records.
    let region = try #require(try { KernelRegion.of(try H5File.open(d + "/k.h5").dataset("/train/ntk")) }())
    try FileManager.default.moveItem(atPath: d + "/k.h5", toPath: d + "/.k.h5.partial")

    // Flip one byte inside tile 3's values, truncate tile 5's record to half.
    let t3 = TileRecord.path(folder: d + "/tiles", index: 3)
    let tile3 = TilePlan(trainCount: 120, testCount: 0, tileSize: 30).tile(3)
    let fd = open(d + "/.k.h5.partial", O_RDWR)
    var byte: UInt8 = 0
    let at = off_t(region.offset + (tile3.rows.lowerBound * 120 + tile3.cols.lowerBound) * 8 + 3)
    pread(fd, &byte, 1, at); byte ^= 0x10; pwrite(fd, &byte, 1, at)
    close(fd)
    let t5 = TileRecord.path(folder: d + "/tiles", index: 5)
    let b5 = try Data(contentsOf: URL(fileURLWithPath: t5))
    try b5.prefix(b5.count / 2).write(to: URL(fileURLWithPath: t5))

    let second = try runNTKGram(common.filter { $0 != "--quiet" })
    #expect(second.status == 0, "\(second.stderr)")
    #expect(second.stderr.contains(t3) && second.stderr.contains("does not match the recorded checksum"), "\(second.stderr)")
    #expect(second.stderr.contains(t5), "\(second.stderr)")
    #expect(second.stderr.contains("2 damaged tiles to recompute"), "\(second.stderr)")
    #expect(try kernelBits(d + "/k.h5") == original)

    // A checkpoint folder of another job (other depth) is refused, and left as it was.
    let third = try runNTKGram(common + ["--keep-checkpoints", "--force"])
    #expect(third.status == 0, "\(third.stderr)")
    let before = try snapshot(d)
    let foreign = try runNTKGram(common.filter { $0 != d + "/k.h5" && $0 != "--out" } + ["--out", d + "/other.h5", "--depth", "2"])
    #expect(foreign.status != 0)
    #expect(foreign.stderr.contains("belongs to another job") && foreign.stderr.contains("--restart"), "\(foreign.stderr)")
    #expect(try snapshot(d) == before)
    let restarted = try runNTKGram(common.filter { $0 != d + "/k.h5" && $0 != "--out" } + ["--out", d + "/other.h5", "--depth", "2", "--restart"])
    #expect(restarted.status == 0, "\(restarted.stderr)")
  }
}
