import CSIMDSupport

#if canImport(Glibc)
import Glibc
#endif

/// The instruction set the Gram products run on, chosen once per process.
///
/// Every choice gives the same bits (one summation order, see `GramMicroKernels`), so ranks on
/// different CPUs still write byte-identical kernels; `NTKGRAM_ISA=avx2` forces the AVX2 path
/// on an AVX-512 machine (tests compare the two).
public enum GramISA: String, Sendable, CaseIterable {
  case avx2
  case avx512

  /// What this CPU supports, unless `NTKGRAM_ISA` names a supported narrower set.
  public static let current: GramISA = {
    let best: GramISA = ntkgram_cpu_has_avx512() != 0 ? .avx512 : .avx2
    if let forced = getenv("NTKGRAM_ISA").map({ String(cString: $0) }), let isa = GramISA(rawValue: forced),
       isa == .avx2 || best == .avx512 {
      return isa
    }
    return best
  }()

  /// Whether this CPU can run `self`.
  public var isSupported: Bool {
    switch self {
    case .avx2: return ntkgram_cpu_has_avx2_fma() != 0
    case .avx512: return ntkgram_cpu_has_avx512() != 0
    }
  }

  public func blocking(scalarBytes: Int) -> GramBlocking {
    GramBlocking.forVector(lanes: (self == .avx512 ? 64 : 32) / scalarBytes, scalarBytes: scalarBytes)
  }
}
