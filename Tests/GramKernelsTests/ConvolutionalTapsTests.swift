import Testing
@testable import GramKernels
import GramNetwork

/// A window's taps that can see the input (`Convolutional.Axis.live`): every tap left out only
/// ever reads padding, so the loops over `live` add exactly the terms the loops over every tap
/// added, in the same order (the same bytes); and for SAME padding they stay within 2·input − 1
/// however wide the window.
@Suite struct ConvolutionalTapsTests {
  @Test func tapsLeftOutOnlyReadPadding() {
    for padding in [Padding.same, .valid, .circular] {
      for input in 1...9 {
        for window in [1, 2, 3, 5, 8, 9, 10, 17, 40, 301] where padding != .valid || window <= input {
          for stride in [1, 2, 3, 7] {
            let axis = Convolutional.Axis(input: input, window: window, stride: stride, padding: padding)
            for a in 0..<window where !axis.live.contains(a) {
              for o in 0..<axis.output { #expect(axis.source(o, a) < 0, "\(padding) in \(input) window \(window) stride \(stride) tap \(a)") }
            }
            #expect(axis.live.lowerBound >= 0 && axis.live.upperBound <= window)
            if padding == .same { #expect(axis.live.count <= 2 * input - 1) }
            if padding != .same { #expect(axis.live == 0..<window) }
            // normalize_edges divisors count the same taps.
            for o in 0..<axis.output {
              #expect(axis.inRange(o) == (0..<window).filter { axis.source(o, $0) >= 0 }.count)
            }
          }
        }
      }
    }
  }

  @Test func circularWindowsWiderThanTheInputAreRefused() throws {
    let network = Network(layers: [
      .conv(Affine(wStd: 1, bStd: nil, width: 2, parameterization: .ntk), Window(size: [7, 3], strides: [1, 1], padding: .circular)),
      .flatten, .dense(Affine(wStd: 1, bStd: nil, width: 1, parameterization: .ntk)),
    ])
    #expect(throws: NetworkError.self) { _ = try Convolutional(network: network, inputShape: [6, 6, 1]) }
    let fits = Network(layers: [
      .conv(Affine(wStd: 1, bStd: nil, width: 2, parameterization: .ntk), Window(size: [6, 3], strides: [1, 1], padding: .circular)),
      .flatten, .dense(Affine(wStd: 1, bStd: nil, width: 1, parameterization: .ntk)),
    ])
    _ = try Convolutional(network: fits, inputShape: [6, 6, 1])
  }
}
