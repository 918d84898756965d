import GramNetwork
import Testing

@Suite("Concrete networks: parameter shapes and the counter-based generator")
struct ParametersTests {
  @Test("a value depends only on (seed, stream, index): the same from any instance, different across seeds and streams")
  func counterBased() {
    let a = CounterNormal(seed: 7, stream: 3), b = CounterNormal(seed: 7, stream: 3)
    let values = (0..<1000).map { a.value(UInt64($0)) }
    // In reverse order, from another instance: identical bits.
    for i in stride(from: 999, through: 0, by: -1) { #expect(b.value(UInt64(i)).bitPattern == values[i].bitPattern) }
    #expect(CounterNormal(seed: 8, stream: 3).value(0) != values[0])
    #expect(CounterNormal(seed: 7, stream: 4).value(0) != values[0])
  }

  @Test("the draws are standard normal: mean, variance, kurtosis and lag-1 correlation")
  func moments() {
    let g = CounterNormal(seed: 1, stream: 0)
    let n = 200_000
    let x = (0..<n).map { g.value(UInt64($0)) }
    let mean = x.reduce(0, +) / Double(n)
    let variance = x.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n)
    let kurtosis = x.reduce(0) { $0 + Self.pow4($1 - mean) } / Double(n) / (variance * variance)
    let lag = zip(x, x.dropFirst()).reduce(0) { $0 + ($1.0 - mean) * ($1.1 - mean) } / Double(n) / variance
    #expect(abs(mean) < 0.01)
    #expect(abs(variance - 1) < 0.01)
    #expect(abs(kurtosis - 3) < 0.05)
    #expect(abs(lag) < 0.01)
  }

  static func pow4(_ v: Double) -> Double { v * v * v * v }

  @Test("shapes follow the layer list: fan-in of the flattened input, bias only with b_std")
  func shapes() throws {
    let net = try Network(tables: [
      ["type": .string("flatten")], ["type": .string("dense"), "width": .int(5), "b_std": .double(0.1)],
      ["type": .string("relu")], ["type": .string("dense"), "width": .int(3)],
    ])
    let shapes = try NetworkParameters.shapes(of: net, inputShape: [2, 3, 1])
    #expect(shapes.map(\.position) == [1, 3])
    #expect(shapes.map(\.inputs) == [6, 5])
    #expect(shapes.map(\.outputs) == [5, 3])
    #expect(shapes.map(\.hasBias) == [true, false])
    let p = try NetworkParameters.draw(net, inputShape: [2, 3, 1], seed: 4)
    #expect(p.count == 6 * 5 + 5 + 5 * 3)
    try p.check(fits: net, inputShape: [2, 3, 1])
    // Another input size, another width: named.
    #expect(throws: NetworkError.self) { try p.check(fits: net, inputShape: [2, 4, 1]) }
    var wrong = p
    wrong.dense[1].b = [0, 0, 0]
    #expect(throws: NetworkError.self) { try wrong.check(fits: net, inputShape: [2, 3, 1]) }
    wrong = p
    wrong.dense[0].position = 0
    #expect(throws: NetworkError.self) { try wrong.check(fits: net, inputShape: [2, 3, 1]) }
  }

  @Test("convolutional networks have no concrete network yet: the layer is named")
  func convolutional() {
    let net = Network(layers: [.conv(Affine(wStd: 1, bStd: nil, width: 2, parameterization: .ntk), Window(size: [3, 3], strides: [1, 1], padding: .same)),
                               .flatten, .dense(Affine(wStd: 1, bStd: nil, width: 1, parameterization: .ntk))])
    #expect(throws: NetworkError.self) { try NetworkParameters.shapes(of: net, inputShape: [4, 4, 1]) }
  }
}
