@testable import GramKernels
import GramNetwork
import Testing

/// A network with weights is sized before any weight exists: counts in Double (no overflow),
/// W beyond 2^53 values refused by its shapes, and the bytes a build holds.
@Suite struct EmpiricalSizingTests {
  static func sizing(width: Int, depth: Int, features: Int = 784) throws -> EmpiricalKernel {
    let net = Network.fullyConnected(depth: depth, activation: .relu, wStd: 1.4, bStd: 0.1, parameterization: .ntk, width: width)
    return try EmpiricalKernel.sizing(network: net, inputShape: [features])
  }

  @Test func widthsBeyondAnIndexAreRefusedByTheirShapes() {
    // 2^40 × 2^40 overflows Int; 784 × 2^50 is beyond 2^53 values.
    for (width, depth) in [(1 << 40, 2), (1 << 50, 1), (Int.max, 1)] {
      #expect(throws: NetworkError.self) { _ = try Self.sizing(width: width, depth: depth) }
    }
  }

  @Test func sizesAreCountedWithoutOverflow() throws {
    let k = try Self.sizing(width: 100_000, depth: 3)
    // 784·10^5 + 2·10^10 + 10^5 weights, 3·10^5 + 1 biases.
    let weights: Double = 784e5 + 2e10 + 1e5, biases: Double = 3e5 + 1
    let expected = weights + biases
    #expect(k.parameterCount == expected)
    #expect(k.weightBytes() == 2 * 8 * expected)
    #expect(k.peakBytes(rows: 60, heldRows: 60, threads: 1) > k.weightBytes())
    // One sample's features: every layer's input and the output derivatives of the hidden layers.
    let depth = 784 + 3 * 100_000 + 3 * 100_000
    #expect(k.pairDepth == depth)
    let wide = try Self.sizing(width: 1 << 40, depth: 1, features: 8)
    let wideCount: Double = 10 * 0x1p40 + 1
    #expect(wide.parameterCount == wideCount)
  }

  @Test func aSmallNetworkFitsAndItsSizeIsExact() throws {
    let k = try Self.sizing(width: 16, depth: 1, features: 8)
    let count: Double = 8 * 16 + 16 + 16 + 1
    #expect(k.parameterCount == count)
    // Layer inputs twice and outputs once (8 → 16, 16 → 1), then the hidden derivatives twice.
    let layers: Double = 8 * 65, derivatives: Double = 8 * 2 * 16
    #expect(k.passBytesPerRow == layers + derivatives)
  }
}
