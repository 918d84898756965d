import Foundation
import GramStorage
import Testing

@Suite("ntkgram build and info")
struct BuildCommandTests {
  @Test("the built file has the documented layout, attributes and an exactly symmetric train kernel")
  func layout() throws {
    let d = try temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: d) }
    try writeRandomNPY(d + "/x.npy", rows: 37, cols: 11, seed: 5)
    try writeRandomNPY(d + "/t.npy", rows: 9, cols: 11, seed: 6)
    let r = try runNTKGram(["build", "--train", d + "/x.npy", "--test", d + "/t.npy", "--depth", "2", "--activation", "erf",
                            "--b-std", "none", "--dtype", "float64", "--tile", "8", "--out", d + "/k.h5"])
    #expect(r.status == 0, "\(r.stderr)")
    let f = try H5File.open(d + "/k.h5")
    for name in ["/train/ntk", "/train/nngp"] {
      let ds = try f.dataset(name)
      #expect(ds.shape == [37, 37])
      #expect(ds.scalarType == .float64)
      let v = try ds.readAll()
      for i in 0..<37 { for j in 0..<37 { #expect(v[i * 37 + j].bitPattern == v[j * 37 + i].bitPattern) } }
    }
    #expect(try f.dataset("/test/ntk").shape == [9, 37])
    let dense = #"{"W_std":1.4142135623730951,"b_std":"none","parameterization":"ntk","type":"dense","width":512}"#
    #expect(try f.attribute("network") == .string("[\(dense),{\"type\":\"erf\"},\(dense),{\"type\":\"erf\"},\(dense.replacingOccurrences(of: "512", with: "1"))]"))
    #expect(try f.attribute("input_shape") == .int64s([11]))
    #expect(try f.attribute("N") == .int(37))
    #expect(try f.attribute("M") == .int(9))
    #expect(try f.attribute("dtype") == .string("float64"))
    let info = try runNTKGram(["info", d + "/k.h5"])
    #expect(info.status == 0)
    #expect(info.stdout.contains("/train/ntk: 37×37 float64"))
    #expect(info.stdout.contains("/test/nngp: 9×37 float64"))
    #expect(info.stdout.contains("network (5 layers"))
    #expect(info.stdout.contains("  1 erf\n"))
    // No temporary file is left beside the output.
    #expect(try FileManager.default.contentsOfDirectory(atPath: d).sorted() == ["k.h5", "t.npy", "x.npy"])
  }

  @Test("tile size does not change a single byte")
  func tileIndependence() throws {
    let d = try temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: d) }
    try writeRandomNPY(d + "/x.npy", rows: 150, cols: 20, seed: 8)
    try writeRandomNPY(d + "/t.npy", rows: 31, cols: 20, seed: 9)
    var results: [[Double]] = []
    for tile in [7, 64, 100, 1024] {
      let out = d + "/k\(tile).h5"
      let r = try runNTKGram(["build", "--train", d + "/x.npy", "--test", d + "/t.npy", "--tile", "\(tile)", "--dtype", "float64", "--out", out])
      #expect(r.status == 0, "\(r.stderr)")
      let f = try H5File.open(out)
      results.append(try ["/train/ntk", "/train/nngp", "/test/ntk", "/test/nngp"].flatMap { try f.dataset($0).readAll() })
    }
    for r in results.dropFirst() { #expect(r.map(\.bitPattern) == results[0].map(\.bitPattern)) }
    // Threads inside the rank change nothing either.
    let r = try runNTKGram(["build", "--train", d + "/x.npy", "--test", d + "/t.npy", "--tile", "16", "--threads", "3",
                            "--dtype", "float64", "--out", d + "/threads.h5"])
    #expect(r.status == 0, "\(r.stderr)")
    let f = try H5File.open(d + "/threads.h5")
    let threaded = try ["/train/ntk", "/train/nngp", "/test/ntk", "/test/nngp"].flatMap { try f.dataset($0).readAll() }
    #expect(threaded.map(\.bitPattern) == results[0].map(\.bitPattern))
  }

  @Test("float32 storage is the float64 result rounded once")
  func float32Storage() throws {
    let d = try temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: d) }
    try writeRandomNPY(d + "/x.npy", rows: 40, cols: 30, seed: 12)
    for dtype in ["float32", "float64"] {
      let r = try runNTKGram(["build", "--train", d + "/x.npy", "--dtype", dtype, "--out", d + "/\(dtype).h5"])
      #expect(r.status == 0, "\(r.stderr)")
    }
    let k32 = try H5File.open(d + "/float32.h5").dataset("/train/ntk")
    #expect(k32.scalarType == .float32)
    let a = try k32.readAll(), b = try H5File.open(d + "/float64.h5").dataset("/train/ntk").readAll()
    for (x, y) in zip(a, b) { #expect(Float(y) == Float(x)) }
  }

  @Test("--gram-precision float32 is recorded in the file, close to float64, and a bad value is refused")
  func gramPrecision() throws {
    let d = try temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: d) }
    try writeRandomNPY(d + "/x.npy", rows: 50, cols: 200, seed: 13)
    for g in ["float32", "float64"] {
      let r = try runNTKGram(["build", "--train", d + "/x.npy", "--dtype", "float64", "--gram-precision", g, "--out", d + "/\(g).h5"])
      #expect(r.status == 0, "\(r.stderr)")
      #expect(try H5File.open(d + "/\(g).h5").attribute("gram_precision") == .string(g))
    }
    let a = try H5File.open(d + "/float32.h5").dataset("/train/ntk").readAll()
    let b = try H5File.open(d + "/float64.h5").dataset("/train/ntk").readAll()
    let scale = b.map(abs).max()!
    let err = zip(a, b).map { abs($0 - $1) }.max()! / scale
    #expect(err > 0 && err < 1e-4, "float32 dot products: max error \(err) of the largest entry")
    let bad = try runNTKGram(["build", "--train", d + "/x.npy", "--gram-precision", "float16", "--out", d + "/bad.h5"])
    #expect(bad.status != 0 && bad.stderr.contains("gram_precision") && !FileManager.default.fileExists(atPath: d + "/bad.h5"))
  }

  @Test("--force replaces an existing file only with a complete one")
  func force() throws {
    let d = try temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: d) }
    try writeRandomNPY(d + "/x.npy", rows: 10, cols: 4, seed: 1)
    try Data("old".utf8).write(to: URL(fileURLWithPath: d + "/k.h5"))
    let r = try runNTKGram(["build", "--train", d + "/x.npy", "--out", d + "/k.h5", "--force"])
    #expect(r.status == 0, "\(r.stderr)")
    #expect(try H5File.open(d + "/k.h5").dataset("/train/ntk").shape == [10, 10])
  }

  @Test("bench prints every figure as JSON, with OpenBLAS on AVX2-or-wider kernels (restarted if needed)")
  func bench() throws {
    let d = try temporaryFolder()
    defer { try? FileManager.default.removeItem(atPath: d) }
    let r = try runNTKGram(["bench", "--samples", "300", "--tile", "128", "--repeats", "1", "--solver-samples", "600",
                            "--dir", d, "--json"])
    #expect(r.status == 0, "\(r.stderr)")
    let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
    // Differences of two timings (recursion, tile overhead) may round to 0 on a tiny job.
    for key in ["recursion_s", "tile_overhead_s"] {
      let v = try #require(json[key] as? Double, "\(key) missing")
      #expect(v >= 0 && v.isFinite, "\(key) = \(v)")
    }
    for key in ["entries_per_s", "compute_s", "gram_s", "gram_gflops", "io_s", "io_MB_per_s",
                "blas_gram_s", "blas_syrk_s", "build_over_blas", "peak_rss_MB", "solver_pass_s", "solver_stream_s",
                "solver_pass_over_stream", "solver_finite_s", "solver_check_s", "solver_check_over_pass"] {
      let v = try #require(json[key] as? Double, "\(key) missing")
      #expect(v > 0 && v.isFinite, "\(key) = \(v)")
    }
    #expect(json["samples"] as? Int == 300 && json["gram_precision"] as? String == "float32")
    // The harness does not set OPENBLAS_CORETYPE: the core in use is the one ntkgram chose.
    let core = (json["blas_core"] as? String ?? "").lowercased()
    if ProcessInfo.processInfo.environment["OPENBLAS_CORETYPE"] == nil {
      #expect(["haswell", "zen", "skylakex", "cooperlake", "sapphirerapids"].contains(core), "OpenBLAS core \(core)")
    }
  }

  @Test("help lists the subcommands")
  func help() throws {
    let r = try runNTKGram(["--help"])
    #expect(r.status == 0)
    #expect(r.stdout.contains("build") && r.stdout.contains("info"))
  }
}
