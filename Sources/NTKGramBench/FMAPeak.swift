import Foundation

// MARK: - The cores' fused multiply-add peak (`ntkgram bench --fma-peak`)
//
// What the convolutional kernels' GFLOP/s are measured against: every thread runs an unrolled
// loop of independent SIMD fused multiply-adds (`addingProduct`) on 12 accumulators, enough to
// cover the FMA latency (4–5 cycles) on two pipes, for about `seconds`. The vectors are the
// ones the kernels use (`SIMD4<Double>`, `SIMD8<Float>`: 256 bits, one width on every
// instruction set; on a CPU with AVX-512 units of full width a 512-bit loop could go up to 2×
// higher). One FMA lane counts 2 flops.

/// The measured peak, both precisions, every thread together.
public struct FMAPeakReport: Codable, Sendable {
  public var threads: Int
  /// Wall time of each precision's run.
  public var seconds: Double
  public var float64Gflops: Double
  public var float32Gflops: Double
  /// Accumulators per thread and the vectors' lanes (4 doubles, 8 floats).
  public var accumulators: Int
  public var float64Lanes: Int
  public var float32Lanes: Int

  enum CodingKeys: String, CodingKey {
    case threads, seconds, accumulators
    case float64Gflops = "float64_gflops", float32Gflops = "float32_gflops"
    case float64Lanes = "float64_lanes", float32Lanes = "float32_lanes"
  }
}

/// Where the loops leave their sums, so that they are not optimised away.
nonisolated(unsafe) var fmaSink = 0.0

/// Accumulators per thread of the peak loops (the loops below spell out this many).
let fmaAccumulators = 12

/// `iterations` steps of 12 independent `acc = acc + m·c` on `SIMD4<Double>`; the sum of the
/// lanes. m·c is tiny, so the accumulators never overflow nor go subnormal.
@inline(never)
func fmaLoopDouble(_ iterations: Int, _ m: SIMD4<Double>, _ c: SIMD4<Double>) -> Double {
  var a0 = SIMD4<Double>(repeating: 1), a1 = a0 + 1, a2 = a0 + 2, a3 = a0 + 3, a4 = a0 + 4, a5 = a0 + 5
  var a6 = a0 + 6, a7 = a0 + 7, a8 = a0 + 8, a9 = a0 + 9, a10 = a0 + 10, a11 = a0 + 11
  for _ in 0..<iterations {
    a0 = a0.addingProduct(m, c); a1 = a1.addingProduct(m, c); a2 = a2.addingProduct(m, c)
    a3 = a3.addingProduct(m, c); a4 = a4.addingProduct(m, c); a5 = a5.addingProduct(m, c)
    a6 = a6.addingProduct(m, c); a7 = a7.addingProduct(m, c); a8 = a8.addingProduct(m, c)
    a9 = a9.addingProduct(m, c); a10 = a10.addingProduct(m, c); a11 = a11.addingProduct(m, c)
  }
  return ((a0 + a1) + (a2 + a3) + (a4 + a5) + (a6 + a7) + (a8 + a9) + (a10 + a11)).sum()
}

/// The same on `SIMD8<Float>`.
@inline(never)
func fmaLoopFloat(_ iterations: Int, _ m: SIMD8<Float>, _ c: SIMD8<Float>) -> Double {
  var a0 = SIMD8<Float>(repeating: 1), a1 = a0 + 1, a2 = a0 + 2, a3 = a0 + 3, a4 = a0 + 4, a5 = a0 + 5
  var a6 = a0 + 6, a7 = a0 + 7, a8 = a0 + 8, a9 = a0 + 9, a10 = a0 + 10, a11 = a0 + 11
  for _ in 0..<iterations {
    a0 = a0.addingProduct(m, c); a1 = a1.addingProduct(m, c); a2 = a2.addingProduct(m, c)
    a3 = a3.addingProduct(m, c); a4 = a4.addingProduct(m, c); a5 = a5.addingProduct(m, c)
    a6 = a6.addingProduct(m, c); a7 = a7.addingProduct(m, c); a8 = a8.addingProduct(m, c)
    a9 = a9.addingProduct(m, c); a10 = a10.addingProduct(m, c); a11 = a11.addingProduct(m, c)
  }
  return Double(((a0 + a1) + (a2 + a3) + (a4 + a5) + (a6 + a7) + (a8 + a9) + (a10 + a11)).sum())
}

/// Runs `loop` on `threads` threads at once for about `seconds` (the step count calibrated on
/// one thread first) and returns GFLOP/s over the wall time: `flopsPerStep` per step and thread.
func fmaRate(threads: Int, seconds: Double, flopsPerStep: Double, _ loop: @escaping @Sendable (Int) -> Double) -> (Double, Double) {
  var steps = 1 << 16
  while true {
    let t = DispatchTime.now().uptimeNanoseconds
    fmaSink += loop(steps)
    let elapsed = Double(DispatchTime.now().uptimeNanoseconds - t) * 1e-9
    if elapsed > 0.05 { steps = max(1, Int(Double(steps) * seconds / elapsed)); break }
    steps *= 4
  }
  let lock = NSLock()
  let total = steps
  let start = DispatchTime.now().uptimeNanoseconds
  DispatchQueue.concurrentPerform(iterations: threads) { _ in
    let s = loop(total)
    lock.withLock { fmaSink += s }
  }
  let wall = Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
  return (Double(threads) * Double(total) * flopsPerStep / wall * 1e-9, wall)
}

/// The FMA peak of `threads` threads in float64 (`SIMD4<Double>`) and float32 (`SIMD8<Float>`),
/// each run for about `seconds` on every thread.
public func measureFMAPeak(threads: Int, seconds: Double = 1) -> FMAPeakReport {
  let perStep = Double(fmaAccumulators) * 2
  let (d, wd) = fmaRate(threads: threads, seconds: seconds, flopsPerStep: perStep * 4) {
    fmaLoopDouble($0, SIMD4<Double>(repeating: 1e-9), SIMD4<Double>(repeating: 1e-9))
  }
  let (f, wf) = fmaRate(threads: threads, seconds: seconds, flopsPerStep: perStep * 8) {
    fmaLoopFloat($0, SIMD8<Float>(repeating: 1e-5), SIMD8<Float>(repeating: 1e-5))
  }
  return FMAPeakReport(threads: threads, seconds: max(wd, wf), float64Gflops: d, float32Gflops: f,
                       accumulators: fmaAccumulators, float64Lanes: 4, float32Lanes: 8)
}
