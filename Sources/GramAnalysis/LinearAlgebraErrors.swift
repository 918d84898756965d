import GramSolver

/// What an analysis was doing when a `LinearAlgebraError` arose, for its one-line explanation.
struct LinearAlgebraContext {
  /// The kernel file analysed (every message names it).
  let kernelFile: String
  /// The targets file, when the targets came from one (else the file's labels).
  let targets: String?
  /// The command has a `--ridge` (solve, dynamics): the remedy for a kernel that is not
  /// positive definite.
  let hasRidge: Bool

  /// One line naming the file, the problem and the remedy, never LAPACK's routine or info code.
  func explain(_ e: LinearAlgebraError) -> AnalysisError {
    switch e.kind {
    case .notPositiveDefinite:
      let remedy = hasRidge
        ? "use a larger --ridge (or check the file with `ntkgram verify`)"
        : "check the file with `ntkgram verify` (a damaged kernel) or rebuild it"
      return AnalysisError("\(kernelFile): the kernel is not positive definite to float64 precision (\(e.description)): it is damaged or only semi-definite; \(remedy)")
    case .notFinite:
      let source = targets.map { "the targets \($0) or " } ?? ""
      return AnalysisError("\(kernelFile): NaN or infinite values arose (\(e.description)): \(source)the kernel overflow float64; scale the targets down or check the kernel with `ntkgram verify`")
    case .noConvergence:
      return AnalysisError("\(kernelFile): \(e.description) (values of very different magnitudes): check the kernel with `ntkgram verify`\(targets == nil ? "" : " and scale the targets")")
    case .invalidArgument:
      return AnalysisError("\(kernelFile): internal linear-algebra error (\(e.description)); please report it with the command")
    case .other:
      return AnalysisError("\(kernelFile): \(e.description)")
    }
  }

  /// `body`, with a `LinearAlgebraError` turned into its explanation.
  func explaining<T>(_ body: () throws -> T) throws -> T {
    do { return try body() } catch let e as LinearAlgebraError { throw explain(e) }
  }
}
